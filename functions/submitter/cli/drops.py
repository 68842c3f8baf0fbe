"""`submitter drop-status FOLDER`: what the submitter decided about a drop (read from the state store)."""

from __future__ import annotations

import json
import sys

import click

from .common import load_settings


@click.command("drop-status")
@click.argument("folder")
@click.option("--json", "as_json", is_flag=True, help="print the status document as JSON")
def drop_status(folder: str, as_json: bool) -> None:
    """Show the latest verdict on drop FOLDER (e.g. incoming/run-001): SUBMITTED with its jobId, or
    REJECTED / SUBMIT_FAILED with every violation. Exit 0 submitted, 1 rejected or failed, 3 no verdict yet."""
    from ..app import App

    settings = load_settings()
    status = App(settings).ledger.status(settings.drop_bucket, folder.strip("/"))
    if status is None:
        click.echo(f"no verdict yet for gs://{settings.drop_bucket}/{folder.strip('/')}/ (incomplete, or not "
                   "processed yet)")
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(status, indent=2))
    else:
        click.echo(f"{status['state']}  jobId {status.get('jobId')}")
        for v in status.get("violations") or []:
            click.echo(f"  {v['field']}: {v['message']}  [{v['reason']}]")
        if status.get("message") and not status.get("violations"):
            click.echo(f"  {status['message']}")
    sys.exit(0 if status["state"] == "SUBMITTED" else 1)
