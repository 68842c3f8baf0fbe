"""`submitter submit`: take or build packages, merge flags and --config, validate, upload a drop.

With `--stream-logs`, then follows the job as `submitter watch JOB_ID` does (same output, same exit codes).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from submitter import naming
from submitter.settings import Settings
from submitter.spec import load_yaml
from submitter.validation import apply_overrides

from .common import load_settings
from .dropper import upload_drop
from .flags import GcloudCommand, job_flags, overrides_from
from .options import check_offline, read_spec, render
from .packaging import Packages, resolve_packages

EMPTY_SPEC = b"trainingInput: {}\n"


def _stem(kw: dict[str, Any]) -> str:
    if kw.get("package_path"):
        return Path(kw["package_path"]).resolve().name
    first = next(filter(None, (p.strip() for p in (kw.get("packages") or "").split(","))), "")
    return first.rsplit("/", 1)[-1].removesuffix(".tar.gz").split("-")[0] or "job"


def stage(client: Any, packages: Packages) -> None:
    """Upload staged packages (`--staging-bucket`) before the drop; an object already there has the same bytes
    (its path holds their sha256), so it is kept."""
    from google.api_core.exceptions import PreconditionFailed

    for uri, path in packages.staged.items():
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        try:
            client.bucket(bucket).blob(name).upload_from_filename(str(path), content_type="application/gzip",
                                                                  if_generation_match=0)
        except PreconditionFailed:
            pass


def stream(settings: Settings, job_id: str, as_json: bool, refusal_id: str | None = None) -> int:
    """`--stream-logs`: follow the job as `submitter watch JOB_ID` does; returns watch's exit code. A refusal of
    the drop published under `refusal_id` (the drop's own jobId, when the spec names another) ends it too."""
    from submitter.backends import build_backend

    from .follow import EventFollower
    from .watch import EXIT_INTERRUPTED, run_watch

    try:
        return run_watch(settings, build_backend(settings), lambda: EventFollower(settings.topic, "watch"), job_id,
                         as_json, None, refusal_id=refusal_id)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


@click.command(cls=GcloudCommand)
@click.option("--folder", default=None, help="drop folder name under the drop prefix (default: <name>-<UTC time>)")
@job_flags
def submit(folder: str | None, config: Path | None, as_json: bool, **kw: Any) -> None:
    """Validate, then upload packages first and job.yaml last into a new drop folder.

    Takes every flag of `gcloud ai-platform jobs submit training`. Uses the deployment's SUBMITTER_* settings
    (`source .local/stack.env` for the local stack) and works against real Cloud Storage or the GCS emulator.
    Prints the drop location and the jobId to expect. Submitting is asynchronous (gcloud's --async, the
    default); --stream-logs then follows the job like `submitter watch`. Exit 0 uploaded, 1 invalid or failed,
    2 usage error; with --stream-logs, watch's codes (0 SUCCEEDED, 1 failed, 3 cannot watch).
    """
    settings = load_settings()
    spec_text = read_spec(config, settings) if config else EMPTY_SPEC
    name = folder or f"{_stem(kw)}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    if not naming.is_valid_drop_name(name):
        raise click.UsageError(f"--folder {name!r}: use letters, digits, '-', '_' and '.' only")
    drop_folder = settings.drop_prefix + name
    with tempfile.TemporaryDirectory() as tmp:
        packages = resolve_packages(kw, Path(tmp), kw.get("job_id") or name, bucket=settings.drop_bucket,
                                    folder=drop_folder)
        result = check_offline(settings, spec_text, str(config or "flags"), name, packages, kw)
        if not result.checked.valid:
            render(result, as_json, str(config or "flags"), True)
            sys.exit(1)
        # Upload the user's spec with the flags applied; the function completes it as validated.
        merged, _ = apply_overrides(load_yaml(spec_text.decode()) or {},
                                    overrides_from(kw, packages.flag_uris, settings.project))
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        client = storage.Client(project=settings.project)
        stage(client, packages)
        try:
            location = upload_drop(client, settings.drop_bucket, drop_folder, packages.in_drop,
                                   yaml.safe_dump(merged, sort_keys=False).encode())
        except PreconditionFailed:
            raise click.ClickException(f"drop folder gs://{settings.drop_bucket}/{drop_folder}/ already holds "
                                       "these files; choose another --folder") from None
    derived = naming.derive_job_id(name, location.spec_generation)
    job_id = merged.get("jobId") or derived
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
                   f"submitter drop-status {drop_folder})")
        if job_id != derived:
            click.echo(f"note: a refusal of this drop would be published under its own jobId {derived}")
    if kw.get("stream_logs"):
        sys.stdout.flush()
        sys.exit(stream(settings, str(job_id), as_json, refusal_id=derived if job_id != derived else None))
