"""The local training service's Vertex AI hyperparameterTuningJobs subset (submitter_local.training.vertex_tuning).

Two parts:
- in-process, unmarked: a paused service (nothing runs) driven through the real google-api-python-client and the
  real `VertexBackend` adapter: create, get, list (filter, pages), cancel, every validation error naming its field,
  the resource's field names checked against the bundled aiplatform.v1.json; and the Trial rendering (pure).
- marked stack (needs `.local/runtime`): real trials of a small trainer that reports with the real
  cloudml-hypertune: maxTrialCount and parallelTrialCount hold, every trial gets its `--<parameterId>=<value>`,
  CLUSTER_SPEC task.trial, CLOUD_ML_TRIAL_ID, its own metric file and AIP_MODEL_DIR; failed trials against
  maxFailedTrialCount; a cancel; and the adapter reading the study back (best trial) from the local service.
No timed assertions: parallelism is proven by a barrier the first trials wait at, the limit by the service's notes.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from test_training_service import BUCKET, envs_dir, make_sdist, make_service  # noqa: F401  (pytest fixtures)

from submitter.backends.vertex import VertexBackend
from submitter.backends.vertex_tuning import study_of
from submitter.model import JobRequest, JobState
from submitter_local.demo_tuning import most_at_once
from submitter_local.training import ServiceConfig, TrainingService, schema, vertex_tuning

PROJECT = "demo-project"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}

STUDY = {"metrics": [{"metricId": "score", "goal": "MAXIMIZE"}], "algorithm": "GRID_SEARCH",
         "parameters": [{"parameterId": "x", "discreteValueSpec": {"values": [1, 2, 3]}},
                        {"parameterId": "kind", "categoricalValueSpec": {"values": ["a", "b"]}}]}


def tuning_job(name: str = "tune-1", package: str = "gs://drops/packages/vtuner-0.1.tar.gz", args=(),
               study: dict | None = None, max_trials: int = 4, parallel: int = 2, **extra) -> dict:
    """A HyperparameterTuningJob body: one worker pool running `vtuner.task`."""
    return {"displayName": name, "studySpec": study or STUDY, "maxTrialCount": max_trials,
            "parallelTrialCount": parallel, "trialJobSpec": {
                "workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
                                     "pythonPackageSpec": {
                                         "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/"
                                                             "sklearn-cpu.1-0.py310:latest",
                                         "packageUris": [package], "pythonModule": "vtuner.task",
                                         "args": list(args)}}],
                "baseOutputDirectory": {"outputUriPrefix": f"gs://{BUCKET}/out/{name}"}}, **extra}


def tuning_api(svc):
    """projects().locations().hyperparameterTuningJobs() of the real client library, pointed at the service."""
    api = discovery.build("aiplatform", "v1", client_options={"api_endpoint": svc.url},
                          credentials=AnonymousCredentials(), static_discovery=True)
    return api.projects().locations().hyperparameterTuningJobs()


def error_of(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def schema_fields(name: str) -> set[str]:
    doc = schema.discovery_document("aiplatform.v1.json")
    return set(doc["schemas"][name]["properties"])


# -- in-process: a paused service ----------------------------------------------------------------------------------
@pytest.fixture
def paused(tmp_path):
    service = TrainingService(ServiceConfig(data_dir=tmp_path / "data", runtime_python=Path(sys.executable),
                                            paused=True, isolation="off", check_storage=False, poll_interval=0.05))
    service.start(host="127.0.0.1", port=0)
    yield service
    service.stop()


def test_create_get_list_and_cancel_a_tuning_job(paused):
    api = tuning_api(paused)
    created = api.create(parent=PARENT, body=tuning_job(labels={"team": "vision"})).execute()
    assert re.fullmatch(rf"{PARENT}/hyperparameterTuningJobs/\d{{19}}", created["name"])
    assert created["state"] == "JOB_STATE_QUEUED" and created["createTime"] and created["updateTime"]
    assert created["studySpec"] == STUDY and created["maxTrialCount"] == 4 and created["parallelTrialCount"] == 2
    assert created["trialJobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["pythonModule"] == "vtuner.task"
    assert created["labels"] == {"team": "vision"} and "trials" not in created
    assert set(created) <= schema_fields("GoogleCloudAiplatformV1HyperparameterTuningJob")
    assert api.get(name=created["name"]).execute() == created

    listed = api.list(parent=PARENT).execute()
    assert [j["name"] for j in listed["hyperparameterTuningJobs"]] == [created["name"]]
    # the collections do not mix, and another location holds nothing
    locations = discovery.build("aiplatform", "v1", client_options={"api_endpoint": paused.url},
                                credentials=AnonymousCredentials()).projects().locations()
    assert locations.customJobs().list(parent=PARENT).execute() == {}
    assert api.list(parent=f"projects/{PROJECT}/locations/europe-west4").execute() == {}

    assert api.cancel(name=created["name"], body={}).execute() == {}
    cancelled = api.get(name=created["name"]).execute()
    assert cancelled["state"] == "JOB_STATE_CANCELLED" and cancelled["endTime"]
    assert cancelled["error"]["code"] == 1 and "hyperparameterTuningJobs.cancel" in cancelled["error"]["message"]
    with pytest.raises(HttpError) as again:
        api.cancel(name=created["name"], body={}).execute()
    assert again.value.resp.status == 400 and error_of(again.value)["status"] == "FAILED_PRECONDITION"


def test_a_tuning_job_is_not_found_under_another_location_id_or_collection(paused):
    created = tuning_api(paused).create(parent=PARENT, body=tuning_job()).execute()
    job_id = created["name"].rsplit("/", 1)[1]
    custom = discovery.build("aiplatform", "v1", client_options={"api_endpoint": paused.url},
                             credentials=AnonymousCredentials()).projects().locations().customJobs()
    with pytest.raises(HttpError) as other_collection:
        custom.get(name=f"{PARENT}/customJobs/{job_id}").execute()
    assert other_collection.value.resp.status == 404
    for name in (f"projects/{PROJECT}/locations/europe-west4/hyperparameterTuningJobs/{job_id}",
                 f"{PARENT}/hyperparameterTuningJobs/12345"):
        with pytest.raises(HttpError) as missing:
            tuning_api(paused).get(name=name).execute()
        error = error_of(missing.value)
        assert missing.value.resp.status == 404 and "HyperparameterTuningJob does not exist" in error["message"]


def test_list_filters_and_pages_as_the_custom_jobs_list_does(paused):
    api = tuning_api(paused)
    names = [api.create(parent=PARENT, body=tuning_job(f"tune-{i}", labels={"n": str(i)})).execute()["name"]
             for i in range(3)]
    first = api.list(parent=PARENT, pageSize=2).execute()
    assert [j["name"] for j in first["hyperparameterTuningJobs"]] == names[::-1][:2]
    second = api.list(parent=PARENT, pageSize=2, pageToken=first["nextPageToken"]).execute()
    assert [j["name"] for j in second["hyperparameterTuningJobs"]] == [names[0]] and "nextPageToken" not in second
    only = api.list(parent=PARENT, filter='labels.n="1" AND state="JOB_STATE_QUEUED"').execute()
    assert [j["name"] for j in only["hyperparameterTuningJobs"]] == [names[1]]
    assert api.list(parent=PARENT, filter='display_name:"tune-*" AND state="JOB_STATE_RUNNING"').execute() == {}
    for bad in ({"filter": "colour=red"}, {"pageToken": "nonsense"}):
        with pytest.raises(HttpError) as caught:
            api.list(parent=PARENT, **bad).execute()
        assert caught.value.resp.status == 400


@pytest.mark.parametrize("change, field, words", [
    (lambda b: b.pop("displayName"), "hyperparameter_tuning_job.display_name", "required"),
    (lambda b: b.update(maxTrialCount=0), "hyperparameter_tuning_job.max_trial_count", "at least 1"),
    (lambda b: b.pop("parallelTrialCount"), "hyperparameter_tuning_job.parallel_trial_count", "at least 1"),
    (lambda b: b.update(maxFailedTrialCount=-1), "hyperparameter_tuning_job.max_failed_trial_count", "negative"),
    (lambda b: b.pop("trialJobSpec"), "hyperparameter_tuning_job.trial_job_spec", "required"),
    (lambda b: b["trialJobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"].update(packageUris=["/tmp/x.tar.gz"]),
     "hyperparameter_tuning_job.trial_job_spec.worker_pool_specs[0].python_package_spec.package_uris[0]",
     "not a Cloud Storage object URI"),
    (lambda b: b["studySpec"].update(metrics=[]), "hyperparameter_tuning_job.study_spec.metrics", "Exactly one"),
    (lambda b: b["studySpec"].update(metrics=[{"metricId": "my score", "goal": "MAXIMIZE"}]),
     "hyperparameter_tuning_job.study_spec.metrics[0].metric_id", "whitespace"),
    (lambda b: b["studySpec"].update(metrics=[{"metricId": "score"}]),
     "hyperparameter_tuning_job.study_spec.metrics[0].goal", "MAXIMIZE or MINIMIZE"),
    (lambda b: b["studySpec"].update(parameters=[]), "hyperparameter_tuning_job.study_spec.parameters",
     "At least one"),
    (lambda b: b["studySpec"]["parameters"].append({"parameterId": "x", "categoricalValueSpec": {"values": ["c"]}}),
     "hyperparameter_tuning_job.study_spec.parameters[2].parameter_id", "used twice"),
    (lambda b: b["studySpec"]["parameters"].append({"parameterId": "lr"}),
     "hyperparameter_tuning_job.study_spec.parameters[2]", "exactly one of"),
    (lambda b: b["studySpec"]["parameters"].append({"parameterId": "lr", "doubleValueSpec": {"minValue": 0.1,
                                                                                              "maxValue": 1}}),
     "hyperparameter_tuning_job.study_spec.parameters[2].double_value_spec", "GRID_SEARCH works only"),
    (lambda b: b["studySpec"].update(algorithm="RANDOM_SEARCH", parameters=[
        {"parameterId": "n", "integerValueSpec": {"minValue": "9", "maxValue": "1"}}]),
     "hyperparameter_tuning_job.study_spec.parameters[0].integer_value_spec.min_value", "greater than max_value"),
    (lambda b: b["studySpec"].update(algorithm="RANDOM_SEARCH", parameters=[
        {"parameterId": "lr", "doubleValueSpec": {"minValue": 0, "maxValue": 1}, "scaleType": "UNIT_LOG_SCALE"}]),
     "hyperparameter_tuning_job.study_spec.parameters[0].double_value_spec.min_value", "strictly positive"),
    (lambda b: b["studySpec"]["parameters"][0].update(discreteValueSpec={"values": [3, 1]}),
     "hyperparameter_tuning_job.study_spec.parameters[0].discrete_value_spec.values", "increasing"),
    (lambda b: b["studySpec"]["parameters"][1].update(scaleType="UNIT_LINEAR_SCALE"),
     "hyperparameter_tuning_job.study_spec.parameters[1].scale_type", "unset"),
    (lambda b: b.update(colour="red"), "hyperparameter_tuning_job", "Unknown name \"colour\""),
    (lambda b: b["studySpec"].update(algorithm="BAYES"), "hyperparameter_tuning_job.study_spec.algorithm", "BAYES"),
])
def test_create_refuses_a_bad_job_naming_the_field(paused, change, field, words):
    body = json.loads(json.dumps(tuning_job()))
    change(body)
    with pytest.raises(HttpError) as caught:
        tuning_api(paused).create(parent=PARENT, body=body).execute()
    error = error_of(caught.value)
    assert caught.value.resp.status == 400 and error["status"] == "INVALID_ARGUMENT"
    violations = error["details"][0]["fieldViolations"]
    assert any(v["field"] == field and words in v["description"] for v in violations), violations
    assert tuning_api(paused).list(parent=PARENT).execute() == {}


@pytest.mark.parametrize("change, field", [
    (lambda s: s.update(decayCurveStoppingSpec={}), "studySpec.decayCurveStoppingSpec"),
    (lambda s: s.update(measurementSelectionType="BEST_MEASUREMENT"), "studySpec.measurementSelectionType"),
    (lambda s: s.update(medianAutomatedStoppingSpec={"useElapsedDuration": True}),
     "studySpec.medianAutomatedStoppingSpec.useElapsedDuration"),
    (lambda s: s["parameters"][1].update(conditionalParameterSpecs=[{
        "parentCategoricalValues": {"values": ["a"]},
        "parameterSpec": {"parameterId": "y", "doubleValueSpec": {"minValue": 0.1, "maxValue": 1}}}]),
     "studySpec.parameters[1].conditionalParameterSpecs"),
])
def test_create_says_which_field_it_does_not_honour(paused, change, field):
    body = json.loads(json.dumps(tuning_job()))
    change(body["studySpec"])
    with pytest.raises(HttpError) as caught:
        tuning_api(paused).create(parent=PARENT, body=body).execute()
    error = error_of(caught.value)
    assert caught.value.resp.status == 501 and error["status"] == "UNIMPLEMENTED"
    assert error["message"].startswith(f"{field}: ") and "local training service" in error["message"]


def test_the_adapter_submits_finds_and_cancels_a_tuning_job(paused):
    backend = VertexBackend(PROJECT, region=REGION, endpoint=paused.url, anonymous=True)
    hp = {"goal": "MAXIMIZE", "hyperparameterMetricTag": "accuracy", "maxTrials": 3, "maxParallelTrials": 2,
          "params": [{"parameterName": "n-estimators", "type": "INTEGER", "minValue": 1, "maxValue": 9}]}
    job = {"jobId": "Tune_1", "labels": {"team": "vision"}, "trainingInput": {
        "region": REGION, "scaleTier": "BASIC", "runtimeVersion": "2.11", "pythonVersion": "3.7",
        "pythonModule": "trainer.task", "packageUris": ["gs://drops/packages/trainer-0.1.tar.gz"],
        "jobDir": "gs://outs/Tune_1", "hyperparameters": hp}}
    submission = backend.submit(JobRequest(key="Tune_1", job=job, display_name="incoming/tune-1"))
    assert "/hyperparameterTuningJobs/" in submission.status.handle.name
    assert submission.status.state is JobState.QUEUED and submission.status.study is not None
    found = backend.find("Tune_1")
    assert found is not None and found.handle.name == submission.status.handle.name
    assert found.study.max_trials == 3 and found.study.trials == ()
    backend.cancel(submission.status.handle)
    assert backend.status(submission.status.handle).state is JobState.CANCELLED
    assert paused.stats()["api_calls"]["hyperparameterTuningJobs.create"] == 1


# -- the Trial rendering (pure) --------------------------------------------------------------------------------------
def test_trials_render_in_vertex_shape_and_read_back_with_the_same_best_trial():
    study = {"studySpec": {"metrics": [{"metricId": "score", "goal": "MINIMIZE"}], "parameters": [
        {"parameterId": "n", "integerValueSpec": {"minValue": "1", "maxValue": "9"}},
        {"parameterId": "lr", "doubleValueSpec": {"minValue": 0.01, "maxValue": 1}},
        {"parameterId": "kind", "categoricalValueSpec": {"values": ["a", "b"]}}]}, "maxTrialCount": 5}
    values = {"n": "3", "lr": "0.25", "kind": "b"}
    output = [  # best first, as trainingOutput lists them
        {"trialId": "2", "state": "SUCCEEDED", "hyperparameters": values, "startTime": "t2", "endTime": "t3",
         "finalMetric": {"trainingStep": "10", "objectiveValue": 0.5},
         "allMetrics": [{"trainingStep": "5", "objectiveValue": 0.9}, {"trainingStep": "10", "objectiveValue": 0.5}]},
        {"trialId": "1", "state": "FAILED", "hyperparameters": values, "startTime": "t0", "endTime": "t1"},
        {"trialId": "3", "state": "SUCCEEDED", "hyperparameters": values, "startTime": "t4", "endTime": "t5"},
        {"trialId": "4", "state": "RUNNING", "hyperparameters": values, "startTime": "t6"},
        {"trialId": "5", "state": "CANCELLED", "hyperparameters": values, "startTime": "t6", "endTime": "t7"}]
    trials = vertex_tuning.render_trials(study, output, {"1": "The replica workerpool0-0 exited with 2."})
    assert [(t["id"], t["state"]) for t in trials] == [("1", "INFEASIBLE"), ("2", "SUCCEEDED"), ("3", "INFEASIBLE"),
                                                       ("4", "ACTIVE"), ("5", "STOPPING")]
    failed, best, no_metric, running, stopped = trials
    assert best["parameters"] == [{"parameterId": "n", "value": 3}, {"parameterId": "lr", "value": 0.25},
                                  {"parameterId": "kind", "value": "b"}]
    assert best["finalMeasurement"] == {"stepCount": "10", "metrics": [{"metricId": "score", "value": 0.5}]}
    assert [m["stepCount"] for m in best["measurements"]] == ["5", "10"]
    assert best["startTime"] == "t2" and best["endTime"] == "t3"
    assert failed["infeasibleReason"] == "The replica workerpool0-0 exited with 2."
    assert "reported no value of the metric 'score'" in no_metric["infeasibleReason"]
    assert "endTime" not in running and "endTime" not in stopped and "finalMeasurement" not in running
    for t in trials:
        assert set(t) <= schema_fields("GoogleCloudAiplatformV1Trial")
        assert all(set(p) <= schema_fields("GoogleCloudAiplatformV1TrialParameter") for p in t["parameters"])
    assert set(best["finalMeasurement"]) <= schema_fields("GoogleCloudAiplatformV1Measurement")
    # the submitter's adapter reads it back: the same best trial, values as the trainer received them
    read = study_of({**study, "trials": trials})
    assert read is not None and read.best() is not None and read.best().trial_id == "2"
    assert read.best().hyperparameters == values and read.best().final.value == 0.5
    assert [t.state for t in read.trials] == [JobState.FAILED, JobState.SUCCEEDED, JobState.FAILED,
                                              JobState.RUNNING, JobState.CANCELLING]


def test_a_vertex_study_draws_values_as_the_ml_v1_study_does():
    spec = vertex_tuning.study_spec({"studySpec": {
        "metrics": [{"metricId": "acc", "goal": "MINIMIZE"}], "algorithm": "RANDOM_SEARCH",
        "medianAutomatedStoppingSpec": {},
        "parameters": [{"parameterId": "n", "integerValueSpec": {"minValue": "1", "maxValue": "100"},
                        "scaleType": "UNIT_LOG_SCALE"},
                       {"parameterId": "d", "discreteValueSpec": {"values": [0.5, 1]}},
                       {"parameterId": "c", "categoricalValueSpec": {"values": ["gini"]}}]},
        "maxTrialCount": 6, "parallelTrialCount": 2, "maxFailedTrialCount": 1})
    assert (spec.goal, spec.metric_tag, spec.algorithm, spec.early_stopping) == ("MINIMIZE", "acc", "RANDOM_SEARCH",
                                                                                 True)
    assert (spec.max_trials, spec.max_parallel, spec.max_failed) == (6, 2, 1)
    assert [(p.name, p.type, p.low, p.high, p.scale) for p in spec.params[:1]] == [
        ("n", "INTEGER", 1.0, 100.0, "UNIT_LOG_SCALE")]
    assert spec.params[1].values == (0.5, 1) and spec.params[2].values == ("gini",)
    assert spec.max_failed_field == "maxFailedTrialCount"


# -- real trials (stack) -------------------------------------------------------------------------------------------
VTUNE = r'''
"""A Vertex tuning trainer: metric "score" = x (+ 0.5 for kind b), reported with cloudml-hypertune."""
import argparse, json, os, sys, time

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=0.0)
p.add_argument("--kind", default="a")
p.add_argument("--mode", default="ok")
p.add_argument("--barrier", default="")
a, _ = p.parse_known_args()  # the adapter appends --job-dir
trial = os.environ.get("CLOUD_ML_TRIAL_ID")
print("TRIAL-REPORT " + json.dumps({"argv": sys.argv[1:], "cluster": json.loads(os.environ["CLUSTER_SPEC"]),
                                    "trial": trial, "file": os.environ.get("CLOUD_ML_HP_METRIC_FILE"),
                                    "model_dir": os.environ.get("AIP_MODEL_DIR")}), flush=True)
if a.barrier:  # "<dir>:<n>": the first n trials wait until n trials have started (proves they run at once)
    where, n = a.barrier.rsplit(":", 1)
    open(os.path.join(where, f"start-{trial}"), "w").close()
    if int(trial) <= int(n):
        while len([f for f in os.listdir(where) if f.startswith("start-")]) < int(n):
            time.sleep(0.02)
if a.mode == "fail":
    print("ValueError: this trial fails on purpose", file=sys.stderr)
    sys.exit(2)
if a.mode == "sleep":
    time.sleep(300)
import hypertune
ht = hypertune.HyperTune()
value = a.x + (0.5 if a.kind == "b" else 0.0)
ht.report_hyperparameter_tuning_metric(hyperparameter_metric_tag="score", metric_value=value - 1, global_step=5)
ht.report_hyperparameter_tuning_metric(hyperparameter_metric_tag="score", metric_value=value, global_step=10)
'''


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator with bucket `drops` holding the Vertex tuning trainer (`vtuner`, declaring cloudml-hypertune,
    which the runtime has). Named `gcs` because test_training_service's `make_service` asks for it."""
    import socket

    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).create_bucket(BUCKET)
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "vtuner", {"task": VTUNE}, requires=("cloudml-hypertune",))
    bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}/packages/{path.name}"
    server.stop()
    patched.undo()


