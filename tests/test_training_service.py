"""Tests of the local training service (submitter_local.training), driven the way the project
drives it: google-api-python-client against the HTTP server, packages in the GCS emulator, and
trainers really installed and run from the runtime venv.

Needs `.local/runtime` (`make runtime`). No network: the trainer sdists use an in-tree PEP 517
backend with no build requirements, so pip's isolated build needs nothing from an index.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from submitter_local.training import ServiceConfig, TrainingService, filters

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PYTHON = ROOT / ".local" / "runtime" / "bin" / "python"
PROJECT = "demo-project"
PARENT = f"projects/{PROJECT}"
BUCKET = "drops"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

# --------------------------------------------------------------------------- trainer packages

BACKEND = r'''
"""A tiny PEP 517 backend: builds a pure-Python wheel with zipfile, needs nothing installed."""
import base64, hashlib, os, zipfile

NAME, VERSION = open("NAME").read().split()


def get_requires_for_build_wheel(config_settings=None):
    if os.path.exists("FAIL_BUILD"):
        raise RuntimeError("boom: this package refuses to build")
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    get_requires_for_build_wheel()
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = {}
    for root, _, names in os.walk(NAME):
        for n in sorted(names):
            if n.endswith(".py"):
                path = os.path.join(root, n)
                with open(path, "rb") as f:
                    files[path.replace(os.sep, "/")] = f.read()
    requires = "".join(f"Requires-Dist: {r}\n" for r in open("REQUIRES").read().split("\n") if r.strip()) \
        if os.path.exists("REQUIRES") else ""
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n{requires}".encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for k, v in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b"=").decode()
        record.append(f"{k},sha256={digest},{len(v)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    return wheel
'''

PYPROJECT = """\
[build-system]
requires = []
build-backend = "inline_backend"
backend-path = ["."]
"""

TASK = r'''
"""Succeeds: reports what the service gave it, writes a file in its working directory."""
import importlib.util, json, os, sys
report = {
    "argv": sys.argv[1:],
    "tf_config": json.loads(os.environ["TF_CONFIG"]),
    "job_id": os.environ.get("CLOUD_ML_JOB_ID"),
    "sklearn_visible": importlib.util.find_spec("sklearn") is not None,
    "emulator": os.environ.get("STORAGE_EMULATOR_HOST"),
}
print("TRAINER-REPORT " + json.dumps(report))
print("a line on stderr", file=sys.stderr)
with open("output.txt", "w") as f:
    f.write("trained\n")
'''

FAIL = r'''
"""Fails with a long stderr: only its tail belongs in errorMessage."""
import sys
for i in range(30):
    print(f"stderr line {i}", file=sys.stderr)
print("ValueError: the model diverged", file=sys.stderr)
sys.exit(3)
'''

SLEEP = r'''
"""Runs until killed; forks a grandchild that ignores SIGTERM (only a group SIGKILL stops it)."""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
print(f"PIDS {os.getpid()} {child.pid}", flush=True)
time.sleep(120)
'''


def make_sdist(dest_dir: Path, name: str, modules: dict[str, str], fail_build: bool = False,
               requires: tuple[str, ...] = (), version: str = "0.1") -> Path:
    """Write `<name>-<version>.tar.gz` by hand: PKG-INFO, pyproject with the inline backend, the
    package, and REQUIRES (one requirement a line, written into the wheel as Requires-Dist)."""
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "NAME": f"{name} {version}\n",
        "REQUIRES": "\n".join(requires) + "\n",
        "pyproject.toml": PYPROJECT,
        "inline_backend.py": BACKEND,
        f"{name}/__init__.py": "",
        **{f"{name}/{mod}.py": src for mod, src in modules.items()},
    }
    if fail_build:
        files["FAIL_BUILD"] = ""
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------- fixtures

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """An in-process GCS emulator with bucket `drops` holding the test packages."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    patched = pytest.MonkeyPatch()  # module-scoped fixtures cannot use the monkeypatch fixture
    patched.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    bucket = client.create_bucket(BUCKET)
    src = tmp_path_factory.mktemp("sdists")
    # joblib: a declared requirement the runtime already satisfies (no index needed)
    for path in (make_sdist(src, "trainer", {"task": TASK, "fail": FAIL, "sleep": SLEEP}, requires=("joblib",)),
                 make_sdist(src / "broken", "broken", {"task": TASK}, fail_build=True)):
        bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}/packages"
    server.stop()
    patched.undo()


