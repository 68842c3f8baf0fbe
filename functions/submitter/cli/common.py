"""Helpers shared by the CLI commands: settings and backend with friendly errors."""

from __future__ import annotations

import click

from ..settings import Settings, SettingsError


def load_settings() -> Settings:
    """Settings from the environment, or a ClickException that says how to get them."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"{exc}\n(for the local stack: `make up && source .local/stack.env`)")


def backend(settings: Settings | None = None):
    """The configured training backend."""
    from ..backends import build_backend

    return build_backend(settings or load_settings())


def call(fn):
    """Run a backend call, turning BackendError into a one-line ClickException."""
    from ..backends import BackendError

    try:
        return fn()
    except BackendError as exc:
        raise click.ClickException(f"training API: {exc}")
