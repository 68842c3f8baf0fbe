"""The message contract: every kind of message the code produces validates against the versioned JSON Schemas
in schemas/ (job-event.v1.schema.json for the data, job-event.v1.attributes.schema.json for the attributes),
ce-id is deterministic per (jobId, state), and the schemas reject what they must.

Messages are built the two ways the code builds them: `envelope.encode` directly, and the in-memory World
(conftest.py) driving the real DropHandler and Reconciler.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

from submitter.drops import DropRef
from submitter.envelope import MAX_ATTRIBUTE_VALUE_BYTES, MAX_ERROR_MESSAGE_CHARS, JobEvent, ce_id, encode
from submitter.model import Measurement, Study, Trial
from submitter.text import TRUNCATED
from submitter.trial_events import TRIAL_EVENT_TYPE, TrialEvent, encode_trial, trial_ce_id

from conftest import BASELINE_YAML, NOW, World, make_tarball
from helpers import State

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
SOURCE = "//drop-submitter/projects/demo-project/buckets/drop-bucket"
DROP = DropRef(bucket="drop-bucket", folder="incoming/run-001", object="incoming/run-001/job.yaml",
               generation=1718000000000001)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


DATA = _validator("job-event.v1.schema.json")
ATTRIBUTES = _validator("job-event.v1.attributes.schema.json")


def errors(validator, instance) -> list[str]:
    """Every validation error as `path: message` (empty when valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(instance)]


def validate_message(attributes: dict, data: dict) -> None:
    """Assert one received or produced message honours the contract, including the cross-field rules
    JSON Schema cannot express (ce-id = jobId/state, attributes mirror the data)."""
    assert errors(DATA, data) == [], data
    assert errors(ATTRIBUTES, attributes) == [], attributes
    assert attributes["ce-id"] == ce_id(data["jobId"], State(data["state"]))
    assert attributes["jobId"] == data["jobId"] and attributes["state"] == data["state"]
    assert attributes["ce-subject"] == f"jobs/{data['jobId']}" and attributes["ce-time"] == data["time"]
    assert attributes["terminal"] == ("true" if data["terminal"] else "false")
    assert attributes.get("reason") == data["reason"]
    assert all(len(v.encode("utf-8")) <= MAX_ATTRIBUTE_VALUE_BYTES for v in attributes.values())


def _messages(world: World) -> list[tuple[dict, dict]]:
    return [(m.attributes, json.loads(m.data)) for m in world.publisher.messages]


LONG_MULTIBYTE = "Трассировка: ошибка в реплике master-0 — 模型训练失败 😀\n" * 3000  # ~150k chars, 1-4 bytes each


@pytest.fixture(scope="module")
def produced() -> list[tuple[dict, dict]]:
    """Every kind of message the submitter publishes, produced by the real handler and reconciler."""
    world = World(incomplete_drop_s=0)
    # SUBMITTED, then QUEUED -> PREPARING -> RUNNING -> SUCCEEDED with trainingOutput and times
    ok = world.drop("incoming/run-ok").job_id
    for state in ("QUEUED", "PREPARING", "RUNNING"):
        world.api.set_state(ok, state, startTime="2024-06-10T12:01:00Z")
        world.reconciler.tick()
    world.api.set_state(ok, "SUCCEEDED", endTime="2024-06-10T12:09:00Z",
                            trainingOutput={"consumedMLUnits": 0.02, "isHyperparameterTuningJob": False})
    world.reconciler.tick()
    # RUNNING -> FAILED with a long multibyte errorMessage (skipping states between polls)
    failed = world.drop("incoming/run-fail").job_id
    world.api.set_state(failed, "RUNNING")
    world.reconciler.tick()
    world.api.set_state(failed, "FAILED", errorMessage=LONG_MULTIBYTE)
    world.reconciler.tick()
    # CANCELLING -> CANCELLED
    cancelled = world.drop("incoming/run-cancel").job_id
    world.api.set_state(cancelled, "CANCELLING")
    world.reconciler.tick()
    world.api.set_state(cancelled, "CANCELLED", errorMessage="Job cancelled by the user.")
    world.reconciler.tick()
    # REJECTED with several violations (values of several types)
    bad = BASELINE_YAML.replace(b"scaleTier: BASIC", b"scaleTier: HUGE\n  workerCount: 3") + b"  x: [1, 2]\n"
    world.drop("incoming/run-bad", spec=bad)
    # REJECTED: a package without setup.py
    world.drop("incoming/run-badpkg", package=make_tarball({"trainer/task.py": b"print(1)\n"}))
    # REJECTED: YAML that does not parse
    world.drop("incoming/run-yaml", spec=b"trainingInput: [unclosed\n")
    # SUBMIT_FAILED: the API refuses (permanent error)
    world.api.fail("create", 403, "PERMISSION_DENIED", "caller lacks ml.jobs.create")
    world.drop("incoming/run-denied")
    # REJECTED by the sweep: a drop that never got its job.yaml (generation "0")
    world.put("incoming/run-incomplete/package.tar.gz", make_tarball({"setup.py": b""}))
    world.deliver("incoming/run-incomplete/package.tar.gz")
    world.clock.advance(world.settings.incomplete_drop_s + 1)
    world.handler.sweep()
    return _messages(world) + _trigger_messages()


