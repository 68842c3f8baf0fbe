"""Following submitted jobs and publishing each state change once (the scheduled path).

Each tick: list the followed jobs (state store), list the training API's
active jobs page by page with a server-side state filter, fetch individually
only followed jobs missing from that list (they finished, or the list lags),
and publish every state that ranks above the last one published. States are
never invented and never go backwards; STATE_UNSPECIFIED or a missing state
is ignored; a terminal state is published once and the job is then forgotten.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Callable

from . import logs
from .backends import BackendError, TrainingBackend
from .envelope import JobEvent, encode
from .ledger import JobRecord, Ledger
from .publisher import EventPublisher
from .retry import call_with_retries
from .states import ACTIVE_API_STATES, State, observed_state

log = logs.get("reconciler")
ACTIVE_FILTER = " OR ".join(f"state:{s.value}" for s in ACTIVE_API_STATES)
PAGE_SIZE = 100  # the API's maximum pageSize
MAX_MISSES = 5  # ticks in a row with a permanent API error before a job is given up as lost
TICK_LEASE_S = 300.0  # a tick lock older than this belongs to a dead tick (ticks take seconds)


@dataclasses.dataclass
class TickReport:
    """What one tick did: jobs followed, API calls made, (jobId, state) pairs published."""

    followed: int = 0
    api_calls: int = 0
    published: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped: bool = False  # another tick held the lock


class Reconciler:
    """Publishes state changes of followed jobs.

    Args:
        backend: the training API.
        publisher: Pub/Sub publisher.
        ledger: followed jobs and their last published state.
        source: CloudEvent source of published events.
        now: clock.
    """

    def __init__(self, backend: TrainingBackend, publisher: EventPublisher, ledger: Ledger, source: str,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.backend, self.publisher, self.ledger, self.source, self.now = backend, publisher, ledger, source, now

    def tick(self) -> TickReport:
        """One reconciliation pass. Raises on transient faults after bounded retries (the next tick retries).

        Ticks never overlap: one that finds another running (a slow tick, a second instance) returns at
        once, so an older record can never publish a state after another tick published a later one.
        """
        owner = uuid.uuid4().hex
        if not self.ledger.lock_ticks(owner, self.now(), TICK_LEASE_S):
            return TickReport(skipped=True)
        try:
            return self._tick()
        finally:
            self.ledger.unlock_ticks(owner)

    def _tick(self) -> TickReport:
        report = TickReport()
        followed = self.ledger.followed()
        report.followed = len(followed)
        if not followed:
            return report
        active = self._list_active(report)
        for record in followed:
            job = active.get(record.job_id)
            if job is None:
                report.api_calls += 1
                try:
                    job = call_with_retries(lambda: self.backend.get_job(record.job_id))
                except BackendError as exc:
                    if exc.transient:
                        raise
                    self._missed(record, exc)
                    continue
            self._advance(record, job, report)
        return report

    def _missed(self, record: JobRecord, exc: BackendError) -> None:
        """A permanent error reading a followed job: retry on later ticks, give it up after MAX_MISSES."""
        ctx = {"jobId": record.job_id, "state": record.state.value}
        if record.misses + 1 >= MAX_MISSES:
            self.ledger.lose(record)
            log.error(f"job no longer readable after {MAX_MISSES} ticks ({exc}); stopped following it, no state "
                      "is published for it", extra={"ctx": ctx})
        else:
            self.ledger.missed(record)
            log.warning(f"cannot read job: {exc}", extra={"ctx": ctx})

    def _list_active(self, report: TickReport) -> dict[str, dict]:
        jobs: dict[str, dict] = {}
        token = None
        while True:
            report.api_calls += 1
            page, token = call_with_retries(
                lambda: self.backend.list_jobs(filter=ACTIVE_FILTER, page_size=PAGE_SIZE, page_token=token))
            jobs.update({j["jobId"]: j for j in page if "jobId" in j})
            if not token:
                return jobs

    def _advance(self, record: JobRecord, job: dict, report: TickReport) -> None:
        state = observed_state(job)
        if state is None or state.rank <= record.state.rank:
            return  # nothing new, unspecified, or a stale read that would go backwards
        event = JobEvent(job_id=record.job_id, state=state, previous_state=record.state, drop=record.drop,
                         time=self.now(), error_message=job.get("errorMessage") or None,
                         reason="JOB_FAILED" if state is State.FAILED else None, labels=record.labels,
                         job_dir=record.job_dir, backend=record.backend, job=job)
        ids = self.publisher.publish([encode(event, source=self.source)])
        self.ledger.advance(record, state)
        report.published.append((record.job_id, state.value))
        log.info(f"published {state.value}", extra={"ctx": {"jobId": record.job_id, "state": state.value,
                                                            "messageIds": ids, "drop": record.drop.folder}})
