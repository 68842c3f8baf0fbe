"""Vertex AI CustomJobs run for real on the local training service, and the sample drop on a Vertex-backend stack.

- A distributed job (primary + 2 workers + 1 parameter server), submitted through the real `VertexBackend` (the
  AI Platform spec translated into a CustomJob): every replica writes what it was given (CLUSTER_SPEC, TF_CONFIG,
  the AIP_* variables, CLOUD_ML_JOB_ID, argv) to its output directory, `<AIP_MODEL_DIR>/../replicas/<task>.json`
  in the storage emulator, and the test checks them against the shapes Vertex documents
  (https://cloud.google.com/vertex-ai/docs/training/distributed-training, code-requirements#environment-variables,
  aiplatform.v1.json baseOutputDirectory).
- A CustomJob written by hand with empty middle pools, an evaluator, env and a failing replica.
- Container jobs (ml v1 masterConfig.imageUri, Vertex containerSpec): accepted, then FAILED in PREPARING /
  JOB_STATE_PENDING saying the image cannot be pulled here (issue 12.1).
- The sample drop through the whole stack with SUBMITTER_BACKEND=vertex, to SUCCEEDED (`make demo BACKEND=vertex`).
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from test_training_service import (  # noqa: F401  (fixtures are used by name)
    PROJECT,
    envs_dir,
    jobs_api,
    make_sdist,
    make_service,
    wait_for,
)

from submitter.backends.vertex import VertexBackend
from submitter.model import JobRequest, JobState
from submitter_local import storage_emulator
from submitter_local.demo import read_metrics, run_drop
from submitter_local.stack import REPO

from conftest import running_stack
from helpers import assert_published_life

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

BUCKET = "vdrops"
REGION = "us-central1"

REPLICA = r'''
"""Records what Vertex gives a replica into <baseOutputDirectory>/replicas/<task>.json (test_training_vertex)."""
import argparse, json, os, sys, time
from google.cloud import storage
p = argparse.ArgumentParser()
p.add_argument("--expect", type=int, default=1)
p.add_argument("--fail-as", default="")
p.add_argument("--primary", choices=["finish", "sleep"], default="finish")
p.add_argument("--job-dir")
args = p.parse_args()
cluster_spec = json.loads(os.environ["CLUSTER_SPEC"])
name = "%s-%d" % (cluster_spec["task"]["type"], cluster_spec["task"]["index"])
model_dir = os.environ["AIP_MODEL_DIR"]
bucket_name, _, prefix = model_dir[len("gs://"):].partition("/")
base = prefix[:-len("model/")] + "replicas/"
bucket = storage.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"]).bucket(bucket_name)
report = {"cluster_spec": cluster_spec, "tf_config": json.loads(os.environ["TF_CONFIG"]) if "TF_CONFIG" in os.environ
          else None, "aip": {k: v for k, v in os.environ.items() if k.startswith("AIP_")},
          "job_id": os.environ.get("CLOUD_ML_JOB_ID"), "argv": sys.argv[1:], "mine": os.environ.get("MINE")}
bucket.blob(base + name + ".json").upload_from_string(json.dumps(report))
print("REPLICA " + name, flush=True)


def wait_for_everyone():
    end = time.time() + 60
    while len(list(bucket.list_blobs(prefix=base))) < args.expect:
        if time.time() > end:
            sys.exit("not every replica reported")
        time.sleep(0.1)


if name == args.fail_as:
    wait_for_everyone()
    print("RuntimeError: replica %s gave up" % name, file=sys.stderr)
    sys.exit(4)
if name == "workerpool0-0" and args.primary == "finish":
    wait_for_everyone()
    sys.exit(0)
time.sleep(120)  # workers and parameter servers wait to be stopped, as a server.join() would
'''


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The storage emulator with bucket `vdrops` holding the replica trainer."""
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "vtrainer", {"replica": REPLICA})
    bucket = client.create_bucket(BUCKET)
    bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    yield bucket
    server.stop()
    patched.undo()