@pytest.fixture(scope="module")
def envs_dir(tmp_path_factory):
    """One environment cache for the module, so only the first job pays for the install."""
    return tmp_path_factory.mktemp("envs")


@pytest.fixture
def make_service(tmp_path, envs_dir, gcs):
    """Factory: start a TrainingService (fast settings) on tmp_path/data unless told otherwise."""
    started: list[TrainingService] = []

    def make(data_dir: Path | None = None, **overrides) -> TrainingService:
        cfg = dict(data_dir=data_dir or tmp_path / "data", runtime_python=RUNTIME_PYTHON, min_state_seconds=0.0,
                   poll_interval=0.05, kill_grace_seconds=1.0, envs_dir=envs_dir)
        cfg.update(overrides)
        svc = TrainingService(ServiceConfig(**cfg))
        svc.start(host="127.0.0.1", port=0)
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.stop()


def jobs_api(svc: TrainingService):
    """projects().jobs() of the real client library, pointed at the local service."""
    ml = discovery.build("ml", "v1", client_options={"api_endpoint": svc.url},
                         credentials=AnonymousCredentials(), static_discovery=True)
    return ml.projects().jobs()


def job_body(job_id: str, gcs: str, module: str = "trainer.task", package: str = "trainer-0.1.tar.gz",
             **training_input) -> dict:
    ti = {"region": "us-central1", "pythonModule": module, "packageUris": [f"{gcs}/{package}"],
          "runtimeVersion": "2.11", "pythonVersion": "3.7"}
    ti.update(training_input)
    return {"jobId": job_id, "trainingInput": ti}


