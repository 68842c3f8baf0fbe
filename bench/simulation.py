"""Row 9: a burst of drops against a per-minute create quota, simulated on virtual time.

What is real: the function's whole handler (`App.handle_cloud_event`: parsing, the drop protocol, claims, the
planner, staging, the ledger, the ml v1 adapter and its error classification, the quota queue a create answered
429 RATE_LIMITED sends a drop to) and the scheduled `App.reconcile` (reconciler tick, the quota queues served
oldest first until a region's first 429, the sweep of drops that never completed), all on the in-memory doubles
of tests/fakes.py.

What is simulated:
- Time. Each invocation runs on its own FakeClock that starts at its delivery time, so retry sleeps inside one
  invocation move only its own clock (invocations run concurrently in the cloud). Invocations are processed one
  at a time, in order of their start time.
- The training API's quota: `QuotaApi` (FakeMlApi) allows `per_minute` jobs.create per region in any sliding
  60 s (a create that is answered counts, a refused one does not) and answers the rest with 429
  RESOURCE_EXHAUSTED carrying an ErrorInfo RATE_LIMIT_EXCEEDED detail (the shape Google sends for per-minute
  rate quotas; no QuotaFailure detail, which google_errors.py would take as a permanent QUOTA_EXCEEDED).
- Uploads: drop i's package at i·(60 s / N), its job.yaml 1 s later (packages first, job.yaml last).
- Eventarc: each object's finalize event arrives 0.5 s after the upload; an invocation that raises (HTTP 500)
  is redelivered after min(10 s · 2^attempt, 600 s) counted from its end, for 24 h from the first delivery
  (GUIDE.md §3), with no jitter; unlimited concurrent instances.
- Cloud Scheduler: `reconcile` every 60 s with one tick per call (the figure); the note adds the deployed schedule
  (a tick every 5 s for 55 s of each minute, each tick a step at its own time). A tick that raises is counted and
  the next one runs on schedule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import json
import random
from typing import Any

from .common import Row

LATENCY_S = 0.5
SPEC_AFTER_S = 1.0
BACKOFF_MIN_S, BACKOFF_MAX_S, RETRY_FOR_S = 10.0, 600.0, 24 * 3600.0
TICK_S = 60.0


class SimTime:
    """The virtual time of whatever runs now: the current invocation's own clock."""

    def __init__(self, start: dt.datetime):
        self.start = start
        self.clock: Any = None

    def seconds(self) -> float:
        """Seconds since the simulation's start on the running invocation's clock."""
        return (self.clock.now() - self.start).total_seconds()


def quota_error(region: str, per_minute: int) -> dict:
    """A per-minute rate-quota 429 as Google answers it."""
    from fakes import error_body

    metric = "ml.googleapis.com/job_create_requests"
    return error_body(429, "RESOURCE_EXHAUSTED",
                      f"Quota exceeded for quota metric 'Create requests' and limit 'Create requests per minute per "
                      f"region' of service 'ml.googleapis.com' for consumer 'project_number:123' (region {region}).",
                      [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                        "domain": "googleapis.com",
                        "metadata": {"quota_metric": metric, "quota_limit": "CreateRequestsPerMinutePerRegion",
                                     "service": "ml.googleapis.com", "consumer": "projects/123"}}])


def quota_api(sim: SimTime, per_minute: int) -> Any:
    """A FakeMlApi whose jobs.create is limited to `per_minute` per region per one-minute window."""
    from fakes import FakeMlApi

    class QuotaApi(FakeMlApi):
        def __init__(self) -> None:
            super().__init__()
            self.accepted: dict[str, list[float]] = {}  # region -> times of accepted creates
            self.refused = 0
            self.created_at: dict[str, float] = {}

        def _create(self, job: dict) -> tuple[int, dict]:
            now = sim.seconds()
            region = job.get("trainingInput", {}).get("region", "")
            recent = self.accepted.setdefault(region, [])
            if sum(1 for t in recent if now - 60 < t <= now) >= per_minute:
                self.refused += 1
                return 429, quota_error(region, per_minute)
            recent.append(now)
            code, payload = super()._create(job)
            if code == 200:
                self.created_at[job["jobId"]] = now
            return code, payload

    return QuotaApi()


def timed_publisher(sim: SimTime) -> Any:
    """A FakePublisher that also records when (virtual seconds) each message was published."""
    from fakes import FakePublisher

    class TimedPublisher(FakePublisher):
        def __init__(self) -> None:
            super().__init__()
            self.log: list[tuple[float, dict[str, str], dict]] = []

        def publish(self, messages: Any) -> list[str]:
            ids = super().publish(messages)
            for m in messages:
                self.log.append((sim.seconds(), dict(m.attributes), json.loads(m.data)))
            return ids

    return TimedPublisher()


