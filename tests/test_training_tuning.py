"""The local training service runs hyperparameter tuning jobs for real (submitter_local.training.trials): every trial
is a sandboxed trainer process that receives `--<parameterName>=<value>`, TF_CONFIG task.trial, CLOUD_ML_TRIAL_ID and
its own CLOUD_ML_HP_METRIC_FILE, and reports with the real cloudml-hypertune package from the runtime; the limits
(maxTrials, maxParallelTrials, maxFailedTrials), early stopping, resuming and trainingOutput are checked through
google-api-python-client, as every client sees them.

Needs `.local/runtime` (`make runtime`). No timed assertions: the parallelism limit is read from the order of the
service's own notes in the job's log, and parallelism itself is proven by a barrier the first trials wait at.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from googleapiclient.errors import HttpError
from test_training_service import (  # noqa: F401  (pytest fixtures)
    BUCKET,
    PARENT,
    PROJECT,
    TERMINAL,
    envs_dir,
    error_of,
    job_body,
    jobs_api,
    logs,
    make_sdist,
    make_service,
    wait_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

TUNE = r'''
"""A tuning trainer: metric = x (+ 0.5 for kind b), reported with cloudml-hypertune, as AI Platform trainers do."""
import argparse, json, os, sys, time

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=0.0)
p.add_argument("--kind", default="a")
p.add_argument("--job-dir")
p.add_argument("--mode", default="ok")
p.add_argument("--barrier", default="")
p.add_argument("--tag", default="score")
a = p.parse_args()
trial = os.environ.get("CLOUD_ML_TRIAL_ID")
print("TRIAL-REPORT " + json.dumps({"argv": sys.argv[1:], "task": json.loads(os.environ["TF_CONFIG"])["task"],
                                    "trial": trial, "file": os.environ.get("CLOUD_ML_HP_METRIC_FILE")}), flush=True)
if a.barrier:  # "<dir>:<n>": the first n trials wait until n trials have started (proves they run at once)
    where, n = a.barrier.rsplit(":", 1)
    open(os.path.join(where, f"start-{trial}"), "w").close()
    if int(trial) <= int(n):
        while len([f for f in os.listdir(where) if f.startswith("start-")]) < int(n):
            time.sleep(0.02)
if a.mode == "fail":
    print("ValueError: this trial fails on purpose", file=sys.stderr)
    sys.exit(2)
import hypertune
ht = hypertune.HyperTune()
value = a.x + (0.5 if a.kind == "b" else 0.0)
if a.mode == "slow-when-worse":  # early stopping: report at step 1; a trial worse than x=1 then runs until stopped
    ht.report_hyperparameter_tuning_metric(hyperparameter_metric_tag=a.tag, metric_value=value, global_step=1)
    if value > 1:
        time.sleep(300)
    ht.report_hyperparameter_tuning_metric(hyperparameter_metric_tag=a.tag, metric_value=value, global_step=2)
elif a.mode == "sleep":
    time.sleep(300)
else:
    ht.report_hyperparameter_tuning_metric(hyperparameter_metric_tag=a.tag, metric_value=value - 1, global_step=5)
    ht.report_hyperparameter_tuning_metric(hyperparameter_metric_tag=a.tag, metric_value=value, global_step=10)
'''


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator with bucket `drops` holding the tuning trainer (it declares cloudml-hypertune, which the
    runtime has, so no index is needed)."""
    import socket

    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).create_bucket(BUCKET)
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "tuner", {"task": TUNE}, requires=("cloudml-hypertune",))
    bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}/packages"
    server.stop()
    patched.undo()


def tuning_job(job_id: str, gcs: str, hyperparameters: dict, args: list[str] | None = None, **ti) -> dict:
    return job_body(job_id, gcs, module="tuner.task", package="tuner-0.1.tar.gz", args=args or [],
                    jobDir=f"gs://{BUCKET}/out/{job_id}", hyperparameters=hyperparameters, **ti)


GRID = {"goal": "MAXIMIZE", "hyperparameterMetricTag": "score", "algorithm": "GRID_SEARCH", "maxTrials": 8,
        "maxParallelTrials": 2,
        "params": [{"parameterName": "x", "type": "DISCRETE", "discreteValues": [1, 2, 3]},
                   {"parameterName": "kind", "type": "CATEGORICAL", "categoricalValues": ["a", "b"]}]}


def trial_log(svc, job_id: str, trial_id: str) -> str:
    r = requests.get(f"{svc.url}/local/v1/projects/{PROJECT}/jobs/{job_id}/logs",
                     params={"replica": f"trial-{trial_id}/master-0"}, timeout=10)
    r.raise_for_status()
    return r.text