def wait_for(jobs, job_id: str, states: set[str], timeout: float = 30.0) -> tuple[dict, list[str]]:
    """Poll jobs.get until the job is in one of `states`; returns (job, states seen in order)."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    while True:
        job = jobs.get(name=f"{PARENT}/jobs/{job_id}").execute()
        if not seen or seen[-1] != job["state"]:
            seen.append(job["state"])
        if job["state"] in states:
            return job, seen
        if time.monotonic() > end:
            raise AssertionError(f"{job_id} still {job['state']} after {timeout}s (seen {seen}): {job}")
        time.sleep(0.03)


def error_of(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def logs(svc: TrainingService, job_id: str) -> str:
    r = requests.get(f"{svc.url}/local/v1/projects/{PROJECT}/jobs/{job_id}/logs", timeout=10)
    r.raise_for_status()
    assert r.headers["Content-Type"].startswith("text/plain")
    return r.text


def wait_for_log(svc: TrainingService, job_id: str, pattern: str, timeout: float = 20.0) -> re.Match:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(pattern, logs(svc, job_id))
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in the logs of {job_id}: {logs(svc, job_id)!r}")


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (PID 1 in a container may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def job_pids(job_id: str, expect: int = 1, timeout: float = 20.0) -> list[int]:
    """Host pids of the live processes a job's replicas started (they carry CLOUD_ML_JOB_ID=job_id;
    a trainer's own `os.getpid()` is its pid inside its PID namespace). Waits until at least
    `expect` of them exist."""
    end = time.monotonic() + timeout
    while True:
        found = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and alive(int(p.name))
                 and _has_env(int(p.name), "CLOUD_ML_JOB_ID", job_id)]
        if len(found) >= expect:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"only {found} processes of {job_id} found")
        time.sleep(0.05)


def _has_env(pid: int, name: str, value: str) -> bool:
    try:
        return f"{name}={value}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > end:
            raise AssertionError(f"processes still alive: {[p for p in pids if alive(p)]}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- happy path

def test_job_runs_to_success_through_client_library(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    body = job_body("census_1", gcs, args=["--epochs", "2"], jobDir=f"gs://{BUCKET}/out/census_1",
                    scaleTier="BASIC", workerCount=0, scheduling={"priority": 5, "maxRunningTime": "600s"})
    body["labels"] = {"team": "vision"}

    created = jobs.create(parent=PARENT, body=body).execute()

    assert created["jobId"] == "census_1"
    assert created["state"] == "QUEUED"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created["createTime"])
    assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", created["etag"])
    assert created["labels"] == {"team": "vision"}
    assert "workerCount" not in created["trainingInput"]  # zero value dropped, as proto3 JSON does
    assert created["trainingInput"]["scheduling"] == {"priority": 5, "maxRunningTime": "600s"}

    job, _ = wait_for(jobs, "census_1", TERMINAL)
    assert job["state"] == "SUCCEEDED", job
    assert job["startTime"] and job["endTime"]
    # one replica for about a second: a small positive estimate; false isHyperparameterTuningJob is
    # a proto3 default, so it is left out
    assert set(job["trainingOutput"]) == {"consumedMLUnits"}
    assert 0 < job["trainingOutput"]["consumedMLUnits"] < 0.1
    assert job["etag"] != created["etag"]

    text = logs(svc, "census_1")
    report = json.loads(re.search(r"TRAINER-REPORT (.*)", text).group(1))
    assert report["argv"] == ["--epochs", "2", "--job-dir", f"gs://{BUCKET}/out/census_1"]
    assert report["job_id"] == "census_1"
    assert report["tf_config"]["task"] == {"type": "master", "index": 0}
    assert report["tf_config"]["environment"] == "cloud"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", report["tf_config"]["cluster"]["master"][0])
    assert report["tf_config"]["job"]["pythonModule"] == "trainer.task"
    assert report["sklearn_visible"], "the runtime's site-packages must be visible to trainers"
    assert report["emulator"] == os.environ["STORAGE_EMULATOR_HOST"]
    assert re.search(r"runtimeVersion 2\.11 / pythonVersion 3\.7 run on the local runtime .*\(Python 3\.\d+\)", text)
    assert "a line on stderr" in text  # stderr is part of the combined log
    tail = requests.get(f"{svc.url}/local/v1/projects/{PROJECT}/jobs/census_1/logs",
                        params={"offset": len(text.encode())}, timeout=5)
    assert tail.text == "" and tail.headers["X-Next-Offset"] == str(len(text.encode()))
    work = svc.config.data_dir / "jobs" / PROJECT / "census_1" / "work" / "master-0"
    assert (work / "output.txt").read_text() == "trained\n"

    with pytest.raises(HttpError) as e:  # a finished job cannot be cancelled
        jobs.cancel(name=f"{PARENT}/jobs/census_1", body={}).execute()
    err = error_of(e.value)
    assert (err["code"], err["status"]) == (400, "FAILED_PRECONDITION")
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


def test_every_state_is_held_long_enough_to_be_seen(make_service, gcs):
    svc = make_service(min_state_seconds=0.3)
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("held", gcs)).execute()
    job, seen = wait_for(jobs, "held", TERMINAL)
    assert seen == ["QUEUED", "PREPARING", "RUNNING", "SUCCEEDED"]


def test_second_run_of_same_package_reuses_cached_env(make_service, gcs, envs_dir):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("first", gcs)).execute()
    assert wait_for(jobs, "first", TERMINAL)[0]["state"] == "SUCCEEDED"
    env_dirs = [p for p in envs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    mtimes = {p: p.stat().st_mtime_ns for p in env_dirs}
    before = svc.stats()

    jobs.create(parent=PARENT, body=job_body("second", gcs)).execute()
    assert wait_for(jobs, "second", TERMINAL)[0]["state"] == "SUCCEEDED"

    after = svc.stats()
    assert after["env_builds"] == before["env_builds"], "no pip install for a package already installed"
    assert after["env_reuses"] == before["env_reuses"] + 1
    assert {p: p.stat().st_mtime_ns for p in env_dirs} == mtimes
    assert "Reusing cached environment" in logs(svc, "second")
    assert "into a new environment" not in logs(svc, "second")


# --------------------------------------------------------------------------- failures

def test_failing_trainer_reports_stderr_tail(make_service, gcs):
    jobs = jobs_api(make_service())
    jobs.create(parent=PARENT, body=job_body("diverges", gcs, module="trainer.fail")).execute()
    job, _ = wait_for(jobs, "diverges", TERMINAL)
    assert job["state"] == "FAILED"
    msg = job["errorMessage"]
    # the cause first, then the cloud's sentence and the tail of stderr
    assert msg.startswith("ValueError: the model diverged\nThe replica master 0 exited with a non-zero status "
                          "of 3. ")
    assert msg.endswith("ValueError: the model diverged")
    assert "stderr line 29" in msg and "stderr line 5\n" not in msg  # only the last ~20 lines
    assert len(msg) < 4200


def test_pip_failure_fails_the_job(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("broken_pkg", gcs, package="broken-0.1.tar.gz",
                                             module="broken.task")).execute()
    job, seen = wait_for(jobs, "broken_pkg", TERMINAL, timeout=60)
    assert job["state"] == "FAILED" and "RUNNING" not in seen  # it fails while PREPARING
    assert "Started replica" not in logs(svc, "broken_pkg")
    assert "startTime" in job and job["trainingOutput"] == {}  # nothing ran: no ML units
    assert job["errorMessage"].startswith("Installing packages failed: ")
    assert "boom: this package refuses to build" in job["errorMessage"]


def test_missing_package_or_job_dir_bucket_is_400_at_create(make_service, gcs):
    jobs = jobs_api(make_service())
    body = job_body("nopkg", gcs, jobDir="gs://no-such-bucket/out")
    body["trainingInput"]["packageUris"] += [f"{gcs}/absent-1.0.tar.gz", "gs://no-such-bucket/pkg.tar.gz"]
    with pytest.raises(HttpError) as e:
        jobs.create(parent=PARENT, body=body).execute()
    err = error_of(e.value)
    assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT")
    violations = {v["field"]: v["description"] for v in err["details"][0]["fieldViolations"]}
    assert set(violations) == {"training_input.job_dir", "training_input.package_uris[1]",
                               "training_input.package_uris[2]"}  # [0] exists
    assert "no-such-bucket" in violations["training_input.job_dir"]
    assert "absent-1.0.tar.gz cannot be read" in violations["training_input.package_uris[1]"]
    assert jobs.list(parent=PARENT).execute() == {}


def test_package_deleted_after_create_fails_the_job(make_service, gcs):
    from google.cloud import storage

    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).bucket(BUCKET)
    bucket.copy_blob(bucket.blob("packages/trainer-0.1.tar.gz"), bucket, "packages/doomed-0.1.tar.gz")
    svc = make_service(paused=True)
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("doomed", gcs, package="doomed-0.1.tar.gz")).execute()
    bucket.blob("packages/doomed-0.1.tar.gz").delete()
    svc.set_paused(False)
    job, _ = wait_for(jobs, "doomed", TERMINAL)
    assert job["state"] == "FAILED"
    assert "doomed-0.1.tar.gz could not be downloaded" in job["errorMessage"]


def test_storage_check_can_be_turned_off(make_service, gcs):
    jobs = jobs_api(make_service(paused=True, check_storage=False))
    job = jobs.create(parent=PARENT, body=job_body("unchecked", gcs, package="absent-1.0.tar.gz")).execute()
    assert job["state"] == "QUEUED"


def test_unreachable_storage_is_503_not_400(make_service, gcs, monkeypatch):
    svc = make_service(paused=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")  # nothing listens
    with pytest.raises(HttpError) as e:
        jobs_api(svc).create(parent=PARENT, body=job_body("no_storage", gcs)).execute()
    err = error_of(e.value)
    assert (err["code"], err["status"]) == (503, "UNAVAILABLE")
    assert "Cloud Storage could not be reached" in err["message"]


# --------------------------------------------------------------------------- API errors

def test_duplicate_job_id_is_409_already_exists(make_service, gcs):
    jobs = jobs_api(make_service(paused=True))
    jobs.create(parent=PARENT, body=job_body("dup", gcs)).execute()
    with pytest.raises(HttpError) as e:
        jobs.create(parent=PARENT, body=job_body("dup", gcs)).execute()
    assert e.value.resp.status == 409
    err = error_of(e.value)
    assert (err["code"], err["status"]) == (409, "ALREADY_EXISTS")
    assert isinstance(err["details"], list)


def test_changes_long_poll_returns_once_a_job_is_created_or_changes_state(make_service, gcs):
    """The local scheduler's cue: /local/v1/changes holds until the change counter passes `after`."""
    import concurrent.futures

    svc = make_service(paused=True)
    url = f"{svc.url}/local/v1/changes"
    start = requests.get(url, timeout=5).json()["changes"]
    assert requests.get(url, params={"after": start, "timeout": "0"}, timeout=5).json()["changes"] == start
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(lambda: requests.get(url, params={"after": start, "timeout": "25"}, timeout=30))
        time.sleep(0.3)
        assert not waiting.done()  # nothing changed: the poll holds
        jobs_api(svc).create(parent=PARENT, body=job_body("cue", gcs)).execute()
        created = waiting.result(timeout=20).json()["changes"]
    assert created > start
    jobs_api(svc).cancel(name=f"{PARENT}/jobs/cue", body={}).execute()  # QUEUED -> CANCELLED is a change too
    assert requests.get(url, params={"after": created, "timeout": "20"}, timeout=30).json()["changes"] > created
    bad = requests.get(url, params={"timeout": "soon"}, timeout=5)
    assert bad.status_code == 400 and "timeout" in bad.text


