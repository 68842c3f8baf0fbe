"""`submitter settings`, `status`, `jobs list`, `cancel`: looking at jobs in the training API."""

from __future__ import annotations

import json
import sys

import click

from .common import backend as _backend_for, call as _call, load_settings as _settings


def _backend():
    return _backend_for(_settings())


@click.command("settings")
def show_settings() -> None:
    """Print the effective settings (from SUBMITTER_* variables) as JSON."""
    import dataclasses

    click.echo(json.dumps(dataclasses.asdict(_settings()), indent=2))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the job resource as JSON")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state (and errorMessage) from the training API."""
    from ..naming import JOB_ID_RULE, is_valid_job_id

    if not is_valid_job_id(job_id):
        raise click.UsageError(f"{job_id!r} is not a jobId ({JOB_ID_RULE})")
    job = _call(lambda: _backend().get_job(job_id))
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    click.echo(f"{job.get('jobId')}  {job.get('state', 'STATE_UNSPECIFIED')}")
    if job.get("errorMessage"):
        click.echo(job["errorMessage"])
    sys.exit(0 if job.get("state") == "SUCCEEDED" else 1 if job.get("state") in ("FAILED", "CANCELLED") else 0)


@click.group()
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


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Ask the training API to cancel a job."""
    _call(lambda: _backend().cancel_job(job_id))
    click.echo(f"cancel requested for {job_id}")


COMMANDS = [show_settings, status, jobs, cancel]