TRIGGER_RULES = """rules:
  - name: folders
    bucket: data-bucket
    match: "incoming/*/*.csv"
    batch: {mode: marker}
    overlap: skip
    packages: [gs://artifacts/trainer-0.1.tar.gz]
    job:
      trainingInput: {pythonModule: trainer.task, args: ["--data", "gs://${bucket}/${folder}/"]}
"""


def _trigger_messages() -> list[tuple[dict, dict]]:
    """Messages of data batches (issue 15): SUBMITTED, job states and a REJECTED (OVERLAP_SKIPPED), each with the
    `trigger` field."""
    from conftest import BASELINE_TARBALL

    data = World(rules=TRIGGER_RULES)
    data.storage.put("artifacts", "trainer-0.1.tar.gz", BASELINE_TARBALL)
    for folder in ("incoming/d1", "incoming/d2"):
        for name in ("a.csv", "b.csv"):
            data.put_data(f"{folder}/{name}")
        data.put_data(f"{folder}/_SUCCESS", b"")
    key = data.deliver_data("incoming/d1/_SUCCESS").key
    data.api.set_state(key, "RUNNING")
    data.tick()
    data.deliver_data("incoming/d2/_SUCCESS")  # skipped: the previous job runs
    data.api.set_state(key, "SUCCEEDED")
    data.tick()
    return _messages(data)


def test_every_kind_of_message_the_code_produces_validates(produced):
    for attributes, data in produced:
        validate_message(attributes, data)
    assert {d["state"] for _, d in produced} == {s.value for s in State}, "every state is covered"
    reasons = {d["reason"] for _, d in produced}
    assert {"JOB_FAILED", "PERMISSION_DENIED", "YAML_INVALID", "INCOMPLETE_DROP"} <= reasons
    assert any(d["violations"] and any("value" in v for v in d["violations"]) for _, d in produced)
    assert any("trainingOutput" in d and "endTime" in d for _, d in produced)
    assert any(d["drop"]["generation"] == "0" for _, d in produced)


def test_data_batch_messages_name_the_rule_and_the_batch(produced):
    batches = [d for _, d in produced if "trigger" in d]
    assert {d["state"] for d in batches} == {"SUBMITTED", "RUNNING", "SUCCEEDED", "REJECTED"}
    assert {d["reason"] for d in batches if d["state"] == "REJECTED"} == {"OVERLAP_SKIPPED"}
    for d in batches:
        assert d["trigger"]["rule"] == "folders" and d["trigger"]["batchId"] == d["jobId"]
        assert d["trigger"]["count"] == 2 and d["drop"]["object"].endswith("/_SUCCESS")


def test_long_multibyte_error_message_is_capped_in_the_data_and_valid(produced):
    [(attributes, data)] = [(a, d) for a, d in produced if d["state"] == "FAILED"]
    assert len(data["errorMessage"]) == MAX_ERROR_MESSAGE_CHARS and data["errorMessage"].endswith(TRUNCATED)
    assert data["errorMessage"].startswith(LONG_MULTIBYTE[:1000])
    assert data["reason"] == "JOB_FAILED" and attributes["reason"] == "JOB_FAILED"
    validate_message(attributes, data)


