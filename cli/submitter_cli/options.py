"""gcloud-style job flags shared by `validate` and `submit`, and the offline check both run.

The offline check is the function's own planner (`submitter.planning.Planner`) reading local packages
through `LocalPackages`: the same merge, checks, policy and package inspection the function applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from submitter import naming
from submitter.clock import SystemClock
from submitter.drops import missing_packages
from submitter.errors import SpecRejected
from submitter.planning import Plan, Planner, SpecInput, spec_defaults
from submitter.reasons import Reason, Violation
from submitter.settings import Settings
from submitter.spec import parse_job_yaml
from submitter.validation import Overrides

from .local_files import LocalPackages


def job_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command with the gcloud-style flags (`gcloud ai-platform jobs submit training`)."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                     help="job.yaml (the Job resource; YAML or JSON)"),
        click.option("--packages", "packages", default=None,
                     help="comma-separated local .tar.gz files (inspected) or gs:// URIs"),
        click.option("--job-id", default=None, help="jobId (default: derived from the drop folder)"),
        click.option("--module-name", default=None, help="trainingInput.pythonModule"),
        click.option("--region", default=None, help="trainingInput.region"),
        click.option("--runtime-version", default=None, help="trainingInput.runtimeVersion"),
        click.option("--python-version", default=None, help="trainingInput.pythonVersion"),
        click.option("--scale-tier", default=None, help="trainingInput.scaleTier"),
        click.option("--job-dir", default=None, help="trainingInput.jobDir (gs://bucket/path)"),
        click.option("--labels", default=None, help="k1=v1,k2=v2, merged over the file's labels"),
        click.option("--json", "as_json", is_flag=True, help="machine-readable output"),
        click.argument("user_args", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def overrides_from(kw: dict[str, Any], package_uris: list[str] | None) -> Overrides:
    """Overrides from the parsed flags (`user_args` are the words after `--`)."""
    labels = None
    if kw.get("labels"):
        labels = {}
        for pair in kw["labels"].split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise click.UsageError(f"--labels: {pair!r} is not KEY=VALUE")
            labels[key.strip()] = value.strip()
    return Overrides(job_id=kw.get("job_id"), module_name=kw.get("module_name"), region=kw.get("region"),
                     runtime_version=kw.get("runtime_version"), python_version=kw.get("python_version"),
                     scale_tier=kw.get("scale_tier"), job_dir=kw.get("job_dir"), labels=labels,
                     args=list(kw.get("user_args") or ()) or None, package_uris=package_uris)


@dataclasses.dataclass
class Offline:
    """Result of the offline check: what the function would do with this drop."""

    checked: Plan
    job_id: str
    local_packages: list[Path]


def read_spec(path: Path, settings: Settings) -> bytes:
    """The spec file's bytes; over the function's size cap it is a usage error, as the function rejects it."""
    size = path.stat().st_size
    if size > settings.max_spec_bytes:
        raise click.ClickException(f"{path} is {size} bytes; a job.yaml may be at most {settings.max_spec_bytes} "
                                   "bytes (SUBMITTER_MAX_SPEC_BYTES): the function would reject it as SPEC_TOO_LARGE")
    return path.read_bytes()


def split_packages(raw: str | None) -> tuple[list[Path], list[str]]:
    """(--packages local files, --packages gs:// URIs)."""
    local, remote = [], []
    for item in filter(None, (p.strip() for p in (raw or "").split(","))):
        if item.startswith("gs://"):
            remote.append(item)
        else:
            path = Path(item)
            if not path.is_file():
                raise click.UsageError(f"--packages: {item} is not a file")
            local.append(path)
    return local, remote


def check_offline(settings: Settings, spec_text: bytes, spec_name: str, drop_name: str,
                  local_packages: list[Path], remote_packages: list[str], kw: dict[str, Any],
                  generation: int = 0) -> Offline:
    """Plan a spec exactly as the function would for a drop `<prefix><drop_name>/` holding `local_packages`.

    Local packages are inspected from their tar headers; gs:// packages cannot be read offline and are
    taken as given. A packageUris entry naming a file of the drop folder that is not there is a violation
    (the live drop would wait for it).
    """
    folder = settings.drop_prefix + drop_name
    files = {f"gs://{settings.drop_bucket}/{folder}/{p.name}": p for p in local_packages}
    # Packages given as gs:// URIs must be listed in packageUris; local ones ride in the drop.
    flags = overrides_from(kw, list(files) + remote_packages if remote_packages else None)
    derived = naming.derive_job_id(drop_name, generation)
    try:
        parsed = parse_job_yaml(spec_text, spec_name)
    except SpecRejected as exc:
        failed = Plan(job={}, job_id=derived, violations=exc.violations, warnings=[], notes=[])
        return Offline(checked=failed, job_id=derived, local_packages=local_packages)
    named = flags.job_id if flags.job_id is not None else parsed.job.get("jobId")
    job_id = named if naming.is_valid_job_id(named) else derived
    store = LocalPackages(files)
    spec = SpecInput(parsed=parsed, defaults=spec_defaults(settings, folder, job_id, tuple(files)),
                     packages={uri: store.info(uri) for uri in files})
    from submitter.backends import build_backend  # the deployment's backend checks too (Vertex: the CustomJob)

    planner = Planner(settings, store, SystemClock(), backend=build_backend(settings))
    plan = planner.plan(spec, derived, flags=flags, inspect_unlisted=False)
    ti = plan.job.get("trainingInput")
    if isinstance(ti, dict):
        missing = missing_packages(plan.job, settings.drop_bucket, folder, [p.name for p in local_packages])
        uris = ti.get("packageUris")
        if missing and isinstance(uris, list) and uris:
            plan.violations += [Violation("trainingInput.packageUris", f"names {name}, which the drop folder does not "
                                          "hold: the drop would wait for it; add the file or fix the URI",
                                          Reason.PACKAGE_INVALID, name) for name in missing]
        elif not files and not remote_packages and not uris:
            plan.violations.append(Violation("trainingInput.packageUris", "no package: give --packages (a local "
                                             ".tar.gz or a gs:// URI) or a drop folder holding one"))
    return Offline(checked=plan, job_id=str(job_id), local_packages=local_packages)


def render(result: Offline, as_json: bool, source: str, from_env: bool) -> None:
    """Print the check result for humans or (--json) machines."""
    import json

    import yaml

    c = result.checked
    if as_json:
        click.echo(json.dumps({"valid": c.valid, "jobId": result.job_id,
                               "violations": [v.as_dict() for v in c.violations], "warnings": c.warnings,
                               "notes": c.notes, "job": c.job}, indent=2, default=str))
        return
    if not from_env:
        click.echo("note: no SUBMITTER_* settings in the environment; using the local stack's defaults")
    if c.valid:
        plural = "s" if len(c.warnings) != 1 else ""
        click.echo(f"{source}: valid" + (f" ({len(c.warnings)} warning{plural})" if c.warnings else ""))
    else:
        click.echo(f"{source}: {len(c.violations)} problem{'s' if len(c.violations) != 1 else ''}")
        for v in c.violations:
            shown = v.as_dict()
            value = f" (got {shown['value']!r})" if "value" in shown and repr(v.value) not in v.message else ""
            click.echo(f"  {shown['field']}: {shown['message']}{value}  [{v.reason.value}]")
    for w in c.warnings:
        click.echo(f"  warning: {w}")
    for n in c.notes:
        click.echo(f"  note: {n}")
    if c.valid:
        click.echo(f"  jobId: {result.job_id}")
        click.echo("  completed spec:")
        click.echo("    " + yaml.safe_dump(c.job, sort_keys=False).rstrip().replace("\n", "\n    "))
