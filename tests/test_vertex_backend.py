"""The Vertex AI backend, end to end in memory: the real `VertexBackend` adapter (bundled aiplatform v1 discovery
document, regional endpoints, error classification) over an in-memory Vertex REST API (`fake_vertex.py`), wired
into the whole submitter (`conftest.World`): drop -> SUBMITTED with the CustomJob's resource name -> every state
-> one terminal event; idempotency without client-chosen ids (the same event twice, two instances at once, a crash
between create and publish: one job, one SUBMITTED); the state table; listings across regions with server-side
filters; errors; the CLI on Vertex jobs.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from fake_vertex import FakeVertexApi, compile_filter
from test_contract import validate_message

from submitter.backends import build_backend
from submitter.backends import vertex_translate as vt
from submitter.backends.vertex import ACTIVE_API_STATES, STATES, VertexBackend
from submitter.drops import status_key
from submitter.errors import BackendRefused, BackendUnavailable, ClaimBusy
from submitter.model import JobHandle, JobRequest, JobState
from submitter.naming import key_label_value
from submitter.policy import Policy
from submitter.settings import Settings

from conftest import BASELINE_TARBALL, BASELINE_YAML, World, at_once, settings
from fakes import FakePublisher

REGIONS = Policy().allowed_regions  # us-central1, us-east1, us-west1, europe-west1, europe-west4, asia-east1
SA = "training@demo-project.iam.gserviceaccount.com"


def vertex_world(real_sleep: bool = False, **overrides) -> tuple[FakeVertexApi, World]:
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", region="us-central1", regions=REGIONS, service_account=SA, transport=api)
    return api, World(backend=backend, real_sleep=real_sleep, **overrides)


class Killed(BaseException):
    """The function instance dying (timeout, OOM): no except-Exception handler runs."""


class DyingPublisher(FakePublisher):
    """Dies (once) on its first publish: after the job was created, before SUBMITTED went out."""

    def __init__(self):
        super().__init__()
        self.die = True

    def publish(self, messages):
        if self.die:
            self.die = False
            raise Killed()
        return super().publish(messages)


TUNING = b"""  hyperparameters:
    goal: MAXIMIZE
    maxTrials: 4
    params:
    - {parameterName: lr, type: DOUBLE, minValue: 0.01, maxValue: 0.1}