def reports(bucket, prefix: str) -> dict[str, dict]:
    return {b.name.rsplit("/", 1)[1][:-len(".json")]: json.loads(b.download_as_bytes())
            for b in bucket.list_blobs(prefix=prefix)}


def wait_status(backend: VertexBackend, handle, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while True:
        status = backend.status(handle)
        if status.state is not None and status.state.is_terminal:
            return status
        if time.monotonic() > end:
            raise AssertionError(f"{handle.name} still {status.api_state} after {timeout}s")
        time.sleep(0.1)


def test_distributed_custom_job_gives_every_replica_vertex_cluster_environment(make_service, gcs):
    svc = make_service()
    backend = VertexBackend(PROJECT, region=REGION, endpoint=svc.url, anonymous=True)
    job_dir = f"gs://{BUCKET}/out/dist_1"
    job = {"jobId": "Dist_1", "labels": {"submitter": "drop"}, "trainingInput": {
        "region": REGION, "scaleTier": "CUSTOM", "masterType": "n1-standard-4", "workerType": "n1-standard-4",
        "workerCount": "2", "parameterServerType": "n1-highmem-8", "parameterServerCount": "1",
        "runtimeVersion": "2.11", "pythonVersion": "3.7", "pythonModule": "vtrainer.replica",
        "packageUris": [f"gs://{BUCKET}/packages/vtrainer-0.1.tar.gz"], "jobDir": job_dir, "args": ["--expect", "4"]}}
    status = backend.submit(JobRequest(key="Dist_1", job=job, display_name="incoming/dist-1")).status
    final = wait_status(backend, status.handle)
    assert final.state is JobState.SUCCEEDED, final.error_message
    served = backend.describe(status.handle)
    spec = served["jobSpec"]
    numeric = status.handle.name.rsplit("/", 1)[1]

    found = reports(gcs, "out/dist_1/replicas/")
    assert sorted(found) == ["workerpool0-0", "workerpool1-0", "workerpool1-1", "workerpool2-0"]
    cluster = found["workerpool0-0"]["cluster_spec"]["cluster"]
    assert sorted(cluster) == ["workerpool0", "workerpool1", "workerpool2"]
    assert [len(cluster[f"workerpool{i}"]) for i in range(3)] == [1, 2, 1]
    addresses = [a for pool in cluster.values() for a in pool]
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", a) for a in addresses) and len(set(addresses)) == 4
    tf_types = {"workerpool0": "chief", "workerpool1": "worker", "workerpool2": "ps"}
    for name, report in found.items():
        pool, index = name.rsplit("-", 1)
        assert report["cluster_spec"] == {"cluster": cluster, "task": {"type": pool, "index": int(index)},
                                          "environment": "cloud", "job": spec}
        assert report["tf_config"] == {
            "cluster": {"chief": cluster["workerpool0"], "worker": cluster["workerpool1"],
                        "ps": cluster["workerpool2"]},
            "task": {"type": tf_types[pool], "index": int(index)}, "environment": "cloud", "job": spec}
        assert report["aip"] == {"AIP_MODEL_DIR": f"{job_dir}/model/", "AIP_CHECKPOINT_DIR": f"{job_dir}/checkpoints/",
                                 "AIP_TENSORBOARD_LOG_DIR": f"{job_dir}/logs/"}
        assert report["job_id"] == numeric
        assert report["argv"] == ["--expect", "4", "--job-dir", job_dir]
    assert spec["workerPoolSpecs"][1]["replicaCount"] == "2" and served["state"] == "JOB_STATE_SUCCEEDED"

    logs = f"{svc.url}/local/v1/projects/{PROJECT}/jobs/Dist_1/logs"
    for name in found:
        assert f"REPLICA {name}" in requests.get(logs, params={"replica": name}, timeout=10).text
    primary = requests.get(logs, timeout=10).text
    assert "executorImageUri us-docker.pkg.dev/vertex-ai/training/tf-cpu." in primary
    assert "cannot pull images, so the pool runs on the local runtime instead" in primary
    assert requests.get(logs, params={"replica": "worker-1"}, timeout=10).text == \
        requests.get(logs, params={"replica": "workerpool1-1"}, timeout=10).text


def test_hand_written_custom_job_with_an_evaluator_env_and_a_failing_replica(make_service, gcs):
    svc = make_service()
    api = discovery.build("aiplatform", "v1", client_options={"api_endpoint": svc.url},
                          credentials=AnonymousCredentials(), static_discovery=True).projects().locations().customJobs()

    def pool(*args: str) -> dict:
        return {"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1, "pythonPackageSpec": {
            "executorImageUri": "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-0.py39:latest",
            "packageUris": [f"gs://{BUCKET}/packages/vtrainer-0.1.tar.gz"], "pythonModule": "vtrainer.replica",
            "args": ["--expect", "2", *args], "env": [{"name": "MINE", "value": "$(CLOUD_ML_JOB_ID)-x"}]}}

    body = {"displayName": "hand-written", "jobSpec": {
        "workerPoolSpecs": [pool("--primary", "sleep"), {}, {}, pool("--fail-as", "workerpool3-0")],
        "baseOutputDirectory": {"outputUriPrefix": f"gs://{BUCKET}/out/hand"}}}  # no trailing "/": Vertex adds it
    created = api.create(parent=f"projects/{PROJECT}/locations/{REGION}", body=body).execute()
    numeric = created["name"].rsplit("/", 1)[1]
    end = time.monotonic() + 120
    while (job := api.get(name=created["name"]).execute())["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        assert time.monotonic() < end, job
        time.sleep(0.1)
    assert job["state"] == "JOB_STATE_FAILED"
    assert job["error"]["code"] == 3
    assert job["error"]["message"].startswith("RuntimeError: replica workerpool3-0 gave up\nThe replica "
                                              "workerpool3-0 exited with a non-zero status of 4.")
    found = reports(gcs, "out/hand/replicas/")
    assert sorted(found) == ["workerpool0-0", "workerpool3-0"]
    evaluator = found["workerpool3-0"]
    assert evaluator["cluster_spec"]["cluster"] == {"workerpool0": found["workerpool0-0"]["cluster_spec"]["cluster"][
        "workerpool0"], "workerpool3": evaluator["cluster_spec"]["cluster"]["workerpool3"]}
    assert evaluator["tf_config"]["cluster"] == {"chief": evaluator["cluster_spec"]["cluster"]["workerpool0"]}
    assert evaluator["tf_config"]["task"] == {"type": "evaluator", "index": 0}
    assert evaluator["aip"]["AIP_MODEL_DIR"] == f"gs://{BUCKET}/out/hand/model/"
    assert evaluator["mine"] == f"{numeric}-x" and evaluator["argv"] == ["--expect", "2", "--fail-as", "workerpool3-0"]
    assert found["workerpool0-0"]["argv"] == ["--expect", "2", "--primary", "sleep"]  # the primary waits: no race


def test_container_jobs_are_accepted_then_fail_saying_images_cannot_be_pulled(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=f"projects/{PROJECT}", body={"jobId": "container_1", "trainingInput": {
        "region": REGION, "scaleTier": "BASIC", "masterConfig": {"imageUri": "gcr.io/p/trainer:1"}}}).execute()
    job, _ = wait_for(jobs, "container_1", {"SUCCEEDED", "FAILED", "CANCELLED"})
    assert job["state"] == "FAILED" and job["startTime"]  # accepted, then failed after leaving QUEUED
    assert job["errorMessage"].startswith("The local training service cannot pull images here: no container "
                                          "registry is reachable and no container daemon runs on this machine")
    assert "trainingInput.masterConfig.imageUri names gcr.io/p/trainer:1" in job["errorMessage"]
    assert "trainingOutput" not in job or "consumedMLUnits" not in job["trainingOutput"]

    backend = VertexBackend(PROJECT, region=REGION, endpoint=svc.url, anonymous=True)
    status = backend.submit(JobRequest(key="Container_2", display_name="c", job={
        "jobId": "Container_2", "labels": {}, "trainingInput": {
            "region": REGION, "scaleTier": "BASIC", "masterConfig": {"imageUri": "gcr.io/p/trainer:2"},
            "jobDir": f"gs://{BUCKET}/out/c2"}})).status
    final = wait_status(backend, status.handle)
    assert final.state is JobState.FAILED
    assert "cannot pull images here" in final.error_message
    assert "jobSpec.workerPoolSpecs[0].containerSpec.imageUri names gcr.io/p/trainer:2" in final.error_message


@pytest.fixture(scope="module")
def vertex_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("vstack"), backend="vertex", min_state_seconds=1.0,
                       reconcile_interval_s=0.5) as (stack, env):
        yield stack, env


