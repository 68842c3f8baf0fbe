"""`submitter drop-status FOLDER`: what the submitter decided about a drop (read from the state store)."""

from __future__ import annotations

import json
import sys

import click

from .common import ledger, load_settings


@click.command("drop-status")
@click.argument("folder")
@click.option("--json", "as_json", is_flag=True, help="print the status document as JSON")
def drop_status(folder: str, as_json: bool) -> None:
    """Show the latest word on drop FOLDER (e.g. incoming/run-001): SUBMITTED with its jobId, DUPLICATE,
    REJECTED / SUBMIT_FAILED with every violation, WAITING with what the drop lacks, since when and when it
    is rejected if still incomplete, or WAITING in the queue for the training API's create quota (429
    RATE_LIMITED). Exit 0 submitted or duplicate, 1 rejected or failed, 3 no verdict yet (waiting, queued, or not
    seen)."""
    from submitter.clock import iso
    from submitter.drops import status_key
    from submitter.model import DropStatus

    settings = load_settings()
    folder = folder.strip("/")
    status = ledger(settings).status(status_key(settings.drop_bucket, folder))
    if status is None:
        hint = ""
        if settings.drop_prefix and not folder.startswith(settings.drop_prefix):
            hint = f" (drops live under {settings.drop_prefix}: try {settings.drop_prefix}{folder})"
        click.echo(f"no word yet on gs://{settings.drop_bucket}/{folder}/ (not seen yet: no file of it has arrived, "
                   f"or its events are still on their way){hint}")
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(status.to_doc(), indent=2))
    elif status.state is DropStatus.WAITING and status.reason == "RATE_LIMITED":
        click.echo("WAITING  in the queue for the training API's create quota (429 RATE_LIMITED)"
                   + (f"  (jobId {status.key} once submitted)" if status.key else ""))
        if status.waiting_since is not None:
            click.echo(f"  queued since {iso(status.waiting_since)}; the reconciler submits it in turn, no need to "
                       "upload again")
        if status.message:
            click.echo(f"  {status.message}")
    elif status.state is DropStatus.WAITING:
        click.echo(f"WAITING  for {', '.join(status.missing) or 'files'}"
                   + (f"  (jobId {status.key} once complete)" if status.key else ""))
        if status.waiting_since is not None:
            click.echo(f"  incomplete since {iso(status.waiting_since)}")
        if status.reject_after is not None:
            click.echo(f"  rejected as INCOMPLETE_DROP if still incomplete at {iso(status.reject_after)}")
    else:
        click.echo(f"{status.state.value}  jobId {status.key}")
        for v in status.violations:
            click.echo(f"  {v['field']}: {v['message']}  [{v['reason']}]")
        if status.message and not status.violations:
            click.echo(f"  {status.message}")
        for note in status.notes:
            click.echo(f"  note: {note}")
    sys.exit(status.state.exit_code)
