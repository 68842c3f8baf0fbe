"""Tuning on the Vertex backend: the AI Platform tuning spec becomes a HyperparameterTuningJob (vertex_tuning.py:
field by field, each check naming the AI Platform field and the Vertex field), and the real VertexBackend adapter
creates, adopts, follows, lists and cancels it in `projects.locations.hyperparameterTuningJobs` through the in-memory
Vertex API (tests/fake_vertex.py); its trials become trial events and the SUCCEEDED event's best trial.
(The corpus of real tuning configs is in test_vertex_translate.py.)
"""

from __future__ import annotations

import json

import pytest
from fake_vertex import FakeVertexApi
from test_contract import validate_message, validate_trial_message
from test_vertex_backend import BASELINE_WITH_TUNING, REGIONS, SA, vertex_world
from test_vertex_translate import translated

from submitter import schema
from submitter.backends import vertex_tuning as vtu
from submitter.backends.vertex import VertexBackend, collection_of
from submitter.model import JobHandle, JobState
from submitter.trial_events import TRIAL_EVENT_TYPE

SPEC = """trainingInput:
  scaleTier: BASIC
  hyperparameters:
{hp}
"""


def spec(hp: str) -> str:
    """A completed-able job.yaml with `hp` as its hyperparameters (goal MAXIMIZE unless `hp` names one: the
    submitter's own checks require it)."""
    hp = hp.strip("\n") if "goal:" in hp else "goal: MAXIMIZE\n" + hp.strip("\n")
    return SPEC.format(hp="\n".join("    " + line for line in hp.splitlines()))


def tuning(hp: str, **options):
    return translated(spec(hp), **options)


# -- translation ------------------------------------------------------------------------------------------------------
def test_defaults_are_written_where_vertex_requires_them():
    t = tuning("""
params:
- {parameterName: depth, type: INTEGER, minValue: 2, maxValue: 8}
""")
    body = t.custom_job
    assert t.violations == [] and t.collection == "hyperparameterTuningJobs"
    assert body["studySpec"]["metrics"] == [{"metricId": "training/hptuning/metric", "goal": "MAXIMIZE"}]
    assert body["maxTrialCount"] == 1 and body["parallelTrialCount"] == 1 and "maxFailedTrialCount" not in body
    assert "algorithm" not in body["studySpec"]  # Vertex's default algorithm, as AI Platform's
    assert body["studySpec"]["parameters"] == [{"parameterId": "depth",
                                                "integerValueSpec": {"minValue": "2", "maxValue": "8"}}]


def test_every_parameter_kind_and_scale_maps_to_its_value_spec():
    t = tuning("""
goal: MINIMIZE
hyperparameterMetricTag: loss
algorithm: RANDOM_SEARCH
maxTrials: 20
maxParallelTrials: 4
maxFailedTrials: 3
params:
- {parameterName: lr, type: DOUBLE, minValue: 0.0001, maxValue: 0.1, scaleType: UNIT_LOG_SCALE}
- {parameterName: momentum, type: DOUBLE, minValue: 0.1, maxValue: 0.99, scaleType: UNIT_REVERSE_LOG_SCALE}
- {parameterName: units, type: INTEGER, minValue: 16, maxValue: 512, scaleType: NONE}
- {parameterName: rate, type: DISCRETE, discreteValues: [0.5, 1, 2]}
- {parameterName: opt, type: CATEGORICAL, categoricalValues: [adam, sgd]}
""")
    assert t.violations == []
    body = t.custom_job
    assert body["studySpec"]["metrics"] == [{"metricId": "loss", "goal": "MINIMIZE"}]
    assert body["studySpec"]["algorithm"] == "RANDOM_SEARCH"
    assert body["studySpec"]["parameters"] == [
        {"parameterId": "lr", "doubleValueSpec": {"minValue": 0.0001, "maxValue": 0.1}, "scaleType": "UNIT_LOG_SCALE"},
        {"parameterId": "momentum", "doubleValueSpec": {"minValue": 0.1, "maxValue": 0.99},
         "scaleType": "UNIT_REVERSE_LOG_SCALE"},
        {"parameterId": "units", "integerValueSpec": {"minValue": "16", "maxValue": "512"}},  # NONE: unset
        {"parameterId": "rate", "discreteValueSpec": {"values": [0.5, 1, 2]}},
        {"parameterId": "opt", "categoricalValueSpec": {"values": ["adam", "sgd"]}}]
    assert (body["maxTrialCount"], body["parallelTrialCount"], body["maxFailedTrialCount"]) == (20, 4, 3)
    assert schema.check_document(body, vtu.TUNING_JOB) == []