def test_sample_drop_succeeds_on_the_vertex_backend_stack(vertex_stack, sample_package):
    stack, env = vertex_stack
    assert env["SUBMITTER_BACKEND"] == "vertex"
    lines: list[str] = []
    state, events = run_drop(env, sample_package, (REPO / "samples" / "job.yaml").read_bytes(),
                             "incoming/vertex-ok", timeout_s=180, out=lines.append)
    states = [e["data"]["state"] for e in events]
    assert state == "SUCCEEDED", (states, lines)
    assert_published_life(states, "SUCCEEDED")
    final = events[-1]["data"]
    assert final["backend"] == "vertex"
    assert re.fullmatch(rf"projects/{env['PROJECT']}/locations/{REGION}/customJobs/\d+", final["resourceName"])
    metrics = read_metrics(env, final["jobDir"])
    assert metrics["accuracy"] > 0.8 and metrics["hyperparameters"]["n_estimators"] == 200
    job = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/{final['resourceName']}", timeout=10).json()
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["displayName"] == "incoming/vertex-ok"
    assert requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs", timeout=10).json() \
        == {}  # nothing went through ml v1
    assert any(line.endswith("  SUCCEEDED") for line in lines)


@pytest.mark.parametrize("name, expected", [("single", "SUCCEEDED"), ("distributed", "SUCCEEDED"),
                                            ("container", "FAILED")])