@pytest.mark.parametrize("state", list(State))
def test_encode_of_each_state_validates(state):
    verdict = state in (State.REJECTED, State.SUBMIT_FAILED)
    api_state = state not in (State.SUBMITTED, State.REJECTED, State.SUBMIT_FAILED)
    event = JobEvent(key="run_001_1718000000000001", state=state, origin={"drop": DROP.as_dict()}, time=NOW,
        previous_state=State.SUBMITTED if api_state else None,
        reason=("SPEC_INVALID" if verdict else "JOB_FAILED" if state is State.FAILED else None),
        message="job.yaml: trainingInput.scaleTier: unknown value" if verdict else None,
        violations=({"field": "trainingInput.scaleTier", "message": "unknown value", "reason": "SPEC_INVALID",
                     "value": "HUGE"},) if state is State.REJECTED else (),
        warnings=("runtimeVersion 2.11 is retired",) if state is State.SUBMITTED else (),
        error_message="The replica master 0 exited with a non-zero status of 1." if state is State.FAILED else None,
        labels={"team": "vision", "submitter": "drop"} if not verdict else {},
        job_dir=None if verdict else "gs://drop-outputs/incoming/run-001/run_001_1718000000000001",
        create_time="2024-06-10T12:00:01Z" if not verdict else None)
    message = encode(event, source=SOURCE)
    validate_message(message.attributes, json.loads(message.data))
    assert message.ordering_key == event.key


def test_ce_id_is_deterministic_per_job_and_state():
    def encoded(state, minute, **kw):
        time = dt.datetime(2024, 6, 10, 12, minute, tzinfo=dt.UTC)
        event = JobEvent(key="run_7", state=state, origin={"drop": DROP.as_dict()}, time=time, **kw)
        return encode(event, source=SOURCE)

    a = encoded(State.RUNNING, 1, previous_state=State.QUEUED)
    b = encoded(State.RUNNING, 9, previous_state=State.PREPARING, labels={"x": "y"})
    assert a.attributes["ce-id"] == b.attributes["ce-id"] == "run_7/RUNNING" == ce_id("run_7", State.RUNNING)
    assert a.data != b.data  # the same event observed twice: different data, same id, consumers keep one
    ids = {encoded(s, 1).attributes["ce-id"] for s in State}
    assert len(ids) == len(State)  # distinct states, distinct ids
    other = encode(JobEvent(key="run_8", state=State.RUNNING, origin={"drop": DROP.as_dict()}, time=NOW), source=SOURCE)
    assert other.attributes["ce-id"] != a.attributes["ce-id"]


def test_schema_states_seq_and_terminal_match_the_code():
    schema = json.loads((SCHEMAS / "job-event.v1.schema.json").read_text())
    assert set(schema["properties"]["state"]["enum"]) == {s.value for s in State}
    rules = {r["if"]["properties"]["state"]["const"]: r["then"]["properties"] for r in schema["allOf"]}
    assert set(rules) == {s.value for s in State}
    for state in State:
        assert rules[state.value]["seq"] == {"const": state.rank}
        assert rules[state.value]["terminal"] == {"const": state.is_terminal}
    attributes = json.loads((SCHEMAS / "job-event.v1.attributes.schema.json").read_text())
    assert set(attributes["properties"]["state"]["enum"]) == {s.value for s in State}


@pytest.fixture
def sample(produced):
    """A valid (attributes, data) pair of a FAILED job event, copied for mutation."""
    attributes, data = next((a, d) for a, d in produced if d["state"] == "FAILED")
    return copy.deepcopy(attributes), copy.deepcopy(data)


@pytest.mark.parametrize("field", sorted(json.loads((SCHEMAS / "job-event.v1.schema.json").read_text())["required"]))
def test_a_message_missing_a_required_field_fails(sample, field):
    _, data = sample
    del data[field]
    assert errors(DATA, data), f"the schema accepted data without {field}"