@dataclasses.dataclass
class SimResult:
    """What the simulation saw."""

    drops: int
    per_minute: int
    submitted: int = 0
    duplicates: int = 0
    lost: int = 0
    other_verdicts: dict[str, int] = dataclasses.field(default_factory=dict)
    last_submitted_s: float | None = None
    invocations: int = 0
    redeliveries: int = 0
    gave_up: int = 0
    creates_refused: int = 0
    ticks: int = 0
    ticks_failed: int = 0
    submitted_by_tick: int = 0
    api_calls: dict[str, int] = dataclasses.field(default_factory=dict)
    end_s: float = 0.0


def simulate(drops: int = 1000, per_minute: int = 60, upload_window_s: float = 60.0,
             ticks_per_minute: int = 1) -> SimResult:
    """Run the burst to the end (every event delivered or given up, every drop submitted or 25 h passed).

    `ticks_per_minute`: 1 is one tick per scheduler call; 11 is the deployed schedule (SUBMITTER_RECONCILE_WINDOW_
    SECONDS=55, a tick every 5 s), each tick simulated as its own step at its own time so deliveries interleave.
    """
    from submitter.app import App
    from submitter.backends.ml_v1 import MlV1Backend
    from submitter.clock import FakeClock, rfc3339
    from submitter.errors import TransientError
    from submitter.ledger import Ledger
    from submitter.state_store import InMemoryStateStore

    from conftest import BASELINE_TARBALL, BASELINE_YAML, NOW, settings
    from fakes import FakeStorage

    random.seed(18)  # call_with_retries' backoff has full jitter (tenacity uses `random`): same run, same figures
    sim = SimTime(NOW)
    api = quota_api(sim, per_minute)
    storage, store, publisher = FakeStorage(), InMemoryStateStore(), timed_publisher(sim)
    ledger, backend, conf = Ledger(store), MlV1Backend("demo-project", transport=api), settings()
    result = SimResult(drops, per_minute)
    seq = itertools.count()
    queue: list[tuple[float, int, str, Any]] = []

    def at(t: float, kind: str, payload: Any) -> None:
        heapq.heappush(queue, (t, next(seq), kind, payload))

    def app_at(t: float) -> App:
        sim.clock = FakeClock(NOW + dt.timedelta(seconds=t))
        return App(conf, clock=sim.clock, storage=storage, ledger=ledger, backend=backend, publisher=publisher)

    spacing = upload_window_s / drops
    for i in range(drops):
        folder = f"incoming/burst-{i:05d}"
        at(i * spacing, "upload", (f"{folder}/package.tar.gz", BASELINE_TARBALL))
        at(i * spacing + SPEC_AFTER_S, "upload", (f"{folder}/job.yaml", BASELINE_YAML))
    tick_gap_s = 5.0 if ticks_per_minute > 1 else TICK_S
    at(TICK_S, "tick", 0)
    deliveries_left = 2 * drops  # uploads not yet delivered for good

    while queue:
        t, _, kind, payload = heapq.heappop(queue)
        if kind == "upload":
            name, data = payload
            sim.clock = FakeClock(NOW + dt.timedelta(seconds=t))
            info = storage.put("drop-bucket", name, data)
            when = rfc3339(NOW + dt.timedelta(seconds=t))
            attrs = {"specversion": "1.0", "id": f"evt-{next(seq)}", "type": "google.cloud.storage.object.v1.finalized",
                     "source": "//storage.googleapis.com/projects/_/buckets/drop-bucket", "subject": f"objects/{name}",
                     "time": when}
            body = {"kind": "storage#object", "bucket": "drop-bucket", "name": name, "generation": str(info.generation),
                    "metageneration": "1", "size": str(info.size), "timeCreated": when, "updated": when}
            at(t + LATENCY_S, "deliver", (attrs, body, 0, t + LATENCY_S))
        elif kind == "deliver":
            attrs, body, attempt, first = payload
            app = app_at(t)
            result.invocations += 1
            result.redeliveries += attempt > 0
            try:
                app.handle_cloud_event(attrs, body)
                deliveries_left -= 1
            except Exception as exc:  # functions-framework answers 500 for any exception: Eventarc redelivers
                if not isinstance(exc, TransientError):
                    result.other_verdicts[f"500 {type(exc).__name__}"] = \
                        result.other_verdicts.get(f"500 {type(exc).__name__}", 0) + 1
                end = t + app.clock.monotonic()
                retry_at = end + min(BACKOFF_MIN_S * 2 ** attempt, BACKOFF_MAX_S)
                if retry_at - first > RETRY_FOR_S:
                    result.gave_up += 1
                    deliveries_left -= 1
                else:
                    at(retry_at, "deliver", (attrs, body, attempt + 1, first))
        else:  # the scheduled reconcile
            app = app_at(t)
            result.ticks += 1
            before = len(api.created_at)
            try:
                app.reconcile()
            except Exception:
                result.ticks_failed += 1
            result.submitted_by_tick += len(api.created_at) - before
            done = len(api.created_at) >= drops
            if t < RETRY_FOR_S + 3600 and not (done and deliveries_left == 0):
                index = payload + 1  # the tick's place in its minute
                if index < ticks_per_minute:
                    at(t + tick_gap_s, "tick", index)
                else:
                    at(t - (index - 1) * tick_gap_s + TICK_S, "tick", 0)
        result.end_s = max(result.end_s, t)

    submitted: dict[str, int] = {}
    for when, attributes, data in publisher.log:
        state = attributes.get("state")
        folder = (data.get("drop") or {}).get("folder", "")
        if state == "SUBMITTED":
            submitted[folder] = submitted.get(folder, 0) + 1
            result.last_submitted_s = max(result.last_submitted_s or 0.0, when)
        elif state in ("REJECTED", "SUBMIT_FAILED"):
            key = f"{state} {data.get('reason', '')}".strip()
            result.other_verdicts[key] = result.other_verdicts.get(key, 0) + 1
    result.submitted = sum(1 for n in submitted.values() if n >= 1)
    result.duplicates = sum(n - 1 for n in submitted.values() if n > 1) + max(0, len(api.jobs) - drops)
    result.lost = drops - result.submitted
    result.creates_refused = api.refused
    for kind, _ in api.calls:
        result.api_calls[kind] = result.api_calls.get(kind, 0) + 1
    return result


