"""Wiring: builds the adapters once per instance, lazily, from Settings.

Entry points (`functions/main.py`, the CLI) call `get_app()`; nothing here
builds a client at import time, and environment variables such as
PUBSUB_EMULATOR_HOST are read by the client libraries when the clients are
first built, i.e. on the first invocation.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Mapping

from . import events as ev
from . import logs
from .backends import build_backend
from .gcs import DropStorage
from .ledger import Ledger
from .publisher import EventPublisher
from .reconciler import Reconciler, TickReport
from .settings import Settings
from .state_store import GcsStateStore
from .submission import DropHandler, Outcome, event_source

log = logs.get("app")


class App:
    """One submitter instance: settings plus lazily built handler and reconciler."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @functools.cached_property
    def storage(self) -> DropStorage:
        return DropStorage(self.settings.project)

    @functools.cached_property
    def ledger(self) -> Ledger:
        s = self.settings
        return Ledger(GcsStateStore(s.state_bucket, s.state_prefix, s.project, client=self.storage.client))

    @functools.cached_property
    def backend(self):
        return build_backend(self.settings)

    @functools.cached_property
    def publisher(self) -> EventPublisher:
        return EventPublisher(self.settings.topic, timeout_s=self.settings.publish_timeout_s)

    @functools.cached_property
    def drop_handler(self) -> DropHandler:
        return DropHandler(self.settings, self.storage, self.backend, self.publisher, self.ledger)

    @functools.cached_property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.backend, self.publisher, self.ledger, event_source(self.settings))

    def handle_cloud_event(self, attributes: Mapping[str, Any], data: Any) -> Outcome:
        """Handle one storage CloudEvent; malformed events are logged and ignored (redelivery cannot fix them)."""
        try:
            event = ev.parse_event(attributes, data)
        except ev.EventError as exc:
            log.error(f"malformed storage event ignored: {exc}", extra={"ctx": {"eventId": attributes.get("id")}})
            return Outcome("ignored", str(exc))
        ctx = {"eventId": event.event_id, "object": event.name, "generation": str(event.generation)}
        try:
            outcome = self.drop_handler.handle(event)
        except Exception:
            log.exception("transient failure; the event will be redelivered", extra={"ctx": ctx})
            raise
        log.info(f"{outcome.action}: {outcome.detail}",
                 extra={"ctx": {**ctx, "jobId": outcome.job_id, "outcome": outcome.action}})
        return outcome

    def reconcile(self) -> TickReport:
        """One scheduled tick: publish job state changes, then sweep drops that never completed."""
        report = self.reconciler.tick()
        for outcome in self.drop_handler.sweep_incomplete():
            log.info(f"swept: {outcome.detail}", extra={"ctx": {"jobId": outcome.job_id, "outcome": outcome.action}})
            report.published.append((outcome.job_id or "", "REJECTED"))
        return report


_app: App | None = None
_app_lock = threading.Lock()


def get_app() -> App:
    """The instance's App, built on first use from the environment."""
    global _app
    with _app_lock:
        if _app is None:
            logs.configure()
            _app = App(Settings.from_env())
        return _app