def most_at_once(job_log: str) -> int:
    """The most trials running at once, from the order of the service's notes 'Trial N started' / 'ended'."""
    running = peak = 0
    for line in job_log.splitlines():
        if re.search(r"\] Trial \d+ started", line):
            running += 1
            peak = max(peak, running)
        elif re.search(r"\] Trial \d+ ended", line):
            running -= 1
    return peak


def test_a_grid_study_runs_every_point_within_its_limits_and_reports_every_trial_best_first(make_service, gcs,
                                                                                             tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir(mode=0o777)
    barrier.chmod(0o777)
    svc = make_service(shared_paths=(barrier,))
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=tuning_job("grid_1", gcs, GRID, args=["--barrier", f"{barrier}:2"])).execute()
    job, _ = wait_for(jobs, "grid_1", TERMINAL, timeout=240)
    assert job["state"] == "SUCCEEDED", job.get("errorMessage")
    out = job["trainingOutput"]
    # 3 x 2 grid points although maxTrials is 8: a grid search ends when its grid is used up
    assert out["isHyperparameterTuningJob"] is True and out["completedTrialCount"] == "6"
    assert out["hyperparameterMetricTag"] == "score" and out["consumedMLUnits"] > 0
    trials = out["trials"]
    assert sorted(t["trialId"] for t in trials) == ["1", "2", "3", "4", "5", "6"]
    assert {(t["hyperparameters"]["x"], t["hyperparameters"]["kind"]) for t in trials} == {
        (x, k) for x in ("1", "2", "3") for k in ("a", "b")}
    values = [t["finalMetric"]["objectiveValue"] for t in trials]
    assert values == sorted(values, reverse=True)  # best first for MAXIMIZE
    assert trials[0]["hyperparameters"] == {"x": "3", "kind": "b"} and trials[0]["finalMetric"] == {
        "trainingStep": "10", "objectiveValue": 3.5}
    assert trials[0]["allMetrics"] == [{"trainingStep": "5", "objectiveValue": 2.5},
                                       {"trainingStep": "10", "objectiveValue": 3.5}]
    assert all(t["state"] == "SUCCEEDED" and t["startTime"] and t["endTime"] for t in trials)
    # every trial got its values, its trial id and its own metric file, as AI Platform set them
    for t in trials:
        report = json.loads(re.search(r"TRIAL-REPORT (.*)", trial_log(svc, "grid_1", t["trialId"])).group(1))
        hp = t["hyperparameters"]
        assert report["argv"][-4:] == [f"--x={hp['x']}", f"--kind={hp['kind']}", "--job-dir",
                                       f"gs://{BUCKET}/out/grid_1"]
        assert report["trial"] == t["trialId"] and report["task"] == {"type": "master", "index": 0,
                                                                        "trial": t["trialId"]}
        assert report["file"].endswith("/hypertune/output.metrics")
    # at most maxParallelTrials at once (the service's own notes), and two did run at once (the barrier)
    assert most_at_once(logs(svc, "grid_1")) == 2


