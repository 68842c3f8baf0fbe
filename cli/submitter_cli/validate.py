"""`submitter validate`: complete and check a spec offline, exactly as the function would."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from submitter.settings import Settings, SettingsError

from .options import check_offline, job_flags, read_spec, render, split_packages


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("drop_folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@job_flags
def validate(drop_folder: Path | None, config: Path | None, packages: str | None, as_json: bool, **kw) -> None:
    """Check a job spec offline (no cloud, no emulator).

    Give a local DROP_FOLDER (holding job.yaml and *.tar.gz packages, as you would drop them) or
    --config job.yaml with --packages. gcloud-style flags override the file; words after `--` are the
    trainer's args. Deployment defaults and policy come from the same SUBMITTER_* settings as the
    function. Exit 0 valid (warnings allowed), 1 invalid, 2 usage error.
    """
    if drop_folder and config:
        # `validate --config job.yaml -- --epochs 7`: click hands the first trainer arg to DROP_FOLDER
        kw["user_args"] = (str(drop_folder), *kw.get("user_args", ()))
        drop_folder = None
    if not drop_folder and not config:
        raise click.UsageError("give a DROP_FOLDER or --config job.yaml")
    local, remote = split_packages(packages)
    if drop_folder:
        spec_path = drop_folder / "job.yaml"
        if not spec_path.is_file():
            raise click.UsageError(f"{drop_folder} has no job.yaml")
        local = sorted(drop_folder.glob("*.tar.gz")) + local
        drop_name = drop_folder.resolve().name
    else:
        spec_path = config
        if not spec_path.is_file():
            raise click.UsageError(f"--config: {spec_path} is not a file")
        drop_name = spec_path.resolve().parent.name or "drop"
    try:
        settings, from_env = Settings.offline()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    result = check_offline(settings, read_spec(spec_path, settings), str(spec_path), drop_name, local, remote, kw)
    render(result, as_json, str(spec_path), from_env)
    sys.exit(0 if result.checked.valid else 1)
