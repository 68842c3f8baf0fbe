"""The local training service's optional create quota (submitter_local.training.quota, `create_quota_per_minute`),
and its wiring into the local stack (`StackConfig.create_quota_per_minute`; on a running stack: test_quota_stack.py).

- the counting, pure, on a virtual clock: a sliding window per key, refused creates charge nothing, concurrent
  creates never admit more than the limit;
- over HTTP, in process and fast (a paused service: nothing is installed or run; storage not checked): ml v1
  jobs.create and Vertex customJobs.create / hyperparameterTuningJobs.create answer 429 RESOURCE_EXHAUSTED with
  Google's RATE_LIMIT_EXCEEDED ErrorInfo beyond the quota, per project, API and region, and the submitter's own
  adapters read that answer as RATE_LIMITED (the input is queued), never as a permanent QUOTA_EXCEEDED.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from submitter import quota as submitter_quota
from submitter.backends.ml_v1 import MlV1Backend
from submitter.backends.vertex import VertexBackend
from submitter.errors import BackendUnavailable
from submitter.model import JobRequest
from submitter.reasons import Reason
from submitter_local.training import ServiceConfig, TrainingService
from submitter_local.training.__main__ import main as service_main
from submitter_local.training.quota import CreateQuota

PROJECT = "demo-project"
REGION = "us-central1"
PACKAGE = "gs://drops/packages/trainer-0.1.tar.gz"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the counting (pure) ---------------------------------------------------------------------------------------------

def test_a_window_admits_the_limit_then_refuses_until_its_oldest_charge_expires():
    clock = VirtualClock()
    q = CreateQuota(3, window_s=60.0, clock=clock)
    key = ("ml.googleapis.com", PROJECT, REGION)
    assert [q.admit(key).admitted for _ in range(3)] == [True, True, True]
    clock.now += 10
    refused = q.admit(key)
    assert not refused.admitted and refused.retry_after_s == pytest.approx(50.0) and refused.used == 3
    clock.now += 49.9
    assert not q.admit(key).admitted
    clock.now += 0.1  # 60 s after the first three charges: all of them leave the window at once
    assert [q.admit(key).admitted for _ in range(4)] == [True, True, True, False]
    assert q.refused == 3 and q.used(key) == 3


def test_the_window_slides_charge_by_charge():
    clock = VirtualClock()
    q = CreateQuota(2, window_s=60.0, clock=clock)
    assert q.admit("r").admitted  # t=0
    clock.now += 30
    assert q.admit("r").admitted  # t=30
    clock.now += 29
    assert not q.admit("r").admitted  # t=59: both still in the window
    clock.now += 1
    assert q.admit("r").admitted  # t=60: the first left, one slot
    assert not q.admit("r").admitted
    assert q.admit("r").retry_after_s == pytest.approx(30.0)  # the t=30 charge leaves at t=90


def test_refused_creates_charge_nothing_so_retrying_does_not_push_the_wait_back():
    clock = VirtualClock()
    q = CreateQuota(1, window_s=5.0, clock=clock)
    assert q.admit("r").admitted
    for _ in range(50):  # a client hammering every 0.1 s
        clock.now += 0.099
        assert not q.admit("r").admitted
    clock.now = 1005.0
    assert q.admit("r").admitted


def test_keys_are_counted_apart():
    q = CreateQuota(1, clock=VirtualClock())
    keys = [("ml.googleapis.com", PROJECT, REGION), ("ml.googleapis.com", PROJECT, "europe-west4"),
            ("aiplatform.googleapis.com", PROJECT, REGION), ("ml.googleapis.com", "other-project", REGION)]
    assert all(q.admit(k).admitted for k in keys)
    assert not any(q.admit(k).admitted for k in keys)


def test_concurrent_creates_never_admit_more_than_the_limit():
    q = CreateQuota(5, window_s=60.0)  # the real clock: nothing leaves the window during the test
    start = threading.Barrier(40)
    admitted: list[bool] = []

    def create() -> None:
        start.wait()
        admitted.append(q.admit("r").admitted)

    threads = [threading.Thread(target=create) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 5 and q.refused == 35


@pytest.mark.parametrize("limit, window", [(0, 60.0), (-1, 60.0), (1, 0.0), (1, -5.0)])
def test_a_quota_that_admits_nothing_is_refused(limit, window):
    with pytest.raises(ValueError):
        CreateQuota(limit, window_s=window)
    with pytest.raises(ValueError):
        ServiceConfig(data_dir=Path("/tmp/x"), runtime_python=Path(sys.executable), create_quota_per_minute=limit,
                      create_quota_window_s=window)


def test_the_cli_refuses_a_bad_quota_before_starting(tmp_path, capsys):
    code = service_main(["--data-dir", str(tmp_path), "--runtime-python", sys.executable, "--port", "0",
                         "--create-quota-per-minute", "0"])
    assert code == 1 and "create_quota_per_minute" in capsys.readouterr().err


# -- over HTTP -------------------------------------------------------------------------------------------------------

def _service(tmp_path: Path, **quota) -> TrainingService:
    return TrainingService(ServiceConfig(data_dir=tmp_path / "data", runtime_python=Path(sys.executable),
                                         paused=True, isolation="off", check_storage=False, poll_interval=0.05,
                                         **quota)).start(host="127.0.0.1", port=0)


@pytest.fixture
def svc(tmp_path):
    service = _service(tmp_path, create_quota_per_minute=2)
    yield service
    service.stop()


def ml_job(key: str, region: str = REGION) -> dict:
    return {"jobId": key, "labels": {"submitter": "drop"},
            "trainingInput": {"region": region, "scaleTier": "BASIC", "runtimeVersion": "2.11",
                              "pythonVersion": "3.7", "pythonModule": "trainer.task", "packageUris": [PACKAGE],
                              "jobDir": f"gs://outs/{key}"}}


def custom_job(name: str) -> dict:
    return {"displayName": name, "jobSpec": {"workerPoolSpecs": [{
        "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
        "pythonPackageSpec": {"executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
                              "packageUris": [PACKAGE], "pythonModule": "trainer.task"}}]}}


def tuning_job(name: str) -> dict:
    return {"displayName": name, "maxTrialCount": 2, "parallelTrialCount": 1,
            "studySpec": {"metrics": [{"metricId": "score", "goal": "MAXIMIZE"}], "algorithm": "GRID_SEARCH",
                          "parameters": [{"parameterId": "x", "discreteValueSpec": {"values": [1, 2]}}]},
            "trialJobSpec": custom_job(name)["jobSpec"]}


def ml_jobs(svc):
    return discovery.build("ml", "v1", client_options={"api_endpoint": svc.url},
                           credentials=AnonymousCredentials(), static_discovery=True).projects().jobs()


def aiplatform(svc):
    return discovery.build("aiplatform", "v1", client_options={"api_endpoint": svc.url},
                           credentials=AnonymousCredentials(), static_discovery=True).projects().locations()


def error_of(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def assert_rate_limited(error: dict, service: str, metric: str, region: str) -> None:
    """Google's answer to a create beyond a per-minute rate quota (bench/simulation.py's `quota_error`)."""
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("Quota exceeded for quota metric") and service in error["message"]
    [info] = [d for d in error["details"] if d["@type"] == ERROR_INFO]
    assert info["reason"] == "RATE_LIMIT_EXCEEDED" and info["domain"] == "googleapis.com"
    assert info["metadata"]["quota_metric"] == metric and info["metadata"]["service"] == service
    assert info["metadata"]["quota_limit_value"] == "2" and info["metadata"]["quota_location"] == region
    assert info["metadata"]["consumer"] == f"projects/{PROJECT}"
    assert not [d for d in error["details"] if d["@type"].endswith("QuotaFailure")]


def test_ml_v1_creates_beyond_the_quota_are_429_rate_limit_exceeded_per_region(svc):
    jobs = ml_jobs(svc)
    parent = f"projects/{PROJECT}"
    for i in range(2):
        jobs.create(parent=parent, body=ml_job(f"job_{i}")).execute()
    with pytest.raises(HttpError) as exc:
        jobs.create(parent=parent, body=ml_job("job_2")).execute()
    assert_rate_limited(error_of(exc.value), "ml.googleapis.com", "ml.googleapis.com/job_create_requests", REGION)
    with pytest.raises(HttpError):  # refused before anything else: not stored, not a 409 either
        jobs.get(name=f"{parent}/jobs/job_2").execute()
    jobs.create(parent=parent, body=ml_job("job_3", region="europe-west4")).execute()  # another region's quota
    stats = svc.stats()
    assert stats["create_quota"] == {"per_minute": 2, "window_s": 60.0, "refused": 1}
    assert stats["api_calls"]["jobs.create"] == 4


def test_an_admitted_create_counts_whatever_its_answer_and_a_refused_one_does_not(svc):
    jobs = ml_jobs(svc)
    parent = f"projects/{PROJECT}"
    jobs.create(parent=parent, body=ml_job("job_0")).execute()
    with pytest.raises(HttpError) as exc:  # 409: admitted by the quota (Google charges at its front end)
        jobs.create(parent=parent, body=ml_job("job_0")).execute()
    assert exc.value.resp.status == 409
    for _ in range(3):
        with pytest.raises(HttpError) as exc:
            jobs.create(parent=parent, body=ml_job("job_1")).execute()
        assert exc.value.resp.status == 429
    assert svc.stats()["create_quota"]["refused"] == 3


def test_vertex_custom_and_tuning_jobs_share_their_locations_quota_apart_from_ml_v1(svc):
    locations = aiplatform(svc)
    parent = f"projects/{PROJECT}/locations/{REGION}"
    locations.customJobs().create(parent=parent, body=custom_job("c-1")).execute()
    locations.hyperparameterTuningJobs().create(parent=parent, body=tuning_job("t-1")).execute()
    for collection, body in ((locations.customJobs(), custom_job("c-2")),
                             (locations.hyperparameterTuningJobs(), tuning_job("t-2"))):
        with pytest.raises(HttpError) as exc:
            collection.create(parent=parent, body=body).execute()
        assert_rate_limited(error_of(exc.value), "aiplatform.googleapis.com",
                            "aiplatform.googleapis.com/job_or_lro_submission_requests", REGION)
    assert locations.customJobs().list(parent=parent).execute()["customJobs"][0]["displayName"] == "c-1"
    other = f"projects/{PROJECT}/locations/europe-west4"
    locations.customJobs().create(parent=other, body=custom_job("c-3")).execute()
    ml_jobs(svc).create(parent=f"projects/{PROJECT}", body=ml_job("job_0")).execute()  # ml v1 counts apart


def test_the_submitters_adapters_read_the_429_as_rate_limited_not_as_a_permanent_refusal(svc):
    ml = MlV1Backend(PROJECT, endpoint=svc.url, anonymous=True)
    vertex = VertexBackend(PROJECT, region=REGION, endpoint=svc.url, anonymous=True)
    for backend in (ml, vertex):
        for i in range(2):
            backend.submit(JobRequest(key=f"Job_{i}", job=ml_job(f"Job_{i}"), display_name=f"incoming/job-{i}"))
        with pytest.raises(BackendUnavailable) as exc:
            backend.submit(JobRequest(key="Job_2", job=ml_job("Job_2"), display_name="incoming/job-2"))
        assert exc.value.reason == Reason.RATE_LIMITED and submitter_quota.is_rate_limited(exc.value)
        assert "Quota" in exc.value.message and "wait, or request more quota" in exc.value.message


def test_the_window_frees_on_its_own(tmp_path):
    svc = _service(tmp_path, create_quota_per_minute=1, create_quota_window_s=1.0)
    try:
        jobs = ml_jobs(svc)
        parent = f"projects/{PROJECT}"
        jobs.create(parent=parent, body=ml_job("job_0")).execute()
        with pytest.raises(HttpError) as exc:
            jobs.create(parent=parent, body=ml_job("job_1")).execute()
        assert "1 per 1 s: a local test window instead of a minute" in error_of(exc.value)["message"]
        deadline, created = time.monotonic() + 30, None
        while created is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                created = jobs.create(parent=parent, body=ml_job("job_1")).execute()
            except HttpError as again:
                assert again.resp.status == 429
        assert created is not None and created["jobId"] == "job_1"
    finally:
        svc.stop()


def test_without_a_quota_nothing_is_limited(tmp_path):
    svc = _service(tmp_path)
    try:
        jobs = ml_jobs(svc)
        for i in range(10):
            jobs.create(parent=f"projects/{PROJECT}", body=ml_job(f"job_{i}")).execute()
        assert svc.stats()["create_quota"] is None
    finally:
        svc.stop()


# -- the local stack's wiring ----------------------------------------------------------------------------------------

def test_the_stack_records_its_create_quota_and_restarts_a_stack_that_runs_another(tmp_path):
    from submitter_local.stack import Stack, StackConfig

    plain = Stack(StackConfig(root=tmp_path))
    limited = Stack(StackConfig(root=tmp_path, create_quota_per_minute=3, create_quota_window_s=5.0))
    assert plain.training_settings() == {}
    assert limited.training_settings() == {"TRAINING_CREATE_QUOTA_PER_MINUTE": "3",
                                           "TRAINING_CREATE_QUOTA_WINDOW_SECONDS": "5"}
    running_plain = {"SUBMITTER_BACKEND": "ml_v1"}
    running_limited = {**running_plain, **limited.training_settings()}
    assert plain.serves_config(running_plain) and not plain.serves_config(running_limited)
    assert limited.serves_config(running_limited) and not limited.serves_config(running_plain)


def test_the_stack_cli_refuses_a_quota_below_one(tmp_path, capsys):
    from submitter_local.stack import main as stack_main

    with pytest.raises(SystemExit) as exc:  # refused while parsing: nothing is started
        stack_main(["up", "--root", str(tmp_path), "--create-quota-per-minute", "0"])
    assert exc.value.code == 2 and "at least 1" in capsys.readouterr().err
