"""`submitter submit`: build or take packages, merge flags and --config, validate, upload a drop."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import yaml

from submitter import naming
from submitter.spec import load_yaml
from submitter.validation import apply_overrides

from .common import load_settings
from .dropper import upload_drop
from .options import check_offline, job_flags, overrides_from, read_spec, render, split_packages


def build_sdist(package_path: Path, out_dir: Path, isolation: bool) -> Path:
    """`python -m build --sdist` of `package_path` into `out_dir`; returns the .tar.gz.

    Raises:
        click.ClickException: the build failed (its stderr tail is shown).
    """
    cmd = [sys.executable, "-m", "build", "--sdist", "--outdir", str(out_dir), str(package_path)]
    if not isolation:
        cmd.insert(4, "--no-isolation")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"building an sdist of {package_path} failed:\n{result.stderr[-1500:]}")
    return next(out_dir.glob("*.tar.gz"))


@click.command()
@click.option("--package-path", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="a Python project to build with `python -m build --sdist`")
@click.option("--build-isolation/--no-build-isolation", default=False, show_default=True,
              help="build the sdist in an isolated environment (needs the package index)")
@click.option("--folder", default=None, help="drop folder name under the drop prefix (default: <name>-<UTC time>)")
@job_flags
def submit(package_path: Path | None, build_isolation: bool, folder: str | None, config: Path | None,
           packages: str | None, as_json: bool, **kw) -> None:
    """Validate, then upload packages first and job.yaml last into a new drop folder.

    Uses the deployment's SUBMITTER_* settings (`source .local/stack.env` for the local stack) and
    works against real Cloud Storage or the GCS emulator. Prints the drop location and the jobId to
    expect. Exit 0 uploaded, 1 invalid or failed, 2 usage error.
    """
    settings = load_settings()
    local, remote = split_packages(packages)
    spec_text = read_spec(config, settings) if config else b"trainingInput: {}\n"
    stem = package_path.name if package_path else (local[0].name.removesuffix(".tar.gz").split("-")[0]
                                                    if local else "job")
    name = folder or f"{stem}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    if not naming.is_valid_drop_name(name):
        raise click.UsageError(f"--folder {name!r}: use letters, digits, '-', '_' and '.' only")
    with tempfile.TemporaryDirectory() as tmp:
        if package_path:
            local.append(build_sdist(package_path, Path(tmp), build_isolation))
        if not local and not remote:
            raise click.UsageError("give --package-path or --packages")
        result = check_offline(settings, spec_text, str(config or "flags"), name, local, remote, kw)
        if not result.checked.valid:
            render(result, as_json, str(config or "flags"), True)
            sys.exit(1)
        # Upload the user's spec with the flags applied; the function completes it as validated.
        merged, _ = apply_overrides(load_yaml(spec_text.decode()) or {},
                                    overrides_from(kw, result.checked.job["trainingInput"].get("packageUris")
                                                   if remote else None))
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        client = storage.Client(project=settings.project)
        try:
            location = upload_drop(client, settings.drop_bucket, settings.drop_prefix + name, local,
                                   yaml.safe_dump(merged, sort_keys=False).encode())
        except PreconditionFailed:
            raise click.ClickException(f"drop folder gs://{settings.drop_bucket}/{settings.drop_prefix}{name}/ "
                                       "already holds these files; choose another --folder") from None
    job_id = merged.get("jobId") or naming.derive_job_id(name, location.spec_generation)
    if as_json:
        import json

        click.echo(json.dumps({"drop": location.uri, "jobId": job_id, "generation": str(location.spec_generation)}))
    else:
        for line in result.checked.notes:
            click.echo(f"note: {line}")
        for line in result.checked.warnings:
            click.echo(f"warning: {line}")
        click.echo(f"dropped into {location.uri}")
        click.echo(f"expect jobId {job_id}  (follow it: submitter watch {job_id}; the verdict on the drop: "
                   f"submitter drop-status {settings.drop_prefix}{name})")