def test_early_stopping_asks_for_the_median_rule_and_resuming_is_warned_never_dropped_silently():
    t = tuning("""
enableTrialEarlyStopping: true
resumePreviousJobId: tune_1
params:
- {parameterName: depth, type: INTEGER, minValue: 2, maxValue: 8}
""")
    assert t.violations == []
    assert t.custom_job["studySpec"]["medianAutomatedStoppingSpec"] == {"useElapsedDuration": False}
    assert any("median automated stopping rule" in w for w in t.warnings)
    assert any("resumePreviousJobId" in w and "tune_1" in w for w in t.warnings)


@pytest.mark.parametrize("hp, field, words", [
    ("params:\n- {parameterName: learning rate, type: DOUBLE, minValue: 0.1, maxValue: 1}",
     "trainingInput.hyperparameters.params[0].parameterName", "studySpec.parameters[0].parameterId"),
    ("hyperparameterMetricTag: my accuracy\nparams:\n- {parameterName: d, type: INTEGER, minValue: 1, maxValue: 2}",
     "trainingInput.hyperparameters.hyperparameterMetricTag", "studySpec.metrics[0].metricId"),
    ("params:\n- {parameterName: r, type: DISCRETE, discreteValues: [1, 1.00000000000001]}",
     "trainingInput.hyperparameters.params[0].discreteValues", "1e-10 apart"),
    ("params:\n- {parameterName: c, type: CATEGORICAL, categoricalValues: [a, a]}",
     "trainingInput.hyperparameters.params[0].categoricalValues", "twice"),
    ("params:\n- {parameterName: r, type: DISCRETE, discreteValues: [0, 1], scaleType: UNIT_LOG_SCALE}",
     "trainingInput.hyperparameters.params[0].discreteValues", "strictly positive"),
])
def test_what_vertex_refuses_is_rejected_naming_the_ai_platform_field_and_the_vertex_field(hp, field, words):
    from test_vertex_translate import DEFAULTS, FLAGS, PERMISSIVE

    from submitter.backends import vertex_translate as vt
    from submitter.validation import check_text

    checked = check_text(spec(hp), "job.yaml", DEFAULTS, "run_001_1", PERMISSIVE, FLAGS)
    t = vt.translate(checked.job, key="run_001_1", display_name="incoming/run-001")
    assert [v.field for v in t.violations] == [field], [v.as_dict() for v in t.violations]
    assert words in t.violations[0].message


@pytest.mark.parametrize("mutate, path", [
    (lambda b: b["studySpec"].update(bogus=1), "studySpec.bogus"),
    (lambda b: b["studySpec"]["parameters"][0].update(scaleType="UNIT_CUBIC_SCALE"),
     "studySpec.parameters[0].scaleType"),
    (lambda b: b["studySpec"]["parameters"][0].update(doubleValueSpec={"minValue": 1, "maxValue": 2}),
     "studySpec.parameters[0]"),
    (lambda b: b["studySpec"]["parameters"][0]["integerValueSpec"].update(minValue="9"),
     "studySpec.parameters[0].integerValueSpec.minValue"),
    (lambda b: b["studySpec"].update(metrics=[]), "studySpec.metrics"),
    (lambda b: b.update(parallelTrialCount=0), "parallelTrialCount"),
    (lambda b: b.update(maxFailedTrialCount=-1), "maxFailedTrialCount"),
    (lambda b: b.update(trials=[]), "trials"),  # output only
    (lambda b: b["trialJobSpec"]["workerPoolSpecs"][0].update(replicaCount=2),
     "trialJobSpec.workerPoolSpecs[0].replicaCount"),
    (lambda b: b["studySpec"].update(algorithm="GRID_SEARCH", parameters=[
        {"parameterId": "x", "doubleValueSpec": {"minValue": 0.1, "maxValue": 1}}]), "studySpec.parameters[0]"),
])
def test_each_check_of_a_tuning_job_on_its_own_finds_its_problem(mutate, path):
    body = tuning("params:\n- {parameterName: d, type: INTEGER, minValue: 1, maxValue: 8}").custom_job
    body = json.loads(json.dumps(body))
    assert vtu.validate(body) == []
    mutate(body)
    assert any(v.field.startswith(path) for v in vtu.validate(body)), [v.as_dict() for v in vtu.validate(body)]


