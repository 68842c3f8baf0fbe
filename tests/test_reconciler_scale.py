"""The reconciler at scale and under faults, through the real ml v1 adapter over the in-memory API (fakes.py).

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

import pytest

from submitter.backends import PAGE_SIZE
from submitter.backends.ml_v1 import MlV1Backend
from submitter.clock import FakeClock
from submitter.errors import BackendUnavailable
from submitter.ledger import Ledger
from submitter.model import JobHandle, Origin, Verdict
from submitter.reconciler import Reconciler
from submitter.records import JobRecord
from submitter.state_store import InMemoryStateStore

from conftest import NOW
from fakes import FakeMlApi, FakePublisher
from helpers import State

SOURCE = "//drop-submitter/projects/demo-project/buckets/drop-bucket"
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def job_id(i: int) -> str:
    return f"scale_{i:05d}"


def seed(ledger: Ledger, api: FakeMlApi, n: int, state: str = "QUEUED", start: int = 0) -> list[str]:
    """Follow n jobs (as if SUBMITTED was published) that the fake API reports in `state`."""
    ids = []
    for i in range(start, start + n):
        jid = job_id(i)
        drop = {"bucket": "drop-bucket", "folder": f"incoming/run-{i}", "object": f"incoming/run-{i}/job.yaml",
                "generation": str(1718000000000000 + i)}
        handle = JobHandle("ml_v1", f"projects/demo-project/jobs/{jid}", jid)
        origin = Origin(f"drops/drop-bucket/incoming/run-{i}/{drop['generation']}", {"drop": drop}, None,
                        f"incoming/run-{i}")
        assert ledger.follow(JobRecord(handle=handle, state=Verdict.SUBMITTED, origin=origin,
                                       labels={"submitter": "drop"},
                                       job_dir=f"gs://drop-outputs/incoming/run-{i}/{jid}"))
        api.jobs[jid] = {"jobId": jid, "state": state, "labels": {"submitter": "drop"},
                         "createTime": "2024-06-10T12:00:00Z"}
        ids.append(jid)
    return ids


class Calls:
    """Training-API calls made by one tick, from the fake's call log."""

    def __init__(self, api: FakeMlApi):
        self.api, self.start = api, len(api.calls)

    def __call__(self) -> tuple[int, int]:
        made = self.api.calls[self.start:]
        return sum(1 for k, _ in made if k == "list"), sum(1 for k, _ in made if k == "get")


def pages(active: int) -> int:
    return max(1, math.ceil(active / PAGE_SIZE))


class Rig:
    """A reconciler on the real ml v1 adapter, the in-memory API, a ledger and a virtual clock."""

    def __init__(self, publisher: FakePublisher | None = None, store: InMemoryStateStore | None = None,
                 api: FakeMlApi | None = None):
        self.api = api or FakeMlApi()
        self.backend = MlV1Backend("demo-project", transport=self.api)
        self.publisher = publisher or FakePublisher()
        self.store = store or InMemoryStateStore()
        self.ledger = Ledger(self.store)
        self.clock = FakeClock(NOW)
        self.reconciler = Reconciler(self.backend, self.publisher, self.ledger, SOURCE, self.clock)


