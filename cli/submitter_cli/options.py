"""The offline check `validate` and `submit` both run, and how its result is shown.

The offline check is the function's own planner (`submitter.planning.Planner`) reading local packages
through `LocalPackages`: the same merge, checks, policy and package inspection the function applies.
"""

from __future__ import annotations

import dataclasses
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

from .flags import overrides_from
from .local_files import LocalPackages
from .packaging import Packages


@dataclasses.dataclass
class Offline:
    """Result of the offline check: what the function would do with this drop."""

    checked: Plan
    job_id: str
    packages: Packages


def read_spec(path: Path, settings: Settings) -> bytes:
    """The spec file's bytes; over the function's size cap it is a usage error, as the function rejects it."""
    size = path.stat().st_size
    if size > settings.max_spec_bytes:
        raise click.ClickException(f"{path} is {size} bytes; a job.yaml may be at most {settings.max_spec_bytes} "
                                   "bytes (SUBMITTER_MAX_SPEC_BYTES): the function would reject it as SPEC_TOO_LARGE")
    return path.read_bytes()


def check_offline(settings: Settings, spec_text: bytes, spec_name: str, drop_name: str, packages: Packages,
                  kw: dict[str, Any], generation: int = 0) -> Offline:
    """Plan a spec exactly as the function would for a drop `<prefix><drop_name>/` with these packages.

    Local packages (in the drop or staged) are inspected from their tar headers; gs:// packages cannot be
    read offline and are taken as given. A packageUris entry naming a file of the drop folder that is not
    there is a violation (the live drop would wait for it), and so is a job with no package at all unless it
    runs a custom container (masterConfig.imageUri).
    """
    folder = settings.drop_prefix + drop_name
    files = packages.local_uris(settings.drop_bucket, folder)
    flags = overrides_from(kw, packages.flag_uris, settings.project)
    derived = naming.derive_job_id(drop_name, generation)
    try:
        parsed = parse_job_yaml(spec_text, spec_name)
    except SpecRejected as exc:
        failed = Plan(job={}, job_id=derived, violations=exc.violations, warnings=[], notes=[])
        return Offline(checked=failed, job_id=derived, packages=packages)
    named = flags.job_id if flags.job_id is not None else parsed.job.get("jobId")
    job_id = named if naming.is_valid_job_id(named) else derived
    store = LocalPackages(files)
    in_drop = tuple(f"gs://{settings.drop_bucket}/{folder}/{p.name}" for p in packages.in_drop)
    spec = SpecInput(parsed=parsed, defaults=spec_defaults(settings, folder, job_id, in_drop),
                     packages={uri: store.info(uri) for uri in files})
    from submitter.backends import build_backend  # the deployment's backend checks too (Vertex: the CustomJob)

    planner = Planner(settings, store, SystemClock(), backend=build_backend(settings))
    plan = planner.plan(spec, derived, flags=flags, inspect_unlisted=False)
    ti = plan.job.get("trainingInput")
    if isinstance(ti, dict):
        missing = missing_packages(plan.job, settings.drop_bucket, folder, [p.name for p in packages.in_drop])
        uris = ti.get("packageUris")
        if missing and isinstance(uris, list) and uris:
            plan.violations += [Violation("trainingInput.packageUris", f"names {name}, which the drop folder does not "
                                          "hold: the drop would wait for it; add the file or fix the URI",
                                          Reason.PACKAGE_INVALID, name) for name in missing]
        elif missing:
            plan.violations.append(Violation("trainingInput.packageUris", "no package: give --packages (a local "
                                             ".tar.gz or a gs:// URI), --package-path, a drop folder holding one, or "
                                             "run a custom container (--master-image-uri)"))
    return Offline(checked=plan, job_id=str(job_id), packages=packages)


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