def test_a_tpu_layout_vertex_cannot_run_is_refused_for_tuning_as_for_one_job():
    t = translated("""trainingInput:
  scaleTier: CUSTOM
  masterType: standard
  workerType: cloud_tpu
  workerCount: 2
  hyperparameters:
    goal: MAXIMIZE
    params:
    - {parameterName: d, type: INTEGER, minValue: 1, maxValue: 2}
""")
    assert [v.field for v in t.violations] == ["trainingInput.workerCount"]


# -- reading trials back ----------------------------------------------------------------------------------------------
def vertex_trial(trial_id, state, value=None, step="12", metric="accuracy", **params):
    """A Trial as Vertex reports it in HyperparameterTuningJob.trials[] (another metric beside the study's)."""
    trial = {"id": trial_id, "state": state, "startTime": "2024-06-10T12:01:00Z",
             "parameters": [{"parameterId": k, "value": v} for k, v in params.items()]}
    if state in ("SUCCEEDED", "INFEASIBLE"):
        trial["endTime"] = f"2024-06-10T12:0{trial_id}:30Z"
    if value is not None:
        trial["finalMeasurement"] = {"stepCount": step, "metrics": [{"metricId": "other", "value": 99},
                                                                    {"metricId": metric, "value": value}]}
    if state == "INFEASIBLE":
        trial["infeasibleReason"] = "The replica workerpool0-0 exited with a non-zero status of 1."
    return trial


def test_trials_become_the_neutral_study_with_the_job_s_metric_and_values_as_trainers_receive_them():
    job = {"studySpec": {"metrics": [{"metricId": "accuracy", "goal": "MAXIMIZE"}]}, "maxTrialCount": 4,
           "trials": [vertex_trial("1", "SUCCEEDED", 0.9, depth=4.0, lr=0.01, opt="adam"),
                      vertex_trial("2", "INFEASIBLE", depth=7.0, lr=0.5, opt="sgd"),
                      vertex_trial("3", "ACTIVE", depth=2.0, lr=0.1, opt="sgd"),
                      vertex_trial("4", "SUCCEEDED", 0.95, depth=9.0, lr=0.003, opt="adam")]}
    study = vtu.study_of(job)
    assert (study.goal, study.metric_tag, study.max_trials) == ("MAXIMIZE", "accuracy", 4)
    one, two, three, four = study.trials
    assert one.hyperparameters == {"depth": "4", "lr": "0.01", "opt": "adam"} and one.final.value == 0.9
    assert one.final.step == 12 and one.state is JobState.SUCCEEDED
    assert two.state is JobState.FAILED and "workerpool0-0" in two.error_message and two.final is None
    assert three.state is JobState.RUNNING and not three.finished
    assert study.best() is four and study.completed_count == 2
    assert vtu.study_of({"jobSpec": {}}) is None  # a CustomJob has no study


# -- the adapter, end to end ------------------------------------------------------------------------------------------
def test_a_tuning_drop_becomes_a_hyperparameter_tuning_job_whose_trials_are_published_and_best_named():
    api, w = vertex_world()
    out = w.drop("incoming/tune-001", spec=BASELINE_WITH_TUNING, spec_generation=1718000000000031)
    assert out.action == "submitted"
    job = api.only()
    name = job["name"]
    assert name.startswith("projects/demo-project/locations/us-central1/hyperparameterTuningJobs/")
    assert ("tuning.create", "incoming/tune-001") in api.calls and api.count("create") == 0
    assert set(api.hosts) == {"us-central1-aiplatform.googleapis.com"}
    assert job["studySpec"]["parameters"][0]["parameterId"] == "lr" and job["maxTrialCount"] == 4
    [chief] = job["trialJobSpec"]["workerPoolSpecs"]
    assert chief["pythonPackageSpec"]["args"][-2:] == ["--job-dir", "gs://drop-outputs/run-001"]
    assert job["trialJobSpec"]["serviceAccount"] == SA
    assert w.messages()[0]["resourceName"] == name and w.messages()[0]["jobDir"] == "gs://drop-outputs/run-001"

    tag = "training/hptuning/metric"  # the spec names no tag: cloudml-hypertune's default
    api.set_trials(name, vertex_trial("1", "ACTIVE", lr=0.05), state="JOB_STATE_RUNNING")
    w.reconciler.tick()
    api.set_trials(name, vertex_trial("1", "SUCCEEDED", 0.8, metric=tag, lr=0.05),
                   vertex_trial("2", "INFEASIBLE", lr=0.02), vertex_trial("3", "ACTIVE", lr=0.09))
    w.reconciler.tick()
    api.set_trials(name, vertex_trial("1", "SUCCEEDED", 0.8, metric=tag, lr=0.05),
                   vertex_trial("2", "INFEASIBLE", lr=0.02), vertex_trial("3", "SUCCEEDED", 0.93, metric=tag, lr=0.09),
                   state="JOB_STATE_SUCCEEDED")
    w.reconciler.tick()
    published = [(m.attributes["ce-id"], m.attributes["ce-type"]) for m in w.publisher.messages]
    key = out.job_id
    assert [i for i, _ in published] == [f"{key}/SUBMITTED", f"{key}/RUNNING", f"{key}/trial/1", f"{key}/trial/2",
                                         f"{key}/trial/3", f"{key}/SUCCEEDED"]
    for m in w.publisher.messages:
        data = json.loads(m.data)
        if m.attributes["ce-type"] == TRIAL_EVENT_TYPE:
            validate_trial_message(m.attributes, data)
        else:
            validate_message(m.attributes, data)
    succeeded = json.loads(w.publisher.messages[-1].data)
    assert succeeded["tuning"]["bestTrial"] == {"trialId": "3", "hyperparameters": {"lr": "0.09"},
                                                "objectiveValue": 0.93, "trainingStep": 12}
    assert succeeded["tuning"]["hyperparameterMetricTag"] == "training/hptuning/metric"
    failed = json.loads(w.publisher.messages[3].data)
    assert failed["trial"]["state"] == "FAILED" and "workerpool0-0" in failed["trial"]["errorMessage"]