def run(runs: int, smoke: bool) -> list[Row]:
    """Row 9 (deterministic: one run). Smoke: 120 drops (2 minutes of quota) instead of 1,000."""
    drops = 120 if smoke else 1000
    per_minute = 60
    r = simulate(drops, per_minute)
    deployed = simulate(drops, per_minute, ticks_per_minute=11)
    floor_s = drops / per_minute * 60
    last = r.last_submitted_s
    ratio = f"{last / floor_s:.2f}×" if last is not None else "—"
    holds = all(x.lost == 0 and x.duplicates == 0 and x.last_submitted_s is not None
                and x.last_submitted_s <= 1.2 * floor_s for x in (r, deployed))  # both schedules
    verdicts = ", ".join(f"{k}: {v}" for k, v in sorted(r.other_verdicts.items())) or "none"
    calls = ", ".join(f"{k} {v:,}" for k, v in sorted(r.api_calls.items()))
    last_text = _minutes(last)
    figure = (f"{drops:,} drops in 1 min at {per_minute} creates/min: {r.submitted:,} submitted, {r.lost:,} lost, "
              f"{r.duplicates:,} duplicates; last SUBMITTED at {last_text}; {r.redeliveries:,} redeliveries")
    note = (f"{r.invocations:,} invocations, {r.redeliveries:,} redeliveries, {r.gave_up:,} events given up after "
            f"24 h; {r.creates_refused:,} creates answered 429; API calls: {calls}; {r.ticks:,} reconcile ticks "
            f"({r.ticks_failed:,} failed, {r.submitted_by_tick:,} jobs created by ticks serving the quota queue or "
            f"sweeping); other outcomes: {verdicts}; simulated up to {r.end_s / 60:.0f} min of virtual time "
            f"(bench/simulation.py). With the deployed schedule (a tick every 5 s for 55 s of each minute): "
            f"{deployed.submitted:,} submitted, {deployed.lost:,} lost, {deployed.duplicates:,} duplicates, last "
            f"SUBMITTED at {_minutes(deployed.last_submitted_s)}, {deployed.redeliveries:,} redeliveries, "
            f"{deployed.creates_refused:,} creates answered 429 (about one per tick while the queue is not empty)"
            + ("; smoke: 120 drops" if smoke else ""))
    return [Row(9, "9", figure, f"N / quota = {floor_s / 60:.1f} min", ratio,
                "0 lost, 0 duplicates, last SUBMITTED ≤ 1.2 × N/quota", holds, note)]


def _minutes(seconds: float | None) -> str:
    return f"{seconds / 60:.1f} min" if seconds is not None else "never"
