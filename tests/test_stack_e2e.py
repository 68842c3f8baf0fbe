"""The main job end to end on the real local stack: Pub/Sub emulator, GCS emulator, the local
training service, functions-framework, the event relay and the scheduler.

The stack is started by the test itself, on free ports, in a temporary root (never one a user left
running). Set nothing by hand: the clients read PUBSUB_EMULATOR_HOST / STORAGE_EMULATOR_HOST when
they are built, which here is after the stack is up.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from submitter_local.demo import read_metrics, run_drop
from submitter_local.stack import REPO

from conftest import running_stack
from helpers import assert_published_life

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=1.0, reconcile_interval_s=0.5) as s:
        yield s


@pytest.fixture(scope="module")
def ok_drop(stack, sample_package):
    """The sample drop run to its final state once per module: (final state, events, printed lines)."""
    s, env = stack
    lines: list[str] = []
    state, events = run_drop(env, sample_package, (REPO / "samples" / "job.yaml").read_bytes(),
                             "incoming/e2e-ok", timeout_s=120, out=lines.append)
    return state, events, lines


def test_sample_drop_runs_to_succeeded_and_states_arrive_in_order(stack, ok_drop):
    s, env = stack
    state, events, lines = ok_drop
    states = [e["data"]["state"] for e in events]
    assert state == "SUCCEEDED", (states, lines)
    assert_published_life(states, "SUCCEEDED")
    assert [e["data"]["seq"] for e in events] == sorted(e["data"]["seq"] for e in events)
    job_id = events[0]["data"]["jobId"]
    assert all(e["attributes"]["jobId"] == job_id and e["attributes"]["ce-specversion"] == "1.0" for e in events)
    metrics = read_metrics(env, events[-1]["data"]["jobDir"])
    assert metrics["accuracy"] > 0.8 and metrics["hyperparameters"]["n_estimators"] == 200
    # the training service holds the same truth
    job = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs/{job_id}").json()
    assert job["state"] == "SUCCEEDED" and job["trainingInput"]["jobDir"].startswith("gs://drop-outputs/")


def test_failing_trainer_ends_with_one_failed_event_carrying_its_error(stack, sample_package):
    s, env = stack
    spec = (REPO / "samples" / "job.yaml").read_text().replace('args: ["--n-estimators"', 'args: ["--fail", '
                                                                                          '"--n-estimators"')
    state, events = run_drop(env, sample_package, spec.encode(), "incoming/e2e-fail", timeout_s=120,
                             out=lambda _: None)
    assert state == "FAILED"
    final = events[-1]["data"]
    assert final["reason"] == "JOB_FAILED" and "failing on purpose" in final["errorMessage"]
    assert [e["data"]["state"] for e in events].count("FAILED") == 1


def test_invalid_job_yaml_gives_one_rejected_event_and_no_job(stack, sample_package):
    s, env = stack
    state, events = run_drop(env, sample_package, b"trainingInput:\n  pythonModule: [unclosed\n",
                             "incoming/e2e-bad", timeout_s=60, out=lambda _: None)
    assert state == "REJECTED"
    [event] = events
    assert event["data"]["reason"] == "YAML_INVALID" and "incoming/e2e-bad/job.yaml" in event["data"]["message"]
    jobs = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs",
                        params={"filter": "jobId:e2e_bad*"}).json()
    assert jobs == {}


def test_starting_again_reuses_the_running_stack(stack):
    s, env = stack
    before = json.loads(s.state_file.read_text())["processes"]
    assert s.start() == env
    assert json.loads(s.state_file.read_text())["processes"] == before
    assert (s.root / "stack.env").read_text().count("export ") >= 10


def test_cli_reads_the_stack_settings_and_shows_jobs(stack, ok_drop):
    import subprocess

    s, env = stack
    assert ok_drop[0] == "SUCCEEDED"
    cli_env = {**os.environ, **env}
    listed = subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), "jobs", "list"], env=cli_env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    ok_job = next(line.split()[0] for line in listed.stdout.splitlines() if line.startswith("e2e_ok_"))
    shown = subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), "status", ok_job], env=cli_env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "SUCCEEDED" in shown.stdout
    missing = subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), "status", "no_such_job"], env=cli_env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "not found" in missing.stderr


def _cli(env, *args, timeout=180):
    import subprocess

    return subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_invalid_spec_lists_every_violation_status_object_and_no_create(stack, sample_package):
    s, env = stack
    spec = b"trainingInput:\n  scaleTier: CUSTOM\n  workerCount: 2\n  pythonModule: trainer/task.py\n" \
           b"  runtimeVersion: 2.10\nlabels: {team: NO}\n"
    state, events = run_drop(env, sample_package, spec, "incoming/e2e-invalid", timeout_s=60, out=lambda _: None)
    assert state == "REJECTED"
    [event] = events
    fields = {v["field"] for v in event["data"]["violations"]}
    assert {"trainingInput.masterType", "trainingInput.workerType", "trainingInput.pythonModule",
            "trainingInput.runtimeVersion", "labels.team"} <= fields
    shown = _cli(env, "drop-status", "incoming/e2e-invalid")
    assert shown.returncode == 1 and "REJECTED" in shown.stdout and "masterType is required" in shown.stdout
    jobs = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs",
                        params={"filter": "jobId:e2e_invalid*"}).json()
    assert jobs == {}


def test_submit_cli_builds_uploads_and_the_job_succeeds(stack):
    s, env = stack
    done = _cli(env, "submit", "--package-path", str(REPO / "samples" / "trainer"), "--config",
                str(REPO / "samples" / "job.yaml"), "--folder", "e2e-submit", "--labels", "origin=cli", "--json",
                "--", "--n-estimators", "20")
    assert done.returncode == 0, done.stderr + done.stdout
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["drop"] == "gs://drop-bucket/incoming/e2e-submit/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = _cli(env, "status", out["jobId"], "--json", timeout=60)
        if status.returncode == 0 and json.loads(status.stdout).get("state") in ("SUCCEEDED", "FAILED"):
            break
        time.sleep(1)
    job = json.loads(status.stdout)
    assert job["state"] == "SUCCEEDED", job
    assert job["trainingInput"]["args"] == ["--n-estimators", "20"] and job["labels"]["origin"] == "cli"


def test_F16_missing_topic_on_the_real_emulator_is_named_and_raises(stack, monkeypatch):
    from submitter.envelope import OutgoingMessage
    from submitter.errors import PublishFailed as PublishError
    from submitter.publisher import PubSubPublisher as EventPublisher

    s, env = stack
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])
    pub = EventPublisher(f"projects/{env['PROJECT']}/topics/no-such-topic", timeout_s=20)
    with pytest.raises(PublishError, match="topic projects/demo-project/topics/no-such-topic not found"):
        pub.publish([OutgoingMessage(b"{}", {"state": "SUBMITTED"}, "j1")])


KILL_SCRIPT = """
import json, os, sys
import submitter.publisher
from submitter.app import get_app
if os.environ.get("KILL_BEFORE_PUBLISH"):
    submitter.publisher.PubSubPublisher.publish = lambda self, messages: os._exit(137)  # dies after jobs.create
