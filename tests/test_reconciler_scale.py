"""The reconciler at scale and under faults, on the in-memory doubles (fakes.py), no timing assertions.

- Training-API calls per tick are ceil(active / 100) list pages (at least one: an empty answer is `{}`)
  plus one `get` per followed job that left the active list since the last tick; never one call per active
  job. Measured for 100, 1,000 and 10,000 followed jobs, seeded directly into the ledger and the fake API.
- 429 answers (transient) are retried with backoff inside the tick; retry sleeps run on a virtual clock.
- A reconciler stopped mid-tick and a new one on the same ledger together publish every observed state,
  no distinct (jobId, state) event twice with different content, and exactly one terminal event per job.
- Two reconcilers ticking the same ledger at once publish nothing but duplicates of the same ce-id.
"""

from __future__ import annotations

import math
import threading
import types

import pytest
from googleapiclient import discovery
from googleapiclient.http import HttpMockSequence

from conftest import NOW
from fakes import FakeBackend, FakePublisher
from submitter.backends import BackendError
from submitter.backends.ml_v1 import MlV1Backend
from submitter.envelope import DropRef
from submitter.ledger import JobRecord, Ledger
from submitter.reconciler import PAGE_SIZE, Reconciler
from submitter.state_store import InMemoryStateStore
from submitter.states import State

SOURCE = "//drop-submitter/projects/demo-project/buckets/drop-bucket"
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def job_id(i: int) -> str:
    return f"scale_{i:05d}"


def seed(ledger: Ledger, backend: FakeBackend, n: int, state: str = "QUEUED", start: int = 0) -> list[str]:
    """Follow n jobs (as if SUBMITTED was published) that the fake API reports in `state`."""
    ids = []
    for i in range(start, start + n):
        jid = job_id(i)
        drop = DropRef("drop-bucket", f"incoming/run-{i}", f"incoming/run-{i}/job.yaml", 1718000000000000 + i)
        assert ledger.follow(JobRecord(job_id=jid, state=State.SUBMITTED, drop=drop, labels={"submitter": "drop"},
                                       job_dir=f"gs://drop-outputs/incoming/run-{i}/{jid}", backend="ml_v1"))
        backend.jobs[jid] = {"jobId": jid, "state": state, "labels": {"submitter": "drop"},
                             "createTime": "2024-06-10T12:00:00Z"}
        ids.append(jid)
    return ids


class Calls:
    """Training-API calls made by one tick, from the fake's call log."""

    def __init__(self, backend: FakeBackend):
        self.backend, self.start = backend, len(backend.calls)

    def __call__(self) -> tuple[int, int]:
        made = self.backend.calls[self.start:]
        return sum(1 for k, _ in made if k == "list"), sum(1 for k, _ in made if k == "get")


def pages(active: int) -> int:
    return max(1, math.ceil(active / PAGE_SIZE))


@pytest.fixture
def clock(monkeypatch):
    """Retry sleeps on a virtual clock (google-api-core's Retry reads time.monotonic and calls time.sleep)."""
    import google.api_core.retry.retry_base as retry_base
    import google.api_core.retry.retry_unary as retry_unary

    state = types.SimpleNamespace(now=0.0, sleeps=[])

    def sleep(seconds):
        state.sleeps.append(seconds)
        state.now += seconds

    fake = types.SimpleNamespace(monotonic=lambda: state.now, sleep=sleep, time=lambda: state.now)
    monkeypatch.setattr(retry_unary, "time", fake)
    monkeypatch.setattr(retry_base, "time", fake)
    return state


