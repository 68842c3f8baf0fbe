"""Wiring and the entry points' error policy: builds the adapters once per instance, lazily, from Settings.

Entry points (`functions/main.py`) call `get_app()`; nothing here builds a client at import time, and
environment variables such as PUBSUB_EMULATOR_HOST are read by the client libraries when the clients
are first built, i.e. on the first invocation.

What each failure means for the event (errors.py): a TransientError is raised (HTTP 500: Eventarc
redelivers with backoff); a PermanentError or anything reported is acknowledged; any other exception
is a bug: logged at ERROR with its traceback, reported once as a verdict (INTERNAL_ERROR), and
acknowledged, so a bug never turns into a day of redeliveries.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import events as ev
from . import logs
from .backends import TrainingBackend, build_backend
from .clock import Clock, SystemClock
from .drop_handler import DropHandler
from .errors import EventInvalid, ObjectGone, PermanentError, SubmitterError, TransientError
from .gcs import GcsObjectStore
from .leases import LeaseLost
from .ledger import Ledger
from .model import Origin
from .publisher import Publisher, PubSubPublisher
from .settings import Settings
from .state_store import GcsStateStore
from .submission import Action, Outcome, Submitter

if TYPE_CHECKING:  # imported where first used: a drop event needs neither (less to load on a cold start)
    from .reconciler import Reconciler, TickReport
    from .trigger_handler import TriggerHandler

log = logs.get("app")


class App:
    """One submitter instance: settings plus lazily built adapters, handler and reconciler.

    Args:
        settings: deployment settings.
        clock: time (a FakeClock in tests).
        storage / ledger / backend / publisher: adapters to use instead of building the real ones (tests).
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None, storage: Any = None,
                 ledger: Ledger | None = None, backend: TrainingBackend | None = None,
                 publisher: Publisher | None = None):
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._storage, self._ledger, self._backend, self._publisher = storage, ledger, backend, publisher

    @functools.cached_property
    def storage(self) -> Any:
        """The ObjectStore (Cloud Storage unless one was given)."""
        return self._storage or GcsObjectStore(self.settings.project, http_env=self.settings.http_env)

    @functools.cached_property
    def ledger(self) -> Ledger:
        """The submitter's records (in the state bucket unless given)."""
        if self._ledger is not None:
            return self._ledger
        s = self.settings
        client = self.storage.client if isinstance(self.storage, GcsObjectStore) else None
        return Ledger(GcsStateStore(s.state_bucket, s.state_prefix, s.project, client=client))

    @functools.cached_property
    def backend(self) -> TrainingBackend:
        """The training API adapter named by the settings (unless given)."""
        return self._backend if self._backend is not None else build_backend(self.settings)

    @functools.cached_property
    def publisher(self) -> Publisher:
        """The events topic's publisher (unless given)."""
        if self._publisher is not None:
            return self._publisher
        return PubSubPublisher(self.settings.topic, timeout_s=self.settings.publish_timeout_s)

    @functools.cached_property
    def submitter(self) -> Submitter:
        return Submitter(self.settings, self.storage, self.backend, self.publisher, self.ledger, self.clock)

    @functools.cached_property
    def drop_handler(self) -> DropHandler:
        return DropHandler(self.settings, self.storage, self.submitter, self.ledger, self.clock)

    @functools.cached_property
    def trigger_handler(self) -> TriggerHandler:
        from .trigger_handler import TriggerHandler

        return TriggerHandler(self.settings, self.storage, self.submitter, self.ledger, self.clock)

    def handler_for(self, bucket: str) -> DropHandler | TriggerHandler:
        """Where an event goes, by what it is: a data bucket's events to the trigger rules, everything else (the
        drop bucket, a stray bucket) to the drop protocol, which ignores what is not a drop."""
        if self.settings.is_data_bucket(bucket):
            return self.trigger_handler
        return self.drop_handler

    @functools.cached_property
    def reconciler(self) -> Reconciler:
        from .reconciler import Reconciler

        return Reconciler(self.backend, self.publisher, self.ledger, self.settings.event_source, self.clock,
                          announce=self.submitter.announce, intent_grace_s=self.settings.claim_lease_s,
                          intent_expiry_s=self.settings.max_event_age_s, storage=self.storage)

    def handle_cloud_event(self, attributes: Mapping[str, Any], data: Any) -> Outcome:
        """Handle one storage CloudEvent.

        Raises:
            TransientError: a retry may help; the function answers 500 and Eventarc redelivers.
        """
        try:
            event = ev.parse_event(attributes, data)
        except EventInvalid as exc:
            log.error(f"malformed storage event ignored: {exc}", extra={"ctx": {"eventId": str(attributes.get("id"))}})
            return Outcome(Action.IGNORED, str(exc))
        ctx = {"eventId": event.event_id, "object": event.name, "generation": str(event.generation)}
        handler = self.handler_for(event.bucket)
        try:
            outcome = handler.handle(event)
        except TransientError as exc:
            log.warning(f"transient failure, the event will be redelivered: {exc}", extra={"ctx": ctx})
            raise
        except PermanentError as exc:
            log.error(f"permanent failure: {exc}", extra={"ctx": ctx})
            outcome = self._report(handler, event, exc, ctx)
        except Exception as exc:  # a bug: report it once instead of failing the event for 24 h
            log.exception(f"unexpected {type(exc).__name__} handling the event (a bug); reporting it once",
                          extra={"ctx": ctx})
            outcome = self._report(handler, event, exc, ctx)
        log.info(f"{outcome.action.value}: {outcome.detail}",
                 extra={"ctx": {**ctx, "jobId": outcome.key, "outcome": outcome.action.value}})
        return outcome

    def _report(self, handler: DropHandler | TriggerHandler, event: ev.StorageObjectEvent, exc: BaseException,
                ctx: dict[str, str]) -> Outcome:
        try:
            return handler.report_bug(event, exc)
        except TransientError:
            raise  # the report itself could not be made: the event comes back and the report is retried
        except Exception:
            log.exception("could not report the failure; the event is acknowledged", extra={"ctx": ctx})
            return Outcome(Action.IGNORED, f"unreported {type(exc).__name__}")

    def reconcile(self) -> TickReport:
        """One scheduled invocation: a tick, then further ticks every `reconcile_interval_s` seconds while the
        next one still starts within `reconcile_window_s` seconds of the first (0: a single tick).

        Cloud Scheduler's smallest period is one minute; an invocation that keeps ticking for most of its minute
        publishes a state change within one interval of the change (plus one tick's duration) instead of up to a
        minute late. Ticks never overlap: each takes the reconciler's tick lock.

        Returns:
            the ticks' reports combined: published and trial events of every tick in order, API calls summed,
            `followed` / `skipped` / `backing_off` of the last tick.
        Raises:
            TransientError: the first tick failed (the function answers 500); a later tick's failure ends the
                window early instead, keeping the earlier ticks' report.
        """
        start = self.clock.now()
        report = self._tick()
        window, interval = self.settings.reconcile_window_s, self.settings.reconcile_interval_s
        ticks = 1
        while ticks * interval < window:
            next_start = start + dt.timedelta(seconds=ticks * interval)
            wait = (next_start - self.clock.now()).total_seconds()
            if wait > 0:
                self.clock.sleep(wait)
            ticks += 1
            if (self.clock.now() - start).total_seconds() >= window:
                break  # a slow tick ate the window: the next invocation takes over
            try:
                report = report.followed_by(self._tick())
            except TransientError as exc:  # Pub/Sub down, say: the persisted backoff spaces the next attempts
                log.warning(f"reconcile tick {ticks} of this invocation failed, the next invocation resumes: {exc}")
                break
        return report

    def _tick(self) -> TickReport:
        """One tick: publish job state changes, serve the create-quota queues (oldest first, each region until its
        first 429), sweep drops that never completed, then the trigger rules' quiet windows and queues (which start
        batches once the previous job's terminal state is published)."""
        report = self.reconciler.tick()
        # A tick running elsewhere serves the queues (in order) itself; backing off, this one does.
        serving = not report.skipped or report.backing_off
        self._sweep(report, "quota queue", self.serve_quota_queues if serving else lambda: iter(()), _published)
        # A transient fault in a sweep (a 5xx on the sweep's own jobs.create, a storage hiccup; a 429 queues the
        # input instead) stops that sweep for this tick only: what it did not decide stays pending and is swept again
        # next tick, and the state events above are not held back by it.
        self._sweep(report, "drop sweep", self.drop_handler.sweep,
                    lambda o: None if o.action is Action.QUEUED else o.action.value.upper())  # queued: nothing out
        if self.settings.trigger_rules.rules or self.settings.trigger_rules.broken:
            self._sweep(report, "trigger sweep", self.trigger_handler.sweep, _published)
        return report

    @staticmethod
    def _sweep(report: TickReport, what: str, sweep: Callable[[], Iterable[Outcome]],
               published: Callable[[Outcome], str | None]) -> None:
        """Run one of the tick's passes over undecided inputs: log each outcome and add what it published to the
        report; a transient fault ends this pass for this tick only (it resumes next tick)."""
        try:
            for outcome in sweep():
                log.info(f"{what}: {outcome.detail}",
                         extra={"ctx": {"jobId": outcome.key, "outcome": outcome.action.value}})
                state = published(outcome)
                if outcome.key and state:
                    report.published.append((outcome.key, state))
        except TransientError as exc:
            log.warning(f"{what} stopped by a transient fault, resumed next tick: {exc}")

    def serve_quota_queues(self) -> Iterator[Outcome]:
        """Decide queued inputs through the one submission path, each region's oldest first, until the region's
        first 429 (the entry stays first) or a transient fault (the region waits for the next tick). A served entry
        is removed once its input is decided (or found stale); a region whose queue is empty has its gate removed,
        unless a 429 rewrote it meanwhile (its generation token), so new inputs call jobs.create again."""
        gates, queues = self.ledger.quota_queues()  # a gate rewritten after this listing (a 429) stays
        for (backend, region), entries in queues.items():
            emptied = True
            for entry in entries:
                doc = self.ledger.queue_entry(entry.key)
                if doc is None:
                    continue
                origin = Origin.from_dict(doc["origin"])
                outcome = self._serve_one(origin, entry.key, doc)
                if outcome is None or outcome.action is Action.QUEUED:
                    emptied = False
                    break
                self.ledger.dequeue(entry.key, origin)
                yield outcome
            if emptied and (backend, region) in gates:
                self.ledger.open_gate(backend, region, gates.pop((backend, region)))
        for (backend, region), token in gates.items():
            if (backend, region) not in queues:
                self.ledger.open_gate(backend, region, token)

    def _serve_one(self, origin: Origin, entry: str, doc: dict[str, Any]) -> Outcome | None:
        """One queued input's turn: None when a transient fault leaves it queued until the next tick."""
        if self.ledger.verdict(origin) is not None:
            return Outcome(Action.DUPLICATE, f"{origin.name}: already decided", doc.get("jobId"))
        resume = doc.get("resume") or {}
        try:
            if resume.get("kind") == "trigger":
                return self.trigger_handler.serve_queued(origin, entry, resume)
            return self.drop_handler.serve_queued(origin, entry)
        except ObjectGone as exc:
            return Outcome(Action.IGNORED, f"{origin.name}: stale: {exc}", doc.get("jobId"))
        except (TransientError, LeaseLost) as exc:
            log.warning(f"{origin.name}: left in the quota queue until the next tick: {exc}",
                        extra={"ctx": {"jobId": doc.get("jobId"), "queue": entry}})
            return None
        except Exception as exc:  # a permanent fault or a bug: reported once, so it never blocks the queue
            log.exception(f"{origin.name}: {type(exc).__name__} serving it from the quota queue; reporting it once",
                          extra={"ctx": {"jobId": doc.get("jobId"), "queue": entry}})
            try:
                return self.submitter.report_bug(origin, str(doc.get("key") or doc.get("jobId")), exc)
            except TransientError:
                return None


_PUBLISHED = {Action.SUBMITTED: "SUBMITTED", Action.ADOPTED: "SUBMITTED", Action.REJECTED: "REJECTED",
              Action.SUBMIT_FAILED: "SUBMIT_FAILED"}


def _published(outcome: Outcome) -> str | None:
    """The state an outcome published, or None (queued, duplicate, waiting: nothing went out)."""
    return _PUBLISHED.get(outcome.action)


_app: App | None = None
_app_lock = threading.Lock()


def get_app() -> App:
    """The instance's App, built on first use from the environment.

    Raises:
        ConfigurationError: the settings are invalid (every problem listed).
    """
    global _app
    with _app_lock:
        if _app is None:
            logs.configure()
            _app = App(Settings.from_env())
        return _app


__all__ = ["App", "get_app", "SubmitterError"]
