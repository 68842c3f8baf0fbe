"""Stage the Cloud Function source for Terraform (infra/source.tf).

Copies `functions/` (main.py and the submitter package, without bytecode), the top-level
`requirements.txt` (Cloud Functions installs the requirements.txt found beside main.py; the top-level
file stays the one source of truth and is copied, never edited) and the deployment policy (as
`policy.yaml`, read by the function through SUBMITTER_POLICY_FILE=/workspace/policy.yaml) into a
staging directory, then zips that directory reproducibly: sorted entries, fixed timestamps and
permissions. The same content always gives the same bytes, so the archive's SHA-256 names it.

Usage: python infra/stage_source.py [--policy infra/policy.yaml] [--out infra/.build/function-source]
Prints the archive path and its SHA-256. Exit 1 when the policy does not parse.
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
DEFAULT_OUT = REPO / "infra" / ".build" / "function-source"
POLICY_NAME = "policy.yaml"
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


def stage(out: Path, policy: Path, functions: Path = FUNCTIONS, requirements: Path = REQUIREMENTS) -> Path:
    """Fill `out` with the function source and write `out`.zip; returns the archive path."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel in source_files(functions):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(functions / rel, out / rel)
    if (out / "requirements.txt").exists() or (out / POLICY_NAME).exists():
        raise SystemExit(f"{functions} already holds requirements.txt or {POLICY_NAME}: the staged copies would "
                         "shadow or be shadowed by them")
    shutil.copyfile(requirements, out / "requirements.txt")
    shutil.copyfile(policy, out / POLICY_NAME)
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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="staging directory (the archive is OUT.zip)")
    args = parser.parse_args(argv)
    try:
        check_policy(args.policy)
    except (OSError, ValueError) as exc:
        print(f"stage_source: invalid policy: {exc}", file=sys.stderr)
        return 1
    archive = stage(args.out, args.policy)
    print(f"{archive} sha256={sha256(archive)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
