"""Issue 15: data-triggered training on the in-memory World (conftest.py): every batching mode through the App's
routing and the one `Submitter.submit`, replays, concurrent deliveries, late objects, overlap skip and queue, a rule
whose template is invalid, and substitution safety end to end. Messages are checked against the contract."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading

import pytest
from test_contract import validate_message

from submitter.app import App
from submitter.settings import Settings, SettingsError
from submitter.triggers import rule_state_key, rule_status_key

from conftest import BASELINE_TARBALL, World

PACKAGE = "gs://artifacts/trainer-0.1.tar.gz"
JOB = """
    packages: [gs://artifacts/trainer-0.1.tar.gz]
    job:
      trainingInput:
        scaleTier: BASIC
        pythonModule: trainer.task
        args: ["--data", "gs://${bucket}/${folder}/", "--object", "${object}", "--day", "${date}"]
      labels: {team: data}
"""


def rules_text(*rules: tuple[str, str]) -> str:
    """A rules file: (name, the rule's own lines at 4-space indent) each, with the shared package and template."""
    return "rules:\n" + "".join(f"  - name: {name}\n    bucket: data-bucket\n{body.rstrip()}\n{JOB.strip(chr(10))}\n"
                                for name, body in rules)


MARKER = ("folders", '    match: "incoming/*/*.csv"\n    batch: {mode: marker}')
PER_OBJECT = ("each", '    prefix: "objects/"')
QUIET = ("quiet", '    match: "quiet/*/*.csv"\n    batch: {mode: quiet, quiet_seconds: 30}')


def world(*rules, **kw) -> World:
    w = World(rules=rules_text(*rules), **kw)
    w.storage.put("artifacts", "trainer-0.1.tar.gz", BASELINE_TARBALL)
    return w


def jobs(w):
    return dict(w.api.jobs)


def assert_contract(w):
    for m in w.publisher.messages:
        validate_message(m.attributes, json.loads(m.data))


# -- marker ------------------------------------------------------------------------------------------------------
def test_three_csvs_and_a_success_marker_start_exactly_one_job_naming_the_folder_and_replays_start_nothing():
    w = world(MARKER)
    names = [f"incoming/day-1/part-{i}.csv" for i in range(3)] + ["incoming/day-1/_SUCCESS"]
    for name in names:
        w.put_data(name, b"" if name.endswith("_SUCCESS") else b"x,y\n1,0\n")  # Hadoop's marker is empty
    outcomes = [w.deliver_data(n).action for n in names]
    assert outcomes == ["ignored", "ignored", "ignored", "submitted"]
    [(job_id, job)] = jobs(w).items()
    assert job["trainingInput"]["args"][:2] == ["--data", "gs://data-bucket/incoming/day-1/"]
    assert job["labels"]["submitter-trigger"] == "folders" and job["trainingInput"]["packageUris"][0].endswith(
        "/trainer-0.1.tar.gz")
    # every event again, in another order, three times: nothing more
    for round_ in range(3):
        for name in reversed(names):
            assert w.deliver_data(name, event_id=f"replay-{round_}").action == "duplicate"
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]
    [msg] = w.messages()
    assert msg["trigger"] == {"rule": "folders", "mode": "marker", "batchId": job_id, "folder": "incoming/day-1",
                              "count": 3, "objects": names[:3]}
    assert msg["drop"] == {"bucket": "data-bucket", "folder": "incoming/day-1", "object": "incoming/day-1/_SUCCESS",
                           "generation": str(w.storage.info("data-bucket", names[3]).generation)}
    assert_contract(w)


def test_a_late_object_is_reported_on_the_batch_and_a_new_marker_generation_is_the_next_batch():
    w = world(MARKER)
    w.put_data("incoming/d/a.csv")
    w.put_data("incoming/d/_SUCCESS", b"")
    first = w.deliver_data("incoming/d/_SUCCESS")
    w.put_data("incoming/d/b.csv")
    late = w.deliver_data("incoming/d/b.csv")
    assert late.action == "late" and late.key == first.key
    status = w.ledger.status(f"status/triggers/folders/{first.key}.json")
    assert status.state == "SUBMITTED" and any("b.csv" in n and "not part of it" in n for n in status.notes)
    assert w.deliver_data("incoming/d/b.csv", event_id="again").action == "late"  # noted once
    assert len(w.ledger.status(f"status/triggers/folders/{first.key}.json").notes) == len(status.notes)
    w.put_data("incoming/d/_SUCCESS", b"")  # the writer marks the folder complete again
    second = w.deliver_data("incoming/d/_SUCCESS")
    assert second.action == "submitted" and second.key != first.key
    assert w.messages()[-1]["trigger"]["count"] == 2 and len(w.api.jobs) == 2


def test_a_marker_on_a_folder_without_data_is_rejected_once_and_a_stale_marker_starts_nothing():
    w = world(MARKER)
    w.put_data("incoming/empty/_SUCCESS", b"")
    assert w.deliver_data("incoming/empty/_SUCCESS").action == "rejected"
    assert w.deliver_data("incoming/empty/_SUCCESS", event_id="again").action == "duplicate"
    assert [m["reason"] for m in w.messages()] == ["EMPTY_BATCH"]
    w.put_data("incoming/x/a.csv")
    old = w.put_data("incoming/x/_SUCCESS", b"").generation
    w.put_data("incoming/x/_SUCCESS", b"")  # overwritten before its first event was handled
    assert w.deliver_data("incoming/x/_SUCCESS", generation=old).action == "ignored"
    assert w.deliver_data("incoming/x/_SUCCESS").action == "submitted"
    assert_contract(w)


def test_the_same_marker_delivered_concurrently_with_its_data_events_gives_one_job():
    w = world(MARKER, real_sleep=True)
    names = [f"incoming/c/{i}.csv" for i in range(5)]
    for name in names:
        w.put_data(name)
    w.put_data("incoming/c/_SUCCESS", b"")
    barrier = threading.Barrier(10)

    def deliver(name, i):
        barrier.wait()
        return w.deliver_data(name, event_id=f"e{i}")

    calls = [("incoming/c/_SUCCESS", i) for i in range(5)] + [(n, 10 + i) for i, n in enumerate(names)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = [f.result() for f in [pool.submit(deliver, n, i) for n, i in calls]]
    assert [o.action for o in outcomes[:5]].count("submitted") == 1
    assert w.api.count("create") == 1 and w.publisher.states() == ["SUBMITTED"]
    assert w.messages()[0]["trigger"]["count"] == 5


# -- per object --------------------------------------------------------------------------------------------------
def test_each_object_is_one_job_redeliveries_and_stale_generations_start_nothing():
    w = world(PER_OBJECT)
    for name in ("objects/a.csv", "objects/sub/b.csv"):
        w.put_data(name)
        assert w.deliver_data(name).action == "submitted"
        assert w.deliver_data(name, event_id="again").action == "duplicate"
    old = w.storage.info("data-bucket", "objects/a.csv").generation
    w.put_data("objects/a.csv", b"new bytes")  # a new generation is new data: a new batch
    assert w.deliver_data("objects/a.csv").action == "submitted"
    assert w.deliver_data("objects/a.csv", generation=old, event_id="late").action == "duplicate"
    w.put_data("objects/c.csv")
    gen = w.storage.info("data-bucket", "objects/c.csv").generation
    w.storage.delete("data-bucket", "objects/c.csv")
    assert w.deliver_data("objects/c.csv", generation=gen).action == "ignored"  # deleted before its event
    for ignored in ("objects/_SUCCESS", "objects/.x.crc", "elsewhere/a.csv"):
        w.put_data(ignored)
        assert w.deliver_data(ignored).action == "ignored"
    w.put_data("objects/empty.csv", b"")
    assert w.deliver_data("objects/empty.csv").action == "ignored"
    assert len(w.api.jobs) == 3 and w.publisher.states() == ["SUBMITTED"] * 3
    assert {m["trigger"]["objects"][0] for m in w.messages()} == {"objects/a.csv", "objects/sub/b.csv"}
    assert_contract(w)


# -- quiet period -------------------------------------------------------------------------------------------------
def test_objects_arriving_over_a_few_seconds_are_one_batch_and_a_later_object_starts_the_next():
    w = world(QUIET)
    times = []
    for i in range(3):
        w.put_data(f"quiet/f/{i}.csv")
        times.append(w.clock.now())
        out = w.deliver_data(f"quiet/f/{i}.csv", time=w.clock.now().isoformat())
        assert out.action == "waiting" and f"({i + 1} object" in out.detail
        w.clock.advance(2)
    assert w.deliver_data("quiet/f/1.csv", time=times[1].isoformat(), event_id="dup").action == "duplicate"
    w.clock.advance(10)
    w.tick()
    assert not w.api.jobs  # 16 s quiet: the window stays open
    w.clock.advance(20)
    w.tick()
    [(first, job)] = jobs(w).items()
    [msg] = w.messages()
    assert msg["trigger"]["count"] == 3 and msg["trigger"]["objects"] == [f"quiet/f/{i}.csv" for i in range(3)]
    assert msg["drop"]["object"] == "quiet/f/2.csv" and job["trainingInput"]["args"][1] == "gs://data-bucket/quiet/f/"
    # replays of the closed window's events start nothing; an object created before the close, delivered only now,
    # is late; one created after the close opens the next window
    assert w.deliver_data("quiet/f/0.csv", time=times[0].isoformat(), event_id="r").action == "duplicate"
    w.put_data("quiet/f/delayed.csv")
    assert w.deliver_data("quiet/f/delayed.csv", time=times[2].isoformat()).action == "late"
    w.clock.advance(5)
    w.put_data("quiet/f/next.csv")
    assert w.deliver_data("quiet/f/next.csv", time=w.clock.now().isoformat()).action == "waiting"
    w.tick()
    assert len(w.api.jobs) == 1
    w.clock.advance(31)
    w.tick()
    assert len(w.api.jobs) == 2 and w.messages()[-1]["trigger"]["objects"] == ["quiet/f/next.csv"]
    w.tick()
    assert len(w.api.jobs) == 2 and w.publisher.states().count("SUBMITTED") == 2
    assert_contract(w)


def test_concurrent_objects_all_join_one_window():
    w = world(QUIET, real_sleep=True)
    names = [f"quiet/c/{i:02d}.csv" for i in range(20)]
    for name in names:
        w.put_data(name)
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(lambda n: w.deliver_data(n, time=w.clock.now().isoformat()), names))
    assert {o.action for o in outcomes} == {"waiting"}
    w.clock.advance(31)
    w.tick()
    [msg] = w.messages()
    assert msg["trigger"]["count"] == 20 and sorted(msg["trigger"]["objects"]) == names


def test_a_window_left_closing_by_a_dead_tick_is_finished_by_the_next_one():
    w = world(QUIET)
    w.put_data("quiet/k/a.csv")
    w.deliver_data("quiet/k/a.csv", time=w.clock.now().isoformat())
    w.clock.advance(31)
    handler = w.app.trigger_handler
    real = handler.start
    handler.start = lambda rule, batch: (_ for _ in ()).throw(KeyboardInterrupt())  # the tick dies mid-way
    with pytest.raises(KeyboardInterrupt):
        w.tick()
    handler.start = real
    assert not w.api.jobs
    w.tick()
    w.tick()
    assert len(w.api.jobs) == 1 and w.publisher.states().count("SUBMITTED") == 1


# -- overlap ------------------------------------------------------------------------------------------------------
def test_skip_refuses_a_batch_while_the_previous_job_runs_then_starts_the_next_one():
    w = world(("each", '    prefix: "objects/"\n    overlap: skip'))
    w.put_data("objects/1.csv")
    first = w.deliver_data("objects/1.csv")
    assert first.action == "submitted"
    w.put_data("objects/2.csv")
    skipped = w.deliver_data("objects/2.csv")
    assert skipped.action == "rejected"
    assert w.deliver_data("objects/2.csv", event_id="again").action == "duplicate"  # final: never started later
    msg = w.messages()[-1]
    assert msg["reason"] == "OVERLAP_SKIPPED" and first.key in msg["message"]
    w.api.set_state(first.key, "SUCCEEDED")
    w.tick()
    w.put_data("objects/3.csv")
    assert w.deliver_data("objects/3.csv").action == "submitted"
    assert w.publisher.states() == ["SUBMITTED", "REJECTED", "SUCCEEDED", "SUBMITTED"]
    assert_contract(w)


def test_queue_keeps_batches_in_order_and_starts_each_when_the_previous_job_ends():
    w = world(("each", '    prefix: "objects/"\n    overlap: queue'))
    keys = []
    for i in range(3):
        w.put_data(f"objects/{i}.csv")
        out = w.deliver_data(f"objects/{i}.csv")
        assert out.action == ("submitted" if i == 0 else "queued")
        keys.append(out.key)
    assert w.deliver_data("objects/1.csv", event_id="again").action == "queued"  # not queued twice
    status = w.ledger.status(f"status/triggers/each/{keys[1]}.json")
    assert status.state == "WAITING" and keys[0] in status.message
    w.tick()
    assert list(w.api.jobs) == [keys[0]]  # the first job still runs
    w.api.set_state(keys[0], "FAILED", errorMessage="boom")  # final, success or not
    w.tick()
    assert list(w.api.jobs) == keys[:2]
    w.api.set_state(keys[1], "SUCCEEDED")
    w.tick()
    assert list(w.api.jobs) == keys and w.store.get(rule_state_key("each"))[0]["queue"] == []
    assert [m["jobId"] for m in w.messages() if m["state"] == "SUBMITTED"] == keys
    assert_contract(w)


def test_a_queued_batch_that_is_invalid_once_instantiated_is_rejected_and_the_next_one_starts():
    w = world(("each", '    prefix: "objects/"\n    overlap: queue'))
    w.put_data("objects/0.csv")
    first = w.deliver_data("objects/0.csv")
    w.put_data("objects/bad.csv")
    w.deliver_data("objects/bad.csv")
    w.put_data("objects/2.csv")
    w.deliver_data("objects/2.csv")
    w.storage.delete("artifacts", "trainer-0.1.tar.gz")  # the package is gone when the queue drains
    w.api.set_state(first.key, "SUCCEEDED")
    w.tick()
    assert [m["state"] for m in w.messages()] == ["SUBMITTED", "SUCCEEDED", "REJECTED", "REJECTED"]
    assert w.messages()[-1]["reason"] == "PACKAGE_INVALID"


def test_an_active_batch_whose_invocation_died_before_its_verdict_is_resumed_by_the_sweep():
    w = world(("each", '    prefix: "objects/"\n    overlap: queue'))
    w.put_data("objects/0.csv")
    handler = w.app.trigger_handler
    real = handler._submit
    handler._submit = lambda rule, batch: (_ for _ in ()).throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        w.deliver_data("objects/0.csv")
    handler._submit = real
    w.put_data("objects/1.csv")
    assert w.deliver_data("objects/1.csv").action == "queued"  # the dead one counts as running
    w.tick()
    assert not w.api.jobs  # within the claim lease: its invocation may still be working
    w.clock.advance(w.settings.claim_lease_s + 1)
    w.tick()
    assert len(w.api.jobs) == 1 and w.publisher.states() == ["SUBMITTED"]


# -- rules that cannot fire ---------------------------------------------------------------------------------------
def broken_rules_text():
    good = rules_text(PER_OBJECT)
    return good + "  - name: broken\n    bucket: data-bucket\n    prefix: \"objects/\"\n    packages: [" + PACKAGE + \
        "]\n    job:\n      trainingInput: {scaleTier: HUGE, pythonModule: trainer.task}\n"


def test_a_rule_whose_template_is_invalid_is_reported_once_and_never_fires(caplog):
    w = World(rules=broken_rules_text())
    w.storage.put("artifacts", "trainer-0.1.tar.gz", BASELINE_TARBALL)
    caplog.set_level(logging.ERROR, logger="submitter.triggers")
    w.put_data("objects/a.csv")
    out = w.deliver_data("objects/a.csv")
    assert out.action == "submitted" and len(w.api.jobs) == 1  # the valid rule fires, the broken one does not
    doc = w.store.get(rule_status_key("broken"))[0]
    assert doc["state"] == "BROKEN" and doc["violations"][0]["field"].endswith("job.trainingInput.scaleTier")
    assert w.store.get(rule_status_key("each"))[0]["state"] == "VALID"
    errors = [r for r in caplog.records if "broken is invalid" in r.getMessage()]
    assert len(errors) == 1
    # another instance (a cold start) and more ticks: not reported again, still never fires
    other = App(w.settings, clock=w.clock, storage=w.storage, ledger=w.ledger, backend=w.backend,
                publisher=w.publisher)
    other.reconcile()
    w.tick()
    assert len([r for r in caplog.records if "broken is invalid" in r.getMessage()]) == 1
    assert not [m for m in w.messages() if m.get("trigger", {}).get("rule") == "broken"]
    # drops are untouched by the rules
    assert w.drop("incoming/run-1").action == "submitted"


def test_settings_load_the_rules_file_and_check_the_data_buckets(tmp_path):
    path = tmp_path / "triggers.yaml"
    path.write_text(rules_text(PER_OBJECT) + "  - name: other\n    bucket: not-watched\n    prefix: x/\n" +
                    JOB.strip("\n") + "\n")
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
           "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
           "SUBMITTER_TOPIC": "t", "SUBMITTER_TRIGGER_RULES_FILE": str(path), "SUBMITTER_DATA_BUCKETS": "data-bucket"}
    s = Settings.from_env(env)
    assert s.data_buckets == ("data-bucket",) and [r.name for r in s.trigger_rules.rules] == ["each"]
    assert "not a data bucket" in str(s.trigger_rules.broken["other"])
    derived = Settings.from_env({**env, "SUBMITTER_DATA_BUCKETS": ""})  # unset or empty: the rules' buckets
    assert derived.data_buckets == ("data-bucket", "not-watched") and len(derived.trigger_rules.rules) == 2
    with pytest.raises(SettingsError, match="DATA_BUCKETS: drop-bucket is the drop or state bucket"):
        Settings.from_env({**env, "SUBMITTER_DATA_BUCKETS": "data-bucket,drop-bucket"})
    path.write_text("rules: {not: a list}\n")
    with pytest.raises(SettingsError, match="TRIGGER_RULES_FILE"):
        Settings.from_env(env)


