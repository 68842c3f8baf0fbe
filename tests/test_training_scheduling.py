"""Scheduling on the local training service: the running-jobs limit, jobPosition, priority
order, scheduling.maxWaitTime (QUEUED and PREPARING), maxRunningTime, and `time_scale`, which
makes the API's long minimums (maxWaitTime >= 1800s) testable in seconds.

Jobs here use `trainer.sleep` (runs until stopped; prints its pid), `trainer.record` (appends
its jobId to the file given by `--order`, so admission order can be read back) and
`slow-0.1.tar.gz`, whose build backend never finishes, to hold a job in PREPARING.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient.errors import HttpError
from test_training_service import (  # noqa: F401  (fixtures are used by name)
    BUCKET,
    PARENT,
    PROJECT,
    PYPROJECT,
    RUNTIME_PYTHON,
    TERMINAL,
    alive,
    envs_dir,
    error_of,
    job_body,
    job_pids,
    jobs_api,
    make_sdist,
    make_service,
    wait_for,
    wait_for_log,
    wait_gone,
)

from submitter_local import storage_emulator
from submitter_local.training import procs

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

SLEEP = r'''
import os, time
print(f"PID {os.getpid()}", flush=True)
time.sleep(120)
'''

RECORD = r'''
import argparse, os
p = argparse.ArgumentParser(); p.add_argument("--order", required=True)
fd = os.open(p.parse_args().order, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, (os.environ["CLOUD_ML_JOB_ID"] + "\n").encode())
os.close(fd)
'''

SLOW_BACKEND = r'''
"""A build backend that never finishes (records its pid first): the job stays PREPARING."""
import os, time


def get_requires_for_build_wheel(config_settings=None):
    pidfile = os.environ.get("SLOW_BUILD_PIDFILE")
    if pidfile:
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(120)
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("never reached")
'''


def slow_sdist(dest: Path) -> Path:
    files = {"PKG-INFO": "Metadata-Version: 2.1\nName: slow\nVersion: 0.1\n", "pyproject.toml": PYPROJECT,
             "inline_backend.py": SLOW_BACKEND}
    path = dest / "slow-0.1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"slow-0.1/{rel}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The fixed storage emulator with bucket `drops` holding the trainer and the slow package."""
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()  # module-scoped fixtures cannot use the monkeypatch fixture
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).create_bucket(BUCKET)
    src = tmp_path_factory.mktemp("sdists")
    for path in (make_sdist(src, "trainer", {"sleep": SLEEP, "record": RECORD}), slow_sdist(src)):
        bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}/packages"
    server.stop()
    patched.undo()


def get(jobs, job_id: str) -> dict:
    return jobs.get(name=f"{PARENT}/jobs/{job_id}").execute()


def positions(jobs) -> dict[str, str | None]:
    return {j["jobId"]: j.get("jobPosition") for j in jobs.list(parent=PARENT).execute().get("jobs", [])}


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment holds name=value."""
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and procs.process_has_env(int(p.name), name, value) and alive(int(p.name))]


def sleeper_pid(svc, job_id: str) -> int:
    """The sleeper's host pid (the one it prints is its pid inside its PID namespace)."""
    wait_for_log(svc, job_id, r"PID (\d+)")
    return job_pids(job_id)[0]


# --------------------------------------------------------------------------- queue

def test_job_position_follows_priority_then_creation(make_service, gcs):
    svc = make_service(paused=True, max_running=1)
    jobs = jobs_api(svc)
    first = jobs.create(parent=PARENT, body=job_body("first", gcs, module="trainer.sleep")).execute()
    assert first["jobPosition"] == "1"  # int64: a decimal string on the wire
    jobs.create(parent=PARENT, body=job_body("second", gcs, module="trainer.sleep")).execute()
    jobs.create(parent=PARENT, body=job_body("urgent", gcs, module="trainer.sleep",
                                             scheduling={"priority": 10})).execute()
    assert positions(jobs) == {"urgent": "1", "first": "2", "second": "3"}
    assert get(jobs, "second")["jobPosition"] == "3"

    jobs.cancel(name=f"{PARENT}/jobs/urgent", body={}).execute()
    assert positions(jobs) == {"urgent": None, "first": "1", "second": "2"}  # 0 (not queued) is left out

    svc.set_paused(False)
    wait_for(jobs, "first", {"RUNNING"})
    assert "jobPosition" not in get(jobs, "first")
    assert get(jobs, "second")["state"] == "QUEUED" and get(jobs, "second")["jobPosition"] == "1"


def test_running_limit_admits_the_next_job_when_one_ends(make_service, gcs):
    svc = make_service(max_running=2)
    jobs = jobs_api(svc)
    for job_id in ("run_a", "run_b", "run_c"):
        jobs.create(parent=PARENT, body=job_body(job_id, gcs, module="trainer.sleep")).execute()
    wait_for(jobs, "run_a", {"RUNNING"})
    wait_for(jobs, "run_b", {"RUNNING"})
    time.sleep(0.5)  # several scheduler passes: the limit must hold
    assert get(jobs, "run_c")["state"] == "QUEUED" and get(jobs, "run_c")["jobPosition"] == "1"
    assert svc.stats()["active_runs"] == 2

    jobs.cancel(name=f"{PARENT}/jobs/run_a", body={}).execute()
    wait_for(jobs, "run_c", {"RUNNING"})
    assert get(jobs, "run_a")["state"] == "CANCELLED"


