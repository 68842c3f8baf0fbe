"""Pure modules: event parsing, job naming, spec parsing/checks, package inspection, envelope, settings."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile

import pytest

from submitter import envelope, naming, rules, schema, spec
from submitter.backends.ml_v1 import normalize_training_input
from submitter.drops import DropObject, DropRef, Ignored, ObjectRole, classify
from submitter.errors import EventInvalid as EventError
from submitter.errors import SpecRejected
from submitter.events import parse_event
from submitter.model import JobState
from submitter.package import PackageRejected, inspect_package
from submitter.reasons import unique_violations
from submitter.settings import Settings, SettingsError
from submitter.text import TRUNCATED

from conftest import BASELINE_YAML, baseline_files, make_tarball, storage_event
from helpers import State


# -- events ------------------------------------------------------------------------------------
def test_event_strings_are_parsed_and_zero_size_string_is_zero():
    e = storage_event("incoming/run-1/job.yaml", 1718000000000001, 0)
    assert (e.generation, e.size) == (1718000000000001, 0)
    assert isinstance(classify(e, drop_bucket="drop-bucket", drop_prefix="incoming/"), Ignored)


def test_classify_roles_and_raw_names():
    e = storage_event("incoming/run%2F1/package.tar.gz", 1, 10)  # never URL-decoded
    got = classify(e, drop_bucket="drop-bucket", drop_prefix="incoming/")
    assert got == DropObject("incoming/run%2F1", "run%2F1", "package.tar.gz", ObjectRole.PACKAGE)


@pytest.mark.parametrize("data", [[], {"name": "x"}, {"bucket": "b", "name": "x", "generation": "abc", "size": "1"}])
def test_malformed_events_raise_event_error(data):
    with pytest.raises(EventError):
        parse_event({"id": "1"}, data)


# -- naming ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["run-011-ß.v2", "2024_run", "_run", "r" * 300])
def test_derived_job_ids_are_valid_and_stable(name):
    a, b = naming.derive_job_id(name, 1718000000000001), naming.derive_job_id(name, 1718000000000001)
    assert a == b and naming.is_valid_job_id(a) and len(a) <= 128
    assert a != naming.derive_job_id(name, 1718000000000002)


def test_long_ids_stay_distinct():
    assert naming.derive_job_id("a" * 200 + "x", 1) != naming.derive_job_id("a" * 200 + "y", 1)


@pytest.mark.parametrize("job_id", ["my-first-job", "2024_run", "run.v2", "_run", "r" + "x" * 128])
def test_explicit_invalid_job_ids_are_rejected_with_the_rule(job_id):
    job = {"jobId": job_id, "trainingInput": {"pythonModule": "trainer.task", "runtimeVersion": "2.11"}}
    [v] = rules.check_job(job).violations
    assert v.reason == "INVALID_JOB_ID" and "starting with a letter" in v.message


# -- spec --------------------------------------------------------------------------------------
DEFAULTS = spec.SpecDefaults((), "gs://drop-outputs/x", "us-central1", "2.11", "3.7", {})


def ti_violations(yaml_text: str):
    """Schema and rule violations of a spec completed with the deployment defaults (no policy, no packages)."""
    parsed = spec.parse_job_yaml(yaml_text.encode())
    job, _ = spec.complete(parsed.job, DEFAULTS, "j1")
    return unique_violations(schema.check_job(job, raw_scalars=parsed.raw_scalars) + rules.check_job(job).violations)


def test_baseline_has_no_violations():
    assert ti_violations(BASELINE_YAML.decode()) == []


def test_runtime_version_as_number_is_rejected_with_quoted_form():
    [v] = ti_violations('trainingInput: {pythonModule: trainer.task, runtimeVersion: 2.10}')
    assert v.field == "trainingInput.runtimeVersion" and 'runtimeVersion: "2.10"' in v.message and "2.1" in v.message


def test_label_booleans_and_syntax():
    vs = ti_violations('trainingInput: {pythonModule: t.task}\nlabels: {team: NO, env: on, owner: Team.Lead, '
                       'cost-center: "1234"}')
    assert sorted(v.field for v in vs) == ["labels.env", "labels.owner", "labels.team"]
    assert all(v.reason == "INVALID_LABELS" for v in vs)


@pytest.mark.parametrize("args, fragment", [
    ('"--epochs 3 --lr 0.1"', 'must be a list, got string'),
    ('["--", "--epochs", "3"]', "'--' is gcloud CLI syntax"),
    ('["--epochs", 3, "--shuffle", true]', "args[1] must be a string"),
    ('["--epochs", "3", "\\\\", "--lr", "0.1"]', "args[2] is a bare backslash"),
])
def test_args_pitfalls(args, fragment):
    vs = ti_violations(f"trainingInput:\n  pythonModule: trainer.task\n  args: {args}\n")
    assert any(fragment in f"{v.field} {v.message}" for v in vs), vs


def test_template_placeholders():
    with pytest.raises(SpecRejected) as exc:
        spec.parse_job_yaml(b"trainingInput:\n  scaleTier: CUSTOM\n  pythonModule: t.task\n  workerCount: "
                            b"{{worker_batches}}\n")
    assert exc.value.reason == "YAML_INVALID" and "line" in str(exc.value)
    vs = ti_violations('trainingInput: {pythonModule: t.task, args: ["--site", "{{site}}"]}')
    assert vs[0].reason == "TEMPLATE_UNRENDERED" and vs[0].field == "trainingInput.args[1]"
    vs = ti_violations("trainingInput: {pythonModule: t.task, jobDir: 'gs://<bucket>/jobs/run-018'}")
    assert {v.field for v in vs} == {"trainingInput.jobDir"}


def test_python_module_must_be_dotted():
    [v] = ti_violations("trainingInput: {pythonModule: trainer/task.py}")
    assert "dotted module name" in v.message and "'trainer.task'" in v.message


def test_json_with_trailing_commas_parses_as_yaml():
    parsed = spec.parse_job_yaml(b'{"trainingInput": {"scaleTier": "CUSTOM", "masterType": "n1-highmem-8", '
                                 b'"pythonModule": "trainer.task",},}')
    assert parsed.job["trainingInput"]["masterType"] == "n1-highmem-8"


def test_runtime_and_image_are_exclusive():
    vs = ti_violations("trainingInput: {pythonModule: t.task, runtimeVersion: '2.11', masterConfig: "
                       "{imageUri: gcr.io/demo-project/trainer:1}}")
    assert any("mutually exclusive" in v.message for v in vs)


def test_complete_never_overrides_user_values():
    ctx = spec.SpecDefaults(("gs://b/p.tar.gz",), "gs://out/x", "europe-west4", "2.11", "3.7", {"submitter": "drop"})
    job, _ = spec.complete({"trainingInput": {"pythonModule": "t.task", "region": "us-east1",
                                              "packageUris": ["gs://mine/p.tar.gz"]}}, ctx, "j1")
    ti = job["trainingInput"]
    assert ti["region"] == "us-east1" and ti["packageUris"] == ["gs://mine/p.tar.gz"] and ti["jobDir"] == "gs://out/x"


def test_normalized_training_input_matches_server_echo():
    mine = {"scaleTier": "BASIC", "args": [], "workerCount": 2, "pythonModule": "t"}
    echoed = {"workerCount": "2", "pythonModule": "t"}
    assert normalize_training_input(mine) == normalize_training_input(echoed)


# -- package -----------------------------------------------------------------------------------
def test_baseline_package_and_module_lookup():
    info = inspect_package(io.BytesIO(make_tarball(baseline_files())), "trainer-0.1.tar.gz")
    assert info.top_dir == "trainer-0.1" and info.module_problem("trainer.task") is None
    problem = info.module_problem("trainer.model")
    assert problem and "not found" in problem.message


def test_missing_init_is_named():
    files = baseline_files()
    files.pop("trainer/__init__.py")
    info = inspect_package(io.BytesIO(make_tarball(files)), "trainer-0.1.tar.gz")
    assert "has no __init__.py" in info.module_problem("trainer.task").message


def _tar_with(member: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("trainer-0.1/setup.py")
        tar.addfile(ok, io.BytesIO(b""))
        tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buf.getvalue()


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("/etc/passwd"),
    tarfile.TarInfo("trainer-0.1/../../evil.py"),
    (lambda m: (setattr(m, "type", tarfile.SYMTYPE), setattr(m, "linkname", "../../../etc/shadow"), m)[-1])(
        tarfile.TarInfo("trainer-0.1/link")),
    (lambda m: (setattr(m, "type", tarfile.CHRTYPE), m)[-1])(tarfile.TarInfo("trainer-0.1/dev")),
])
def test_unsafe_members_are_refused(member):
    with pytest.raises(PackageRejected) as exc:
        inspect_package(io.BytesIO(_tar_with(member)), "p.tar.gz")
    assert exc.value.violation.reason == "PACKAGE_INVALID"


def test_member_cap():
    files = {f"trainer/f{i}.py": b"" for i in range(50)} | {"setup.py": b""}
    with pytest.raises(PackageRejected, match="more than 10 members"):
        inspect_package(io.BytesIO(make_tarball(files)), "p.tar.gz", max_members=10)


def test_not_a_tarball_and_no_setup():
    with pytest.raises(PackageRejected, match="gzip"):
        inspect_package(io.BytesIO(b"PK\x03\x04 zip file"), "p.tar.gz")
    with pytest.raises(PackageRejected, match="neither setup.py nor pyproject.toml"):
        inspect_package(io.BytesIO(make_tarball({"trainer/task.py": b""})), "p.tar.gz")


# -- envelope ----------------------------------------------------------------------------------
def _event(**kw):
    import datetime as dt

    base = dict(key="j1", state=JobState.FAILED,
                origin={"drop": DropRef("b", "incoming/r", "incoming/r/job.yaml", 7).as_dict()},
                time=dt.datetime(2024, 6, 10, tzinfo=dt.UTC))
    base.update(kw)
    return envelope.JobEvent(**base)


def test_attributes_are_bounded_strings_and_data_keeps_full_text():
    text = "The replica master 0 exited with a non-zero status of 1. Traceback ... " * 50
    msg = envelope.encode(_event(error_message=text, reason="ü" * 600), source="//s")
    assert all(isinstance(v, str) and len(v.encode()) <= 1024 for v in msg.attributes.values())
    assert msg.attributes["reason"].endswith(TRUNCATED)
    assert json.loads(msg.data)["errorMessage"] == text


def test_cloudevent_attributes_and_deterministic_id():
    msg = envelope.encode(_event(), source="//drop-submitter/projects/p/buckets/b")
    a = msg.attributes
    assert a["ce-specversion"] == "1.0" and a["ce-id"] == "j1/FAILED" and a["ce-subject"] == "jobs/j1"
    assert a["terminal"] == "true" and msg.ordering_key == "j1"
    assert envelope.encode(_event(), source="//x").attributes["ce-id"] == a["ce-id"]


def test_clean_attributes_handles_non_strings():
    assert envelope.clean_attributes({"workerCount": 4, "flag": True, "createTime": None}) == {
        "workerCount": "4", "flag": "true"}


# -- states ------------------------------------------------------------------------------------
def test_terminal_is_not_success():
    assert State.FAILED.is_terminal and not State.FAILED.is_success
    assert not State.CANCELLING.is_terminal
    from submitter.backends.ml_v1 import MlV1Backend

    from fakes import FakeMlApi

    backend = MlV1Backend("demo-project", transport=FakeMlApi())
    assert backend._status({"jobId": "j", "state": "STATE_UNSPECIFIED"}).state is None
    assert backend._status({"jobId": "j"}).state is None
    assert backend._status({"jobId": "j", "state": "NEW"}).state is None


# -- settings ----------------------------------------------------------------------------------
def test_settings_from_env_and_errors():
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-b", "SUBMITTER_OUTPUT_BUCKET": "out-b",
           "SUBMITTER_STATE_BUCKET": "state-b", "SUBMITTER_TOPIC": "t", "SUBMITTER_DROP_PREFIX": "incoming"}
    s = Settings.from_env(env)
    assert s.topic == "projects/demo-project/topics/t" and s.drop_prefix == "incoming/"
    with pytest.raises(SettingsError) as exc:
        Settings.from_env({**env, "SUBMITTER_OUTPUT_BUCKET": "drop-b", "SUBMITTER_TOPIC": ""})
    assert "OUTPUT_BUCKET must differ" in str(exc.value) and "SUBMITTER_TOPIC is required" in str(exc.value)


@pytest.mark.parametrize("extra, honoured", [({}, False), ({"HTTPS_PROXY": "http://proxy:3128"}, True),
                                             ({"https_proxy": "http://proxy:3128"}, True),
                                             ({"REQUESTS_CA_BUNDLE": "/etc/corp-ca.pem"}, True)])
def test_a_proxy_or_ca_bundle_in_the_environment_keeps_the_storage_session_reading_it(extra, honoured):
    """Without proxy/CA variables the storage client's session stops re-reading the environment on every request;
    with one, requests keeps honouring it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from submitter.gcs import GcsObjectStore

    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-b", "SUBMITTER_OUTPUT_BUCKET": "out-b",
           "SUBMITTER_STATE_BUCKET": "state-b", "SUBMITTER_TOPIC": "t", **extra}
    settings = Settings.from_env(env)
    assert settings.http_env is honoured
    store = GcsObjectStore(settings.project, http_env=settings.http_env)
    built = storage.Client(project="demo-project", credentials=AnonymousCredentials())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(storage, "Client", lambda project: built)
        assert store.client._http.trust_env is honoured