def test_unknown_job_is_404_not_found(make_service):
    jobs = jobs_api(make_service(paused=True))
    for call in (jobs.get(name=f"{PARENT}/jobs/nope"), jobs.cancel(name=f"{PARENT}/jobs/nope", body={})):
        with pytest.raises(HttpError) as e:
            call.execute()
        err = error_of(e.value)
        assert (err["code"], err["status"]) == (404, "NOT_FOUND")


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("jobId"), "job_id"),
    (lambda b: b.update(jobId="9lives"), "job_id"),
    (lambda b: b.update(jobId="has-dash"), "job_id"),
    (lambda b: b.update(jobId="x" * 129), "job_id"),
    (lambda b: b.pop("trainingInput"), "training_input"),
    (lambda b: b["trainingInput"].pop("region"), "training_input.region"),
    (lambda b: b["trainingInput"].pop("pythonModule"), "training_input.python_module"),
    (lambda b: b["trainingInput"].update(packageUris=[]), "training_input.package_uris"),
    (lambda b: b["trainingInput"].update(packageUris=["/tmp/x.tar.gz"]), "training_input.package_uris[0]"),
    (lambda b: b["trainingInput"].update(scaleTier="HUGE"), "job.training_input.scale_tier"),
    (lambda b: b["trainingInput"].update(masterTipe="n1"), "job.training_input"),
    (lambda b: b["trainingInput"].update(workerCount=2), "training_input.worker_count"),
    (lambda b: b["trainingInput"].update(scheduling={"maxWaitTime": "60s"}), "training_input.scheduling.max_wait_time"),
    (lambda b: b.update(labels={"Team": "x"}), "labels['Team']"),
])
def test_invalid_create_is_400_with_field_violation(make_service, gcs, mutate, field):
    jobs = jobs_api(make_service(paused=True))
    body = job_body("valid_id", gcs)
    mutate(body)
    with pytest.raises(HttpError) as e:
        jobs.create(parent=PARENT, body=body).execute()
    err = error_of(e.value)
    assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT"), err
    detail = err["details"][0]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert field in [v["field"] for v in detail["fieldViolations"]], err
    assert jobs.list(parent=PARENT).execute() == {}