# -- substitution end to end --------------------------------------------------------------------------------------
def test_an_object_name_cannot_inject_structure_into_the_job():
    w = world(PER_OBJECT)
    name = 'objects/a" masterType: huge, x: {workerCount: 9}.csv'
    w.put_data(name)
    assert w.deliver_data(name).action == "submitted"
    [job] = w.api.jobs.values()
    ti = job["trainingInput"]
    assert ti["args"][3] == name and "masterType" not in ti and "workerCount" not in ti
    crafted = 'objects/a"\n  masterType: huge'  # CR/LF cannot be in a GCS name: never matched, never substituted
    w.put_data(crafted)
    out = w.deliver_data(crafted)
    assert out.action == "ignored" and "control characters" in out.detail and len(w.api.jobs) == 1


def test_routing_sends_drop_bucket_events_to_drops_and_data_bucket_events_to_rules():
    w = world(PER_OBJECT)
    assert w.app.handler_for("drop-bucket") is w.app.drop_handler
    assert w.app.handler_for("data-bucket") is w.app.trigger_handler
    assert w.app.handler_for("somewhere-else") is w.app.drop_handler  # which ignores it
    w.put_data("objects/a.csv")
    out = w.app.handle_cloud_event({"id": "1", "type": "google.cloud.storage.object.v1.finalized",
                                    "time": "2024-06-10T12:00:00Z"},
                                   {"bucket": "data-bucket", "name": "objects/a.csv",
                                    "generation": str(w.storage.info("data-bucket", "objects/a.csv").generation),
                                    "size": "8"})
    assert out.action == "submitted"  # through the entry point's error policy


def test_batches_queued_before_a_rule_was_switched_to_parallel_start_at_the_next_tick():
    w = world(("each", '    prefix: "objects/"\n    overlap: queue'))
    for i in range(3):
        w.put_data(f"objects/{i}.csv")
        w.deliver_data(f"objects/{i}.csv")
    assert len(w.api.jobs) == 1
    redeployed = World(rules=rules_text(("each", '    prefix: "objects/"\n    overlap: parallel')))
    app = App(redeployed.settings, clock=w.clock, storage=w.storage, ledger=w.ledger, backend=w.backend,
              publisher=w.publisher)
    app.reconcile()
    assert len(w.api.jobs) == 3 and w.store.get(rule_state_key("each"))[0]["queue"] == []