def test_failed_trials_fail_the_job_at_max_failed_trials_and_say_why(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    hp = {**GRID, "maxFailedTrials": 2, "maxParallelTrials": 1, "algorithm": "RANDOM_SEARCH", "maxTrials": 5}
    jobs.create(parent=PARENT, body=tuning_job("fails_1", gcs, hp, args=["--mode", "fail"])).execute()
    job, _ = wait_for(jobs, "fails_1", TERMINAL, timeout=120)
    assert job["state"] == "FAILED"
    assert "maxFailedTrials (2)" in job["errorMessage"] and "this trial fails on purpose" in job["errorMessage"]
    trials = job["trainingOutput"]["trials"]
    assert [t["state"] for t in trials] == ["FAILED", "FAILED"] and job["trainingOutput"]["completedTrialCount"] == "0"


def test_early_stopping_stops_a_trial_worse_than_the_median_and_the_study_succeeds(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    hp = {"goal": "MINIMIZE", "hyperparameterMetricTag": "score", "algorithm": "GRID_SEARCH", "maxTrials": 2,
          "maxParallelTrials": 1, "enableTrialEarlyStopping": True,
          "params": [{"parameterName": "x", "type": "DISCRETE", "discreteValues": [1, 2]}]}
    jobs.create(parent=PARENT, body=tuning_job("early_1", gcs, hp, args=["--mode", "slow-when-worse"])).execute()
    job, _ = wait_for(jobs, "early_1", TERMINAL, timeout=120)
    assert job["state"] == "SUCCEEDED", job.get("errorMessage")
    best, stopped = job["trainingOutput"]["trials"]
    assert best["trialId"] == "1" and best["finalMetric"]["objectiveValue"] == 1 and "isTrialStoppedEarly" not in best
    # trial 2 reported 2 at step 1, worse than the median (1) of the completed trial: stopped, not waited for
    assert stopped["trialId"] == "2" and stopped["isTrialStoppedEarly"] is True and stopped["state"] == "SUCCEEDED"
    assert stopped["finalMetric"] == {"trainingStep": "1", "objectiveValue": 2}
    assert "Stopped early" in trial_log(svc, "early_1", "2")


def test_a_resumed_study_continues_the_previous_trials_and_numbering(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    hp = {"goal": "MAXIMIZE", "hyperparameterMetricTag": "score", "algorithm": "GRID_SEARCH", "maxTrials": 2,
          "params": [{"parameterName": "x", "type": "INTEGER", "minValue": 1, "maxValue": 4}]}
    jobs.create(parent=PARENT, body=tuning_job("first_1", gcs, hp)).execute()
    first, _ = wait_for(jobs, "first_1", TERMINAL, timeout=120)
    assert first["state"] == "SUCCEEDED" and {t["hyperparameters"]["x"] for t in first["trainingOutput"]["trials"]} \
        == {"1", "2"}
    jobs.create(parent=PARENT, body=tuning_job("again_1", gcs, {**hp, "resumePreviousJobId": "first_1"})).execute()
    job, _ = wait_for(jobs, "again_1", TERMINAL, timeout=120)
    assert job["state"] == "SUCCEEDED", job.get("errorMessage")
    trials = {t["trialId"]: t["hyperparameters"]["x"] for t in job["trainingOutput"]["trials"]}
    assert trials == {"1": "1", "2": "2", "3": "3", "4": "4"}  # the grid goes on where it stopped
    assert job["trainingOutput"]["trials"][0]["hyperparameters"] == {"x": "4"}
    assert job["trainingOutput"]["completedTrialCount"] == "4"


def test_a_study_whose_trials_report_no_metric_under_its_tag_fails_and_names_what_they_reported(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    hp = {**GRID, "maxTrials": 1, "hyperparameterMetricTag": "accuracy"}
    jobs.create(parent=PARENT, body=tuning_job("notag_1", gcs, hp, args=["--tag", "score"])).execute()
    job, _ = wait_for(jobs, "notag_1", TERMINAL, timeout=120)
    assert job["state"] == "FAILED"
    assert "No trial reported the metric 'accuracy'" in job["errorMessage"] and "score" in job["errorMessage"]
    assert "CLOUD_ML_HP_METRIC_FILE" in job["errorMessage"]


def test_cancelling_a_study_stops_its_running_trials(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    hp = {**GRID, "algorithm": "RANDOM_SEARCH", "maxTrials": 4, "maxParallelTrials": 2}
    jobs.create(parent=PARENT, body=tuning_job("cancel_1", gcs, hp, args=["--mode", "sleep"])).execute()
    wait_for(jobs, "cancel_1", {"RUNNING"}, timeout=120)
    # wait until both trials are up (their reports are in their logs)
    for trial in ("1", "2"):
        _wait_report(svc, "cancel_1", trial)
    jobs.cancel(name=f"{PARENT}/jobs/cancel_1", body={}).execute()
    job, _ = wait_for(jobs, "cancel_1", TERMINAL, timeout=60)
    assert job["state"] == "CANCELLED"
    assert [t["state"] for t in job["trainingOutput"]["trials"]] == ["CANCELLED", "CANCELLED"]


def _wait_report(svc, job_id: str, trial: str, timeout: float = 60.0) -> None:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if "TRIAL-REPORT" in trial_log(svc, job_id, trial):
                return
        except requests.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"trial {trial} of {job_id} never reported")


@pytest.mark.parametrize("hp, field, words", [
    ({**GRID, "params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": 0.1, "maxValue": 1}]},
     "training_input.hyperparameters", "GRID_SEARCH works only with"),
    ({**GRID, "resumePreviousJobId": "nothing_here"}, "training_input.hyperparameters.resume_previous_job_id",
     "there is no job"),
])
def test_jobs_create_refuses_a_study_it_cannot_run(make_service, gcs, hp, field, words):
    jobs = jobs_api(make_service())
    with pytest.raises(HttpError) as caught:
        jobs.create(parent=PARENT, body=tuning_job("bad_1", gcs, hp)).execute()
    error = error_of(caught.value)
    assert caught.value.resp.status == 400 and error["status"] == "INVALID_ARGUMENT"
    [violation] = error["details"][0]["fieldViolations"]
    assert violation["field"] == field and words in violation["description"]
