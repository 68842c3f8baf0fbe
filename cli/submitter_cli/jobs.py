"""`submitter settings`, `status`, `jobs list`, `cancel`: looking at jobs in the training API."""

from __future__ import annotations

import json
import sys

import click

from .common import backend as _backend_for
from .common import call as _call
from .common import load_settings as _settings


@click.command("settings")
def show_settings() -> None:
    """Print the effective settings (from SUBMITTER_* variables) as JSON."""
    import dataclasses

    click.echo(json.dumps(dataclasses.asdict(_settings()), indent=2, default=str))


def _find(backend, job_id: str):  # type: ignore[no-untyped-def]
    status = _call(lambda: backend.find(job_id))
    if status is None:
        raise click.ClickException(f"job {job_id} not found in the training API")
    return status


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print the API's job resource as JSON")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state (and errorMessage) from the training API. Exit 1 for FAILED or CANCELLED."""
    from submitter.naming import JOB_ID_RULE, is_valid_job_id

    if not is_valid_job_id(job_id):
        raise click.UsageError(f"{job_id!r} is not a jobId ({JOB_ID_RULE})")
    backend = _backend_for(_settings())
    found = _find(backend, job_id)
    if as_json:
        click.echo(json.dumps(_call(lambda: backend.describe(found.handle)), indent=2))
        return
    click.echo(f"{found.handle.key}  {found.api_state}")
    if found.error_message:
        click.echo(found.error_message)
    sys.exit(1 if found.state is not None and found.state.is_terminal and not found.state.is_success else 0)


@click.group()
def jobs() -> None:
    """Jobs in the project."""


@jobs.command("list")
@click.option("--state", "states", multiple=True, metavar="STATE", help="only jobs in STATE (repeatable), e.g. RUNNING")
@click.option("--ours", "only_ours", is_flag=True, help="only the jobs this submitter created and follows")
@click.option("--all", "show_all", is_flag=True, hidden=True, help="(the default: every job of the project)")
def list_jobs(states: tuple[str, ...], only_ours: bool, show_all: bool) -> None:
    """List the project's jobs (all pages), newest first: job, state, created, and `submitter` for the jobs this
    submitter created and follows (`-` for jobs submitted another way, e.g. with gcloud). Columns are as wide as
    their longest value, under a header (gcloud's JOB_ID, STATUS, CREATED, plus SUBMITTER)."""
    settings = _settings()
    backend = _backend_for(settings)
    wanted = {s.upper() for s in states}
    rows: list[tuple[str, str, str, str]] = []
    token = None
    while True:
        page, token = _call(lambda t=token: backend.list_jobs(page_token=t))
        for job in page:
            ours = job.labels.get(settings.job_label_key) == settings.job_label_value
            state = job.state.value if job.state else job.api_state
            if (ours or not only_ours) and (not wanted or state in wanted):
                # a Vertex job whose key does not fit a label shows its resource name instead
                rows.append((job.handle.key or job.handle.name, state, job.create_time or "",
                             "submitter" if ours else "-"))
        if not token:
            break
    if not rows:
        return
    table = [("JOB_ID", "STATUS", "CREATED", "SUBMITTER"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])


@click.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Ask the training API to cancel a job (a job already finished is left as it is, exit 0)."""
    backend = _backend_for(_settings())
    found = _find(backend, job_id)
    if found.state is not None and found.state.is_terminal:
        click.echo(f"{job_id} already finished ({found.state.value}); nothing to cancel")
        return
    _call(lambda: backend.cancel(found.handle))
    click.echo(f"cancel requested for {job_id}")
