"""The real `gcloud` CLI against the local training service and the fixed storage emulator.

gcloud runs with an isolated configuration directory (CLOUDSDK_CONFIG=<tmp>, every other
CLOUDSDK_* variable removed), so the machine's own gcloud configuration is never read or
changed. The ml endpoint override points `gcloud ai-platform jobs ...` at the service, the
storage override points the staging upload of `--package-path` at the emulator.

Skipped only when gcloud is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from test_training_service import (
    BACKEND,
    BUCKET,
    PROJECT,
    PYPROJECT,
    RUNTIME_PYTHON,
    TERMINAL,
    job_pids,
    jobs_api,
    make_sdist,
    wait_for,
    wait_for_log,
    wait_gone,
)

from submitter_local import storage_emulator
from submitter_local.training import ServiceConfig, TrainingService

GCLOUD = shutil.which("gcloud")
STAGING = "staging"

TASK = r'''
import json, os, sys
print("GCLOUD-JOB " + json.dumps({"argv": sys.argv[1:], "task": json.loads(os.environ["TF_CONFIG"])["task"]}))
'''
SLEEP = r'''
import os, time
print(f"PID {os.getpid()}", flush=True)
time.sleep(120)
'''


pytestmark = pytest.mark.stack


@pytest.fixture(scope="module", autouse=True)
def _needs_gcloud_and_runtime():
    # Prerequisites of `make test` (README): missing ones fail loudly instead of skipping silently.
    assert GCLOUD is not None, "the Cloud SDK (gcloud) is required: it provides the Pub/Sub emulator and these tests"
    assert RUNTIME_PYTHON.exists(), "the runtime venv is missing: run `make runtime` (make test does)"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Storage emulator (buckets `drops` with the trainer sdist, and `staging`) + training service."""
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()  # module-scoped fixtures cannot use the monkeypatch fixture
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "trainer", {"task": TASK, "sleep": SLEEP})
    client.create_bucket(BUCKET).blob(f"packages/{path.name}").upload_from_filename(str(path))
    client.create_bucket(STAGING)
    root = tmp_path_factory.mktemp("training")
    svc = TrainingService(ServiceConfig(data_dir=root / "data", runtime_python=RUNTIME_PYTHON, poll_interval=0.05,
                                        kill_grace_seconds=1.0, envs_dir=root / "envs"))
    svc.start(host="127.0.0.1", port=0)
    yield svc, server, client
    svc.stop()
    server.stop()
    patched.undo()


@pytest.fixture(scope="module")
def gcloud(stack, tmp_path_factory):
    """`gcloud(*args) -> CompletedProcess`, configured in a private config dir."""
    svc, server, _ = stack
    config_dir = tmp_path_factory.mktemp("gcloud-config")
    keep = {"CLOUDSDK_PYTHON", "CLOUDSDK_PYTHON_SITEPACKAGES"}  # which interpreter runs gcloud, nothing else
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_") or k in keep}
    env["CLOUDSDK_CONFIG"] = str(config_dir)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([GCLOUD, *args], env=env, capture_output=True, text=True, timeout=180)
        if check and done.returncode != 0:
            raise AssertionError(f"gcloud {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    for prop, value in (("api_endpoint_overrides/ml", f"{svc.url}/"),
                        ("api_endpoint_overrides/storage", f"{server.url}/storage/v1/"),
                        ("auth/disable_credentials", "true"),
                        ("project", PROJECT),
                        ("component_manager/disable_update_check", "true"),
                        ("core/disable_usage_reporting", "true")):
        run("config", "set", prop, value)
    return run


def describe(gcloud, job_id: str) -> dict:
    return json.loads(gcloud("ai-platform", "jobs", "describe", job_id, "--format=json").stdout)


SUBMIT = ("ai-platform", "jobs", "submit", "training")
RUNTIME = ("--region", "us-central1", "--runtime-version", "2.11", "--python-version", "3.7")


