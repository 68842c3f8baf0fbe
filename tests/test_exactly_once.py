"""Issue 4: exactly one job and one verdict per drop under at-least-once, out-of-order, concurrent delivery
and partial failures. Field cases F1–F5, F9, F10, F14, F15, F16 (../shared/cases/FIELD_CASES.md).

The in-memory state store enforces create-only and generation-match writes, as GCS does."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from submitter.app import App
from submitter.backends.google_errors import classify
from submitter.drops import status_key
from submitter.errors import BackendUnavailable, ClaimBusy

from conftest import BASELINE_TARBALL, BASELINE_YAML, NOW, World, at_once
from fakes import FakePublisher


def world_with_clock(**settings):
    """A World on a virtual clock whose waits also take real time (threads in these tests race)."""
    w = World(real_sleep=True, **settings)
    return w, w.clock


# -- F1 ------------------------------------------------------------------------------------------
def test_F1_same_event_three_times_two_at_once_gives_one_job_one_submitted():
    w, clock = world_with_clock()
    w.put("incoming/run-001/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-001/job.yaml", BASELINE_YAML, generation=1718000000000001)
    a, b = at_once(lambda: w.deliver("incoming/run-001/job.yaml", event_id="evt-A"),
                   lambda: w.deliver("incoming/run-001/job.yaml", event_id="evt-B"))
    clock.advance(600)
    c = w.deliver("incoming/run-001/job.yaml", event_id="evt-C")
    assert sorted(o.action for o in (a, b, c)) == ["duplicate", "duplicate", "submitted"]
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]
    assert all(o.job_id == "run_001_1718000000000001" for o in (a, b, c))


# -- F2 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["E1 then E2", "E2 then E1"])
def test_F2_zero_byte_first_generation(order):
    w, _ = world_with_clock()
    w.put("incoming/run-002/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-002/job.yaml", BASELINE_YAML, generation=2002)
    e1 = lambda: w.deliver("incoming/run-002/job.yaml", generation=2001, size=0)  # noqa: E731
    e2 = lambda: w.deliver("incoming/run-002/job.yaml", generation=2002)  # noqa: E731
    outcomes = [e1(), e2()] if order == "E1 then E2" else [e2(), e1()]
    assert sorted(o.action for o in outcomes) == ["ignored", "submitted"]
    assert w.publisher.states() == ["SUBMITTED"] and w.storage.reads <= 2


def test_F2b_rejected_generation_then_corrected_one():
    w, _ = world_with_clock()
    w.put("incoming/run-002/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-002/job.yaml", b"trainingInput: 5\n", generation=2003)
    assert w.deliver("incoming/run-002/job.yaml").action == "rejected"
    w.put("incoming/run-002/job.yaml", BASELINE_YAML, generation=2004)
    ok = w.deliver("incoming/run-002/job.yaml")
    assert ok.action == "submitted" and ok.job_id.endswith("_2004")
    assert w.publisher.states() == ["REJECTED", "SUBMITTED"]
    assert w.deliver("incoming/run-002/job.yaml", generation=2003, size=20).action == "ignored"  # late, stale


# -- F3 ------------------------------------------------------------------------------------------
def test_F3_own_writes_and_byte_identical_rewrite_are_ignored():
    w, clock = world_with_clock()
    first = w.drop("incoming/run-003", spec_generation=3001)
    assert first.action == "submitted"
    own = w.deliver("incoming/run-003/_submitted.json", generation=5, size=10, metadata={"written-by": "submitter"})
    assert own.action == "ignored"
    clock.advance(60)
    w.put("incoming/run-003/job.yaml", BASELINE_YAML, generation=3002)  # same bytes, new generation
    again = w.deliver("incoming/run-003/job.yaml")
    assert again.action == "duplicate" and "byte-identical" in again.detail
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]
    status = w.ledger.status(status_key("drop-bucket", "incoming/run-003"))
    assert status.state == "DUPLICATE" and "change anything in job.yaml" in status.message


def test_F3_identical_rewrite_after_the_window_is_a_new_run_and_a_changed_one_always_is():
    w, clock = world_with_clock(duplicate_window_s=300)
    w.drop("incoming/run-004", spec_generation=4001)
    clock.advance(301)
    w.put("incoming/run-004/job.yaml", BASELINE_YAML, generation=4002)
    assert w.deliver("incoming/run-004/job.yaml").action == "submitted"
    w.put("incoming/run-004/job.yaml", BASELINE_YAML + b"  rerun: '2'\n", generation=4003)  # a label change
    assert w.deliver("incoming/run-004/job.yaml").action == "submitted"
    assert len(w.api.jobs) == 3


def test_state_objects_in_the_drop_bucket_are_ignored_first():
    w, _ = world_with_clock(state_bucket="drop-bucket", state_prefix="submitter/")
    out = w.deliver("submitter/jobs/x.json", generation=1, size=10)
    assert out.action == "ignored" and not w.api.calls


# -- F4 ------------------------------------------------------------------------------------------
def test_F4a_job_yaml_first_waits_silently_then_package_submits():
    w, clock = world_with_clock()
    w.put("incoming/run-005/job.yaml", BASELINE_YAML)
    assert w.deliver("incoming/run-005/job.yaml").action == "waiting"
    clock.advance(90)
    w.put("incoming/run-005/package.tar.gz", BASELINE_TARBALL)
    assert w.deliver("incoming/run-005/package.tar.gz").action == "submitted"
    assert w.publisher.states() == ["SUBMITTED"]
    clock.advance(3600)
    assert w.handler.sweep() == []  # completed drops are not swept


def test_F4b_both_halves_at_the_same_moment_give_one_create():
    w, _ = world_with_clock()
    w.put("incoming/run-006/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-006/job.yaml", BASELINE_YAML)
    outcomes = at_once(lambda: w.deliver("incoming/run-006/job.yaml"),
                       lambda: w.deliver("incoming/run-006/package.tar.gz"))
    assert sorted(o.action for o in outcomes) == ["duplicate", "submitted"]
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]


def test_F4c_only_job_yaml_is_rejected_once_by_the_sweep():
    w, clock = world_with_clock(incomplete_drop_s=1800)
    w.put("incoming/run-007/job.yaml", BASELINE_YAML)
    for _ in range(3):
        assert w.deliver("incoming/run-007/job.yaml").action == "waiting"
    clock.advance(1000)
    assert w.handler.sweep() == []
    clock.advance(1000)
    [swept] = w.handler.sweep()
    assert swept.action == "rejected"
    assert w.handler.sweep() == []
    [msg] = w.messages()
    assert msg["reason"] == "INCOMPLETE_DROP" and "*.tar.gz" in msg["message"]
    assert w.deliver("incoming/run-007/job.yaml").action == "duplicate"  # final for that generation
    assert w.api.count("create") == 0


def test_named_packages_are_waited_for():
    w, _ = world_with_clock()
    spec = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-bucket/incoming/run-008/a.tar.gz, "
                                 b"gs://drop-bucket/incoming/run-008/b.tar.gz]\n  args:")
    w.put("incoming/run-008/a.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-008/job.yaml", spec)
    out = w.deliver("incoming/run-008/job.yaml")
    assert out.action == "waiting" and "b.tar.gz" in out.detail
    from conftest import make_tarball

    w.put("incoming/run-008/b.tar.gz", make_tarball({"setup.py": b"", "helper/__init__.py": b""}, top="helper-0.1"))
    assert w.deliver("incoming/run-008/b.tar.gz").action == "submitted"


# -- F5 ------------------------------------------------------------------------------------------
def test_F5_permanent_errors_return_normally_and_old_events_are_ignored():
    w, _ = world_with_clock()
    out = w.drop("incoming/run-007", spec=b"trainingInput: [this, is, a, list]\n")
    assert out.action == "rejected" and "mapping" in w.messages()[0]["message"]
    w.put("incoming/run-007b/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-007b/job.yaml", BASELINE_YAML)
    old = w.deliver("incoming/run-007b/job.yaml", time=(NOW - dt.timedelta(hours=30)).isoformat())
    assert old.action == "ignored" and "older than" in old.detail
    assert len(w.publisher.messages) == 1


# -- F9 ------------------------------------------------------------------------------------------
class Killed(BaseException):
    """The function instance dying (timeout, OOM): no except-Exception handler runs."""


class DyingPublisher(FakePublisher):
    def __init__(self):
        super().__init__()
        self.die = True

    def publish(self, messages):
        if self.die:
            self.die = False
            raise Killed()
        return super().publish(messages)


def test_F9_killed_after_create_then_redelivered_adopts_and_publishes_once():
    w, clock = world_with_clock()
    w.publisher = w.app.submitter.publisher = w.reconciler.publisher = DyingPublisher()
    w.put("incoming/run-014/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-014/job.yaml", BASELINE_YAML.replace(b'["--epochs", "3"]', b"[]"))
    with pytest.raises(Killed):
        w.deliver("incoming/run-014/job.yaml")
    assert len(w.api.jobs) == 1 and not w.publisher.messages
    # A fresh instance gets the redelivery soon: the dead invocation's claim is still leased.
    fresh = App(w.settings, clock=clock, storage=w.storage, ledger=w.ledger, backend=w.backend,
                publisher=w.publisher).drop_handler
    with pytest.raises(ClaimBusy):
        fresh.handle(__import__("conftest").storage_event("incoming/run-014/job.yaml", w.storage.info(
            "drop-bucket", "incoming/run-014/job.yaml").generation, 10))
    clock.advance(w.settings.claim_lease_s + 1)
    out = w.deliver("incoming/run-014/job.yaml", event_id="evt-redelivered")
    assert out.action == "adopted"
    assert len(w.api.jobs) == 1 and w.publisher.states() == ["SUBMITTED"]
    w.api.set_state(out.job_id, "RUNNING")
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "RUNNING"]


def test_F9c_adopted_job_that_already_failed_publishes_failed_without_resubmitting():
    w, _ = world_with_clock()
    first = w.drop("incoming/run-015")
    w.api.set_state(first.job_id, "FAILED", errorMessage="The replica master 0 exited with a non-zero status of 1.")
    # The verdict was lost (e.g. the state bucket was wiped): the redelivery meets a 409 and a FAILED job.
    w.store.delete(next(k for k in w.store.all_keys() if k.startswith("drops/")))  # the claim went with it
    again = w.deliver("incoming/run-015/job.yaml", event_id="evt-late")
    assert again.action == "adopted" and w.api.count("create") == 2 and len(w.api.jobs) == 1
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "FAILED"]
    assert "non-zero status" in w.messages()[-1]["errorMessage"]


def test_409_then_404_is_reported_not_retried_forever():
    w, _ = world_with_clock()
    w.api.fail("create", 409, "ALREADY_EXISTS", "exists")  # ... and the job it names is not there
    out = w.drop("incoming/run-015c")
    assert out.action == "submit_failed" and "404" in w.messages()[0]["message"]


# -- F10 -----------------------------------------------------------------------------------------
QUOTA_BODY = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota failure for project "
                                   "demo-project.", "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                                                 "violations": [{"subject": "demo-project",
                                                                                 "description": "The request for 2 T4 "
                                                                                 "accelerators exceeds the allowed "
                                                                                 "maximum of 0"}]}]}})


def test_F10_quota_failure_is_permanent_plain_429_is_queued():
    """A QuotaFailure is a permanent QUOTA_EXCEEDED; a plain 429 (the create rate) is neither retried in the
    invocation nor redelivered: the drop is queued, the event acknowledged, and the next tick submits it (one create
    refused, one made, one SUBMITTED)."""
    err = classify(429, QUOTA_BODY)
    assert not err.transient and err.reason == "QUOTA_EXCEEDED" and "allowed maximum of 0" in err.message
    plain = classify(429, json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "rate"}}))
    assert plain.transient and plain.reason == "RATE_LIMITED"
    w = World()
    w.api.fail("create", 429, "RESOURCE_EXHAUSTED", "rate")
    out = w.drop("incoming/run-015b")
    assert out.action == "queued" and w.api.count("create") == 1 and w.publisher.states() == []
    assert w.clock.slept == []  # not retried inside the invocation
    w.tick()
    assert w.api.count("create") == 2 and w.publisher.states() == ["SUBMITTED"]
    w2 = World()
    w2.api.errors["create"] = [(429, json.loads(QUOTA_BODY))]
    assert w2.drop("incoming/run-015a").action == "submit_failed"
    assert [m["reason"] for m in w2.messages()] == ["QUOTA_EXCEEDED"]


def test_transient_errors_past_the_budget_raise_for_redelivery():
    w = World()  # a virtual clock: the 30 s retry budget passes without waiting
    for _ in range(200):
        w.api.fail("create", 503, "UNAVAILABLE", "down")
    w.put("incoming/run-016/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-016/job.yaml", BASELINE_YAML)
    with pytest.raises(BackendUnavailable):
        w.deliver("incoming/run-016/job.yaml")
    tries = w.api.count("create")
    assert 3 <= tries < 200 and 25 <= sum(w.clock.slept) <= 40  # bounded: ~30 s of backoff, then redelivery
    w.api.errors.clear()
    assert w.deliver("incoming/run-016/job.yaml").action == "submitted"  # claim released: no lease wait
    assert w.publisher.states() == ["SUBMITTED"]


# -- F14 -----------------------------------------------------------------------------------------
class SlowFuture:
    def __init__(self, delay, fail=None, log=None):
        self.delay, self.fail, self.log = delay, fail, log

    def result(self, timeout=None):
        import time

        time.sleep(min(self.delay, timeout or self.delay))
        if self.fail:
            raise self.fail
        self.log.append("resolved")
        return "msg-1"


class SlowClient:
    def __init__(self, delay=0.2, fail=None):
        self.delay, self.fail, self.resolved, self.resumed = delay, fail, [], []

    def publish(self, topic, data, ordering_key="", **attrs):
        assert all(isinstance(v, str) for v in attrs.values())
        return SlowFuture(self.delay, self.fail, self.resolved)

    def resume_publish(self, topic, key):
        self.resumed.append(key)


def test_F14_publish_waits_for_every_future_and_surfaces_failures():
    from google.api_core.exceptions import DeadlineExceeded

    from submitter.envelope import OutgoingMessage
    from submitter.errors import PublishFailed as PublishError
    from submitter.publisher import PubSubPublisher as EventPublisher

    client = SlowClient()
    pub = EventPublisher("projects/p/topics/t", timeout_s=5, client=client)
    msgs = [OutgoingMessage(b"{}", {"state": "SUBMITTED"}, f"job{i}") for i in range(5)]
    assert pub.publish(msgs) == ["msg-1"] * 5 and len(client.resolved) == 5
    failing = SlowClient(delay=0, fail=DeadlineExceeded("deadline"))
    with pytest.raises(PublishError, match="DeadlineExceeded"):
        EventPublisher("projects/p/topics/t", client=failing).publish(msgs[:1])
    assert failing.resumed == ["job0"]  # the ordering key is resumed for the redelivery


def test_F14_one_publisher_client_per_instance(monkeypatch):
    from submitter import app as app_module
    from submitter.settings import Settings

    built = []

    class CountingClient:
        def __init__(self, **kw):
            built.append(kw)

    monkeypatch.setattr("google.cloud.pubsub_v1.PublisherClient", CountingClient)
    instance = app_module.App(Settings(project="demo-project", drop_bucket="drop-b", output_bucket="out-b",
                                       state_bucket="state-b", topic="projects/demo-project/topics/t"))
    clients = {id(instance.publisher.client) for _ in range(200)}
    assert len(built) == 1 and len(clients) == 1
    assert built[0]["publisher_options"].enable_message_ordering


# -- F15 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", ["The replica master 0 exited with a non-zero status of 1. Traceback ... " * 45,
                                   "ü" * 600])
def test_F15_failed_message_survives_long_and_multibyte_errors(error):
    w, _ = world_with_clock()
    out = w.drop("incoming/run-022")
    w.api.set_state(out.job_id, "FAILED", errorMessage=error, workerCount=4, createTime=None)
    w.reconciler.tick()
    failed = w.publisher.messages[-1]
    assert failed.attributes["state"] == "FAILED"  # FakePublisher asserts every attribute is str <= 1024 bytes
    assert json.loads(failed.data)["errorMessage"] == error


# -- F16 -----------------------------------------------------------------------------------------
def test_F16_client_endpoint_comes_from_the_env_at_build_time(monkeypatch):
    from submitter.publisher import PubSubPublisher as EventPublisher

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")
    pub = EventPublisher("projects/demo-project/topics/t")  # nothing built yet: the module imported long ago
    assert "127.0.0.1:1" in str(pub.client._target) or "127.0.0.1:1" in repr(pub.client.api._transport._host)


def test_F16_emulator_not_running_fails_within_the_timeout(monkeypatch):
    import time

    from submitter.envelope import OutgoingMessage
    from submitter.errors import PublishFailed as PublishError
    from submitter.publisher import PubSubPublisher as EventPublisher
    from submitter_local.stack import free_port

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    pub = EventPublisher("projects/demo-project/topics/t", timeout_s=3)
    start = time.monotonic()
    with pytest.raises(PublishError, match="did not complete in time|failed"):
        pub.publish([OutgoingMessage(b"{}", {"state": "SUBMITTED"}, "j1")])
    assert time.monotonic() - start < 30


def test_sweep_names_what_is_missing_now_and_empty_job_yaml():
    w, clock = world_with_clock(incomplete_drop_s=10)
    w.put("incoming/s-named/package.tar.gz", BASELINE_TARBALL)
    assert w.deliver("incoming/s-named/package.tar.gz").action == "waiting"  # no job.yaml yet
    spec = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-bucket/incoming/s-named/missing.tar.gz]\n"
                                            b"  args:")
    w.put("incoming/s-named/job.yaml", spec)
    assert w.deliver("incoming/s-named/job.yaml").action == "waiting"
    w.put("incoming/s-zero/job.yaml", b"")
    w.put("incoming/s-zero/package.tar.gz", BASELINE_TARBALL)
    w.deliver("incoming/s-zero/package.tar.gz")
    clock.advance(11)
    messages = {o.detail.split("/")[1]: o.detail for o in w.handler.sweep()}
    assert "missing missing.tar.gz" in messages["s-named"] and "job.yaml" not in messages["s-named"].split(
        "missing")[1]
    assert "empty" in messages["s-zero"]


def test_a_package_arriving_after_submission_is_noted_on_the_status():
    w, _ = world_with_clock()
    w.put("incoming/multi/job.yaml", BASELINE_YAML)
    w.put("incoming/multi/trainer.tar.gz", BASELINE_TARBALL)
    assert w.deliver("incoming/multi/trainer.tar.gz").action == "submitted"
    w.put("incoming/multi/helperlib-0.1.tar.gz", BASELINE_TARBALL)
    assert w.deliver("incoming/multi/helperlib-0.1.tar.gz").action == "duplicate"
    note = w.ledger.status(status_key("drop-bucket", "incoming/multi")).notes[-1]
    assert "helperlib-0.1.tar.gz arrived after job" in note and "packageUris" in note


def test_yaml_aliases_and_deep_nesting_are_rejected_not_expanded():
    w, _ = world_with_clock()
    bomb = b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    assert w.drop("incoming/bomb", spec=bomb + BASELINE_YAML).action == "rejected"
    assert w.drop("incoming/deep", spec=b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n").action == "rejected"
    reasons = [m["reason"] for m in w.messages()]
    assert reasons == ["YAML_INVALID", "YAML_INVALID"] and "aliases" in w.messages()[0]["message"]


# -- issue 10: kills never strand an input -----------------------------------------------------------------
def test_killed_right_after_the_claim_the_next_delivery_decides_once_the_lease_expired():
    w = World()
    w.put("incoming/run-030/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-030/job.yaml", BASELINE_YAML)
    real_plan = w.app.submitter.planner.plan

    def killed(*args, **kwargs):
        raise Killed()

    w.app.submitter.planner.plan = killed
    with pytest.raises(Killed):
        w.deliver("incoming/run-030/job.yaml")
    w.app.submitter.planner.plan = real_plan
    with pytest.raises(ClaimBusy):  # a redelivery within the lease: the event comes back later
        w.deliver("incoming/run-030/job.yaml", event_id="evt-2")
    w.clock.advance(w.settings.claim_lease_s + 1)
    assert w.deliver("incoming/run-030/job.yaml", event_id="evt-3").action == "submitted"
    assert w.publisher.states() == ["SUBMITTED"] and w.api.count("create") == 1


def test_killed_right_after_create_with_no_redelivery_the_reconciler_announces_and_follows_the_job():
    w = World()
    w.publisher = w.app.submitter.publisher = w.reconciler.publisher = DyingPublisher()
    w.put("incoming/run-031/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-031/job.yaml", BASELINE_YAML)
    with pytest.raises(Killed):
        w.deliver("incoming/run-031/job.yaml")
    [job_id] = w.api.jobs
    assert w.reconciler.tick().published == []  # within the lease: the invocation may still be working
    w.clock.advance(w.settings.claim_lease_s + 1)
    assert w.reconciler.tick().published == [(job_id, "SUBMITTED")]
    w.api.set_state(job_id, "RUNNING")
    w.reconciler.tick()
    w.api.set_state(job_id, "SUCCEEDED")
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "RUNNING", "SUCCEEDED"]
    # the drop's verdict and status were recorded too: a late redelivery is a duplicate, nothing more is sent
    assert w.deliver("incoming/run-031/job.yaml", event_id="evt-late").action == "duplicate"
    status = w.ledger.status(status_key("drop-bucket", "incoming/run-031"))
    assert status.state == "SUBMITTED" and status.key == job_id and w.api.count("create") == 1


def test_a_noted_job_that_was_never_created_is_forgotten_after_a_day_and_a_refused_one_at_once():
    w = World()
    w.api.fail("create", 403, "PERMISSION_DENIED", "no")
    assert w.drop("incoming/run-032").action == "submit_failed"
    assert w.ledger.followed() == []  # withdrawn: nothing of ours to follow
    w.put("incoming/run-033/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-033/job.yaml", BASELINE_YAML)
    real_submit = w.backend.submit
    w.backend.submit = lambda request: (_ for _ in ()).throw(Killed())
    with pytest.raises(Killed):
        w.deliver("incoming/run-033/job.yaml")
    w.backend.submit = real_submit
    w.clock.advance(w.settings.claim_lease_s + 1)
    w.reconciler.tick()
    assert [r.announced for r in w.ledger.followed()] == [False]  # not created: kept while a redelivery may come
    w.clock.advance(24 * 3600)
    w.reconciler.tick()
    assert w.ledger.followed() == [] and w.publisher.states() == ["SUBMIT_FAILED"]


def test_a_sweep_reads_only_the_incomplete_drops_that_are_due():
    w = World(incomplete_drop_s=600)
    for i in range(300):
        w.put(f"incoming/wait-{i}/job.yaml", BASELINE_YAML)
        assert w.deliver(f"incoming/wait-{i}/job.yaml").action == "waiting"
        if i == 2:
            w.clock.advance(700)  # the first three are due by the time of the sweep
    gets_before = w.store.requests.get("get", 0)
    swept = w.handler.sweep()
    assert sorted(o.key.split("_")[1] for o in swept) == ["0", "1", "2"]
    assert all(o.action == "rejected" for o in swept)
    reads = w.store.requests.get("get", 0) - gets_before
    assert reads < 30  # a handful per due drop, none for the 297 that are not due
    assert w.handler.sweep() == []


def test_a_claim_is_renewed_once_a_quarter_of_its_lease_passed_and_a_takeover_is_still_detected():
    """Renewing a fresh claim is skipped (nobody can take over an unexpired lease); an older one is renewed, and a
    claim another invocation took over after it expired raises LeaseLost at the next renewal."""
    from submitter.clock import FakeClock
    from submitter.leases import LeaseLost, Leases
    from submitter.state_store import InMemoryStateStore
    from submitter.submission import RENEW_AFTER_FRACTION, _Claim

    clock = FakeClock(NOW)
    leases = Leases(InMemoryStateStore(), clock)
    lease_s = 120.0
    held_since = clock.monotonic()
    claim = _Claim(leases, leases.acquire("claims/x", "me", lease_s), lease_s, held_since)
    first = claim.lease
    claim.renew()
    assert claim.lease == first  # fresh: no write
    clock.advance(lease_s * RENEW_AFTER_FRACTION + 1)
    claim.renew()
    assert claim.lease.token != first.token  # renewed: a new version of the lease document
    clock.advance(lease_s + 1)  # this holder stalls past its lease: another invocation takes the claim over
    assert leases.acquire("claims/x", "other", lease_s) is not None
    with pytest.raises(LeaseLost):
        claim.renew()


def test_a_finished_job_adopted_again_under_its_explicit_key_is_never_followed_again():
    # Two drops name the same jobId: the second meets the finished job (409, same TrainingInput: adopted). The
    # intent is created without reading done/ first; the adoption is what makes the submitter look there.
    w = World()
    spec = BASELINE_YAML + b"jobId: shared_job\n"
    first = w.drop("incoming/run-040", spec=spec)
    w.api.set_state(first.job_id, "SUCCEEDED")
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "SUCCEEDED"]
    again = w.drop("incoming/run-041", spec=spec)
    assert again.action == "adopted" and again.job_id == "shared_job" and w.api.count("create") == 2
    assert not any(k.startswith("jobs/") for k in w.store.all_keys())
    w.clock.advance(w.settings.claim_lease_s + 601)
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "SUCCEEDED"]


# -- one document per input: the claim, then the verdict at the same key ---------------------------------------
def test_the_claim_lives_at_the_verdict_key_and_only_its_current_holder_records_the_verdict():
    from submitter.clock import FakeClock
    from submitter.leases import Leases
    from submitter.ledger import Ledger, claim_key, is_verdict
    from submitter.model import Origin, Verdict
    from submitter.records import VerdictRecord
    from submitter.state_store import InMemoryStateStore

    clock = FakeClock(NOW)
    store = InMemoryStateStore()
    ledger, leases = Ledger(store), Leases(store, clock)
    origin = Origin(record_key="drops/b/incoming/x/7", fields={}, status_key=None, name="x", bucket="b")
    first, found = leases.take(claim_key(origin), "a", 60, final=is_verdict)
    assert first is not None and found is None and store.requests == {"create": 1}  # one request, nothing read
    assert ledger.verdict(origin) is None  # a claim is not a verdict
    assert leases.take(claim_key(origin), "b", 60, final=is_verdict)[0] is None  # live: not taken
    clock.advance(61)
    second, _ = leases.take(claim_key(origin), "b", 60, final=is_verdict)  # expired: taken over
    assert second is not None
    assert not ledger.record_verdict(origin, VerdictRecord(Verdict.REJECTED, "k"), first)  # lost: cannot record
    assert ledger.record_verdict(origin, VerdictRecord(Verdict.SUBMITTED, "k"), second)
    clock.advance(10 * 86400)
    late, doc = leases.take(claim_key(origin), "c", 60, final=is_verdict)  # a verdict is never taken over
    assert late is None and doc["state"] == "SUBMITTED" and ledger.verdict(origin).state is Verdict.SUBMITTED
    assert not ledger.record_verdict(origin, VerdictRecord(Verdict.SUBMIT_FAILED, "k"))  # nor overwritten


def test_a_claim_taken_over_mid_decision_leaves_one_job_one_verdict_and_the_first_invocation_records_nothing():
    from submitter.leases import LeaseLost

    w = World()
    w.put("incoming/run-050/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-050/job.yaml", BASELINE_YAML)
    real_plan = w.app.submitter.planner.plan
    taker = []

    def stalled(*args, **kwargs):  # the first invocation stalls past its lease; a redelivery takes the claim over
        w.app.submitter.planner.plan = real_plan
        w.clock.advance(w.settings.claim_lease_s + 1)
        taker.append(w.deliver("incoming/run-050/job.yaml", event_id="evt-2"))
        return real_plan(*args, **kwargs)

    w.app.submitter.planner.plan = stalled
    with pytest.raises(LeaseLost):
        w.deliver("incoming/run-050/job.yaml")
    assert taker[0].action == "submitted"
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]
    [doc] = [k for k in w.store.all_keys() if k.startswith("drops/")]
    assert w.store.get(doc)[0]["jobId"] == taker[0].job_id
    assert w.deliver("incoming/run-050/job.yaml", event_id="evt-3").action == "duplicate"


def test_a_bug_while_holding_the_claim_is_reported_once_and_recorded_over_the_claim():
    w = World()
    w.put("incoming/run-051/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-051/job.yaml", BASELINE_YAML)
    real_plan = w.app.submitter.planner.plan

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    w.app.submitter.planner.plan = broken
    with pytest.raises(RuntimeError):
        w.deliver("incoming/run-051/job.yaml")
    w.app.submitter.planner.plan = real_plan
    info = w.storage.info("drop-bucket", "incoming/run-051/job.yaml")
    event = __import__("conftest").storage_event("incoming/run-051/job.yaml", info.generation, info.size)
    assert w.handler.report_bug(event, RuntimeError("a bug")).action == "submit_failed"
    assert w.deliver("incoming/run-051/job.yaml", event_id="evt-2").action == "duplicate"
    assert w.publisher.states() == ["SUBMIT_FAILED"] and w.api.count("create") == 0


# -- the folder's last submitted job.yaml lives in its status document ------------------------------------------
def test_the_last_submitted_job_yaml_outlives_a_rejection_a_wait_and_an_identical_re_upload():
    w, clock = world_with_clock()
    first = w.drop("incoming/run-060", spec_generation=6001)
    assert first.action == "submitted"
    clock.advance(10)
    w.put("incoming/run-060/job.yaml", b"trainingInput: [not, a, mapping]\n", generation=6002)
    assert w.deliver("incoming/run-060/job.yaml").action == "rejected"
    clock.advance(10)
    named = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-bucket/incoming/run-060/x.tar.gz]\n  args:")
    w.put("incoming/run-060/job.yaml", named, generation=6003)
    assert w.deliver("incoming/run-060/job.yaml").action == "waiting"
    for generation in (6004, 6005):  # identical to the submitted one, twice: recognised both times
        clock.advance(10)
        w.put("incoming/run-060/job.yaml", BASELINE_YAML, generation=generation)
        again = w.deliver("incoming/run-060/job.yaml")
        assert again.action == "duplicate" and again.job_id == first.job_id and "byte-identical" in again.detail
    assert w.api.count("create") == 1 and not any(k.startswith("specs/") for k in w.store.all_keys())


def test_a_bug_report_keeps_the_folder_s_last_submitted_job_yaml_so_its_identical_re_upload_is_not_resubmitted():
    w, clock = world_with_clock()
    first = w.drop("incoming/run-063", spec_generation=6301)
    assert first.action == "submitted"
    clock.advance(10)
    w.put("incoming/run-063/job.yaml", BASELINE_YAML.replace(b"epochs", b"epochz"), generation=6302)
    info = w.storage.info("drop-bucket", "incoming/run-063/job.yaml")
    event = __import__("conftest").storage_event("incoming/run-063/job.yaml", info.generation, info.size)
    assert w.handler.report_bug(event, RuntimeError("a bug")).action == "submit_failed"
    status = w.ledger.status("status/drop-bucket/incoming/run-063.json")
    assert status.reason == "INTERNAL_ERROR" and status.submitted_spec().key == first.job_id
    clock.advance(10)
    w.put("incoming/run-063/job.yaml", BASELINE_YAML, generation=6303)  # the submitted one again
    again = w.deliver("incoming/run-063/job.yaml")
    assert again.action == "duplicate" and again.job_id == first.job_id and w.api.count("create") == 1


def test_a_bug_on_a_drop_whose_status_document_is_unreadable_is_still_reported_once():
    w = World()
    w.put("incoming/run-064/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-064/job.yaml", BASELINE_YAML)
    w.store.put("status/drop-bucket/incoming/run-064.json", {"state": "NOT_A_STATE", "time": "yesterday"})
    info = w.storage.info("drop-bucket", "incoming/run-064/job.yaml")
    event = __import__("conftest").storage_event("incoming/run-064/job.yaml", info.generation, info.size)
    assert w.handler.report_bug(event, RuntimeError("a bug")).action == "submit_failed"
    assert w.publisher.states() == ["SUBMIT_FAILED"] and w.api.count("create") == 0
    assert w.ledger.status("status/drop-bucket/incoming/run-064.json").reason == "INTERNAL_ERROR"


def test_a_job_announced_by_the_reconciler_is_the_last_submitted_job_yaml_of_its_folder():
    w = World()
    w.publisher = w.app.submitter.publisher = w.reconciler.publisher = DyingPublisher()
    w.put("incoming/run-061/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-061/job.yaml", BASELINE_YAML, generation=6101)
    with pytest.raises(Killed):
        w.deliver("incoming/run-061/job.yaml")
    w.clock.advance(w.settings.claim_lease_s + 1)
    [(job_id, _)] = w.reconciler.tick().published
    w.put("incoming/run-061/job.yaml", BASELINE_YAML, generation=6102)
    again = w.deliver("incoming/run-061/job.yaml")
    assert again.action == "duplicate" and again.job_id == job_id and w.api.count("create") == 1


def test_an_identical_re_upload_delivered_twice_at_once_is_recorded_once():
    w, clock = world_with_clock()
    first = w.drop("incoming/run-062", spec_generation=6201)
    clock.advance(10)
    w.put("incoming/run-062/job.yaml", BASELINE_YAML, generation=6202)
    a, b = at_once(lambda: w.deliver("incoming/run-062/job.yaml", event_id="evt-A"),
                   lambda: w.deliver("incoming/run-062/job.yaml", event_id="evt-B"))
    assert a.action == b.action == "duplicate" and a.job_id == b.job_id == first.job_id
    verdict = w.store.get("drops/drop-bucket/incoming/run-062/6202.json")[0]
    assert verdict["state"] == "SUBMITTED" and verdict["jobId"] == first.job_id
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]


def test_a_late_package_note_never_replaces_the_status_of_the_next_job_yaml_submitted_meanwhile():
    """The note is read-modify-write: the folder's next job.yaml, submitted between its read and its write, keeps its
    status (and with it the folder's last submitted job.yaml), so its byte-identical re-upload is still a duplicate."""
    w = World()
    named = BASELINE_YAML.replace(b"  args:", b"  packageUris: [gs://drop-bucket/incoming/n-1/package.tar.gz]\n  args:")
    assert w.drop("incoming/n-1").action == "submitted"
    w.clock.advance(10)
    w.put("incoming/n-1/late.tar.gz", BASELINE_TARBALL)
    key, get, raced = status_key("drop-bucket", "incoming/n-1"), w.store.get, []

    def get_then_race(k):
        found = get(k)
        if k == key and not raced:  # the note read the status; the next job.yaml is submitted before the note's write
            raced.append(True)
            w.clock.advance(1)
            w.put("incoming/n-1/job.yaml", named)
            assert w.deliver("incoming/n-1/job.yaml").action == "submitted"
        return found

    w.store.get = get_then_race
    w.deliver("incoming/n-1/late.tar.gz")
    w.store.get = get
    live = w.storage.info("drop-bucket", "incoming/n-1/job.yaml").generation
    assert raced and w.ledger.status(key).origin["drop"]["generation"] == str(live)
    w.clock.advance(10)
    w.put("incoming/n-1/job.yaml", named)  # byte-identical to the last submitted one
    assert w.deliver("incoming/n-1/job.yaml").action == "duplicate" and len(w.api.jobs) == 2


def test_an_older_job_yaml_finishing_last_never_replaces_the_newer_ones_status():
    """Two job.yaml generations of one folder decided at once: whichever writes its status last, the folder's status
    speaks for the newer one and keeps its record of the last submitted job.yaml, so the newer job.yaml uploaded
    again byte for byte is recognised (not a second job)."""
    from submitter.drops import DropRef, status_extra, status_key
    from submitter.model import DropStatus
    from submitter.objects import ObjectInfo
    from submitter.records import StatusDocument, SubmittedSpec

    w = World()
    key = status_key("drop-bucket", "incoming/race")

    def decide(generation: int, crc: str) -> None:
        spec = ObjectInfo(bucket="drop-bucket", name="incoming/race/job.yaml", generation=generation, size=10,
                          crc32c=crc, md5_hash="", updated="")
        last = SubmittedSpec(generation, crc, 10, f"job_{generation}", NOW)
        origin = DropRef("drop-bucket", "incoming/race", "incoming/race/job.yaml", generation).origin(
            status_extra(spec, last))
        w.ledger.write_status(origin, StatusDocument(state=DropStatus.SUBMITTED, key=f"job_{generation}", time=NOW,
                                                     origin=origin.fields))

    decide(2, "newer")
    decide(1, "older")  # the older generation's invocation finishes last
    status = w.ledger.status(key)
    assert status is not None and status.key == "job_2"
    assert status.submitted_spec() is not None and status.submitted_spec().crc32c == "newer"
    decide(3, "newest")  # a newer generation still replaces it
    assert w.ledger.status(key).key == "job_3"