attributes, data = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(get_app().handle_cloud_event(attributes, data).action)
"""


def test_killed_between_create_and_publish_then_redelivered_gives_one_job_one_submitted(stack, monkeypatch,
                                                                                         sample_package):
    import subprocess

    from submitter_local.relay import storage_event

    s, env = stack
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
    from google.cloud import storage

    from submitter_cli.follow import EventFollower

    # A prefix the stack's own function does not watch, so only the processes below handle the drop.
    proc_env = {**os.environ, **env, "SUBMITTER_DROP_PREFIX": "faults/", "SUBMITTER_CLAIM_LEASE_SECONDS": "2"}
    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    bucket.blob("faults/run-1/trainer-0.1.0.tar.gz").upload_from_filename(str(sample_package))
    spec = bucket.blob("faults/run-1/job.yaml")
    spec.upload_from_string((REPO / "samples" / "job.yaml").read_bytes())
    resource = requests.get(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{env['BUCKET']}/o/"
                            "faults%2Frun-1%2Fjob.yaml").json()
    event = storage_event(resource)
    argv = [str(REPO / ".venv" / "bin" / "python"), "-c", KILL_SCRIPT,
            json.dumps({"id": event["id"], "type": event["type"], "time": event["time"]}), json.dumps(event.data)]
    job_id = f"run_1_{spec.generation}"
    with EventFollower(env["TOPIC"], "faults") as follower:
        killed = subprocess.run(argv, env={**proc_env, "KILL_BEFORE_PUBLISH": "1"}, capture_output=True, text=True,
                                timeout=120)
        assert killed.returncode == 137, killed.stderr
        job = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs/{job_id}").json()
        assert job["jobId"] == job_id  # created, never announced
        # Eventarc redelivers with a backoff: a redelivery inside the dead invocation's lease finds the claim
        # busy and fails (the event comes back); one after the lease expired adopts the job.
        deadline = time.monotonic() + 60
        while True:
            redelivered = subprocess.run(argv, env=proc_env, capture_output=True, text=True, timeout=120)
            if redelivered.returncode == 0 or time.monotonic() > deadline:
                break
            assert "ClaimBusy" in redelivered.stderr, redelivered.stderr
            time.sleep(0.5)
        assert redelivered.returncode == 0 and redelivered.stdout.strip().endswith("adopted"), redelivered.stderr
        submitted = [e for e in follower.events(timeout_s=5, dedupe=False)
                     if e["attributes"]["jobId"] == job_id and e["attributes"]["state"] == "SUBMITTED"]
    assert len(submitted) == 1
    jobs = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs",
                        params={"filter": "jobId:run_1_*"}).json()["jobs"]
    assert [j["jobId"] for j in jobs] == [job_id]


def test_unicode_drop_folder_is_delivered_and_submitted(stack, sample_package):
    s, env = stack
    state, events = run_drop(env, sample_package, (REPO / "samples" / "job.yaml").read_bytes(),
                             "incoming/ラン-日本", timeout_s=120, out=lambda _: None)
    assert events and events[0]["data"]["state"] == "SUBMITTED"
    assert naming_ok(events[0]["data"]["jobId"])


def naming_ok(job_id):
    from submitter.naming import is_valid_job_id

    return is_valid_job_id(job_id)
