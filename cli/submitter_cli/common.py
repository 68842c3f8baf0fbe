"""Helpers shared by the CLI commands: settings, backend and records with friendly errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from submitter.settings import Settings, SettingsError

T = TypeVar("T")


def load_settings() -> Settings:
    """Settings from the environment, or a ClickException that says how to get them."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"{exc}\n(for the local stack: `make up && source .local/stack.env`)") from None


def backend(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """The configured training backend."""
    from submitter.backends import build_backend

    return build_backend(settings or load_settings())


def ledger(settings: Settings):  # type: ignore[no-untyped-def]
    """The submitter's records in the state bucket."""
    from submitter.app import App

    return App(settings).ledger


def call(fn: Callable[[], T]) -> T:
    """Run a backend call, turning BackendError into a one-line ClickException."""
    from submitter.errors import BackendError

    try:
        return fn()
    except BackendError as exc:
        raise click.ClickException(f"training API: {exc}") from None
