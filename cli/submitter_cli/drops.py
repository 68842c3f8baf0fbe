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
    """Show the latest word on drop FOLDER (e.g. incoming/run-001): SUBMITTED with its jobId, DUPLICATE, or
    REJECTED / SUBMIT_FAILED with every violation. Exit 0 submitted or duplicate, 1 rejected or failed,
    3 no verdict yet."""
    from submitter.drops import status_key

    settings = load_settings()
    folder = folder.strip("/")
    status = ledger(settings).status(status_key(settings.drop_bucket, folder))
    if status is None:
        hint = ""
        if settings.drop_prefix and not folder.startswith(settings.drop_prefix):
            hint = f" (drops live under {settings.drop_prefix}: try {settings.drop_prefix}{folder})"
        click.echo(f"no verdict yet for gs://{settings.drop_bucket}/{folder}/ (incomplete, or not processed yet){hint}")
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(status.to_doc(), indent=2))
    else:
        click.echo(f"{status.state.value}  jobId {status.key}")
        for v in status.violations:
            click.echo(f"  {v['field']}: {v['message']}  [{v['reason']}]")
        if status.message and not status.violations:
            click.echo(f"  {status.message}")
        for note in status.notes:
            click.echo(f"  note: {note}")
    sys.exit(status.state.exit_code)
