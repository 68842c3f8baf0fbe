"""Stage the Cloud Function source for Terraform (infra/source.tf).

Copies `functions/` (main.py and the submitter package, without bytecode), the top-level
`requirements.txt` (Cloud Functions installs the requirements.txt found beside main.py; the top-level
file stays the one source of truth and is copied, never edited), the deployment policy (as
`policy.yaml`, read by the function through SUBMITTER_POLICY_FILE=/workspace/policy.yaml) and the data-trigger
rules (as `triggers.yaml`, SUBMITTER_TRIGGER_RULES_FILE=/workspace/triggers.yaml) into a staging directory, then
zips that directory reproducibly: sorted entries, fixed timestamps and permissions. The same content always gives
the same bytes, so the archive's SHA-256 names it.

Usage: python infra/stage_source.py [--policy infra/policy.yaml] [--triggers infra/triggers.yaml]
                                    [--out infra/.build/function-source]
Prints the archive path and its SHA-256. Exit 1 when the policy does not parse or a trigger rule is invalid.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = REPO / "functions"
REQUIREMENTS = REPO / "requirements.txt"
DEFAULT_POLICY = REPO / "infra" / "policy.yaml"
DEFAULT_TRIGGERS = REPO / "infra" / "triggers.yaml"
DEFAULT_OUT = REPO / "infra" / ".build" / "function-source"
POLICY_NAME = "policy.yaml"
TRIGGERS_NAME = "triggers.yaml"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def source_files(functions: Path = FUNCTIONS) -> list[Path]:
    """Files under `functions/` that belong in the deployment (paths relative to it), sorted."""
    files = []
    for path in functions.rglob("*"):
        rel = path.relative_to(functions)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
            files.append(rel)
    return sorted(files, key=lambda p: p.as_posix())


def check_policy(policy: Path) -> None:
    """Parse the policy with the submitter's own parser, so a bad file fails here, not at function start."""
    sys.path.insert(0, str(FUNCTIONS))
    try:
        from submitter.policy import Policy
    finally:
        sys.path.remove(str(FUNCTIONS))
    Policy.from_yaml(policy.read_text(), source=str(policy))


def check_triggers(triggers: Path, policy: Path) -> None:
    """Load the trigger rules with the submitter's own loader and check every template against the policy, as the
    function will when it starts (placeholder values, the same planner), so a rule that would never fire fails here.

    Raises:
        ValueError: the file is not a rules file, or a rule is invalid (every problem listed).
    """
    sys.path.insert(0, str(FUNCTIONS))
    try:
        from submitter.clock import SystemClock
        from submitter.planning import Planner
        from submitter.settings import LOCAL_DEFAULTS, Settings
        from submitter.trigger_handler import check_rules
    finally:
        sys.path.remove(str(FUNCTIONS))
    settings = Settings.from_env({**LOCAL_DEFAULTS, "SUBMITTER_POLICY_FILE": str(policy),
                                  "SUBMITTER_TRIGGER_RULES_FILE": str(triggers)})
    _, broken = check_rules(settings, Planner(settings, storage=None, clock=SystemClock()))
    if broken:
        raise ValueError("; ".join(f"rule {name}: " + "; ".join(f"{v.field}: {v.message}" for v in violations)
                                   for name, (_, violations) in broken.items()))


def stage(out: Path, policy: Path, functions: Path = FUNCTIONS, requirements: Path = REQUIREMENTS,
          triggers: Path = DEFAULT_TRIGGERS) -> Path:
    """Fill `out` with the function source and write `out`.zip; returns the archive path."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel in source_files(functions):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(functions / rel, out / rel)
    if any((out / name).exists() for name in ("requirements.txt", POLICY_NAME, TRIGGERS_NAME)):
        raise SystemExit(f"{functions} already holds requirements.txt, {POLICY_NAME} or {TRIGGERS_NAME}: the staged "
                         "copies would shadow or be shadowed by them")
    shutil.copyfile(requirements, out / "requirements.txt")
    shutil.copyfile(policy, out / POLICY_NAME)
    shutil.copyfile(triggers, out / TRIGGERS_NAME)
    archive = out.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((p for p in out.rglob("*") if p.is_file()), key=lambda p: p.relative_to(out).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(out).as_posix(), date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return archive


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="deployment policy YAML")
    parser.add_argument("--triggers", type=Path, default=DEFAULT_TRIGGERS, help="data-trigger rules YAML")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="staging directory (the archive is OUT.zip)")
    args = parser.parse_args(argv)
    try:
        check_policy(args.policy)
    except (OSError, ValueError) as exc:
        print(f"stage_source: invalid policy: {exc}", file=sys.stderr)
        return 1
    try:
        check_triggers(args.triggers, args.policy)
    except (OSError, ValueError) as exc:
        print(f"stage_source: invalid trigger rules: {exc}", file=sys.stderr)
        return 1
    archive = stage(args.out, args.policy, triggers=args.triggers)
    print(f"{archive} sha256={sha256(archive)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