def test_custom_job_spec_configs_on_the_vertex_stack(vertex_stack, sample_package, name, expected):
    """Issue 12.3: three CustomJobSpec job.yaml files (samples/vertex/) run to SUCCEEDED, or, for the container,
    are accepted and fail in PENDING with the reason (issue 12.1)."""
    stack, env = vertex_stack
    state, events = run_drop(env, sample_package, (REPO / "samples" / "vertex" / f"{name}.yaml").read_bytes(),
                             f"incoming/spec-{name}", timeout_s=180, out=lambda _: None)
    states = [e["data"]["state"] for e in events]
    assert state == expected, (states, events[-1]["data"])
    final = events[-1]["data"]
    job = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/{final['resourceName']}", timeout=10).json()
    pools = job["jobSpec"]["workerPoolSpecs"]
    if expected == "SUCCEEDED":
        assert_published_life(states, "SUCCEEDED")
        metrics = read_metrics(env, final["jobDir"].rstrip("/") + "/model")  # the trainer wrote to AIP_MODEL_DIR
        assert metrics["accuracy"] > 0.8
        assert [p["replicaCount"] for p in pools] == (["1"] if name == "single" else ["1", "2", "1"])
        assert job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == final["jobDir"]
    else:
        assert "PREPARING" in states and final["reason"] == "JOB_FAILED"
        assert final["errorMessage"].startswith("The local training service cannot pull images here")
        assert job["state"] == "JOB_STATE_FAILED" and "containerSpec" in pools[0]