def test_int64_fields_echo_as_strings(make_service, gcs):
    jobs = jobs_api(make_service(paused=True))
    body = job_body("custom", gcs, scaleTier="CUSTOM", masterType="n1-standard-4", workerType="n1-standard-4",
                    workerCount=2, args=[], masterConfig={"acceleratorConfig": {"count": 1,
                                                                                "type": "NVIDIA_TESLA_T4"}})
    job = jobs.create(parent=PARENT, body=body).execute()
    ti = job["trainingInput"]
    assert ti["workerCount"] == "2"
    assert ti["masterConfig"]["acceleratorConfig"]["count"] == "1"
    assert "args" not in ti  # empty list dropped


def test_raw_http_errors_use_google_format(make_service):
    svc = make_service(paused=True)
    r = requests.post(f"{svc.url}/v1/{PARENT}/jobs", data="{not json", timeout=5,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    r = requests.get(f"{svc.url}/v1/{PARENT}/models", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


# --------------------------------------------------------------------------- list, filters, patch

def test_list_is_empty_object_then_pages_newest_first(make_service, gcs):
    svc = make_service(paused=True)
    jobs = jobs_api(svc)
    assert jobs.list(parent=PARENT).execute() == {}
    assert requests.get(f"{svc.url}/v1/{PARENT}/jobs", timeout=5).text.strip() == "{}"

    ids = [f"page_job_{i}" for i in range(7)]
    for job_id in ids:
        jobs.create(parent=PARENT, body=job_body(job_id, gcs)).execute()

    pages, req = [], jobs.list(parent=PARENT, pageSize=3)
    while req is not None:
        resp = req.execute()
        pages.append([j["jobId"] for j in resp["jobs"]])
        req = jobs.list_next(req, resp)
    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[0:1]]  # 3 pages, newest first

    assert len(jobs.list(parent=PARENT).execute()["jobs"]) == 7  # default page size 20
    with pytest.raises(HttpError) as e:
        jobs.list(parent=PARENT, pageToken="garbage").execute()
    assert error_of(e.value)["status"] == "INVALID_ARGUMENT"


def test_list_filters(make_service, gcs):
    jobs = jobs_api(make_service(paused=True))
    for job_id, labels in [("abc_1", {"team": "vision"}), ("abc_2", {"team": "nlp"}),
                           ("xyz_1", {"team": "vision", "tier": "gold"}), ("xyz_2", {})]:
        body = job_body(job_id, gcs)
        body["labels"] = labels
        jobs.create(parent=PARENT, body=body).execute()
    jobs.cancel(name=f"{PARENT}/jobs/xyz_2", body={}).execute()  # QUEUED -> CANCELLED

    def ids(flt: str) -> set[str]:
        return {j["jobId"] for j in jobs.list(parent=PARENT, filter=flt).execute().get("jobs", [])}

    assert ids("state:QUEUED") == {"abc_1", "abc_2", "xyz_1"}
    assert ids("state:CANCELLED") == {"xyz_2"}
    assert ids("state:RUNNING") == set()
    assert ids("jobId:abc*") == {"abc_1", "abc_2"}
    assert ids("jobId=abc_1") == {"abc_1"}
    assert ids("labels.team=vision") == {"abc_1", "xyz_1"}
    assert ids('labels.team="vision" AND labels.tier:gold') == {"xyz_1"}
    assert ids("labels.team=nlp OR jobId:xyz_2") == {"abc_2", "xyz_2"}
    assert ids("NOT labels.team=vision") == {"abc_2", "xyz_2"}
    assert ids("-jobId:abc* AND state:QUEUED") == {"xyz_1"}
    assert ids("(jobId:abc* OR labels.tier:gold) AND labels.team!=nlp") == {"abc_1", "xyz_1"}
    assert ids("labels:tier") == {"xyz_1"}
    assert ids("state:queued") == {"abc_1", "abc_2", "xyz_1"}  # state ignores case, also when the store pre-selects
    assert ids("state:QUEUED OR state:CANCELLED") == {"abc_1", "abc_2", "xyz_1", "xyz_2"}
    paged, token = [], None
    while True:  # one job a page: the cursor and the state pre-selection together still give each job once, in order
        page = jobs.list(parent=PARENT, filter="state:QUEUED OR state:RUNNING", pageSize=1, pageToken=token).execute()
        paged += [j["jobId"] for j in page.get("jobs", [])]
        token = page.get("nextPageToken")
        if not token:
            break
    assert paged == ["xyz_1", "abc_2", "abc_1"]  # newest first
    assert jobs.list(parent=PARENT, filter="jobId:nothing*").execute() == {}
    for bad in ("state:", "(state:QUEUED", "color:red", "state > 3", "jobId:a AND"):
        with pytest.raises(HttpError) as e:
            jobs.list(parent=PARENT, filter=bad).execute()
        err = error_of(e.value)
        assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT"), bad
        assert err["details"][0]["fieldViolations"][0]["field"] == "filter"


def test_filter_parser_precedence_follows_aip_160():
    job = {"jobId": "a", "state": "FAILED", "labels": {"x": "1"}}
    # OR binds tighter than AND: a AND (b OR c)
    assert filters.parse("jobId:b AND state:FAILED OR labels.x=1").matches(job) is False
    assert filters.parse("jobId:a AND state:QUEUED OR labels.x=1").matches(job) is True
    assert filters.parse("jobId:a state:failed").matches(job) is True  # juxtaposition = AND; state ignores case
    assert filters.parse("labels.missing!=1").matches(job) is True
    assert filters.parse("   ").matches(job) is True


@pytest.mark.parametrize("text", ["state:QUEUED OR state:running", "jobId:a* AND state:FAILED", "NOT state:QUEUED",
                                  "state!=QUEUED", "state:Q*", "", "labels.x=1 OR state:FAILED",
                                  "state:QUEUED AND (state:RUNNING OR labels.x=1)", "-state:FAILED state:SUCCEEDED"])
def test_the_states_a_filter_preselects_include_every_job_it_matches(text):
    """`Node.states()` lets the store skip jobs by state before reading them: it must never leave out a match."""
    node = filters.parse(text)
    states = node.states()
    for state in ("QUEUED", "PREPARING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"):
        for job in ({"jobId": "a1", "state": state, "labels": {"x": "1"}}, {"jobId": "b", "state": state}):
            if node.matches(job):
                assert states is None or state in states, (text, job)
    assert filters.parse("state:QUEUED OR state:running").states() == {"QUEUED", "RUNNING"}
    assert filters.parse("jobId:a*").states() is None


def test_patch_labels_with_etag(make_service, gcs):
    jobs = jobs_api(make_service(paused=True))
    job = jobs.create(parent=PARENT, body=job_body("labelled", gcs)).execute()
    name = f"{PARENT}/jobs/labelled"
    patched = jobs.patch(name=name, updateMask="labels,etag",
                         body={"labels": {"owner": "me"}, "etag": job["etag"]}).execute()
    assert patched["labels"] == {"owner": "me"} and patched["etag"] != job["etag"]
    assert patched["trainingInput"] == job["trainingInput"]

    with pytest.raises(HttpError) as e:  # stale etag
        jobs.patch(name=name, updateMask="labels,etag", body={"labels": {"a": "b"}, "etag": job["etag"]}).execute()
    assert (error_of(e.value)["code"], error_of(e.value)["status"]) == (409, "ABORTED")
    with pytest.raises(HttpError) as e:
        jobs.patch(name=name, updateMask="state", body={"state": "SUCCEEDED"}).execute()
    assert error_of(e.value)["status"] == "INVALID_ARGUMENT"
    assert jobs.get(name=name).execute()["labels"] == {"owner": "me"}


def test_etags_compare_as_bytes_in_either_base64_alphabet():
    from submitter_local.training.service import _same_etag

    stored = "q+/bIw5Y8k0="  # 8 random bytes, standard base64, as the service writes them
    assert _same_etag(stored, stored)
    assert _same_etag("q-_bIw5Y8k0=", stored)  # apitools (gcloud) re-encodes bytes URL-safe
    assert _same_etag("q-_bIw5Y8k0", stored)  # padding is optional
    assert not _same_etag("q-_bIw5Y9k0=", stored)
    assert not _same_etag("not base64!", stored)


# --------------------------------------------------------------------------- scheduling and cancel

def test_cancel_queued_job_is_immediate(make_service, gcs):
    jobs = jobs_api(make_service(paused=True))
    jobs.create(parent=PARENT, body=job_body("waiting", gcs)).execute()
    assert jobs.cancel(name=f"{PARENT}/jobs/waiting", body={}).execute() == {}
    job = jobs.get(name=f"{PARENT}/jobs/waiting").execute()
    assert job["state"] == "CANCELLED" and job["endTime"] and "startTime" not in job


def test_cancel_running_job_kills_its_process_group(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("sleeper", gcs, module="trainer.sleep")).execute()
    wait_for(jobs, "sleeper", {"RUNNING"})
    wait_for_log(svc, "sleeper", r"PIDS (\d+) (\d+)")
    leader, grandchild = job_pids("sleeper", expect=2)
    assert [j["jobId"] for j in jobs.list(parent=PARENT, filter="state:RUNNING").execute()["jobs"]] == ["sleeper"]

    assert jobs.cancel(name=f"{PARENT}/jobs/sleeper", body={}).execute() == {}
    assert jobs.get(name=f"{PARENT}/jobs/sleeper").execute()["state"] in ("CANCELLING", "CANCELLED")
    job, _ = wait_for(jobs, "sleeper", TERMINAL, timeout=10)
    assert job["state"] == "CANCELLED" and job["errorMessage"]
    # the leader dies of SIGTERM; the grandchild ignores it and needs the group SIGKILL
    wait_gone([leader, grandchild])

    with pytest.raises(HttpError) as e:
        jobs.cancel(name=f"{PARENT}/jobs/sleeper", body={}).execute()
    assert error_of(e.value)["status"] == "FAILED_PRECONDITION"


def test_repeated_cancel_while_cancelling_still_ends_cancelled(make_service, gcs):
    svc = make_service(min_state_seconds=0.3)
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("twice", gcs, module="trainer.sleep")).execute()
    wait_for(jobs, "twice", {"RUNNING"})
    name = f"{PARENT}/jobs/twice"
    jobs.cancel(name=name, body={}).execute()
    assert jobs.get(name=name).execute()["state"] == "CANCELLING"  # held for min_state_seconds
    assert jobs.cancel(name=name, body={}).execute() == {}  # cancelling again is accepted
    assert wait_for(jobs, "twice", TERMINAL, timeout=10)[0]["state"] == "CANCELLED"