def test_settings_refuse_names_google_would_refuse():
    env = {"SUBMITTER_PROJECT": "{PROJECT}", "SUBMITTER_DROP_BUCKET": "gs://drop-b", "SUBMITTER_OUTPUT_BUCKET": "out-b",
           "SUBMITTER_STATE_BUCKET": "state-b", "SUBMITTER_TOPIC": "t", "SUBMITTER_DEFAULT_REGION": "US Central",
           "SUBMITTER_CLAIM_LEASE_SECONDS": "ten", "SUBMITTER_BACKEND": "sagemaker"}
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env)
    text = str(exc.value)
    assert "SUBMITTER_PROJECT='{PROJECT}' is not a project id" in text
    assert "SUBMITTER_DROP_BUCKET='gs://drop-b' is not a bucket name" in text
    assert "SUBMITTER_DEFAULT_REGION='US Central'" in text
    assert "SUBMITTER_CLAIM_LEASE_SECONDS='ten' is not a number" in text
    assert "SUBMITTER_BACKEND='sagemaker' is not supported" in text


def test_a_reconcile_window_that_would_spin_or_run_backwards_is_refused_naming_the_fix():
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-b", "SUBMITTER_OUTPUT_BUCKET": "out-b",
           "SUBMITTER_STATE_BUCKET": "state-b", "SUBMITTER_TOPIC": "t", "SUBMITTER_RECONCILE_WINDOW_SECONDS": "-5",
           "SUBMITTER_RECONCILE_INTERVAL_SECONDS": "0"}
    with pytest.raises(SettingsError) as exc:
        Settings.from_env(env)
    assert "SUBMITTER_RECONCILE_WINDOW_SECONDS=-5 is negative; use 0 for one tick" in str(exc.value)
    assert "SUBMITTER_RECONCILE_INTERVAL_SECONDS=0 must be above 0" in str(exc.value)
    env.update(SUBMITTER_RECONCILE_WINDOW_SECONDS="55", SUBMITTER_RECONCILE_INTERVAL_SECONDS="5")
    settings = Settings.from_env(env)
    assert (settings.reconcile_window_s, settings.reconcile_interval_s) == (55.0, 5.0)


def test_every_variable_maps_to_a_settings_field():
    from submitter.settings import VARIABLES
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert all(v.attribute in fields and v.name.startswith("SUBMITTER_") for v in VARIABLES)
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)