@pytest.mark.parametrize("mutate, why", [
    (lambda d: d.update(state="PAUSED"), "unknown state"),
    (lambda d: d.update(seq=3), "seq does not match the state"),
    (lambda d: d.update(terminal=False), "terminal does not match the state"),
    (lambda d: d.update(previousState="FAILED"), "previous state is terminal"),
    (lambda d: d.update(previousState=None), "a job state without a previous state"),
    (lambda d: d.update(reason=None), "FAILED without JOB_FAILED"),
    (lambda d: d.update(jobId="1-bad-id"), "jobId breaks the API's rule"),
    (lambda d: d.update(time="2024-06-10 12:00:00"), "time is not RFC 3339 UTC"),
    (lambda d: d["drop"].update(generation=1718000000000001), "generation must be a string"),
    (lambda d: d["drop"].pop("object"), "drop.object missing"),
    (lambda d: d.update(labels={"team": 3}), "label values are strings"),
    (lambda d: d.update(violations=[{"field": "x"}]), "a violation without message and reason"),
    (lambda d: d.update(surprise=True), "an undocumented field"),
    (lambda d: d.update(schemaVersion=1), "schemaVersion is a string"),
    (lambda d: d.update(trigger={"rule": "folders"}), "a trigger field without its batch"),
    (lambda d: d.update(trigger={"rule": "folders", "mode": "hourly", "batchId": d["jobId"], "folder": "f",
                                 "count": 1, "objects": ["f/a"]}), "an unknown batch mode"),
    (lambda d: d.update(trigger={"rule": "folders", "mode": "marker", "batchId": d["jobId"], "folder": "f",
                                 "count": 101, "objects": ["f/a"] * 101}), "more than 100 object names"),
])
def test_the_data_schema_rejects_what_it_must(sample, mutate, why):
    _, data = sample
    mutate(data)
    assert errors(DATA, data), why


@pytest.mark.parametrize("mutate, why", [
    (lambda a: a.pop("ce-id"), "ce-id missing"),
    (lambda a: a.pop("terminal"), "terminal missing"),
    (lambda a: a.update(terminal="True"), "terminal is 'true'/'false'"),
    (lambda a: a.update(terminal="false"), "FAILED is terminal"),
    (lambda a: a.update({"ce-id": "run_9/RUNNING"}), "ce-id names another state"),
    (lambda a: a.update({"ce-specversion": "0.3"}), "wrong spec version"),
    (lambda a: a.update({"ce-type": "other"}), "wrong type"),
])
def test_the_attributes_schema_rejects_what_it_must(sample, mutate, why):
    attributes, _ = sample
    mutate(attributes)
    assert errors(ATTRIBUTES, attributes), why


# -- hyperparameter tuning: trial events and the trial summary of state events ------------------------------------
TRIAL_DATA = _validator("job-trial-event.v1.schema.json")
TRIAL_ATTRIBUTES = _validator("job-trial-event.v1.attributes.schema.json")
TUNING_YAML = BASELINE_YAML.replace(b"labels:", b"""  hyperparameters:
    goal: MAXIMIZE
    hyperparameterMetricTag: accuracy
    maxTrials: 4
    maxParallelTrials: 2
    params:
    - parameterName: max-depth
      type: INTEGER
      minValue: 2
      maxValue: 12
      scaleType: UNIT_LINEAR_SCALE
labels:""")


def api_trial(trial_id: str, state: str, value: float | None = None, depth: int = 4) -> dict:
    """A trial as ml v1 reports it in trainingOutput.trials (GoogleCloudMlV1__HyperparameterOutput)."""
    trial = {"trialId": trial_id, "state": state, "hyperparameters": {"max-depth": str(depth)},
             "startTime": "2024-06-10T12:01:00Z"}
    if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
        trial["endTime"] = f"2024-06-10T12:0{int(trial_id) + 1}:00Z"
    if value is not None:
        trial["finalMetric"] = {"trainingStep": "10", "objectiveValue": value}
    return trial


def validate_trial_message(attributes: dict, data: dict) -> None:
    """Assert one trialCompleted message honours its contract, cross-field rules included."""
    assert errors(TRIAL_DATA, data) == [], data
    assert errors(TRIAL_ATTRIBUTES, attributes) == [], attributes
    assert attributes["ce-id"] == f"{data['jobId']}/trial/{data['trialId']}" == trial_ce_id(data["jobId"],
                                                                                            data["trialId"])
    assert attributes["jobId"] == data["jobId"] and attributes["trialId"] == data["trialId"] == data["trial"]["trialId"]
    assert attributes["trialState"] == data["trial"]["state"] and attributes["ce-time"] == data["time"]


