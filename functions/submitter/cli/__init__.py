"""`submitter`: the project's command line (console script installed into .venv).

Settings come from the same SUBMITTER_* environment variables the function
reads (`source .local/stack.env` for the local stack). One module per command group.
"""

from __future__ import annotations

import click

from . import jobs
from .drops import drop_status
from .logs import logs
from .submit import submit
from .validate import validate
from .watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Drop-triggered training submitter: inspect settings and jobs."""


for command in [*jobs.COMMANDS, validate, submit, drop_status, watch, logs]:
    main.add_command(command)

__all__ = ["main"]