"""
BASELINE_WITH_TUNING = BASELINE_YAML.replace(b"labels:\n", TUNING + b"labels:\n")


# -- a drop, end to end ---------------------------------------------------------------------------------------------
def test_a_drop_becomes_a_custom_job_on_the_regional_endpoint_and_is_followed_to_success():
    api, w = vertex_world()
    out = w.drop("incoming/run-001", spec_generation=1718000000000001)
    assert out.action == "submitted" and out.job_id == "run_001_1718000000000001"
    job = api.only()
    name = job["name"]
    assert name.startswith("projects/demo-project/locations/us-central1/customJobs/") and name[-1].isdigit()
    assert set(api.hosts) == {"us-central1-aiplatform.googleapis.com"}  # the regional endpoint, every call
    assert job["displayName"] == "incoming/run-001"
    assert job["labels"] == {"team": "vision", "submitter": "drop", "submitter-key": key_label_value(out.job_id),
                             "submitter-job": out.job_id}
    [chief] = job["jobSpec"]["workerPoolSpecs"]
    assert chief["pythonPackageSpec"]["args"] == ["--epochs", "3", "--job-dir", "gs://drop-outputs/run-001"]
    sha = hashlib.sha256(BASELINE_TARBALL).hexdigest()  # an immutable copy of the dropped bytes
    assert chief["pythonPackageSpec"]["packageUris"] == [f"gs://drop-outputs/staging/{sha}/package.tar.gz"]
    assert job["jobSpec"]["serviceAccount"] == SA and job["jobSpec"]["scheduling"] == {"timeout": "172800s"}

    for state in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"):
        api.set_state(name, state)
        w.reconciler.tick()
    messages = w.messages()
    assert [m["state"] for m in messages] == ["SUBMITTED", "PREPARING", "RUNNING", "SUCCEEDED"]
    assert {m["jobId"] for m in messages} == {out.job_id}  # consumers keep the submitter's key ...
    assert {m["resourceName"] for m in messages} == {name}  # ... and get Vertex's resource name
    assert {m["backend"] for m in messages} == {"vertex"} and {m["jobDir"] for m in messages} == {
        "gs://drop-outputs/run-001"}
    assert any("TensorFlow" in w_ for w_ in messages[0]["warnings"])  # the image change is told, not hidden
    for m in w.publisher.messages:
        validate_message(m.attributes, json.loads(m.data))
    assert w.ledger.followed() == []


def test_a_failed_job_carries_vertex_error_message_and_expired_and_partial_success_are_failures():
    api, w = vertex_world()
    w.drop("incoming/run-002")
    name = api.only()["name"]
    api.set_state(name, "JOB_STATE_FAILED", error={"code": 3, "message": "The replica workerpool0-0 exited with a "
                                                   "non-zero status of 1."})
    w.reconciler.tick()
    failed = w.messages()[-1]
    assert failed["state"] == "FAILED" and failed["reason"] == "JOB_FAILED" and failed["terminal"]
    assert "workerpool0-0 exited" in failed["errorMessage"]
    backend = w.backend
    api.set_state(name, "JOB_STATE_EXPIRED", error={})
    expired = backend.status(JobHandle("vertex", name, "k"))
    assert expired.state is JobState.FAILED and "expired" in expired.error_message
    api.set_state(name, "JOB_STATE_PARTIALLY_SUCCEEDED")
    partial = backend.status(JobHandle("vertex", name, "k"))
    assert partial.state is JobState.FAILED and "partially" in partial.error_message


@pytest.mark.parametrize("api_state,expected", sorted(STATES.items()))
def test_every_vertex_state_maps_by_the_documented_table(api_state, expected):
    api, w = vertex_world()
    w.drop("incoming/run-003")
    name = api.only()["name"]
    api.set_state(name, api_state)
    status = w.backend.status(JobHandle("vertex", name, "run_003"))
    assert status.state == expected and status.api_state == api_state and status.handle.key == "run_003"


def test_every_state_of_the_discovery_document_is_in_the_table():
    from submitter import schema

    assert set(schema.enum_values("CustomJob", "state", doc=schema.AIPLATFORM_V1)) == set(STATES)
    assert set(ACTIVE_API_STATES) == {s for s, j in STATES.items() if j is None or not j.is_terminal} - {
        "JOB_STATE_UNSPECIFIED"}


def test_paused_and_updating_publish_nothing_and_the_job_goes_on():
    api, w = vertex_world()
    w.drop("incoming/run-004")
    name = api.only()["name"]
    api.set_state(name, "JOB_STATE_RUNNING")
    w.reconciler.tick()
    for state in ("JOB_STATE_PAUSED", "JOB_STATE_UPDATING"):
        api.set_state(name, state)
        report = w.reconciler.tick()
        # listed as active (customJobs and hyperparameterTuningJobs of each region): no lone get
        assert report.published == [] and report.api_calls == 2 * len(REGIONS)
    api.set_state(name, "JOB_STATE_UNSPECIFIED")
    assert w.reconciler.tick().published == []  # never guessed
    api.set_state(name, "JOB_STATE_CANCELLED")
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "RUNNING", "CANCELLED"]


# -- idempotency without client-chosen ids ----------------------------------------------------------------------------
def test_the_same_event_twice_and_two_instances_at_once_make_one_job_and_one_submitted():
    api, w = vertex_world(real_sleep=True)
    w.put("incoming/run-005/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-005/job.yaml", BASELINE_YAML, generation=1718000000000005)
    a, b = at_once(lambda: w.deliver("incoming/run-005/job.yaml", event_id="evt-A"),
                   lambda: w.deliver("incoming/run-005/job.yaml", event_id="evt-B"))
    w.clock.advance(600)
    c = w.deliver("incoming/run-005/job.yaml", event_id="evt-C")
    assert sorted(o.action for o in (a, b, c)) == ["duplicate", "duplicate", "submitted"]
    assert api.count("create") == 1 and len(api.jobs) == 1 and w.publisher.states() == ["SUBMITTED"]


def test_a_crash_between_create_and_publish_is_healed_by_the_redelivery_finding_the_job_by_its_label():
    api, w = vertex_world()
    w.publisher = w.app.submitter.publisher = w.reconciler.publisher = DyingPublisher()
    w.put("incoming/run-006/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-006/job.yaml", BASELINE_YAML)
    with pytest.raises(Killed):
        w.deliver("incoming/run-006/job.yaml")
    assert len(api.jobs) == 1 and not w.publisher.messages
    with pytest.raises(ClaimBusy):  # within the dead invocation's lease the event comes back later
        w.deliver("incoming/run-006/job.yaml", event_id="evt-soon")
    w.clock.advance(w.settings.claim_lease_s + 1)
    again = w.deliver("incoming/run-006/job.yaml", event_id="evt-redelivered")
    assert again.action == "adopted" and api.count("create") == 1 and len(api.jobs) == 1
    assert w.publisher.states() == ["SUBMITTED"]
    assert w.messages()[0]["resourceName"] == api.only()["name"]
    label_filter = f'labels.submitter-key="{key_label_value(again.job_id)}"'
    assert ("list", label_filter) in api.calls  # found by its label, with a server-side filter


def test_a_crash_after_create_with_no_redelivery_is_announced_by_the_reconciler():
    api, w = vertex_world()
    w.publisher = w.app.submitter.publisher = w.reconciler.publisher = DyingPublisher()
    w.put("incoming/run-007/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-007/job.yaml", BASELINE_YAML)
    with pytest.raises(Killed):
        w.deliver("incoming/run-007/job.yaml")
    name = api.only()["name"]
    assert w.reconciler.tick().published == []  # within the lease the invocation may still be working
    w.clock.advance(w.settings.claim_lease_s + 1)
    [(key, state)] = w.reconciler.tick().published
    assert state == "SUBMITTED"
    api.set_state(name, "JOB_STATE_SUCCEEDED")
    w.reconciler.tick()
    assert w.publisher.states() == ["SUBMITTED", "SUCCEEDED"] and api.count("create") == 1
    assert w.deliver("incoming/run-007/job.yaml", event_id="evt-late").action == "duplicate"
    assert w.ledger.status(status_key("drop-bucket", "incoming/run-007")).resource_name == name


def test_a_job_under_the_key_that_is_not_this_job_is_a_conflict_not_an_adoption():
    api, w = vertex_world()
    key = "run_008_1718000000000008"
    other = VertexBackend("demo-project", transport=api)
    job = {"jobId": key, "labels": {"submitter": "drop"},
           "trainingInput": {"scaleTier": "CUSTOM", "masterType": "n1-highmem-8", "pythonModule": "x.y",
                             "packageUris": ["gs://b/p.tar.gz"], "region": "us-central1", "runtimeVersion": "2.11"}}
    other.submit(JobRequest(key, job, "someone-else"))
    out = w.drop("incoming/run-008", spec_generation=1718000000000008)
    assert out.action == "submit_failed" and len(api.jobs) == 1
    [msg] = w.messages()
    assert msg["reason"] == "JOB_ID_CONFLICT" and "n1-highmem-8" not in msg["message"]


def test_submit_adopts_the_oldest_of_two_jobs_an_old_race_left_under_one_key():
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", transport=api)
    job = json.loads(json.dumps(World().app.submitter.planner.plan(_spec(), "k_1").job))
    request = JobRequest("k_1", job, "incoming/x")
    first = backend.submit(request).status
    body = backend.translate(request).custom_job
    api.request("https://us-central1-aiplatform.googleapis.com/v1/projects/demo-project/locations/us-central1/"
                "customJobs", "POST", json.dumps(body))  # a duplicate, as if two creates had raced
    again = backend.submit(request)
    assert again.adopted and again.status.handle.name == first.handle.name and len(api.jobs) == 2


def _spec():
    from submitter.planning import SpecInput, spec_defaults
    from submitter.spec import parse_job_yaml

    s = settings()
    return SpecInput(parse_job_yaml(BASELINE_YAML), defaults=spec_defaults(s, "incoming/x", "k_1", (
        "gs://drop-bucket/incoming/x/package.tar.gz",)))


# -- refusals before any call ------------------------------------------------------------------------------------------
def test_a_tuning_spec_that_vertex_cannot_run_is_rejected_before_any_call_naming_the_ai_platform_field():
    api, w = vertex_world()
    spec = BASELINE_WITH_TUNING.replace(b"parameterName: lr,", b"parameterName: learning rate,")
    out = w.drop("incoming/run-009", spec=spec)
    assert out.action == "rejected" and api.calls == []
    [msg] = w.messages()
    [violation] = msg["violations"]
    assert msg["state"] == "REJECTED" and violation["field"] == "trainingInput.hyperparameters.params[0].parameterName"
    assert "whitespace" in violation["message"] and "studySpec.parameters[0].parameterId" in violation["message"]
    validate_message(w.publisher.messages[0].attributes, msg)


def test_a_vertex_only_problem_is_rejected_naming_the_ai_platform_field():
    api, w = vertex_world()
    spec = BASELINE_YAML.replace(b"labels:\n  team: vision\n", b"labels:\n  team: vision\n  submitter-key: x\n")
    out = w.drop("incoming/run-010", spec=spec)
    assert out.action == "rejected" and api.calls == []
    assert [v["field"] for v in w.messages()[0]["violations"]] == ["labels.submitter-key"]


def test_api_refusals_are_submit_failed_with_the_remedy_and_5xx_are_retried():
    api, w = vertex_world()
    api.fail("create", 403, "PERMISSION_DENIED", "Permission 'aiplatform.customJobs.create' denied", details=[
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
         "metadata": {"permission": "aiplatform.customJobs.create"}}])
    assert w.drop("incoming/run-011").action == "submit_failed"
    msg = w.messages()[-1]
    assert msg["reason"] == "PERMISSION_DENIED" and "roles/aiplatform.user" in msg["message"]
    api.fail("list", 503, "UNAVAILABLE")
    assert w.drop("incoming/run-012").action == "submitted"  # retried within the invocation
    backend = VertexBackend("demo-project", transport=api)
    api.fail("get", 500, "INTERNAL")
    with pytest.raises(BackendUnavailable):
        backend.status(JobHandle("vertex", api.only()["name"], ""))
    with pytest.raises(BackendRefused) as refused:
        backend.status(JobHandle("vertex", "projects/demo-project/locations/us-central1/customJobs/1", ""))
    assert refused.value.reason.value == "NOT_FOUND"


def test_a_disabled_api_names_the_vertex_service_to_enable():
    api, w = vertex_world()
    api.fail("list", 403, "PERMISSION_DENIED", "Vertex AI API has not been used in project demo-project", details=[
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "metadata": {}}])
    assert w.drop("incoming/run-013").action == "submit_failed"
    message = w.messages()[-1]["message"]
    assert "gcloud services enable aiplatform.googleapis.com --project demo-project" in message


def test_submit_itself_refuses_a_request_the_translation_rejects():
    backend = VertexBackend("demo-project", transport=FakeVertexApi())
    with pytest.raises(BackendRefused) as refused:
        backend.submit(JobRequest("k", {"trainingInput": {"hyperparameters": {}}}, "d"))
    assert "hyperparameters" in refused.value.message


# -- listings -------------------------------------------------------------------------------------------------------
def _seed(api: FakeVertexApi, region: str, n: int, state: str, labels: dict) -> list[str]:
    names = []
    for _ in range(n):
        name = f"projects/demo-project/locations/{region}/customJobs/{next(api.ids)}"
        api.jobs[name] = {"name": name, "state": state, "labels": dict(labels), "displayName": "d"}
        names.append(name)
    return names


def test_list_active_filters_on_the_server_and_pages_through_every_allowed_region():
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", region="us-central1", regions=REGIONS, transport=api)
    ours = {"submitter": "drop"}
    want = _seed(api, "us-central1", 250, "JOB_STATE_RUNNING", ours) + _seed(
        api, "europe-west4", 30, "JOB_STATE_PENDING", ours) + _seed(api, "asia-east1", 1, "JOB_STATE_PAUSED", ours)
    _seed(api, "us-central1", 40, "JOB_STATE_SUCCEEDED", ours)  # finished
    _seed(api, "us-central1", 5, "JOB_STATE_RUNNING", {"team": "x"})  # not ours
    _seed(api, "us-west2", 3, "JOB_STATE_RUNNING", ours)  # a region the deployment does not use
    seen, token, calls = [], None, 0
    while True:
        page, token = backend.list_active(page_token=token)
        calls += 1
        seen += [s.handle.name for s in page]
        if not token:
            break
    assert sorted(seen) == sorted(want)
    # ceil(250/100) customJobs pages in us-central1, then one page per other region; one hyperparameterTuningJobs
    # page per region
    assert calls == (3 + 1 + 1 + 1 + 1 + 1) + len(REGIONS)
    filters = {detail for kind, detail in api.calls if kind in ("list", "tuning.list")}
    assert filters == {'labels.submitter="drop" AND (' + " OR ".join(f'state="{s}"' for s in ACTIVE_API_STATES)
                       + ")"}
    assert {h.split("-aiplatform")[0] for h in api.hosts} == set(REGIONS)


def test_list_jobs_lists_every_region_and_names_the_key_from_its_label():
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", regions=("europe-west4",), transport=api)
    _seed(api, "us-central1", 2, "JOB_STATE_SUCCEEDED", {"submitter": "drop",
                                                         "submitter-job": vt.encode_key("Run_A_1")})
    _seed(api, "europe-west4", 1, "JOB_STATE_FAILED", {"team": "x"})
    jobs, token = [], None
    while True:
        page, token = backend.list_jobs(page_token=token)
        jobs += page
        if not token:
            break
    assert sorted(j.handle.key for j in jobs) == ["", "Run_A_1", "Run_A_1"]
    assert ("list", "") in api.calls


def test_find_searches_the_allowed_regions_and_status_uses_the_jobs_own_region():
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", region="us-central1", regions=REGIONS, transport=api)
    [name] = _seed(api, "europe-west4", 1, "JOB_STATE_RUNNING", {"submitter-key": key_label_value("k_9")})
    found = backend.find("k_9")
    assert found.handle == JobHandle("vertex", name, "k_9") and found.state is JobState.RUNNING
    assert backend.find("k_10") is None
    api.hosts.clear()
    backend.status(found.handle)
    assert api.hosts == ["europe-west4-aiplatform.googleapis.com"]


def test_the_fake_accepts_the_documented_filter_grammar_and_refuses_the_rest():
    job = {"state": "JOB_STATE_RUNNING", "labels": {"submitter": "drop", "submitter-key": "ab"}}
    assert compile_filter('labels.submitter="drop" AND (state="JOB_STATE_QUEUED" OR state="JOB_STATE_RUNNING")')(job)
    assert compile_filter("labels.submitter-key=ab AND NOT state=JOB_STATE_FAILED")(job)
    assert not compile_filter('labels.submitter:* AND state!="JOB_STATE_RUNNING"')(job)
    with pytest.raises(ValueError):
        compile_filter('labels.submitter="drop" AND (state="x"')
    with pytest.raises(ValueError):
        compile_filter('jobId="x"')


# -- settings and wiring --------------------------------------------------------------------------------------------
def test_settings_name_the_vertex_backend_and_the_training_account_is_always_allowed(tmp_path):
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
           "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
           "SUBMITTER_TOPIC": "t", "SUBMITTER_BACKEND": "vertex", "SUBMITTER_TRAINING_SERVICE_ACCOUNT": SA}
    s = Settings.from_env(env)
    assert s.backend == "vertex" and s.training_service_account == SA and SA in s.policy.allowed_service_accounts
    backend = build_backend(s, transport=FakeVertexApi())
    assert isinstance(backend, VertexBackend) and backend.regions[0] == "us-central1"
    assert set(backend.regions) == {"us-central1", *s.policy.allowed_regions}
    assert backend.endpoint_for("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"
    with pytest.raises(ValueError, match="TRAINING_SERVICE_ACCOUNT"):
        Settings.from_env({**env, "SUBMITTER_TRAINING_SERVICE_ACCOUNT": "not-an-email"})
    assert Settings.from_env({k: v for k, v in env.items() if k != "SUBMITTER_BACKEND"}).backend == "ml_v1"


def test_an_endpoint_override_serves_every_region():
    api = FakeVertexApi()
    backend = VertexBackend("demo-project", endpoint="http://127.0.0.1:8090", transport=api)
    _seed(api, "asia-east1", 1, "JOB_STATE_RUNNING", {})
    backend.status(JobHandle("vertex", next(iter(api.jobs)), ""))
    assert api.hosts == ["127.0.0.1:8090"]


# -- the CLI on Vertex jobs -------------------------------------------------------------------------------------------
@pytest.fixture
def cli_env(monkeypatch):
    import os

    import submitter.backends

    for name in [n for n in os.environ if n.startswith("SUBMITTER_")]:
        monkeypatch.delenv(name)
    api, w = vertex_world()
    monkeypatch.setattr(submitter.backends, "build_backend", lambda settings, transport=None: w.backend)
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
           "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
           "SUBMITTER_TOPIC": "training-job-events", "SUBMITTER_BACKEND": "vertex",
           "SUBMITTER_DROP_PREFIX": "incoming/"}
    return api, w, env


def test_cli_status_jobs_list_cancel_and_logs_work_on_vertex_jobs(cli_env):
    from click.testing import CliRunner

    from submitter_cli import main

    api, w, env = cli_env
    out = w.drop("incoming/run-020", spec_generation=1718000000000020)
    name = api.only()["name"]
    api.set_state(name, "JOB_STATE_RUNNING")
    status = CliRunner().invoke(main, ["status", out.job_id], env=env)
    assert status.exit_code == 0 and status.output.split() == [out.job_id, "JOB_STATE_RUNNING"]
    described = CliRunner().invoke(main, ["status", out.job_id, "--json"], env=env)
    assert json.loads(described.output)["name"] == name
    listed = CliRunner().invoke(main, ["jobs", "list"], env=env)
    assert listed.exit_code == 0 and out.job_id in listed.output and "RUNNING" in listed.output
    cancelled = CliRunner().invoke(main, ["cancel", out.job_id], env=env)
    assert cancelled.exit_code == 0 and api.only()["state"] == "JOB_STATE_CANCELLING"
    assert ("cancel", name) in api.calls
    logs = CliRunner().invoke(main, ["logs", out.job_id, "--replica", "worker-1"], env=env)
    numeric = name.rsplit("/", 1)[-1]
    assert logs.exit_code == 1
    assert (f"gcloud logging read 'resource.type=\"ml_job\" AND resource.labels.job_id=\"{numeric}\" AND "
            "resource.labels.task_name=\"workerpool1-1\"' --project=demo-project") in logs.output
    missing = CliRunner().invoke(main, ["logs", "no_such_job"], env=env)
    assert missing.exit_code == 1 and "not found in Vertex AI" in missing.output


def test_cli_validate_on_a_vertex_deployment_reports_the_vertex_violations(monkeypatch, tmp_path):
    """Offline: the real build_backend, no transport, no network (check() calls nothing)."""
    import os

    from click.testing import CliRunner

    from submitter_cli import main

    for name in [n for n in os.environ if n.startswith("SUBMITTER_")]:
        monkeypatch.delenv(name)
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
           "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
           "SUBMITTER_TOPIC": "training-job-events", "SUBMITTER_BACKEND": "vertex"}
    spec = BASELINE_WITH_TUNING.replace(b"parameterName: lr,", b"parameterName: learning rate,")
    (tmp_path / "job.yaml").write_bytes(spec)
    (tmp_path / "package.tar.gz").write_bytes(BASELINE_TARBALL)
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--json"], env=env)
    report = json.loads(result.output)
    assert result.exit_code == 1 and [v["field"] for v in report["violations"]] == [
        "trainingInput.hyperparameters.params[0].parameterName"]
    (tmp_path / "job.yaml").write_bytes(BASELINE_YAML)
    ok = json.loads(CliRunner().invoke(main, ["validate", str(tmp_path), "--json"], env=env).output)
    assert ok["valid"] and any("Vertex AI's prebuilt image" in w for w in ok["warnings"])


PLAUSIBLE = {
    "scaleTier": ["BASIC", "BASIC_GPU", "BASIC_TPU", "STANDARD_1", "CUSTOM", "CUSTOM", "CUSTOM"],
    "masterType": ["n1-standard-8", "standard", "complex_model_m", "standard_gpu", "large_model_v100", "cloud_tpu",
                   "n1-highcpu-16", None],
    "workerType": ["n1-standard-8", "complex_model_m", "cloud_tpu", "standard_p100"],
    "workerCount": [0, 1, 2, "3"],
    "parameterServerType": ["n1-highmem-8", "large_model"],
    "parameterServerCount": [0, 1],
    "evaluatorType": ["n1-standard-4", "standard"],
    "evaluatorCount": [0, 1],
    "masterConfig": [{}, {"acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 1}},
                     {"acceleratorConfig": {"type": "NVIDIA_TESLA_K80", "count": 2}},
                     {"diskConfig": {"bootDiskSizeGb": 50}}, {"imageUri": "us-docker.pkg.dev/p/r/t:1"}],
    "workerConfig": [{}, {"acceleratorConfig": {"type": "TPU_V3", "count": 8}},
                     {"acceleratorConfig": {"type": "TPU_V2_POD", "count": 32}}],
    "scheduling": [{"maxWaitTime": "3600s"}, {"priority": 3}, {"maxRunningTime": "3600s"}],
    "runtimeVersion": ["1.15", "2.1", "2.11", None],
    "useChiefInTfConfig": [True, False],
    "region": ["us-central1", "europe-west4", "asia-east1"],
}


def plausible_specs(seed: int, n: int):
    """Valid-looking specs with a few random, mostly plausible changes: many submit, some are refused."""
    import random

    import yaml

    rng = random.Random(seed)
    for _ in range(n):
        doc = yaml.safe_load(BASELINE_YAML)
        for field in rng.sample(sorted(PLAUSIBLE), rng.randint(1, 5)):
            value = rng.choice(PLAUSIBLE[field])
            if value is None:
                doc["trainingInput"].pop(field, None)
            else:
                doc["trainingInput"][field] = value
        yield yaml.safe_dump(doc)


def test_plausible_specs_on_the_vertex_backend_each_get_exactly_one_verdict_and_valid_jobs():
    api, w = vertex_world()
    actions = []
    for i, text in enumerate(plausible_specs(seed=29, n=200)):
        before = len(w.publisher.messages)
        out = w.drop(f"incoming/fuzz-{i}", spec=text.encode())
        actions.append(out.action)
        assert out.action in ("submitted", "rejected"), (out, text)
        published = w.publisher.messages[before:]
        assert [m.attributes["state"] for m in published] == [out.action.upper()]
        for m in published:
            validate_message(m.attributes, json.loads(m.data))
    assert actions.count("submitted") >= 20 and actions.count("rejected") >= 20  # both paths were exercised
    assert api.count("create") == actions.count("submitted") == len(api.jobs)
    from submitter import schema

    for job in api.jobs.values():  # what reached the API is a valid CustomJob
        body = {k: v for k, v in job.items() if k not in ("name", "state", "createTime", "updateTime")}
        assert schema.check_custom_job(body) == [] and vt.validate(body) == []


def test_cli_jobs_list_lines_its_columns_up_under_a_header_whatever_the_length_of_the_job_ids(cli_env):
    from click.testing import CliRunner

    from submitter_cli import main

    api, w, env = cli_env
    short = w.drop("incoming/r", spec_generation=1718000000000030).job_id
    w.drop("incoming/" + "a-very-long-drop-folder-name-" * 3, spec_generation=1718000000000031)
    listed = CliRunner().invoke(main, ["jobs", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    header, *lines = listed.output.splitlines()
    assert header.split() == ["JOB_ID", "STATUS", "CREATED", "SUBMITTER"]
    ids = [line.split()[0] for line in lines]  # the long key does not fit a label: its resource name is shown
    assert len(ids) == 2 and short in ids and max(map(len, ids)) > 60
    column = header.index("STATUS")
    lined_up = [line[column:].split()[0] == "QUEUED" and line[column - 2:column] == "  " for line in lines]
    assert all(lined_up), listed.output