@pytest.fixture(scope="module")
def tuning_run() -> tuple[list[tuple[dict, dict]], str]:
    """A tuning job followed by the real reconciler: trials finish while it RUNs, one fails, then it SUCCEEDS."""
    world = World()
    job_id = world.drop("incoming/tune", spec=TUNING_YAML).job_id
    world.api.set_state(job_id, "RUNNING", startTime="2024-06-10T12:01:00Z", trainingOutput={
        "isHyperparameterTuningJob": True, "trials": [api_trial("1", "RUNNING"), api_trial("2", "RUNNING")]})
    world.reconciler.tick()
    world.api.set_state(job_id, "RUNNING", trainingOutput={
        "isHyperparameterTuningJob": True, "completedTrialCount": "1", "hyperparameterMetricTag": "accuracy",
        "trials": [api_trial("1", "SUCCEEDED", 0.91, 4), api_trial("2", "FAILED"), api_trial("3", "RUNNING")]})
    world.reconciler.tick()
    world.reconciler.tick()  # nothing new: nothing published
    world.api.set_state(job_id, "SUCCEEDED", endTime="2024-06-10T12:09:00Z", trainingOutput={
        "isHyperparameterTuningJob": True, "completedTrialCount": "2", "hyperparameterMetricTag": "accuracy",
        "consumedMLUnits": 0.1,
        "trials": [api_trial("3", "SUCCEEDED", 0.97, 9), api_trial("1", "SUCCEEDED", 0.91, 4),
                   api_trial("2", "FAILED")]})
    world.reconciler.tick()
    world.reconciler.tick()
    return _messages(world), job_id


def test_every_trial_message_and_every_state_message_of_a_tuning_job_validates(tuning_run):
    produced, job_id = tuning_run
    kinds = [a["ce-type"] for a, _ in produced]
    assert set(kinds) == {"dev.drop-submitter.job.v1.stateChanged", TRIAL_EVENT_TYPE}
    for attributes, data in produced:
        if attributes["ce-type"] == TRIAL_EVENT_TYPE:
            validate_trial_message(attributes, data)
        else:
            validate_message(attributes, data)
            assert "tuning" in data or data["state"] == "SUBMITTED"


def test_each_finished_trial_is_published_once_before_the_job_state_that_follows_it(tuning_run):
    produced, job_id = tuning_run
    order = [a["ce-id"] for a, _ in produced]
    assert order == [f"{job_id}/SUBMITTED", f"{job_id}/RUNNING", f"{job_id}/trial/1", f"{job_id}/trial/2",
                     f"{job_id}/trial/3", f"{job_id}/SUCCEEDED"]
    trials = {d["trialId"]: d for a, d in produced if a["ce-type"] == TRIAL_EVENT_TYPE}
    assert trials["1"]["trial"]["finalMetric"] == {"trainingStep": 10, "objectiveValue": 0.91}
    assert trials["2"]["trial"]["state"] == "FAILED" and trials["2"]["trial"]["finalMetric"] is None
    assert trials["2"]["tuning"]["failedTrialCount"] == 1 and trials["1"]["jobState"] == "RUNNING"


def test_the_succeeded_event_names_the_best_trial_with_its_hyperparameters_and_metric(tuning_run):
    produced, _ = tuning_run
    [data] = [d for a, d in produced if d.get("state") == "SUCCEEDED"]
    assert data["tuning"]["bestTrial"] == {"trialId": "3", "hyperparameters": {"max-depth": "9"},
                                           "objectiveValue": 0.97, "trainingStep": 10}
    assert data["tuning"]["completedTrialCount"] == 2 and data["tuning"]["trialCount"] == 3
    best_in_output = max(t["finalMetric"]["objectiveValue"] for t in data["trainingOutput"]["trials"]
                         if "finalMetric" in t)
    assert data["tuning"]["bestTrial"]["objectiveValue"] == best_in_output
    [running] = [d for a, d in produced if d.get("state") == "RUNNING"]
    assert running["tuning"]["bestTrial"] is None  # no trial had finished when RUNNING was published


def test_trial_messages_go_under_the_job_s_ordering_key():
    world = World()
    job_id = world.drop("incoming/tune", spec=TUNING_YAML).job_id
    world.api.set_state(job_id, "RUNNING", trainingOutput={"trials": [api_trial("1", "SUCCEEDED", 0.5)]})
    world.reconciler.tick()
    assert {m.ordering_key for m in world.publisher.messages} == {job_id}


