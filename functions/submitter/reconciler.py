"""Following submitted jobs and publishing each state change once (the scheduled path).

Each tick: list the followed jobs (state store), list the backend's active jobs page by page (a
server-side filter), fetch individually only followed jobs missing from that list (they finished, or
the list lags), and publish every state that ranks above the last one published. States are never
invented and never go backwards; a status without a state (STATE_UNSPECIFIED) is ignored; a terminal
state is published once and the job is then forgotten. Jobs are matched by their backend resource
name, so the reconciler knows nothing of any API's ids or state names.

Tuning jobs: a status with a `study` (model.Study) may report trials that finished since the last tick. Each one is
published once as a trialCompleted event (trial_events.py, ce-id `<jobId>/trial/<trialId>`), in the same publish
call as the job's state event of that tick and before it, under the job's ordering key; the published trial ids
are kept in the job's record (written together with the state it advances to). A trial is thus never published
after the job's terminal event, and a tick that fails after publishing republishes the same ce-ids.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Callable

from . import logs
from .backends import TrainingBackend
from .clock import Clock
from .envelope import JobEvent, OutgoingMessage, encode
from .errors import BackendRefused, ObjectGone, PermanentError, TransientError
from .leases import Leases
from .ledger import TICK_LOCK_KEY, Ledger
from .model import JobState, JobStatus, Trial
from .naming import GCS_URI_RE
from .objects import ObjectStore
from .publisher import Publisher
from .reasons import Reason
from .records import JobRecord
from .retry import call_with_retries
from .trial_events import TrialEvent, encode_trial

log = logs.get("reconciler")
Announce = Callable[[JobRecord, JobStatus, dict[str, int] | None], None]
MAX_MISSES = 5  # ticks in a row with a permanent API error before a job is given up as lost
BACKOFF_BASE_S = 2.0  # after a failed tick; doubled per failure in a row
BACKOFF_MAX_S = 300.0
TICK_LEASE_S = 300.0  # a tick lock older than this belongs to a dead tick (ticks take seconds)


@dataclasses.dataclass
class TickReport:
    """What one tick did: jobs followed, API calls made, (job key, state) pairs published."""

    followed: int = 0
    api_calls: int = 0
    published: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    trials: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (job key, trial id) published
    skipped: bool = False  # another tick held the lock, or ticks are backing off
    backing_off: bool = False  # earlier ticks failed: this one waits for the persisted backoff

    def followed_by(self, later: TickReport) -> TickReport:
        """This report and a later tick's as one: events of both in order, API calls summed, the rest the later's."""
        return TickReport(followed=later.followed, api_calls=self.api_calls + later.api_calls,
                          published=[*self.published, *later.published], trials=[*self.trials, *later.trials],
                          skipped=later.skipped, backing_off=later.backing_off)


class Reconciler:
    """Publishes state changes of followed jobs.

    Args:
        backend: the training API.
        publisher: Pub/Sub publisher.
        ledger: followed jobs and their last published state.
        source: CloudEvent source of published events.
        clock: time.
    """

    def __init__(self, backend: TrainingBackend, publisher: Publisher, ledger: Ledger, source: str, clock: Clock,
                 announce: Announce | None = None, intent_grace_s: float = 600.0,
                 intent_expiry_s: float = 24 * 3600.0, storage: ObjectStore | None = None):
        self.backend, self.publisher, self.ledger, self.source, self.clock = backend, publisher, ledger, source, clock
        self.leases = Leases(ledger.store, clock)
        self.announce, self.intent_grace_s, self.intent_expiry_s = announce, intent_grace_s, intent_expiry_s
        self.storage = storage

    def tick(self) -> TickReport:
        """One reconciliation pass. Raises TransientErrors after bounded retries (the next tick retries).

        Ticks never overlap: one that finds another running (a slow tick, a second instance) returns at
        once, so an older record can never publish a state after another tick published a later one.
        """
        lease = self.leases.acquire(TICK_LOCK_KEY, uuid.uuid4().hex, TICK_LEASE_S)
        if lease is None:
            return TickReport(skipped=True)
        try:
            failures, until = self.ledger.backoff()
            if until is not None and self.clock.now() < until:
                return TickReport(skipped=True, backing_off=True)
            try:
                report = self._tick()
            except TransientError:
                # An outage (Pub/Sub, the training API, a 429): slow down instead of re-sending every period.
                delay = min(BACKOFF_BASE_S * 2 ** failures, BACKOFF_MAX_S)
                self.ledger.set_backoff(failures + 1, self.clock.now() + dt.timedelta(seconds=delay))
                log.warning(f"tick failed ({failures + 1} in a row); next tick in {delay:.0f}s")
                raise
            if failures:
                self.ledger.clear_backoff()
            return report
        finally:
            self.leases.release(lease)

    def _tick(self) -> TickReport:
        report = TickReport()
        records = self.ledger.followed()
        for intent in (r for r in records if not r.announced):
            self._finish(intent, report)
        followed = [r for r in records if r.announced]
        report.followed = len(followed)
        if not followed:
            return report
        active = self._list_active(report)
        for record in followed:
            status = active.get(record.handle.name)
            if status is None:
                report.api_calls += 1
                try:
                    status = call_with_retries(functools.partial(self.backend.status, record.handle), clock=self.clock)
                except BackendRefused as exc:
                    self._missed(record, exc)
                    continue
            self._advance(record, status, report)
        return report

    def _finish(self, intent: JobRecord, report: TickReport) -> None:
        """A job noted before its creation and never announced: its invocation died (or is still working).

        Past the claim lease the job is looked up by its key; when it exists and is the one intended (same
        labels and output directory), SUBMITTED is published and it is followed from now on. One never
        created is forgotten after `intent_expiry_s` (Eventarc stops redelivering after a day).
        """
        age = (self.clock.now() - intent.since).total_seconds() if intent.since else self.intent_expiry_s
        if age < self.intent_grace_s or self.announce is None:
            return
        report.api_calls += 1
        status = call_with_retries(functools.partial(self.backend.find, intent.key), clock=self.clock)
        ours = status is not None and status.output_dir == intent.job_dir and all(
            status.labels.get(k) == v for k, v in intent.labels.items())
        if status is None or not ours:
            if age >= self.intent_expiry_s:
                self.ledger.lose(intent)
                log.warning("a job noted before creation was never created; forgotten",
                            extra={"ctx": {"jobId": intent.key}})
            return
        if self.ledger.finished(intent.key) is not None:
            # The job's end was published already (its key reused, and the invocation died after the backend
            # adopted it): never follow a finished job again.
            self.ledger.withdraw(intent)
            return
        self.announce(dataclasses.replace(intent, handle=status.handle), status, None)
        report.published.append((intent.key, "SUBMITTED"))
        log.warning("announced a job whose submitting invocation died after creating it",
                    extra={"ctx": {"jobId": intent.key}})

    def _stamp(self, record: JobRecord) -> None:
        """The job ended: start the retention clock of its package copies (best effort; the bucket's age rule
        deletes unstamped copies anyway)."""
        if self.storage is None:
            return
        for uri in record.staged:
            match = GCS_URI_RE.fullmatch(uri)
            if match is None:
                continue
            try:
                self.storage.stamp(match.group(1), match.group(2), self.clock.now())
            except (TransientError, PermanentError, ObjectGone) as exc:
                log.warning(f"could not stamp {uri}: {exc}", extra={"ctx": {"jobId": record.key}})

    def _list_active(self, report: TickReport) -> dict[str, JobStatus]:
        statuses: dict[str, JobStatus] = {}
        token = None
        while True:
            report.api_calls += 1
            page, token = call_with_retries(functools.partial(self.backend.list_active, page_token=token),
                                            clock=self.clock)
            statuses.update({s.handle.name: s for s in page})
            if not token:
                return statuses

    def _missed(self, record: JobRecord, exc: BackendRefused) -> None:
        """A permanent error reading a followed job: retry on later ticks, give it up after MAX_MISSES."""
        ctx = {"jobId": record.key, "state": record.state.value}
        if record.misses + 1 >= MAX_MISSES:
            self.ledger.lose(record)
            log.error(f"job no longer readable after {MAX_MISSES} ticks ({exc}); stopped following it, no state "
                      "is published for it", extra={"ctx": ctx})
        else:
            self.ledger.missed(record)
            log.warning(f"cannot read job: {exc}", extra={"ctx": ctx})

    def _advance(self, record: JobRecord, status: JobStatus, report: TickReport) -> None:
        state = status.state
        due = state is not None and state.rank > record.state.rank  # not unspecified, nor a stale read going back
        trials = new_trials(record, status)
        if not due and not trials:
            return
        messages: list[OutgoingMessage] = []
        if status.study is not None:
            messages += [encode_trial(TrialEvent(
                key=record.key, trial=trial, study=status.study, job_state=record.state, origin=record.origin.fields,
                time=self.clock.now(), labels=record.labels, job_dir=record.job_dir, backend=record.handle.backend,
                resource_name=status.handle.name), source=self.source) for trial in trials]
        if due:
            assert state is not None
            event = JobEvent(key=record.key, state=state, previous_state=record.state, origin=record.origin.fields,
                             time=self.clock.now(), reason=Reason.JOB_FAILED if state is JobState.FAILED else None,
                             labels=record.labels, job_dir=record.job_dir,
                             backend=record.handle.backend).with_status(status)
            messages.append(encode(event, source=self.source))
        ids = self.publisher.publish(messages)
        done = tuple(t.trial_id for t in trials)
        report.trials += [(record.key, trial_id) for trial_id in done]
        if trials:
            log.info(f"published {len(trials)} finished trial(s)", extra={"ctx": {"jobId": record.key,
                                                                                  "trials": list(done)}})
        if not due:
            self.ledger.note_trials(record, done)
            return
        assert state is not None
        self.ledger.advance(dataclasses.replace(record, published_trials=record.published_trials + done), state)
        if state.is_terminal:
            self._stamp(record)
        report.published.append((record.key, state.value))
        log.info(f"published {state.value}", extra={"ctx": {"jobId": record.key, "state": state.value,
                                                            "messageIds": ids[len(trials):]}})


def new_trials(record: JobRecord, status: JobStatus) -> list[Trial]:
    """The trials of `status` that finished (SUCCEEDED, FAILED, CANCELLED) and were not published for `record` yet,
    in the order they ended (then by trial id)."""
    if status.study is None:
        return []
    seen = set(record.published_trials)
    fresh = [t for t in status.study.trials if t.finished and t.trial_id not in seen]
    return sorted(fresh, key=lambda t: (t.end_time or "", t.trial_id.zfill(20)))
