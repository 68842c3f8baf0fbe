"""`submitter`: the project's command line, a client of the submission core (never deployed).

Settings come from the same SUBMITTER_* environment variables the function reads (`source
.local/stack.env` for the local stack). Subcommands are imported when they run, so `submitter --help`
and every command start without loading what they do not use. One module per command group.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> (module, attribute); loaded on first use
_COMMANDS = {
    "settings": ("jobs", "show_settings"),
    "status": ("jobs", "status"),
    "jobs": ("jobs", "jobs"),
    "cancel": ("jobs", "cancel"),
    "validate": ("validate", "validate"),
    "submit": ("submit", "submit"),
    "drop-status": ("drops", "drop_status"),
    "watch": ("watch", "watch"),
    "logs": ("logs", "logs"),
    "trials": ("trials", "trials"),
    "triggers": ("triggers", "triggers"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name]
        command: Any = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        return command  # type: ignore[no-any-return]


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Drop-triggered training submitter: validate and submit drops, follow jobs."""


__all__ = ["main"]