def test_a_trial_republished_after_a_lost_ledger_write_keeps_its_ce_id():
    trial = Trial("7", State.SUCCEEDED, {"lr": "0.1"}, final=Measurement(3, 0.5))
    study = Study("MINIMIZE", "loss", (trial,), 8)

    def encoded(minute):
        time = dt.datetime(2024, 6, 10, 12, minute, tzinfo=dt.UTC)
        return encode_trial(TrialEvent("run_7", trial, study, State.RUNNING, {"drop": DROP.as_dict()}, time),
                            source=SOURCE)

    a, b = encoded(1), encoded(2)
    assert a.attributes["ce-id"] == b.attributes["ce-id"] == "run_7/trial/7" and a.data != b.data
    for message in (a, b):
        validate_trial_message(message.attributes, json.loads(message.data))


@pytest.fixture
def trial_sample(tuning_run):
    produced, _ = tuning_run
    attributes, data = next((a, d) for a, d in produced if a["ce-type"] == TRIAL_EVENT_TYPE)
    return copy.deepcopy(attributes), copy.deepcopy(data)


@pytest.mark.parametrize("mutate, why", [
    (lambda d: d["trial"].update(state="RUNNING"), "only finished trials are published"),
    (lambda d: d.update(jobState="SUCCEEDED"), "a trial never follows its job's terminal event"),
    (lambda d: d["trial"]["hyperparameters"].update(lr=0.1), "hyperparameter values are strings"),
    (lambda d: d["trial"].update(finalMetric={"objectiveValue": 0.1}), "finalMetric without trainingStep"),
    (lambda d: d["tuning"].update(goal="UP"), "unknown goal"),
    (lambda d: d["tuning"]["bestTrial"].update(objectiveValue="0.9"), "the best value is a number"),
    (lambda d: d.pop("tuning"), "the summary is required"),
    (lambda d: d.update(state="SUCCEEDED"), "a trial event has no job state field"),
])
def test_the_trial_data_schema_rejects_what_it_must(trial_sample, mutate, why):
    _, data = trial_sample
    if data["tuning"]["bestTrial"] is None:
        data["tuning"]["bestTrial"] = {"trialId": "1", "hyperparameters": {}, "objectiveValue": 0.5,
                                       "trainingStep": 0}
    mutate(data)
    assert errors(TRIAL_DATA, data), why


@pytest.mark.parametrize("mutate, why", [
    (lambda a: a.update({"ce-type": "dev.drop-submitter.job.v1.stateChanged"}), "a trial is not a state change"),
    (lambda a: a.update({"ce-id": "run_9/SUCCEEDED"}), "ce-id names a state, not a trial"),
    (lambda a: a.update(terminal="true"), "a trial never ends its job"),
    (lambda a: a.update(state="SUCCEEDED"), "no state attribute: state filters must not match trials"),
    (lambda a: a.pop("trialId"), "trialId missing"),
])
def test_the_trial_attributes_schema_rejects_what_it_must(trial_sample, mutate, why):
    attributes, _ = trial_sample
    mutate(attributes)
    assert errors(TRIAL_ATTRIBUTES, attributes), why


def test_a_state_event_that_would_not_fit_sheds_all_metrics_then_trials_but_keeps_the_summary():
    trials = [{"trialId": str(i), "state": "SUCCEEDED", "hyperparameters": {"x": "1"},
               "finalMetric": {"trainingStep": "1", "objectiveValue": 0.5},
               "allMetrics": [{"trainingStep": str(s), "objectiveValue": 0.5} for s in range(100)]}
              for i in range(1, 2500)]
    study = Study("MAXIMIZE", "m", (Trial("1", State.SUCCEEDED, {"x": "1"}, final=Measurement(1, 0.5)),), 2500)
    event = JobEvent(key="run_7", state=State.SUCCEEDED, previous_state=State.RUNNING,
                     origin={"drop": DROP.as_dict()}, time=NOW, detail={"trainingOutput": {"trials": trials}},
                     tuning=study.summary())
    message = encode(event, source=SOURCE)
    data = json.loads(message.data)
    assert len(message.data) <= 9 * 1024 * 1024 and data["tuning"]["bestTrial"]["trialId"] == "1"
    assert all("allMetrics" not in t for t in data["trainingOutput"].get("trials", []))
    validate_message(message.attributes, data)