def test_submit_packages_describe_list_update(gcloud, stack):
    svc, _, _ = stack
    done = gcloud(*SUBMIT, "g_packages", *RUNTIME, "--module-name", "trainer.task",
                  "--packages", f"gs://{BUCKET}/packages/trainer-0.1.tar.gz", "--job-dir", f"gs://{BUCKET}/out/g1",
                  "--labels", "team=vision", "--", "--epochs", "2")
    assert "Job [g_packages] submitted successfully." in done.stdout + done.stderr

    jobs = jobs_api(svc)
    assert wait_for(jobs, "g_packages", TERMINAL, timeout=60)[0]["state"] == "SUCCEEDED"
    job = describe(gcloud, "g_packages")
    assert job["state"] == "SUCCEEDED" and job["labels"] == {"team": "vision"}
    assert job["trainingInput"] == {
        "args": ["--epochs", "2"], "jobDir": f"gs://{BUCKET}/out/g1", "region": "us-central1",
        "packageUris": [f"gs://{BUCKET}/packages/trainer-0.1.tar.gz"], "pythonModule": "trainer.task",
        "runtimeVersion": "2.11", "pythonVersion": "3.7",
    }
    assert job["trainingOutput"]["consumedMLUnits"] > 0
    report = json.loads(wait_for_log(svc, "g_packages", r"GCLOUD-JOB (.*)").group(1))
    assert report == {"argv": ["--epochs", "2", "--job-dir", f"gs://{BUCKET}/out/g1"],
                      "task": {"type": "master", "index": 0}}

    listed = json.loads(gcloud("ai-platform", "jobs", "list", "--format=json").stdout)
    assert "g_packages" in [j["jobId"] for j in listed]

    gcloud("ai-platform", "jobs", "update", "g_packages", "--update-labels", "owner=me")
    assert describe(gcloud, "g_packages")["labels"] == {"team": "vision", "owner": "me"}


def test_submit_package_path_stages_through_the_storage_emulator(gcloud, stack, tmp_path):
    svc, _, client = stack
    src = tmp_path / "src"
    (src / "staged").mkdir(parents=True)
    (src / "staged" / "__init__.py").write_text("")
    (src / "staged" / "task.py").write_text(TASK)
    # gcloud builds the sdist with `python setup.py sdist`; the in-tree backend lets pip install
    # it with no build requirements to download
    (src / "setup.py").write_text("from setuptools import setup\nsetup(name='staged', version='0.1', "
                                  "packages=['staged'])\n")
    (src / "MANIFEST.in").write_text("include inline_backend.py NAME\n")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "inline_backend.py").write_text(BACKEND)
    (src / "NAME").write_text("staged 0.1\n")

    gcloud(*SUBMIT, "g_staged", *RUNTIME, "--module-name", "staged.task", "--package-path", str(src / "staged"),
           "--staging-bucket", f"gs://{STAGING}")

    job, _ = wait_for(jobs_api(svc), "g_staged", TERMINAL, timeout=90)
    assert job["state"] == "SUCCEEDED", job
    (uri,) = job["trainingInput"]["packageUris"]
    match = re.fullmatch(rf"gs://{STAGING}/(g_staged/\w+/staged-0\.1\.tar\.gz)", uri)
    assert match, uri
    assert client.bucket(STAGING).get_blob(match.group(1)).size > 0
    assert "GCLOUD-JOB" in wait_for_log(svc, "g_staged", r"GCLOUD-JOB .*").group(0)


def test_cancel_a_running_job(gcloud, stack):
    svc, _, _ = stack
    gcloud(*SUBMIT, "g_sleeper", *RUNTIME, "--module-name", "trainer.sleep",
           "--packages", f"gs://{BUCKET}/packages/trainer-0.1.tar.gz")
    jobs = jobs_api(svc)
    wait_for(jobs, "g_sleeper", {"RUNNING"}, timeout=60)
    wait_for_log(svc, "g_sleeper", r"PID (\d+)")
    pid = job_pids("g_sleeper")[0]  # its host pid (it prints the one inside its PID namespace)

    gcloud("ai-platform", "jobs", "cancel", "g_sleeper")
    job, _ = wait_for(jobs, "g_sleeper", TERMINAL, timeout=20)
    assert job["state"] == "CANCELLED"
    wait_gone([pid])
    assert describe(gcloud, "g_sleeper")["state"] == "CANCELLED"


def test_api_errors_reach_the_gcloud_user(gcloud, stack):
    missing = gcloud(*SUBMIT, "g_missing", *RUNTIME, "--module-name", "trainer.task",
                     "--packages", f"gs://{BUCKET}/packages/absent-9.9.tar.gz", check=False)
    assert missing.returncode != 0
    assert "INVALID_ARGUMENT: Field: training_input.package_uris[0] Error: The package " in missing.stderr
    assert "absent-9.9.tar.gz cannot be read" in missing.stderr

    unknown = gcloud("ai-platform", "jobs", "describe", "g_nobody", check=False)
    assert unknown.returncode != 0 and "NOT_FOUND" in unknown.stderr

    gcloud(*SUBMIT, "g_twice", *RUNTIME, "--module-name", "trainer.task",
           "--packages", f"gs://{BUCKET}/packages/trainer-0.1.tar.gz")
    again = gcloud(*SUBMIT, "g_twice", *RUNTIME, "--module-name", "trainer.task",
                   "--packages", f"gs://{BUCKET}/packages/trainer-0.1.tar.gz", check=False)
    assert again.returncode != 0  # gcloud words a 409 its own way, then prints the details
    assert "is the subject of a conflict" in again.stderr and "A job with this id already exists" in again.stderr
    wait_for(jobs_api(stack[0]), "g_twice", TERMINAL, timeout=60)
