"""The local training service's Vertex AI customJobs subset, driven through the real `VertexBackend` adapter (and
the real google-api-python-client for the raw calls) over HTTP to a service instance in this process.

In-process and fast: the service is paused (jobs stay JOB_STATE_QUEUED, nothing is installed or run), isolation is
off and storage is not checked, so no trainer, emulator or runtime is needed. Running CustomJobs for real is in
tests/test_training_vertex.py (marked stack).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from submitter.backends.vertex import VertexBackend
from submitter.errors import BackendRefused
from submitter.model import JobRequest, JobState
from submitter_local.training import ServiceConfig, TrainingService, cluster, containers, vertex_api, vertex_run
from submitter_local.training.store import JobRecord
from submitter_local.training.vertex_filters import FilterError, compile_filter

PROJECT = "demo-project"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
PACKAGE = "gs://drops/packages/trainer-0.1.tar.gz"


@pytest.fixture
def svc(tmp_path):
    service = TrainingService(ServiceConfig(data_dir=tmp_path / "data", runtime_python=Path(sys.executable),
                                            paused=True, isolation="off", check_storage=False, poll_interval=0.05))
    service.start(host="127.0.0.1", port=0)
    yield service
    service.stop()


@pytest.fixture
def backend(svc):
    return VertexBackend(PROJECT, region=REGION, regions=["europe-west4"], endpoint=svc.url, anonymous=True)


def custom_jobs(svc):
    """projects().locations().customJobs() of the real client library, pointed at the local service."""
    api = discovery.build("aiplatform", "v1", client_options={"api_endpoint": svc.url},
                          credentials=AnonymousCredentials(), static_discovery=True)
    return api.projects().locations().customJobs()


def ai_platform_job(key: str, region: str = REGION, **ti) -> dict:
    body = {"region": region, "scaleTier": "BASIC", "runtimeVersion": "2.11", "pythonVersion": "3.7",
            "pythonModule": "trainer.task", "packageUris": [PACKAGE], "jobDir": f"gs://outs/{key}",
            "args": ["--epochs", "2"], **ti}
    return {"jobId": key, "labels": {"submitter": "drop", "team": "vision"}, "trainingInput": body}


def custom_job(name: str = "run-1", **extra) -> dict:
    return {"displayName": name, "jobSpec": {"workerPoolSpecs": [{
        "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
        "pythonPackageSpec": {"executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
                              "packageUris": [PACKAGE], "pythonModule": "trainer.task"}}]}, **extra}


def error_of(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


# -- create / get through the adapter ------------------------------------------------------------------------------

def test_adapter_creates_finds_lists_and_describes_a_custom_job(svc, backend):
    job = ai_platform_job("Run_1")
    submission = backend.submit(JobRequest(key="Run_1", job=job, display_name="incoming/run-1"))

    status = submission.status
    assert not submission.adopted and status.state is JobState.QUEUED and status.api_state == "JOB_STATE_QUEUED"
    assert re.fullmatch(rf"{PARENT}/customJobs/\d{{19}}", status.handle.name)
    assert status.output_dir == "gs://outs/Run_1"
    described = backend.describe(status.handle)
    sent = backend.translate(JobRequest(key="Run_1", job=job, display_name="incoming/run-1")).custom_job
    assert described["displayName"] == sent["displayName"] and described["labels"] == sent["labels"]
    assert described["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"] == \
        sent["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]
    assert described["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "1"  # int64 as a decimal string
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", described["createTime"])
    assert "error" not in described and "startTime" not in described

    # idempotent without client ids: the second submit finds the job by its key label and adopts it
    again = backend.submit(JobRequest(key="Run_1", job=job, display_name="incoming/run-1"))
    assert again.adopted and again.status.handle == status.handle
    assert backend.find("Run_1").handle == status.handle
    assert backend.find("Other_1") is None
    active, token = backend.list_active()
    # pages: us-central1's customJobs, its hyperparameterTuningJobs, then europe-west4's two collections
    assert [s.handle.name for s in active] == [status.handle.name] and token == "1:"
    rest = []
    while token:
        page, token = backend.list_active(token)
        rest += page
    assert rest == []
    calls = svc.stats()["api_calls"]
    assert calls["customJobs.create"] == 1 and calls["customJobs.list"] >= 3 and "jobs.create" not in calls


def test_custom_job_echoes_the_body_and_ignores_output_only_fields(svc):
    api = custom_jobs(svc)
    body = {**custom_job(labels={"team": "vision"}), "state": "JOB_STATE_SUCCEEDED", "name": "projects/x/customJobs/1"}
    created = api.create(parent=PARENT, body=body).execute()

    assert created["state"] == "JOB_STATE_QUEUED" and created["name"].startswith(f"{PARENT}/customJobs/")
    assert created["displayName"] == "run-1" and created["labels"] == {"team": "vision"}
    assert created["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"] == \
        body["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]
    assert created["name"] != body["name"]
    assert api.get(name=created["name"]).execute() == created


def test_a_job_is_not_found_from_another_location_nor_under_an_unknown_id(svc):
    api = custom_jobs(svc)
    created = api.create(parent=PARENT, body=custom_job()).execute()
    job_id = created["name"].rsplit("/", 1)[1]
    for name in (f"projects/{PROJECT}/locations/europe-west4/customJobs/{job_id}", f"{PARENT}/customJobs/12345",
                 f"{PARENT}/customJobs/not-a-number", f"projects/other/locations/{REGION}/customJobs/{job_id}"):
        with pytest.raises(HttpError) as exc:
            api.get(name=name).execute()
        assert exc.value.resp.status == 404 and error_of(exc.value)["status"] == "NOT_FOUND", name
    with pytest.raises(HttpError) as exc:
        api.cancel(name=f"projects/{PROJECT}/locations/europe-west4/customJobs/{job_id}", body={}).execute()
    assert exc.value.resp.status == 404


def test_ml_v1_and_vertex_jobs_never_see_each_other(svc, backend):
    backend.submit(JobRequest(key="Run_2", job=ai_platform_job("Run_2"), display_name="d"))
    ml = discovery.build("ml", "v1", client_options={"api_endpoint": svc.url}, credentials=AnonymousCredentials(),
                         static_discovery=True).projects().jobs()
    assert ml.list(parent=f"projects/{PROJECT}").execute() == {}


@pytest.mark.parametrize("body, field", [
    ({"jobSpec": {"workerPoolSpecs": [{}]}}, "custom_job.display_name"),
    (custom_job(name="x" * 129), "custom_job.display_name"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": []}}, "custom_job.job_spec.worker_pool_specs"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{}]}}, "custom_job.job_spec.worker_pool_specs[0]"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"replicaCount": 2, "machineSpec": {"machineType": "m"},
                                                           "containerSpec": {"imageUri": "gcr.io/p/i"}}]}},
     "custom_job.job_spec.worker_pool_specs[0].replica_count"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"}}]}},
     "custom_job.job_spec.worker_pool_specs[0]"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"},
                                                           "containerSpec": {"imageUri": "gcr.io/p/i"},
                                                           "pythonPackageSpec": {}}]}},
     "custom_job.job_spec.worker_pool_specs[0]"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"containerSpec": {"imageUri": "gcr.io/p/i"}}]}},
     "custom_job.job_spec.worker_pool_specs[0].machine_spec.machine_type"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [
        {"machineSpec": {"machineType": "m"}, "containerSpec": {"imageUri": "gcr.io/p/i"}},
        {"machineSpec": {"machineType": "m"}, "containerSpec": {"imageUri": "gcr.io/p/i"}}]}},
     "custom_job.job_spec.worker_pool_specs[1].replica_count"),
    (custom_job(labels={"Team": "x"}), "custom_job.labels['Team']"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"},
                                                           "pythonPackageSpec": {"pythonModule": "t"}}]}},
     "custom_job.job_spec.worker_pool_specs[0].python_package_spec.executor_image_uri"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"}, "pythonPackageSpec": {
        "executorImageUri": "i", "pythonModule": "t", "packageUris": ["/local/file.tar.gz"]}}]}},
     "custom_job.job_spec.worker_pool_specs[0].python_package_spec.package_uris[0]"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"},
                                                           "containerSpec": {"imageUri": "gcr.io/p/i"}}],
                                      "baseOutputDirectory": {"outputUriPrefix": "/tmp/out"}}},
     "custom_job.job_spec.base_output_directory.output_uri_prefix"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"},
                                                           "containerSpec": {"imageUri": "i", "env": [
                                                               {"name": "1BAD", "value": "x"}]}}]}},
     "custom_job.job_spec.worker_pool_specs[0].container_spec.env[0].name"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "m"}}], "bogus": 1}},
     "custom_job.job_spec"),
])
def test_create_answers_400_naming_the_field(svc, body, field):
    with pytest.raises(HttpError) as exc:
        custom_jobs(svc).create(parent=PARENT, body=body).execute()
    error = error_of(exc.value)
    assert exc.value.resp.status == 400 and error["status"] == "INVALID_ARGUMENT"
    fields = [v["field"] for d in error["details"] for v in d.get("fieldViolations", [])]
    assert field in fields, fields
    assert svc.store.list_prefix(f"{PROJECT}/vertex-") == []


def test_refusals_reach_the_adapter_as_backend_refused(svc, backend):
    job = ai_platform_job("Run_3", packageUris=["gs://x/p.tar.gz"])  # bucket names have 3 characters at least
    with pytest.raises(BackendRefused) as exc:
        backend.submit(JobRequest(key="Run_3", job=job, display_name="d"))
    assert exc.value.status == "INVALID_ARGUMENT" and "package_uris[0]" in str(exc.value)


# -- list: filters and paging ----------------------------------------------------------------------------------------

def test_list_filters_on_labels_state_display_name_and_create_time(svc):
    api = custom_jobs(svc)
    a = api.create(parent=PARENT, body=custom_job("train-a", labels={"team": "vision", "tier": "gold"})).execute()
    b = api.create(parent=PARENT, body=custom_job("train-b", labels={"team": "nlp"})).execute()
    c = api.create(parent=PARENT, body=custom_job("eval-c")).execute()
    api.cancel(name=b["name"], body={}).execute()

    def names(filter_: str) -> list[str]:
        answer = api.list(parent=PARENT, filter=filter_).execute()
        return sorted(j["displayName"] for j in answer.get("customJobs", []))

    assert names("") == ["eval-c", "train-a", "train-b"]
    assert names('labels.team="vision"') == ["train-a"]
    assert names("labels.team=nlp") == ["train-b"]
    assert names("labels.team:*") == ["train-a", "train-b"]
    assert names('labels.team!="vision"') == ["eval-c", "train-b"]
    assert names('state="JOB_STATE_CANCELLED"') == ["train-b"]
    assert names('state!="JOB_STATE_CANCELLED"') == ["eval-c", "train-a"]
    assert names('labels.team:* AND state="JOB_STATE_QUEUED"') == ["train-a"]
    assert names('labels.tier="gold" OR display_name="eval-c"') == ["eval-c", "train-a"]
    assert names('NOT display_name="eval-c"') == ["train-a", "train-b"]
    assert names('display_name:"train-*" AND (state="JOB_STATE_QUEUED" OR state="JOB_STATE_PENDING")') == ["train-a"]
    assert names(f'create_time>="{a["createTime"]}"') == ["eval-c", "train-a", "train-b"]
    assert names('create_time<"2000-01-01T00:00:00Z"') == []
    assert api.list(parent=PARENT, filter='labels.team="none"').execute() == {}  # `{}` when nothing matches
    assert api.list(parent=f"projects/{PROJECT}/locations/europe-west4").execute() == {}
    for bad in ("jobId:abc", "state>JOB_STATE_QUEUED", "(state=JOB_STATE_QUEUED", 'create_time>"yesterday"'):
        with pytest.raises(HttpError) as exc:
            api.list(parent=PARENT, filter=bad).execute()
        assert exc.value.resp.status == 400 and error_of(exc.value)["status"] == "INVALID_ARGUMENT", bad
    assert c["name"] != a["name"]


def test_list_pages_through_every_job_once(svc):
    api = custom_jobs(svc)
    made = {api.create(parent=PARENT, body=custom_job(f"job-{i}")).execute()["name"] for i in range(5)}
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        answer = api.list(parent=PARENT, pageSize=2, pageToken=token).execute()
        pages += 1
        seen += [j["name"] for j in answer["customJobs"]]
        token = answer.get("nextPageToken")
        if not token:
            break
        api.create(parent=PARENT, body=custom_job("late")).execute()  # newer jobs do not shift the pages
    assert pages == 3 and sorted(seen) == sorted(made) and len(seen) == 5
    with pytest.raises(HttpError) as exc:
        api.list(parent=PARENT, pageToken="garbage").execute()
    assert exc.value.resp.status == 400
    first = api.list(parent=PARENT, pageSize=1).execute()
    with pytest.raises(HttpError):  # a token belongs to its parent and filter
        api.list(parent=PARENT, pageSize=1, pageToken=first["nextPageToken"], filter="labels.x:*").execute()


# -- cancel -------------------------------------------------------------------------------------------------------

def test_cancel_a_queued_job_then_again(svc, backend):
    status = backend.submit(JobRequest(key="Run_4", job=ai_platform_job("Run_4"), display_name="d")).status
    backend.cancel(status.handle)
    after = backend.status(status.handle)
    assert after.state is JobState.CANCELLED and after.api_state == "JOB_STATE_CANCELLED"
    assert after.error_message == vertex_api.CANCEL_MESSAGE and after.end_time
    assert backend.describe(status.handle)["error"] == {"code": 1, "message": vertex_api.CANCEL_MESSAGE}
    with pytest.raises(BackendRefused) as exc:
        backend.cancel(status.handle)
    assert exc.value.status == "FAILED_PRECONDITION" and "JOB_STATE_CANCELLED" in str(exc.value)


# -- the logs endpoint ----------------------------------------------------------------------------------------------

def test_logs_endpoint_finds_custom_jobs_by_key_or_id_and_knows_their_replicas(svc, backend):
    import requests

    job = ai_platform_job("Run_5", scaleTier="CUSTOM", masterType="n1-standard-4", workerType="n1-standard-4",
                          workerCount=2)
    status = backend.submit(JobRequest(key="Run_5", job=job, display_name="d")).status
    numeric = status.handle.name.rsplit("/", 1)[1]
    url = f"{svc.url}/local/v1/projects/{PROJECT}/jobs"
    for key in ("Run_5", numeric):
        for replica in (None, "workerpool0-0", "master-0", "workerpool1-1", "worker-1"):
            answer = requests.get(f"{url}/{key}/logs", params={"replica": replica} if replica else {}, timeout=10)
            assert answer.status_code == 200 and answer.content == b"", (key, replica)
    missing = requests.get(f"{url}/Run_5/logs", params={"replica": "workerpool2-0"}, timeout=10)
    assert missing.status_code == 404 and "workerpool0-0, workerpool1-0, workerpool1-1" in missing.json()["error"][
        "message"]
    assert requests.get(f"{url}/Nothing_1/logs", timeout=10).status_code == 404


# -- what each replica is given (pure) ----------------------------------------------------------------------------

def _record(spec: dict, job_id: str = "1234567890123456789") -> JobRecord:
    meta = {"name": f"{PARENT}/customJobs/{job_id}", "displayName": "d", "project": PROJECT, "location": REGION}
    return JobRecord(f"{PROJECT}/vertex-{REGION}", job_id, 1, "RUNNING", "t", 0.0, 0, 0.0,
                     {"jobId": job_id, "trainingInput": spec}, {"api": "vertex", "vertex": meta})


def _pool(count: int, module: str = "trainer.task", args=(), env=()) -> dict:
    return {"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": str(count), "pythonPackageSpec": {
        "executorImageUri": "europe-docker.pkg.dev/vertex-ai/training/tf-gpu.2-12.py310:latest",
        "packageUris": [PACKAGE], "pythonModule": module, "args": list(args), "env": list(env)}}


def test_cluster_spec_tf_config_and_output_directories_follow_vertex():
    spec = {"workerPoolSpecs": [_pool(1), _pool(2), _pool(1), _pool(1)],
            "baseOutputDirectory": {"outputUriPrefix": "gs://outs/run"}}
    profile = vertex_run.VertexProfile(_record(spec), ServiceConfig(data_dir=Path("/nonexistent"),
                                                                    runtime_python=Path(sys.executable)))
    assert profile.plan.names() == ["workerpool0-0", "workerpool1-0", "workerpool1-1", "workerpool2-0",
                                    "workerpool3-0"]
    addresses = {name: f"127.0.0.1:{4000 + i}" for i, name in enumerate(profile.plan.names())}
    evaluator = profile.plan.replicas[-1]
    env = profile.variables(evaluator, addresses)
    assert json.loads(env["CLUSTER_SPEC"]) == {
        "cluster": {"workerpool0": ["127.0.0.1:4000"], "workerpool1": ["127.0.0.1:4001", "127.0.0.1:4002"],
                    "workerpool2": ["127.0.0.1:4003"], "workerpool3": ["127.0.0.1:4004"]},
        "task": {"type": "workerpool3", "index": 0}, "environment": "cloud", "job": spec}
    assert json.loads(env["TF_CONFIG"]) == {  # the evaluator is never a cluster member
        "cluster": {"chief": ["127.0.0.1:4000"], "worker": ["127.0.0.1:4001", "127.0.0.1:4002"],
                    "ps": ["127.0.0.1:4003"]},
        "task": {"type": "evaluator", "index": 0}, "environment": "cloud", "job": spec}
    assert json.loads(profile.variables(profile.plan.replicas[2], addresses)["TF_CONFIG"])["task"] == {
        "type": "worker", "index": 1}
    assert {k: v for k, v in env.items() if k.startswith("AIP_")} == {
        "AIP_MODEL_DIR": "gs://outs/run/model/", "AIP_CHECKPOINT_DIR": "gs://outs/run/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": "gs://outs/run/logs/"}
    assert env["CLOUD_ML_JOB_ID"] == "1234567890123456789"
    assert profile.runtime_version == "2.11" and profile.python_version == "3.10"  # tf 2.12 image -> runtime 2.11
    assert profile.max_running_time() is None and profile.timeout_field == "scheduling.timeout"


def test_one_replica_gets_no_tf_config_and_caps_are_noted():
    single = vertex_run.VertexProfile(_record({"workerPoolSpecs": [_pool(1)]}), ServiceConfig(
        data_dir=Path("/x"), runtime_python=Path(sys.executable)))
    env = single.variables(single.plan.primary, {"workerpool0-0": "127.0.0.1:1"})
    assert "TF_CONFIG" not in env and not any(k.startswith("AIP_") for k in env)
    assert json.loads(env["CLUSTER_SPEC"])["cluster"] == {"workerpool0": ["127.0.0.1:1"]}
    capped = vertex_run.VertexProfile(_record({"workerPoolSpecs": [_pool(1), {}, _pool(5)]}), ServiceConfig(
        data_dir=Path("/x"), runtime_python=Path(sys.executable), max_replicas_per_type=1))
    assert capped.plan.names() == ["workerpool0-0", "workerpool2-0"]
    assert capped.plan.notes == ("workerPoolSpecs[2] asks for 5 replica(s), 1 run locally (max_replicas_per_type=1).",)


def test_each_pool_runs_its_own_module_args_and_env():
    env = [{"name": "DATA", "value": "gs://in"}, {"name": "WHERE", "value": "$(DATA)/x $$(DATA) $(NOPE)"},
           {"name": "CLOUD_ML_JOB_ID", "value": "mine"}]
    spec = {"workerPoolSpecs": [_pool(1, "a.main", ["--x"], env), _pool(1, "b.main", ["--y"])],
            "scheduling": {"timeout": "60s"}}
    profile = vertex_run.VertexProfile(_record(spec), ServiceConfig(data_dir=Path("/x"),
                                                                    runtime_python=Path(sys.executable)))
    chief, worker = profile.plan.replicas
    assert profile.command(chief) == ["a.main", "--x"] and profile.command(worker) == ["b.main", "--y"]
    variables = profile.variables(chief, {"workerpool0-0": "h:1", "workerpool1-0": "h:2"})
    assert variables["WHERE"] == "gs://in/x $(DATA) $(NOPE)"
    assert variables["CLOUD_ML_JOB_ID"] == "1234567890123456789"  # what Vertex sets wins
    assert "DATA" not in profile.variables(worker, {"workerpool0-0": "h:1", "workerpool1-0": "h:2"})
    assert profile.package_uris() == [PACKAGE] and profile.max_running_time() == "60s"


@pytest.mark.parametrize("uri, expected", [
    ("us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest", ("TensorFlow", "2.17", "cpu", "3.10", "2.11")),
    ("europe-docker.pkg.dev/vertex-ai/training/tf-gpu.2-8.py310:latest", ("TensorFlow", "2.8", "gpu", "3.10", "2.8")),
    ("us-docker.pkg.dev/vertex-ai/training/tf-cpu.1-15:latest", ("TensorFlow", "1.15", "cpu", None, "1.15")),
    ("us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest", ("PyTorch", "2.4", "gpu", "3.10", None)),
    ("us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-0.py39:latest", ("scikit-learn", "1.0", "cpu", "3.9", None)),
])
def test_prebuilt_image_names_map_to_the_local_runtime(uri, expected):
    image = vertex_run.parse_image(uri)
    assert (image.framework, image.version, image.hardware, image.python) == expected[:4]
    assert vertex_run.tensorflow_runtime(image) == expected[4]


def test_unknown_image_names_are_not_guessed():
    assert vertex_run.parse_image("gcr.io/my-project/my-trainer:1") is None
    assert vertex_run.tensorflow_runtime(None) is None


def test_replica_names_are_vertex_task_names():
    replica = cluster.Replica("worker", 1, pool=1)
    assert replica.name == replica.label == "workerpool1-1"
    assert cluster.Replica("worker", 1).name == "worker-1" and cluster.Replica("worker", 1).label == "worker 1"


# -- containers (issue 12.1) ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("installed, answering, says", [
    ((), (), "no container runtime (docker, podman, nerdctl) is installed"),
    (("docker",), (), "the docker client is installed but no container daemon answers it"),
    (("podman",), ("podman",), "podman answers on this machine, but the local training service does not run images"),
])
def test_container_refusal_says_why_the_image_cannot_run_here(installed, answering, says):
    text = containers.refusal(["gcr.io/p/trainer:1", "gcr.io/p/trainer:1"], "trainingInput.masterConfig.imageUri",
                              which=lambda n: f"/bin/{n}" if n in installed else None,
                              answers=lambda path: path.rsplit("/", 1)[1] in answering)
    assert text.startswith("The local training service cannot pull images here: no container registry is "
                           "reachable and no container daemon runs on this machine")
    assert says in text and text.count("gcr.io/p/trainer:1") == 1
    assert "trainingInput.masterConfig.imageUri names gcr.io/p/trainer:1" in text


# -- the filter parser shared with tests/fake_vertex.py --------------------------------------------------------------

def test_filter_precedence_or_binds_tighter_than_and():
    match = compile_filter('state="A" AND labels.x="1" OR labels.x="2"')
    assert match({"state": "A", "labels": {"x": "2"}}) and not match({"state": "B", "labels": {"x": "2"}})
    assert compile_filter(None)({}) and compile_filter("  ")({})
    for bad in ("state", "state=A AND", "labels:x", "display_name<a", 'display_name="unterminated'):
        with pytest.raises(FilterError):
            compile_filter(bad)


def test_a_filter_knows_which_states_it_can_match_so_the_service_reads_only_those_jobs():
    active = compile_filter('labels.submitter="drop" AND (state="JOB_STATE_QUEUED" OR state="JOB_STATE_RUNNING")')
    assert active.states == {"JOB_STATE_QUEUED", "JOB_STATE_RUNNING"}
    assert compile_filter('state="JOB_STATE_QUEUED" AND state="JOB_STATE_RUNNING"').states == frozenset()
    for unrestricted in ("", 'labels.x="1"', 'state!="JOB_STATE_FAILED"', 'NOT state="JOB_STATE_FAILED"',
                         'state="JOB_STATE_QUEUED" OR labels.x="1"'):
        assert compile_filter(unrestricted).states is None, unrestricted


def test_a_state_filter_lists_the_same_jobs_among_many_finished_ones(svc):
    api = custom_jobs(svc)
    made = [api.create(parent=PARENT, body=custom_job(f"job-{i}")).execute()["name"] for i in range(6)]
    for name in made[:4]:
        api.cancel(name=name, body={}).execute()
    seen, token = [], None
    while True:
        answer = api.list(parent=PARENT, pageSize=1, pageToken=token,  # PAUSED: a state the service never shows
                          filter='state="JOB_STATE_QUEUED" OR state="JOB_STATE_PENDING" OR state="JOB_STATE_PAUSED"'
                          ).execute()
        seen += [j["name"] for j in answer.get("customJobs", [])]
        token = answer.get("nextPageToken")
        if not token:
            break
    assert seen == list(reversed(made[4:]))
    assert api.list(parent=PARENT, filter='state="JOB_STATE_UNSPECIFIED"').execute() == {}