def test_priority_and_max_running(make_service, gcs):
    svc = make_service(paused=True, max_running=1)
    jobs = jobs_api(svc)
    body_low = job_body("low", gcs)
    body_high = job_body("high", gcs, scheduling={"priority": 10})
    jobs.create(parent=PARENT, body=body_low).execute()
    jobs.create(parent=PARENT, body=body_high).execute()
    time.sleep(0.3)
    assert {j["state"] for j in jobs.list(parent=PARENT).execute()["jobs"]} == {"QUEUED"}  # paused

    svc.set_paused(False)
    high, _ = wait_for(jobs, "high", {"PREPARING", "RUNNING", *TERMINAL})
    assert jobs.get(name=f"{PARENT}/jobs/low").execute()["state"] == "QUEUED"  # max_running=1
    wait_for(jobs, "high", TERMINAL)
    assert wait_for(jobs, "low", TERMINAL)[0]["state"] == "SUCCEEDED"


def test_restart_fails_active_jobs_and_resumes_queued(make_service, gcs, tmp_path):
    data_dir = tmp_path / "shared-data"
    svc1 = make_service(data_dir=data_dir, max_running=1)
    jobs = jobs_api(svc1)
    jobs.create(parent=PARENT, body=job_body("interrupted", gcs, module="trainer.sleep")).execute()
    wait_for(jobs, "interrupted", {"RUNNING"})
    wait_for_log(svc1, "interrupted", r"PIDS (\d+) (\d+)")
    pids = job_pids("interrupted", expect=2)
    jobs.create(parent=PARENT, body=job_body("queued_behind", gcs)).execute()
    assert jobs.get(name=f"{PARENT}/jobs/queued_behind").execute()["state"] == "QUEUED"

    svc1.stop()
    wait_gone(pids)  # stop() kills trainer process groups

    svc2 = make_service(data_dir=data_dir, max_running=1)
    jobs = jobs_api(svc2)
    job = jobs.get(name=f"{PARENT}/jobs/interrupted").execute()
    assert job["state"] == "FAILED"
    assert job["errorMessage"] == ("The local training service restarted while the job was RUNNING; "
                                   "its processes are gone.")
    assert wait_for(jobs, "queued_behind", TERMINAL)[0]["state"] == "SUCCEEDED"