def wait_until(api, name: str, states: set[str], timeout: float = 240.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        job = api.get(name=name).execute()
        if job["state"] in states:
            return job
        if time.monotonic() > end:
            raise AssertionError(f"{name} still {job['state']} after {timeout}s: {job}")
        time.sleep(0.05)


def log_of(svc, name: str, replica: str | None = None) -> str:
    r = requests.get(f"{svc.url}/local/v1/projects/{PROJECT}/jobs/{name.rsplit('/', 1)[1]}/logs",
                     params={"replica": replica} if replica else {}, timeout=10)
    r.raise_for_status()
    return r.text


@pytest.mark.stack
@pytest.mark.usefixtures("runtime_required")
def test_a_study_runs_max_trial_count_trials_parallel_trial_count_at_a_time(make_service, gcs, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir(mode=0o777)
    barrier.chmod(0o777)
    svc = make_service(shared_paths=(barrier,))
    api = tuning_api(svc)
    created = api.create(parent=PARENT, body=tuning_job("grid-1", gcs, args=["--barrier", f"{barrier}:2"])).execute()
    job = wait_until(api, created["name"], TERMINAL)
    assert job["state"] == "JOB_STATE_SUCCEEDED", job.get("error")
    assert job["startTime"] and job["endTime"] and job["updateTime"] >= job["startTime"] and "error" not in job
    trials = job["trials"]
    # 6 grid points, maxTrialCount 4: four trials, in the grid's order, every one SUCCEEDED with its measurement
    assert [t["id"] for t in trials] == ["1", "2", "3", "4"]
    assert [[p["value"] for p in t["parameters"]] for t in trials] == [[1, "a"], [1, "b"], [2, "a"], [2, "b"]]
    for t in trials:
        x, kind = (p["value"] for p in t["parameters"])
        assert t["state"] == "SUCCEEDED" and t["startTime"] and t["endTime"]
        assert t["finalMeasurement"] == {"stepCount": "10", "metrics": [
            {"metricId": "score", "value": x + (0.5 if kind == "b" else 0.0)}]}
        assert set(t) <= schema_fields("GoogleCloudAiplatformV1Trial")
        # what the trial saw: its values after the pool's args, its id, its own metric file and model dir
        report = json.loads(re.search(r"TRIAL-REPORT (.*)", log_of(svc, job["name"], f"trial-{t['id']}/"
                                                                                     "workerpool0-0")).group(1))
        assert report["argv"][-2:] == [f"--x={x}", f"--kind={kind}"]
        assert report["trial"] == t["id"] and report["cluster"]["task"] == {"type": "workerpool0", "index": 0,
                                                                            "trial": t["id"]}
        assert report["file"].endswith("/hypertune/output.metrics")
        assert report["model_dir"] == f"gs://{BUCKET}/out/grid-1/{t['id']}/model/"
    assert most_at_once(log_of(svc, job["name"])) == 2  # parallelTrialCount, reached (the barrier)


@pytest.mark.stack
@pytest.mark.usefixtures("runtime_required")
def test_failed_trials_fail_the_job_at_max_failed_trial_count(make_service, gcs):
    svc = make_service()
    api = tuning_api(svc)
    body = tuning_job("fails-1", gcs, args=["--mode", "fail"], max_trials=5, parallel=1, maxFailedTrialCount=2)
    job = wait_until(api, api.create(parent=PARENT, body=body).execute()["name"], TERMINAL)
    assert job["state"] == "JOB_STATE_FAILED" and job["error"]["code"] == 3
    assert "maxFailedTrialCount (2)" in job["error"]["message"]
    assert "this trial fails on purpose" in job["error"]["message"]
    assert [(t["id"], t["state"]) for t in job["trials"]] == [("1", "INFEASIBLE"), ("2", "INFEASIBLE")]
    assert all("exited with a non-zero status of 2" in t["infeasibleReason"] for t in job["trials"])


@pytest.mark.stack
@pytest.mark.usefixtures("runtime_required")
def test_cancelling_a_study_stops_its_running_trials(make_service, gcs):
    svc = make_service()
    api = tuning_api(svc)
    name = api.create(parent=PARENT, body=tuning_job("cancel-1", gcs, args=["--mode", "sleep"])).execute()["name"]
    end = time.monotonic() + 120
    while not all(re.search(rf"\] Trial {i} started", log_of(svc, name) if _has_log(svc, name) else "")
                  for i in (1, 2)):
        assert time.monotonic() < end, "the trials never started"
        time.sleep(0.05)
    assert [t["state"] for t in api.get(name=name).execute()["trials"]] == ["ACTIVE", "ACTIVE"]
    api.cancel(name=name, body={}).execute()
    job = wait_until(api, name, TERMINAL, timeout=60)
    assert job["state"] == "JOB_STATE_CANCELLED" and job["error"]["code"] == 1
    assert [t["state"] for t in job["trials"]] == ["STOPPING", "STOPPING"]


def _has_log(svc, name: str) -> bool:
    try:
        log_of(svc, name)
    except requests.HTTPError:
        return False
    return True


@pytest.mark.stack
@pytest.mark.usefixtures("runtime_required")
def test_the_adapter_reads_the_study_and_its_best_trial_from_the_local_service(make_service, gcs):
    svc = make_service()
    backend = VertexBackend(PROJECT, region=REGION, endpoint=svc.url, anonymous=True)
    hp = {"goal": "MAXIMIZE", "hyperparameterMetricTag": "score", "algorithm": "GRID_SEARCH", "maxTrials": 3,
          "maxParallelTrials": 2, "params": [{"parameterName": "x", "type": "DISCRETE", "discreteValues": [1, 2, 3]}]}
    job = {"jobId": "Tune_2", "trainingInput": {
        "region": REGION, "scaleTier": "BASIC", "runtimeVersion": "2.11", "pythonVersion": "3.7",
        "pythonModule": "vtuner.task", "packageUris": [gcs], "jobDir": f"gs://{BUCKET}/out/Tune_2",
        "hyperparameters": hp}}
    handle = backend.submit(JobRequest(key="Tune_2", job=job, display_name="incoming/tune-2")).status.handle
    resource = wait_until(tuning_api(svc), handle.name, TERMINAL)
    status = backend.status(handle)
    assert status.state is JobState.SUCCEEDED, resource.get("error")
    summary = status.study.summary()
    assert summary["trialCount"] == summary["completedTrialCount"] == 3 and summary["maxTrials"] == 3
    best = max(resource["trials"], key=lambda t: t["finalMeasurement"]["metrics"][0]["value"])
    assert summary["bestTrial"] == {"trialId": best["id"], "hyperparameters": {"x": "3"},
                                    "objectiveValue": best["finalMeasurement"]["metrics"][0]["value"],
                                    "trainingStep": 10}


@pytest.mark.stack
@pytest.mark.usefixtures("runtime_required")
def test_a_trial_past_the_trial_job_spec_timeout_is_stopped_and_infeasible(make_service, gcs):
    svc = make_service()
    api = tuning_api(svc)
    body = tuning_job("slow-1", gcs, args=["--mode", "sleep"], max_trials=1, parallel=1)
    body["trialJobSpec"]["scheduling"] = {"timeout": "1s"}
    job = wait_until(api, api.create(parent=PARENT, body=body).execute()["name"], TERMINAL, timeout=120)
    assert job["state"] == "JOB_STATE_FAILED" and job["error"]["code"] == 3
    [trial] = job["trials"]
    assert trial["state"] == "INFEASIBLE" and trial["endTime"]
    assert "ran longer than trialJobSpec.scheduling.timeout (1s)" in trial["infeasibleReason"]
    assert "ran longer than trialJobSpec.scheduling.timeout" in job["error"]["message"]
