"""examples/consumer.py: its pure `handle` on messages built by the real producer (envelope.encode).

The same example on the real local stack (streaming pull, subscription created when missing) is tested in
test_watch_stack.py, which shares that module's stack.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from submitter.drops import DropRef
from submitter.envelope import JobEvent, encode

from conftest import NOW, REPO
from helpers import State

SOURCE = "//drop-submitter/projects/demo-project/buckets/drop-bucket"
DROP = DropRef("drop-bucket", "incoming/run-001", "incoming/run-001/job.yaml", 1718000000000001)
JOB_DIR = "gs://drop-outputs/incoming/run-001/run_001_1718000000000001"


@pytest.fixture(scope="module")
def consumer():
    spec = importlib.util.spec_from_file_location("consumer_example", REPO / "examples" / "consumer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def message(state: State, source: str = SOURCE, **kw):
    event = JobEvent(key="run_001_1718000000000001", state=state, origin={"drop": DROP.as_dict()}, time=NOW,
                     job_dir=JOB_DIR,
                     previous_state=State.RUNNING if state.rank == 5 else None, **kw)
    out = encode(event, source=source)
    return dict(out.attributes), out.data


def test_succeeded_prints_where_the_model_is(consumer):
    assert consumer.handle(*message(State.SUCCEEDED)) == f"run_001_1718000000000001 SUCCEEDED: model in {JOB_DIR}"


def test_a_tuning_job_s_success_names_its_best_trial(consumer):
    from submitter.model import Measurement, Study, Trial

    best = Trial("3", State.SUCCEEDED, {"n-estimators": "57", "criterion": "gini"}, final=Measurement(1, 0.9775))
    tuning = Study("MAXIMIZE", "accuracy", (best,), 6).summary()
    assert consumer.handle(*message(State.SUCCEEDED, tuning=tuning)) == (
        f"run_001_1718000000000001 SUCCEEDED: model in {JOB_DIR}; best trial 3 (accuracy 0.9775): "
        "--criterion=gini --n-estimators=57")


def test_trial_events_are_not_state_changes_and_are_ignored(consumer):
    from submitter.model import Measurement, Study, Trial
    from submitter.trial_events import TrialEvent, encode_trial

    trial = Trial("3", State.SUCCEEDED, {"x": "1"}, final=Measurement(1, 0.5))
    out = encode_trial(TrialEvent("run_1", trial, Study("MAXIMIZE", "m", (trial,)), State.RUNNING,
                                  {"drop": DROP.as_dict()}, NOW), source=SOURCE)
    assert consumer.handle(dict(out.attributes), out.data) is None


def test_failed_prints_the_error_message_indented(consumer):
    line = consumer.handle(*message(State.FAILED, reason="JOB_FAILED",
                                    error_message="The replica master 0 exited with a non-zero status of 1.\n"
                                                  "Traceback: ValueError: ошибка 😀"))
    assert line == ("run_001_1718000000000001 FAILED: The replica master 0 exited with a non-zero status of 1.\n"
                    "    Traceback: ValueError: ошибка 😀")


@pytest.mark.parametrize("state", [s for s in State if s not in (State.SUCCEEDED, State.FAILED)])
def test_other_states_are_ignored(consumer, state):
    verdict = state in (State.REJECTED, State.SUBMIT_FAILED)
    assert consumer.handle(*message(state, reason="SPEC_INVALID" if verdict else None)) is None


def test_duplicates_are_dropped_by_source_and_id(consumer):
    seen = consumer.Seen()
    attributes, data = message(State.SUCCEEDED)
    assert consumer.handle(attributes, data, seen) is not None
    assert consumer.handle(attributes, data, seen) is None  # redelivered
    again = dict(attributes, **{"ce-time": "2024-06-10T12:30:00.000Z"})  # re-published by another tick
    assert consumer.handle(again, data, seen) is None
    other = message(State.SUCCEEDED, source="//drop-submitter/projects/other/buckets/b")
    assert consumer.handle(*other, seen) is not None  # same id from another deployment is another event


def test_seen_forgets_the_oldest_beyond_its_size(consumer):
    seen = consumer.Seen(size=2)
    assert seen.add(("s", "a")) and seen.add(("s", "b")) and seen.add(("s", "c"))
    assert seen.add(("s", "a")) and not seen.add(("s", "c"))


@pytest.mark.parametrize("attributes, data", [
    ({}, b'{"state": "SUCCEEDED"}'),  # not a CloudEvent
    ({"ce-id": "x", "ce-source": SOURCE, "ce-specversion": "1.0", "ce-type": "com.example.other",
      "content-type": "application/json"}, b'{"state": "SUCCEEDED", "jobDir": "gs://x"}'),  # another type
    ({"ce-id": "x", "ce-source": SOURCE, "ce-specversion": "1.0",
      "ce-type": "dev.drop-submitter.job.v1.stateChanged", "content-type": "application/json"}, b"{not json"),
    ({"ce-id": "x", "ce-specversion": "1.0", "ce-type": "dev.drop-submitter.job.v1.stateChanged"}, b"{}"),
])
def test_messages_that_are_not_our_events_are_ignored(consumer, attributes, data):
    assert consumer.handle(attributes, data) is None


def test_to_cloudevent_maps_the_binding_attributes_and_json_data(consumer):
    attributes, data = message(State.SUCCEEDED)
    event = consumer.to_cloudevent(attributes, data)
    assert event["id"] == "run_001_1718000000000001/SUCCEEDED" and event["source"] == SOURCE
    assert event["type"] == "dev.drop-submitter.job.v1.stateChanged" and event["specversion"] == "1.0"
    assert event["subject"] == "jobs/run_001_1718000000000001" and event["time"] == "2024-06-10T12:00:05.000Z"
    assert event["datacontenttype"] == "application/json"
    assert event.data == json.loads(data)
    assert "jobId" not in event.get_attributes()  # plain filter attributes are not CloudEvent attributes