@pytest.mark.parametrize("n", [100, 1_000, 10_000])
def test_calls_per_tick_are_pages_plus_jobs_that_finished(n):
    backend, publisher, ledger = FakeBackend(), FakePublisher(), Ledger(InMemoryStateStore())
    ids = seed(ledger, backend, n)
    for i in range(n // 10):  # a tenth of the API's active jobs are not ours: they count for pages only
        backend.jobs[f"foreign_{i}"] = {"jobId": f"foreign_{i}", "state": "RUNNING"}
    foreign = n // 10
    reconciler = Reconciler(backend, publisher, ledger, SOURCE, now=lambda: NOW)

    def tick(expected_active: int, expected_gets: int) -> list[tuple[str, str]]:
        calls = Calls(backend)
        report = reconciler.tick()
        lists, gets = calls()
        assert (lists, gets) == (pages(expected_active), expected_gets)
        assert report.api_calls == lists + gets
        return report.published

    # tick 1: every job QUEUED -> n QUEUED events from list pages alone
    assert len(tick(n + foreign, 0)) == n
    # tick 2: a third move on, a tenth finish (in three different ways): one get per finished job only
    finished = ids[: n // 10]
    for k, jid in enumerate(finished):
        backend.set_state(jid, FINAL[k % 3], errorMessage="boom" if k % 3 == 1 else None)
    for jid in ids[n // 10: n // 3]:
        backend.set_state(jid, "RUNNING")
    published = tick(n - len(finished) + foreign, len(finished))
    assert len(published) == len(finished) + len(ids[n // 10: n // 3])
    # tick 3: nothing changed -> pages only, nothing published, finished jobs are never fetched again
    assert tick(n - len(finished) + foreign, 0) == []
    # tick 4: everything finishes -> the active list holds only foreign jobs
    for jid in ids[n // 10:]:
        backend.set_state(jid, "SUCCEEDED")
    assert len(tick(foreign, n - len(finished))) == n - len(finished)
    # tick 5: nothing followed -> no calls at all
    calls = Calls(backend)
    assert reconciler.tick().api_calls == 0 and calls() == (0, 0)
    # exactly one terminal event per job, every job published QUEUED first
    terminal = [m.attributes["jobId"] for m in publisher.messages if m.attributes["terminal"] == "true"]
    assert sorted(terminal) == ids
    assert sum(1 for m in publisher.messages if m.attributes["state"] == "QUEUED") == n


def _ml_v1_backend(answers: list[tuple[dict, str]]) -> MlV1Backend:
    """The real ml v1 adapter over google-api-python-client, answered by a scripted HTTP sequence."""
    backend = MlV1Backend(project="demo-project", anonymous=True)
    service = discovery.build("ml", "v1", http=HttpMockSequence(answers), static_discovery=True,
                              cache_discovery=False)
    backend._local.jobs = service.projects().jobs()
    return backend


def _ledger_with(n: int) -> tuple[Ledger, list[str]]:
    ledger = Ledger(InMemoryStateStore())
    return ledger, seed(ledger, FakeBackend(), n, state="QUEUED")


def test_empty_list_answer_is_no_active_jobs_and_finished_jobs_are_fetched():
    """`jobs.list` answers `{}` (no `jobs` key) when nothing matches: parsed as an empty page, no next page."""
    ledger, [only] = _ledger_with(1)
    backend = _ml_v1_backend([
        ({"status": "200"}, "{}"),
        ({"status": "200"}, f'{{"jobId": "{only}", "state": "SUCCEEDED", "endTime": "2024-06-10T12:09:00Z"}}'),
    ])
    publisher = FakePublisher()
    report = Reconciler(backend, publisher, ledger, SOURCE, now=lambda: NOW).tick()
    assert report.api_calls == 2 and report.published == [(only, "SUCCEEDED")]
    assert publisher.states(only) == ["SUCCEEDED"]


def test_empty_object_from_the_adapter_directly():
    backend = _ml_v1_backend([({"status": "200"}, "{}"), ({"status": "200"}, "")])
    assert backend.list_jobs(filter="state:RUNNING") == ([], None)
    assert backend.list_jobs() == ([], None)  # an empty body too


def test_429_from_the_api_is_retried_with_backoff_and_the_tick_completes(clock):
    """A rate-limited answer (429 without a QuotaFailure detail) is transient: retried after a backoff sleep."""
    ledger, ids = _ledger_with(2)
    limited = ({"status": "429"}, '{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "slow down"}}')
    backend = _ml_v1_backend([
        limited,
        ({"status": "200"}, f'{{"jobs": [{{"jobId": "{ids[0]}", "state": "RUNNING"}}]}}'),
        limited,
        ({"status": "200"}, f'{{"jobId": "{ids[1]}", "state": "FAILED", "errorMessage": "exit 1"}}'),
    ])
    publisher = FakePublisher()
    report = Reconciler(backend, publisher, ledger, SOURCE, now=lambda: NOW).tick()
    assert sorted(report.published) == [(ids[0], "RUNNING"), (ids[1], "FAILED")]
    assert len(clock.sleeps) == 2  # one backoff sleep per 429, on the list and on the get


def test_transient_429_once_on_list_and_get_with_the_fake(clock):
    backend, publisher, ledger = FakeBackend(), FakePublisher(), Ledger(InMemoryStateStore())
    ids = seed(ledger, backend, 250, state="RUNNING")
    backend.set_state(ids[0], "SUCCEEDED")
    faults = {"list": 1, "get": 1}
    real_list, real_get = backend.list_jobs, backend.get_job

    def flaky(kind, real):
        def call(*args, **kwargs):
            if faults[kind]:
                faults[kind] -= 1
                raise BackendError(429, "RESOURCE_EXHAUSTED", "rate limited", transient=True, reason="RATE_LIMITED")
            return real(*args, **kwargs)
        return call

    backend.list_jobs, backend.get_job = flaky("list", real_list), flaky("get", real_get)
    report = Reconciler(backend, publisher, ledger, SOURCE, now=lambda: NOW).tick()
    assert len(report.published) == 250 and faults == {"list": 0, "get": 0}
    assert len(clock.sleeps) == 2 and all(0 <= s <= 8.0 for s in clock.sleeps)
    assert report.api_calls == pages(249) + 1  # retries happen inside one counted call


def test_persistent_429_fails_the_tick_after_the_deadline_and_the_next_tick_recovers(clock):
    backend, publisher, ledger = FakeBackend(), FakePublisher(), Ledger(InMemoryStateStore())
    seed(ledger, backend, 3, state="RUNNING")
    real_list = backend.list_jobs
    limited = [True]

    def list_jobs(*args, **kwargs):
        if limited[0]:
            raise BackendError(429, "RESOURCE_EXHAUSTED", "rate limited", transient=True, reason="RATE_LIMITED")
        return real_list(*args, **kwargs)

    backend.list_jobs = list_jobs
    reconciler = Reconciler(backend, publisher, ledger, SOURCE, now=lambda: NOW)
    with pytest.raises(BackendError):
        reconciler.tick()
    assert publisher.messages == [] and len(clock.sleeps) > 3
    bounds = [min(0.5 * 2 ** i, 8.0) for i in range(len(clock.sleeps))]  # full jitter under a doubling bound
    assert all(s <= b for s, b in zip(clock.sleeps, bounds)) and clock.now <= 30.0 + 8.0
    limited[0] = False
    assert len(reconciler.tick().published) == 3


# -- restarts and concurrency ------------------------------------------------------------------

class Crash(BaseException):
    """The process dies here (a BaseException, so no `except Exception` in the code can swallow it)."""


class CrashingPublisher(FakePublisher):
    """Publishes into a shared log; dies before or after the `crash_at`-th publish call."""

    def __init__(self, log: FakePublisher, crash_at: int, after: bool):
        super().__init__()
        self.log, self.crash_at, self.after, self.count = log, crash_at, after, 0

    def publish(self, messages):
        self.count += 1
        if self.count == self.crash_at and not self.after:
            raise Crash()
        ids = self.log.publish(messages)
        if self.count == self.crash_at and self.after:
            raise Crash()  # published, but the ledger never learns it
        return ids


def check_union(messages, observed: dict[str, list[str]]) -> None:
    """Every observed state of every job is in the union, one content per ce-id, exactly one terminal per job."""
    by_id: dict[str, set[bytes]] = {}
    for m in messages:
        by_id.setdefault(m.attributes["ce-id"], set()).add(m.data)
    assert all(len(contents) == 1 for contents in by_id.values()), "a (jobId, state) event with two contents"
    for jid, states in observed.items():
        published = [s for s in State if f"{jid}/{s.value}" in by_id]
        assert [s.value for s in published] == sorted(set(states), key=lambda s: State(s).rank), jid
        assert sum(1 for s in published if s.is_terminal) == 1, jid


@pytest.mark.parametrize("after", [False, True], ids=["dies-before-publish", "dies-after-publish"])
@pytest.mark.parametrize("crash_at", [1, 7, 23])
def test_a_restarted_reconciler_continues_where_the_stopped_one_left(crash_at, after):
    backend, log, ledger = FakeBackend(), FakePublisher(), Ledger(InMemoryStateStore())
    ids = seed(ledger, backend, 30)
    timeline = ["QUEUED", "PREPARING", "RUNNING", "SUCCEEDED"]
    observed = {jid: [] for jid in ids}
    a = Reconciler(backend, CrashingPublisher(log, crash_at, after), ledger, SOURCE, now=lambda: NOW)
    b = Reconciler(backend, log, ledger, SOURCE, now=lambda: NOW)
    current = a
    for step, state in enumerate(timeline):
        for k, jid in enumerate(ids):
            final = FINAL[k % 3] if state == "SUCCEEDED" else state
            backend.set_state(jid, final)
            observed[jid].append(final)
        try:
            current.tick()
        except Crash:
            current = b  # A is gone mid-stream; B starts on the same ledger and ticks the same observation
            current.tick()
    assert current is b, "the crash point was reached"
    check_union(log.messages, observed)
    assert ledger.followed() == []


def test_two_reconcilers_at_once_publish_no_second_distinct_event():
    backend, log, store = FakeBackend(), FakePublisher(), InMemoryStateStore()
    ids = seed(Ledger(store), backend, 200)
    timeline = ["QUEUED", "PREPARING", "RUNNING", "CANCELLING", "FINAL"]
    observed = {jid: ["QUEUED"] for jid in ids}  # as seeded
    reconcilers = [Reconciler(backend, log, Ledger(store), SOURCE, now=lambda: NOW) for _ in range(2)]
    for step, state in enumerate(timeline):
        for k, jid in enumerate(ids):
            if (k + step) % 4 == 0 and state != "FINAL":
                continue  # some jobs skip a state between two polls
            final = FINAL[k % 3] if state == "FINAL" else state
            backend.set_state(jid, final)
            observed[jid].append(final)
        barrier, failures = threading.Barrier(2), []

        def run(r):
            try:
                barrier.wait()
                for _ in range(3):
                    r.tick()
            except BaseException as exc:  # reported below: a thread's exception is otherwise lost
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(r,)) for r in reconcilers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
    check_union(log.messages, observed)
    assert Ledger(store).followed() == []
