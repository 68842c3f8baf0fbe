"""`submitter`: the project's command line (console script installed into .venv).

Settings come from the same SUBMITTER_* environment variables the function
reads (`source .local/stack.env` for the local stack).
"""

from __future__ import annotations

import json
import sys

import click

from .settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"{exc}\n(for the local stack: `make up && source .local/stack.env`)")


def _backend():
    from .backends import build_backend

    return build_backend(_settings())


def _call(fn):
    from .backends import BackendError

    try:
        return fn()
    except BackendError as exc:
        raise click.ClickException(f"training API: {exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Drop-triggered training submitter: inspect settings and jobs."""


@main.command("settings")
def show_settings() -> None:
    """Print the effective settings (from SUBMITTER_* variables) as JSON."""
    import dataclasses

    click.echo(json.dumps(dataclasses.asdict(_settings()), indent=2))


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the job resource as JSON")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state (and errorMessage) from the training API."""
    job = _call(lambda: _backend().get_job(job_id))
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    click.echo(f"{job.get('jobId')}  {job.get('state', 'STATE_UNSPECIFIED')}")
    if job.get("errorMessage"):
        click.echo(job["errorMessage"])
    sys.exit(0 if job.get("state") == "SUCCEEDED" else 1 if job.get("state") in ("FAILED", "CANCELLED") else 0)


@main.group()
def jobs() -> None:
    """Jobs in the project."""


@jobs.command("list")
@click.option("--filter", "filter_", default=None, help="the API's filter, e.g. 'state:RUNNING'")
@click.option("--all", "show_all", is_flag=True, help="include jobs not created by this submitter")
def list_jobs(filter_: str | None, show_all: bool) -> None:
    """List jobs (all pages), newest first; by default only those this submitter created."""
    settings = _settings()
    backend = _backend()
    token = None
    while True:
        page, token = _call(lambda: backend.list_jobs(filter=filter_, page_token=token))
        for job in page:
            if show_all or (job.get("labels") or {}).get(settings.job_label_key) == settings.job_label_value:
                click.echo(f"{job.get('jobId'):<60} {job.get('state', ''):<12} {job.get('createTime', '')}")
        if not token:
            return


@main.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Ask the training API to cancel a job."""
    _call(lambda: _backend().cancel_job(job_id))
    click.echo(f"cancel requested for {job_id}")


if __name__ == "__main__":
    main()