def test_a_redelivered_tuning_drop_adopts_its_job_and_the_reconciler_finds_it_by_key():
    api, w = vertex_world()
    w.drop("incoming/tune-002", spec=BASELINE_WITH_TUNING, spec_generation=1718000000000032)
    first = api.only()["name"]
    submission = w.backend.submit(_request(api))
    assert submission.adopted and submission.status.handle.name == first and len(api.jobs) == 1
    found = w.backend.find("tune_002_1718000000000032")
    assert found is not None and found.handle.name == first and found.study is not None


def _request(api):
    """The request a redelivery of that drop makes (the same completed job)."""
    from submitter.model import JobRequest

    job = api.only()
    return JobRequest(key="tune_002_1718000000000032", display_name=job["displayName"], job={
        "jobId": "tune_002_1718000000000032", "labels": {"team": "vision", "submitter": "drop"},
        "trainingInput": {"scaleTier": "BASIC", "pythonModule": "trainer.task", "region": "us-central1",
                          "runtimeVersion": "2.11", "pythonVersion": "3.7", "jobDir": "gs://drop-outputs/run-001",
                          "args": ["--epochs", "3"],
                          "packageUris": job["trialJobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["packageUris"],
                          "scheduling": {"maxRunningTime": "172800s"},
                          "hyperparameters": {"goal": "MAXIMIZE", "maxTrials": 4, "params": [
                              {"parameterName": "lr", "type": "DOUBLE", "minValue": 0.01, "maxValue": 0.1}]}}})


def test_status_describe_and_cancel_route_by_the_resource_name_s_collection():
    api, w = vertex_world()
    w.drop("incoming/tune-003", spec=BASELINE_WITH_TUNING)
    name = api.only()["name"]
    assert collection_of(name) == "hyperparameterTuningJobs"
    handle = JobHandle("vertex", name, "k")
    assert w.backend.describe(handle)["name"] == name and ("tuning.get", name) in api.calls
    api.set_state(name, "JOB_STATE_RUNNING")
    assert w.backend.status(handle).state is JobState.RUNNING
    w.backend.cancel(handle)
    assert ("tuning.cancel", name) in api.calls and api.only()["state"] == "JOB_STATE_CANCELLING"
    assert api.count("cancel") == 0 and api.count("get") == 0


def test_listings_cover_both_collections_of_every_region():
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", region="us-central1", regions=REGIONS, transport=api)
    ours = {"submitter": "drop"}
    for collection in ("customJobs", "hyperparameterTuningJobs"):
        for region in ("us-central1", "asia-east1"):
            name = f"projects/demo-project/locations/{region}/{collection}/{next(api.ids)}"
            api.jobs[name] = {"name": name, "displayName": "d", "state": "JOB_STATE_RUNNING", "labels": ours}
    seen, token = [], None
    while True:
        page, token = backend.list_active(page_token=token)
        seen += [s.handle.name for s in page]
        if not token:
            break
    assert sorted(seen) == sorted(api.jobs) and api.count("list") == api.count("tuning.list") == len(REGIONS)