def test_max_running_time_cancels_the_job(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=job_body("overtime", gcs, module="trainer.sleep",
                                             scheduling={"maxRunningTime": "1s"})).execute()
    wait_for(jobs, "overtime", {"RUNNING"})
    wait_for_log(svc, "overtime", r"PIDS (\d+) (\d+)")
    pids = job_pids("overtime", expect=2)
    job, _ = wait_for(jobs, "overtime", TERMINAL, timeout=10)
    assert job["state"] == "CANCELLED"
    assert "maxRunningTime (1s)" in job["errorMessage"]
    wait_gone(pids)


def _start_cli(data_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "local"))  # inherits STORAGE_EMULATOR_HOST
    proc = subprocess.Popen([sys.executable, "-m", "submitter_local.training", "--port", "0",
                             "--data-dir", str(data_dir), "--runtime-python", str(RUNTIME_PYTHON),
                             "--log-level", "WARNING", *extra], stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"the CLI did not start: {line!r}")
    return proc, match.group(1)


def test_crashed_service_leftover_trainer_is_killed_on_restart(tmp_path, gcs, envs_dir):
    data_dir = tmp_path / "crash"
    proc, url = _start_cli(data_dir)
    try:
        body = job_body("orphan", gcs, module="trainer.sleep")
        assert requests.post(f"{url}/v1/{PARENT}/jobs", json=body, timeout=5).status_code == 200
        end, started = time.monotonic() + 30, None
        while started is None and time.monotonic() < end:
            text = requests.get(f"{url}/local/v1/projects/{PROJECT}/jobs/orphan/logs", timeout=5).text
            started = re.search(r"PIDS (\d+) (\d+)", text) or time.sleep(0.05)
        assert started, "the trainer never started"
        pids = job_pids("orphan", expect=2)
    finally:
        proc.kill()  # a crash: no cleanup by the service
        proc.wait()
    assert all(alive(p) for p in pids)  # the trainer outlived its service

    proc, url = _start_cli(data_dir, "--paused")
    try:
        wait_gone(pids)
        job = requests.get(f"{url}/v1/{PARENT}/jobs/orphan", timeout=5).json()
        assert job["state"] == "FAILED"
        assert job["errorMessage"].startswith("The local training service restarted while the job was RUNNING")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_second_service_on_same_data_dir_is_refused(make_service, tmp_path):
    make_service(paused=True)
    other = TrainingService(ServiceConfig(data_dir=tmp_path / "data", runtime_python=RUNTIME_PYTHON))
    with pytest.raises(RuntimeError, match="another local training service"):
        other.start()


def test_cli_serves_until_sigterm(tmp_path):
    proc, url = _start_cli(tmp_path / "cli", "--paused")
    try:
        assert requests.get(f"{url}/v1/{PARENT}/jobs", timeout=5).json() == {}
        health = requests.get(f"{url}/local/v1/health", timeout=5).json()
        assert health["status"] == "ok" and health["paused"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
