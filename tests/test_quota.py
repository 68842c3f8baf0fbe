"""Issue 18 row 9: a create answered 429 RATE_LIMITED queues its input instead of retrying or failing the event; the
reconcile tick serves each region's queue oldest first, stopping at the first 429 (functions/submitter/quota.py).

Pure decisions first (no I/O), then the drop path, data batches and the Vertex backend on the in-memory doubles."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from test_triggers import PER_OBJECT
from test_triggers import world as trigger_world
from test_vertex_backend import vertex_world

from submitter import quota
from submitter.backends.google_errors import classify
from submitter.drops import status_key
from submitter.errors import BackendUnavailable
from submitter.model import DropStatus
from submitter.quota import Route
from submitter.retry import call_with_retries
from submitter_cli import main as cli

from conftest import BASELINE_TARBALL, BASELINE_YAML, NOW, World, at_once
from fakes import error_body

RATE = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded for quota metric "
                             "'Create requests' and limit 'Create requests per minute per region'", "details": [
                                 {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
                                  "domain": "googleapis.com"}]}})
QUOTA_FAILURE = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "no T4", "details": [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"subject": "p", "description": "T4"}]}]}})


# -- pure decisions ----------------------------------------------------------------------------------------------
def test_only_a_plain_429_is_rate_limited_and_it_is_not_retried_in_the_invocation():
    assert quota.is_rate_limited(classify(429, RATE))
    assert not quota.is_rate_limited(classify(429, QUOTA_FAILURE))  # permanent QUOTA_EXCEEDED
    assert not quota.is_rate_limited(classify(503, "down"))  # API_UNAVAILABLE: retried as before
    assert quota.retried_in_invocation(classify(503, "down")) and not quota.retried_in_invocation(classify(429, RATE))

    class Clock:
        slept: list[float] = []

        def monotonic(self) -> float:
            return sum(self.slept)

        def sleep(self, s: float) -> None:
            self.slept.append(s)

    calls = []

    def create():
        calls.append(1)
        raise classify(429, RATE)

    with pytest.raises(BackendUnavailable):
        call_with_retries(create, clock=Clock(), retry_if=quota.retried_in_invocation)
    assert calls == [1] and Clock.slept == []


@pytest.mark.parametrize("draining,gate,queued,expected", [
    (False, False, False, Route.CREATE),  # the common case: no 429 lately
    (False, True, False, Route.QUEUE),  # the region is rate limited: behind the queue, no create
    (False, True, True, Route.ALREADY_QUEUED),  # a redelivery keeps its place
    (False, False, True, Route.ALREADY_QUEUED),
    (True, True, True, Route.CREATE),  # the tick serves it: its turn
    (True, False, False, Route.CREATE),
])
def test_route(draining, gate, queued, expected):
    assert quota.route(draining=draining, gate=gate, queued=queued) is expected


def test_queues_are_per_backend_and_region_oldest_first_and_positions_count_from_one():
    t0 = dt.datetime(2024, 6, 10, 12, 0, 0, tzinfo=dt.UTC)
    keys = [quota.entry_key("ml_v1", "us-central1", t0 + dt.timedelta(seconds=s), f"drops/b/incoming/d{s}/{s}")
            for s in (3, 1, 2)]
    keys.append(quota.entry_key("vertex", "europe-west4", t0, "triggers/batches/r/x"))
    keys += ["quota/ml_v1/us-central1.gate.json", "quota/broken", "quota/a/b/notanumber/x"]
    parsed = quota.queues(keys)
    assert list(parsed) == [("ml_v1", "us-central1"), ("vertex", "europe-west4")]
    central = parsed[("ml_v1", "us-central1")]
    assert [e.ident for e in central] == [quota.input_id(f"drops/b/incoming/d{i}/{i}") for i in (1, 2, 3)]
    assert quota.position(central, central[1].key) == 2 and quota.position(central, "nope") == 4
    long = quota.entry_key("ml_v1", "us-central1", t0, "drops/b/" + "x" * 1000 + "/1")
    assert len(long) < 100 and quota.parse_entry(long).stamp == int(t0.timestamp() * 1000)
    assert quota.gates(dict.fromkeys(keys, 7)) == {("ml_v1", "us-central1"): 7}
    assert quota.parse_gate("quota/x.gate.json") is None


# -- drops -------------------------------------------------------------------------------------------------------
def limit_creates(w: World) -> dict:
    """Let `quota["left"]` creates through, then answer 429 RATE_LIMITED (None: no limit)."""
    quota_left: dict = {"left": None}
    create = w.api._create

    def limited(job):
        if quota_left["left"] is not None:
            if quota_left["left"] <= 0:
                return 429, json.loads(RATE)
            quota_left["left"] -= 1
        return create(job)

    w.api._create = limited
    return quota_left


def rate_limited_world() -> tuple[World, dict]:
    """A World whose training API answers every create 429 RATE_LIMITED until the test sets `left["left"]`."""
    w = World()
    left = limit_creates(w)
    left["left"] = 0
    return w, left


def entries(w: World) -> list[str]:
    return [k for k in w.store.all_keys() if quota.parse_entry(k) is not None]


def submitted_folders(w: World) -> list[str]:
    return [m["drop"]["folder"] for m in w.messages() if m["state"] == "SUBMITTED"]


def test_a_429_on_create_queues_the_drop_with_a_status_saying_so_and_publishes_nothing():
    w = World()
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    out = w.drop("incoming/q-1")
    assert out.action == "queued" and "429 RATE_LIMITED" in out.detail
    assert w.publisher.messages == [] and w.api.count("create") == 1 and w.clock.slept == []
    status = w.ledger.status(status_key("drop-bucket", "incoming/q-1"))
    assert status.state is DropStatus.WAITING and status.reason == "RATE_LIMITED" and status.key == out.job_id
    assert "position 1" in status.message and "no need to upload again" in status.message
    assert status.waiting_since == NOW
    keys = w.store.all_keys()
    assert len(entries(w)) == 1 and entries(w)[0].startswith("quota/ml_v1/us-central1/")
    assert "quota/ml_v1/us-central1.gate.json" in keys
    assert not [k for k in keys if k.startswith(("claims/", "jobs/"))]  # claim released, intent withdrawn
    assert w.ledger.verdict(_origin(w, "incoming/q-1")) is None


def _origin(w: World, folder: str):
    from submitter.drops import drop_ref

    return drop_ref("drop-bucket", folder, w.storage.info("drop-bucket", f"{folder}/job.yaml")).origin()


def test_a_tick_submits_queued_drops_oldest_first_and_stops_at_the_first_429():
    w, left = rate_limited_world()
    for name in ("q-a", "q-b", "q-c", "q-d"):
        assert w.drop(f"incoming/{name}").action == "queued"
        w.clock.advance(1)
    assert w.api.count("create") == 1  # only the first drop asked; the others queued behind without a create
    left["left"] = 2
    w.tick()
    assert submitted_folders(w) == ["incoming/q-a", "incoming/q-b"]
    assert w.api.count("create") == 4  # two made, then the first 429 stopped the tick
    assert len(entries(w)) == 2
    left["left"] = None
    w.tick()
    assert submitted_folders(w) == ["incoming/q-a", "incoming/q-b", "incoming/q-c", "incoming/q-d"]
    assert entries(w) == [] and not [k for k in w.store.all_keys() if k.startswith(("quota/", "quota-queued/"))]
    assert w.drop("incoming/q-e").action == "submitted"  # the gate is gone: straight to jobs.create
    assert len(w.api.jobs) == 5 and w.publisher.states().count("SUBMITTED") == 5
    assert w.ledger.status(status_key("drop-bucket", "incoming/q-a")).state is DropStatus.SUBMITTED


def test_a_new_drop_while_the_queue_is_not_empty_queues_behind_even_when_quota_has_freed():
    w = World()
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    w.drop("incoming/q-1")
    w.clock.advance(30)
    out = w.drop("incoming/q-2")  # the API would accept it now, but q-1 waits: q-2 must not jump the queue
    assert out.action == "queued" and "earlier inputs are waiting" in out.detail and "position 2" in out.detail
    assert w.api.count("create") == 1
    w.tick()
    assert submitted_folders(w) == ["incoming/q-1", "incoming/q-2"]


def test_a_redelivery_of_a_queued_drops_event_neither_submits_nor_moves_it():
    w, left = rate_limited_world()
    w.drop("incoming/q-1")
    w.clock.advance(1)
    w.drop("incoming/q-2")
    before = entries(w)
    w.clock.advance(5)
    again = w.deliver("incoming/q-1/job.yaml", event_id="redelivered")
    assert again.action == "queued" and "keeps its place" in again.detail
    assert w.deliver("incoming/q-1/package.tar.gz", event_id="redelivered-2").action == "queued"
    assert entries(w) == before and w.api.count("create") == 1 and w.publisher.messages == []
    left["left"] = 1
    w.tick()
    assert submitted_folders(w) == ["incoming/q-1"]
    assert w.deliver("incoming/q-1/job.yaml", event_id="late").action == "duplicate"
    left["left"] = None
    w.tick()
    assert submitted_folders(w) == ["incoming/q-1", "incoming/q-2"] and len(w.api.jobs) == 2


def test_a_tick_between_a_429_and_its_queue_entry_never_opens_the_gate_so_the_drop_is_queued_once():
    """Found on the local stack: a tick that listed the region's gate but not yet the entry of the drop whose 429
    wrote it saw an empty queue and removed the gate; the drop's package event then called jobs.create again and
    queued it a second time."""
    w, left = rate_limited_world()
    enqueue = w.ledger.enqueue

    def tick_first(*args, **kwargs):  # the tick runs while the invocation is between its 429 and its entry
        w.tick()
        return enqueue(*args, **kwargs)

    w.ledger.enqueue = tick_first
    assert w.drop("incoming/q-1").action == "queued"
    w.ledger.enqueue = enqueue
    assert "quota/ml_v1/us-central1.gate.json" in w.store.all_keys()
    again = w.deliver("incoming/q-1/package.tar.gz", event_id="package-event")
    assert again.action == "queued" and "keeps its place" in again.detail
    assert len(entries(w)) == 1 and w.api.count("create") == 1
    left["left"] = None
    w.tick()
    assert submitted_folders(w) == ["incoming/q-1"] and entries(w) == []


def test_a_queued_drop_whose_job_yaml_was_replaced_is_dropped_and_the_new_generation_queues_behind():
    w, left = rate_limited_world()
    w.drop("incoming/q-1")
    w.clock.advance(1)
    w.put("incoming/q-1/job.yaml", BASELINE_YAML + b"# v2\n")
    assert w.deliver("incoming/q-1/job.yaml").action == "queued"
    assert len(entries(w)) == 2
    left["left"] = None
    w.tick()
    assert entries(w) == [] and len(w.api.jobs) == 1
    [m] = w.messages()
    assert m["drop"]["generation"] == str(w.storage.info("drop-bucket", "incoming/q-1/job.yaml").generation)


def test_a_queued_drop_that_became_invalid_is_rejected_by_the_tick_and_the_next_one_is_served():
    w, left = rate_limited_world()
    w.drop("incoming/q-1")
    w.clock.advance(1)
    w.drop("incoming/q-2")
    w.storage.delete("drop-bucket", "incoming/q-1/package.tar.gz")  # q-1 is incomplete now: it waits for it
    left["left"] = None
    w.tick()
    assert submitted_folders(w) == ["incoming/q-2"] and entries(w) == []
    status = w.ledger.status(status_key("drop-bucket", "incoming/q-1"))
    assert status.state is DropStatus.WAITING and status.missing  # the incomplete-drop flow has it now


def test_a_quota_failure_429_is_still_a_permanent_submit_failed():
    w = World()
    w.api.errors["create"] = [(429, json.loads(QUOTA_FAILURE))]
    assert w.drop("incoming/q-1").action == "submit_failed"
    assert entries(w) == [] and [m["reason"] for m in w.messages()] == ["QUOTA_EXCEEDED"]


def test_other_transient_faults_are_still_retried_and_raised_for_redelivery():
    w = World()
    for _ in range(200):
        w.api.fail("create", 503, "UNAVAILABLE", "down")
    with pytest.raises(BackendUnavailable):
        w.drop("incoming/q-1")
    assert entries(w) == [] and 25 <= sum(w.clock.slept) <= 40


def test_drop_status_shows_the_quota_queue_and_exits_3(monkeypatch):
    from submitter_cli import drops

    w = World()
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    out = w.drop("incoming/q-1")
    for key, value in {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
                       "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
                       "SUBMITTER_TOPIC": "training-job-events", "SUBMITTER_DROP_PREFIX": "incoming/"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(drops, "ledger", lambda settings: w.ledger)
    res = CliRunner().invoke(cli, ["drop-status", "incoming/q-1"])
    assert res.exit_code == 3
    assert "WAITING  in the queue for the training API's create quota (429 RATE_LIMITED)" in res.output
    assert f"jobId {out.job_id} once submitted" in res.output and "queued since 2024-06-10T12:00:05" in res.output
    assert "position 1" in res.output and "WAITING  for" not in res.output


# -- data batches ------------------------------------------------------------------------------------------------
def test_a_data_batch_answered_429_is_queued_and_submitted_by_a_tick_once():
    w = trigger_world(PER_OBJECT)
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    w.put_data("objects/a.csv")
    out = w.deliver_data("objects/a.csv")
    assert out.action == "queued" and w.publisher.messages == []
    status = w.ledger.status(f"status/triggers/each/{out.job_id}.json")
    assert status.state is DropStatus.WAITING and status.reason == "RATE_LIMITED"
    w.put_data("objects/b.csv")
    assert w.deliver_data("objects/b.csv").action == "queued"  # behind a.csv
    assert w.deliver_data("objects/a.csv", event_id="again").action == "queued"  # a redelivery keeps its place
    w.tick()
    assert [m["trigger"]["objects"][0] for m in w.messages()] == ["objects/a.csv", "objects/b.csv"]
    assert w.publisher.states() == ["SUBMITTED", "SUBMITTED"] and len(w.api.jobs) == 2 and entries(w) == []
    assert w.deliver_data("objects/a.csv", event_id="late").action == "duplicate"


# -- Vertex ------------------------------------------------------------------------------------------------------
def test_vertex_a_429_queues_per_region_and_a_tick_creates_the_custom_job_once():
    api, w = vertex_world()
    api.fail("create", 429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/"
             "custom_job_create_requests", details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                     "reason": "RATE_LIMIT_EXCEEDED"}])
    assert w.drop("incoming/v-1").action == "queued" and w.publisher.messages == []
    assert entries(w)[0].startswith("quota/vertex/us-central1/")
    assert w.drop("incoming/v-2").action == "queued"  # same region: behind
    elsewhere = BASELINE_YAML.replace(b"region: us-central1", b"region: europe-west4")
    assert w.drop("incoming/v-3", spec=elsewhere).action == "submitted"  # another region's quota is not gated
    w.tick()
    assert submitted_folders(w) == ["incoming/v-3", "incoming/v-1", "incoming/v-2"]
    assert api.count("create") == 4 and len(api.jobs) == 3 and entries(w) == []


def test_error_body_helper_is_the_shape_google_sends():  # the doubles answer 429s as Google does
    body = error_body(429, "RESOURCE_EXHAUSTED", "rate")
    assert quota.is_rate_limited(classify(429, json.dumps(body)))


def test_an_overlap_queue_rules_batch_waiting_for_quota_stays_its_rules_active_batch_and_is_submitted_once():
    w = trigger_world(("each", '    prefix: "objects/"\n    overlap: queue'))
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    w.put_data("objects/0.csv")
    first = w.deliver_data("objects/0.csv")
    assert first.action == "queued" and "create quota" in first.detail
    w.put_data("objects/1.csv")
    second = w.deliver_data("objects/1.csv")
    assert second.action == "queued" and "overlap: queue" in second.detail  # behind the rule's active batch
    w.clock.advance(w.settings.claim_lease_s + 1)  # the rule's sweep would resume the active batch now
    w.tick()
    assert list(w.api.jobs) == [first.key]  # served once, from the quota queue; the second waits for its job
    w.api.set_state(first.key, "SUCCEEDED")
    w.tick()
    assert list(w.api.jobs) == [first.key, second.key]
    assert [m["jobId"] for m in w.messages() if m["state"] == "SUBMITTED"] == [first.key, second.key]


# -- races -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", range(3))
def test_a_tick_and_a_redelivery_racing_on_a_queued_drop_make_one_job_and_one_submitted(run):
    w = World(real_sleep=True)
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    w.drop("incoming/q-1")
    _, out = at_once(w.tick, lambda: w.deliver("incoming/q-1/job.yaml", event_id=f"again-{run}"))
    assert out.action in ("queued", "duplicate")
    w.tick()  # whichever way the race went
    assert len(w.api.jobs) == 1 and w.publisher.states().count("SUBMITTED") == 1 and entries(w) == []


def test_vertex_a_crash_after_create_then_a_429_on_the_redelivery_still_gives_one_job_and_one_submitted():
    """The first invocation created the job and died before publishing; its redelivery is rate limited (on the
    label lookup) and queued. The reconciler finishes the dead invocation's intent or the tick adopts the job: either
    way one job, one SUBMITTED, and the queue empties."""
    from test_vertex_backend import DyingPublisher, Killed

    api, w = vertex_world()
    w.publisher = w.app.submitter.publisher = w.reconciler.publisher = DyingPublisher()
    w.put("incoming/v-9/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/v-9/job.yaml", BASELINE_YAML)
    with pytest.raises(Killed):
        w.deliver("incoming/v-9/job.yaml")
    w.clock.advance(w.settings.claim_lease_s + 1)
    api.fail("list", 429, "RESOURCE_EXHAUSTED", "rate")
    assert w.deliver("incoming/v-9/job.yaml", event_id="evt-redelivered").action == "queued"
    assert [k for k in w.store.all_keys() if k.startswith("jobs/")]  # the dead invocation's intent is kept
    w.tick()
    w.tick()
    assert api.count("create") == 1 and len(api.jobs) == 1 and w.publisher.states().count("SUBMITTED") == 1
    assert entries(w) == []



OTHER_PACKAGE = BASELINE_YAML.replace(b"  args:",
                                      b"  packageUris: [gs://drop-bucket/incoming/q-1/other.tar.gz]\n  args:")


def _incomplete_drop_is_rejected_by_the_sweep(w: World) -> None:
    w.clock.advance(w.settings.incomplete_drop_s + 60)
    w.tick()
    status = w.ledger.status(status_key("drop-bucket", "incoming/q-1"))
    assert status.state is DropStatus.REJECTED and status.reason == "INCOMPLETE_DROP"
    assert [m["reason"] for m in w.messages() if m["state"] == "REJECTED"] == ["INCOMPLETE_DROP"]


def test_a_new_job_yaml_that_waits_for_a_package_while_the_last_one_is_queued_is_still_swept():
    w = World()
    limit_creates(w)["left"] = 0
    w.put("incoming/q-1/package.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/q-1/package.tar.gz")
    w.clock.advance(10)
    w.put("incoming/q-1/job.yaml", BASELINE_YAML)
    assert w.deliver("incoming/q-1/job.yaml").action == "queued"
    w.clock.advance(5)
    w.put("incoming/q-1/job.yaml", OTHER_PACKAGE)  # names a package that never comes
    assert w.deliver("incoming/q-1/job.yaml").action == "waiting"
    _incomplete_drop_is_rejected_by_the_sweep(w)  # not WAITING forever past the time its status promised


def test_a_queued_drop_whose_package_was_deleted_waits_and_is_then_swept():
    w, left = rate_limited_world()
    w.put("incoming/q-1/other.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/q-1/other.tar.gz")
    w.clock.advance(10)
    w.put("incoming/q-1/job.yaml", OTHER_PACKAGE)
    assert w.deliver("incoming/q-1/job.yaml").action == "queued"
    w.storage.delete("drop-bucket", "incoming/q-1/other.tar.gz")
    left["left"] = None
    w.clock.advance(5)
    w.tick()  # its turn: it lacks its package now, and leaves the queue
    assert entries(w) == [] and w.ledger.status(status_key("drop-bucket", "incoming/q-1")).state is DropStatus.WAITING
    _incomplete_drop_is_rejected_by_the_sweep(w)


def test_a_queued_drop_whose_job_yaml_was_deleted_says_it_waits_for_job_yaml_and_is_then_swept():
    w, left = rate_limited_world()
    assert w.drop("incoming/q-1").action == "queued"
    w.storage.delete("drop-bucket", "incoming/q-1/job.yaml")
    left["left"] = None
    w.clock.advance(5)
    w.tick()  # its turn: its job.yaml is gone, so it leaves the queue and is an incomplete drop again
    status = w.ledger.status(status_key("drop-bucket", "incoming/q-1"))
    assert entries(w) == [] and w.api.count("create") == 1  # the one refused create: nothing submitted
    assert status.state is DropStatus.WAITING and status.reason != "RATE_LIMITED"
    assert status.missing == ("job.yaml",) and "quota" not in (status.message or "")
    _incomplete_drop_is_rejected_by_the_sweep(w)