@pytest.mark.parametrize("n", [100, 1_000, 10_000])
def test_calls_per_tick_are_pages_plus_jobs_that_finished(n):
    rig = Rig()
    api, publisher, reconciler = rig.api, rig.publisher, rig.reconciler
    ids = seed(rig.ledger, api, n)
    for i in range(n // 10):  # a tenth of the API's active jobs are not ours: they count for pages only
        api.jobs[f"foreign_{i}"] = {"jobId": f"foreign_{i}", "state": "RUNNING"}
    foreign = n // 10

    def tick(expected_active: int, expected_gets: int) -> list[tuple[str, str]]:
        calls = Calls(api)
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
        api.set_state(jid, FINAL[k % 3], errorMessage="boom" if k % 3 == 1 else None)
    for jid in ids[n // 10: n // 3]:
        api.set_state(jid, "RUNNING")
    published = tick(n - len(finished) + foreign, len(finished))
    assert len(published) == len(finished) + len(ids[n // 10: n // 3])
    # tick 3: nothing changed -> pages only, nothing published, finished jobs are never fetched again
    assert tick(n - len(finished) + foreign, 0) == []
    # tick 4: everything finishes -> the active list holds only foreign jobs
    for jid in ids[n // 10:]:
        api.set_state(jid, "SUCCEEDED")
    assert len(tick(foreign, n - len(finished))) == n - len(finished)
    # tick 5: nothing followed -> no calls at all
    calls = Calls(api)
    assert reconciler.tick().api_calls == 0 and calls() == (0, 0)
    # exactly one terminal event per job, every job published QUEUED first
    terminal = [m.attributes["jobId"] for m in publisher.messages if m.attributes["terminal"] == "true"]
    assert sorted(terminal) == ids
    assert sum(1 for m in publisher.messages if m.attributes["state"] == "QUEUED") == n


def test_empty_list_answer_is_no_active_jobs_and_finished_jobs_are_fetched():
    """`jobs.list` answers `{}` (no `jobs` key) when nothing matches: parsed as an empty page, no next page."""
    rig = Rig()
    [only] = seed(rig.ledger, rig.api, 1)
    rig.api.set_state(only, "SUCCEEDED", endTime="2024-06-10T12:09:00Z")
    report = rig.reconciler.tick()
    assert rig.api.calls[-2:] == [("list", "state:QUEUED OR state:PREPARING OR state:RUNNING OR state:CANCELLING"),
                                  ("get", only)]
    assert report.api_calls == 2 and report.published == [(only, "SUCCEEDED")]
    assert rig.publisher.states(only) == ["SUCCEEDED"]


def test_empty_object_from_the_adapter_directly():
    rig = Rig()
    assert rig.backend.list_active() == ([], None)
    assert rig.backend.list_jobs() == ([], None)


def test_429_from_the_api_is_retried_with_backoff_and_the_tick_completes():
    """A rate-limited answer (429 without a QuotaFailure detail) is transient: retried after a backoff sleep."""
    rig = Rig()
    ids = seed(rig.ledger, rig.api, 250, state="RUNNING")
    rig.api.set_state(ids[0], "FAILED", errorMessage="exit 1")
    rig.api.fail("list", 429, "RESOURCE_EXHAUSTED", "slow down")
    rig.api.fail("get", 429, "RESOURCE_EXHAUSTED", "slow down")
    report = rig.reconciler.tick()
    assert len(report.published) == 250 and not rig.api.errors["list"] and not rig.api.errors["get"]
    assert len(rig.clock.slept) == 2 and all(0 <= s <= 8.0 for s in rig.clock.slept)
    assert report.api_calls == pages(249) + 1  # retries happen inside one counted call


def test_persistent_429_fails_the_tick_after_the_deadline_and_the_next_tick_recovers():
    rig = Rig()
    seed(rig.ledger, rig.api, 3, state="RUNNING")
    for _ in range(100):
        rig.api.fail("list", 429, "RESOURCE_EXHAUSTED", "rate limited")
    with pytest.raises(BackendUnavailable):
        rig.reconciler.tick()
    sleeps = rig.clock.slept
    assert rig.publisher.messages == [] and len(sleeps) > 3
    bounds = [min(0.5 * 2 ** i, 8.0) for i in range(len(sleeps))]  # full jitter under a doubling bound
    assert all(s <= b for s, b in zip(sleeps, bounds)) and sum(sleeps) <= 30.0 + 8.0
    rig.api.errors.clear()
    assert rig.reconciler.tick().backing_off  # the failed tick slows the next ones down
    rig.clock.advance(10)
    assert len(rig.reconciler.tick().published) == 3


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
    log = FakePublisher()
    rig_a = Rig(publisher=CrashingPublisher(log, crash_at, after))
    rig_b = Rig(publisher=log, store=rig_a.store, api=rig_a.api)
    api, ledger = rig_a.api, rig_a.ledger
    ids = seed(ledger, api, 30)
    timeline = ["QUEUED", "PREPARING", "RUNNING", "SUCCEEDED"]
    observed = {jid: [] for jid in ids}
    a, b = rig_a.reconciler, rig_b.reconciler
    current = a
    for step, state in enumerate(timeline):
        for k, jid in enumerate(ids):
            final = FINAL[k % 3] if state == "SUCCEEDED" else state
            api.set_state(jid, final)
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
    log, store, api = FakePublisher(), InMemoryStateStore(), FakeMlApi()
    ids = seed(Ledger(store), api, 200)
    timeline = ["QUEUED", "PREPARING", "RUNNING", "CANCELLING", "FINAL"]
    observed = {jid: ["QUEUED"] for jid in ids}  # as seeded
    reconcilers = [Rig(publisher=log, store=store, api=api).reconciler for _ in range(2)]
    for step, state in enumerate(timeline):
        for k, jid in enumerate(ids):
            if (k + step) % 4 == 0 and state != "FINAL":
                continue  # some jobs skip a state between two polls
            final = FINAL[k % 3] if state == "FINAL" else state
            api.set_state(jid, final)
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