def test_higher_priority_runs_first(make_service, gcs, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # trainers run as an unprivileged account
    svc = make_service(paused=True, max_running=1, shared_paths=(shared,))
    jobs = jobs_api(svc)
    order = shared / "order.txt"
    for job_id, priority in (("low_1", 0), ("low_2", 0), ("top", 1000), ("mid", 500)):
        jobs.create(parent=PARENT, body=job_body(job_id, gcs, module="trainer.record", args=["--order", str(order)],
                                                 scheduling={"priority": priority})).execute()
    svc.set_paused(False)
    for job_id in ("low_1", "low_2", "top", "mid"):
        assert wait_for(jobs, job_id, TERMINAL, timeout=60)[0]["state"] == "SUCCEEDED"
    assert order.read_text().split() == ["top", "mid", "low_1", "low_2"]


# --------------------------------------------------------------------------- time limits

def test_max_wait_time_cancels_a_job_stuck_behind_a_full_queue(make_service, gcs):
    # time_scale 0.002: the API's minimum of 1800s becomes 3.6 real seconds
    svc = make_service(max_running=1, time_scale=0.002)
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("blocker", gcs, module="trainer.sleep")).execute()
    wait_for(jobs, "blocker", {"RUNNING"})
    jobs.create(parent=PARENT, body=job_body("impatient", gcs, module="trainer.sleep",
                                             scheduling={"maxWaitTime": "1800s"})).execute()
    jobs.create(parent=PARENT, body=job_body("patient", gcs, module="trainer.sleep")).execute()
    assert get(jobs, "impatient")["jobPosition"] == "1"

    job, seen = wait_for(jobs, "impatient", TERMINAL, timeout=20)
    assert seen[-1] == "CANCELLED" and "RUNNING" not in seen and "startTime" not in job
    assert job["errorMessage"] == ("The job did not enter RUNNING within scheduling.maxWaitTime (1800s) "
                                   "(local time_scale 0.002: 3.6 real seconds) and was cancelled.")
    assert get(jobs, "blocker")["state"] == "RUNNING"
    assert get(jobs, "patient")["state"] == "QUEUED"  # no maxWaitTime: it waits as long as it takes

    # the API's own minimum still applies to the spec, whatever the local time scale
    with pytest.raises(HttpError) as e:
        jobs.create(parent=PARENT, body=job_body("too_short", gcs, scheduling={"maxWaitTime": "60s"})).execute()
    assert error_of(e.value)["details"][0]["fieldViolations"][0]["field"] == "training_input.scheduling.max_wait_time"


def test_max_wait_time_cancels_a_job_still_preparing(make_service, gcs, tmp_path, monkeypatch):
    pidfile = tmp_path / "build.pid"
    monkeypatch.setenv("SLOW_BUILD_PIDFILE", str(pidfile))  # inherited by pip and its build backend
    svc = make_service(time_scale=0.002)  # 1800s -> 3.6 real seconds
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("slow_install", gcs, package="slow-0.1.tar.gz", module="slow.task",
                                             scheduling={"maxWaitTime": "1800s"})).execute()
    job, seen = wait_for(jobs, "slow_install", TERMINAL, timeout=30)
    assert job["state"] == "CANCELLED" and "RUNNING" not in seen
    assert "startTime" in job  # it had left QUEUED: the install was under way
    assert "Building slow-0.1.tar.gz (pip wheel --no-deps)" in wait_for_log(svc, "slow_install", "Building.*").group(0)
    assert job["errorMessage"].startswith("The job did not enter RUNNING within scheduling.maxWaitTime (1800s)")
    # the interrupted install is stopped: no pip or build-backend process of it is left
    wait_gone(processes_with_env("SLOW_BUILD_PIDFILE", str(pidfile)))


def test_max_running_time_is_scaled_and_named(make_service, gcs):
    svc = make_service(time_scale=0.001)  # 3600s -> 3.6 real seconds
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("long_run", gcs, module="trainer.sleep",
                                             scheduling={"maxRunningTime": "3600s"})).execute()
    wait_for(jobs, "long_run", {"RUNNING"})
    pid = sleeper_pid(svc, "long_run")
    job, _ = wait_for(jobs, "long_run", TERMINAL, timeout=20)
    assert job["state"] == "CANCELLED"
    assert job["errorMessage"] == ("The job ran longer than scheduling.maxRunningTime (3600s) (local time_scale "
                                   "0.001: 3.6 real seconds) and was cancelled.")
    wait_gone([pid])


def test_time_scale_must_be_positive(tmp_path):
    from submitter_local.training import ServiceConfig

    with pytest.raises(ValueError, match="time_scale"):
        ServiceConfig(data_dir=tmp_path, runtime_python=RUNTIME_PYTHON, time_scale=0)
    with pytest.raises(ValueError, match="max_replicas_per_type"):
        ServiceConfig(data_dir=tmp_path, runtime_python=RUNTIME_PYTHON, max_replicas_per_type=-1)
