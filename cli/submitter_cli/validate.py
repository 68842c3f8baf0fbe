"""`submitter validate`: complete and check a spec offline, exactly as the function would."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from submitter.settings import Settings, SettingsError

from .flags import GcloudCommand, job_flags
from .options import check_offline, read_spec, render
from .packaging import resolve_packages

EMPTY_SPEC = b"trainingInput: {}\n"
# Options that say how to run, not what the job is: they alone do not make a command line a job.
_NOT_JOB = {"as_json", "build_isolation", "async_", "stream_logs", "user_args"}


@click.command(cls=GcloudCommand)
@click.argument("drop_folder", required=False)
@job_flags
def validate(drop_folder: str | None, config: Path | None, as_json: bool, **kw) -> None:
    """Check a job spec offline (no cloud, no emulator).

    Give a local DROP_FOLDER (holding job.yaml and *.tar.gz packages, as you would drop them), or --config
    job.yaml, or only flags: every flag of `gcloud ai-platform jobs submit training` overrides the file; words
    after `--` are the trainer's args. Deployment defaults and policy come from the same SUBMITTER_* settings as
    the function. --async and --stream-logs are accepted (nothing is submitted). Exit 0 valid (warnings allowed),
    1 invalid, 2 usage error.
    """
    if drop_folder and config:
        raise click.UsageError("give a DROP_FOLDER or --config job.yaml, not both (trainer args go after `--`)")
    flags_given = any(v not in (None, False) for k, v in kw.items() if k not in _NOT_JOB)
    if not drop_folder and not config and not flags_given:
        raise click.UsageError("give a DROP_FOLDER, --config job.yaml, or the job's flags")
    try:
        settings, from_env = Settings.offline()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    drop_files: list[Path] = []
    if drop_folder:
        spec_path: Path | None = Path(drop_folder) / "job.yaml"
        if not Path(drop_folder).is_dir() or not spec_path.is_file():
            raise click.UsageError(f"{drop_folder} is not a folder holding job.yaml")
        drop_files = sorted(Path(drop_folder).glob("*.tar.gz"))
        drop_name = Path(drop_folder).resolve().name
    elif config:
        spec_path = config
        if not spec_path.is_file():
            raise click.UsageError(f"--config: {spec_path} is not a file")
        drop_name = spec_path.resolve().parent.name or "drop"
    else:
        spec_path, drop_name = None, "flags"
    spec_text = read_spec(spec_path, settings) if spec_path else EMPTY_SPEC
    source = str(spec_path or "flags")
    with tempfile.TemporaryDirectory() as tmp:
        packages = resolve_packages(kw, Path(tmp), kw.get("job_id") or drop_name, drop_files,
                                    bucket=settings.drop_bucket, folder=settings.drop_prefix + drop_name)
        result = check_offline(settings, spec_text, source, drop_name, packages, kw)
    render(result, as_json, source, from_env)
    sys.exit(0 if result.checked.valid else 1)
