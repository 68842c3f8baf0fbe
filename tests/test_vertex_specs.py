"""Vertex-shaped job specs (issue 12.3): a job.yaml that is a CustomJobSpec or a CustomJob is recognised by its keys,
reported, checked against aiplatform v1 and the Vertex rules and the policy, submitted as written on the Vertex
backend (with the submitter's additions only), and refused on the ml v1 backend with the reason. In memory: the
whole submitter (`conftest.World`) over the in-memory Vertex API and the real adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_vertex import FakeVertexApi
from test_contract import validate_message
from test_vertex_backend import SA, vertex_world

from submitter import vertex_spec
from submitter.drops import missing_packages
from submitter.planning import SpecInput
from submitter.policy import Policy
from submitter.spec import parse_job_yaml
from submitter.validation import Overrides

from conftest import World

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "vertex"
IMAGE = "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-0.py39:latest"


def spec_yaml(**extra) -> bytes:
    doc = {"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
                                "pythonPackageSpec": {"executorImageUri": IMAGE, "pythonModule": "trainer.task",
                                                      "args": ["--epochs", "2"]}}], **extra}
    return yaml.safe_dump(doc).encode()


def plan(world: World, text: bytes, folder: str = "incoming/v-1", packages: tuple[str, ...] = ()):
    from submitter.planning import spec_defaults

    parsed = parse_job_yaml(text)
    defaults = spec_defaults(world.settings, folder, "v_1", packages)
    return world.app.submitter.planner.plan(SpecInput(parsed, defaults=defaults), "v_1", inspect_unlisted=False)


# -- detection ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, shape, key", [
    ({"trainingInput": {"scaleTier": "BASIC"}}, "Job", None),
    ({"scaleTier": "BASIC", "pythonModule": "t"}, "Job", None),  # TrainingInput written at the top level
    ({"workerPoolSpecs": [], "scheduling": {"timeout": "60s"}}, "CustomJobSpec", "workerPoolSpecs"),
    ({"displayName": "d", "jobSpec": {"workerPoolSpecs": []}, "labels": {"a": "b"}}, "CustomJob", "jobSpec"),
])
def test_the_shape_is_detected_from_the_keys(doc, shape, key):
    parsed = parse_job_yaml(yaml.safe_dump(doc))
    assert (parsed.shape, parsed.shape_key) == (shape, key)
    assert vertex_spec.is_vertex(parsed.job) == (shape != "Job")
    if shape == "CustomJob":
        assert parsed.job == {"labels": {"a": "b"},
                              "customJob": {"displayName": "d", "jobSpec": {"workerPoolSpecs": []}}}


def test_the_three_sample_configs_are_custom_job_specs():
    for name in ("single", "distributed", "container"):
        parsed = parse_job_yaml((SAMPLES / f"{name}.yaml").read_bytes())
        assert parsed.shape == "CustomJobSpec", name


# -- the Vertex backend: as written --------------------------------------------------------------------------------

def test_a_custom_job_spec_drop_runs_as_written_on_vertex_with_the_submitters_additions():
    api, w = vertex_world()
    out = w.drop("incoming/v-1", spec=spec_yaml(), spec_generation=1718000000000001)
    assert out.action == "submitted", out
    job = api.only()
    assert job["displayName"] == "incoming/v-1"
    assert job["labels"]["submitter"] == "drop" and job["labels"]["submitter-job"] == "v_1_1718000000000001"
    [pool] = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "n1-standard-4"} and pool["replicaCount"] == 1
    package = pool["pythonPackageSpec"]
    assert package["executorImageUri"] == IMAGE and package["args"] == ["--epochs", "2"]  # nothing appended
    assert len(package["packageUris"]) == 1 and package["packageUris"][0].startswith("gs://drop-outputs/staging/")
    job_dir = "gs://drop-outputs/incoming/v-1/v_1_1718000000000001"
    assert job["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": job_dir}
    assert job["jobSpec"]["scheduling"] == {"timeout": "172800s"}  # the policy's cap
    assert job["jobSpec"]["serviceAccount"] == SA  # the deployment's training account
    [submitted] = w.messages()
    assert submitted["state"] == "SUBMITTED" and submitted["jobDir"] == job_dir
    assert submitted["resourceName"] == job["name"]
    for message in w.publisher.messages:
        validate_message(message.attributes, json.loads(message.data))


def test_a_custom_job_keeps_its_display_name_labels_and_encryption():
    api, w = vertex_world()
    doc = {"displayName": "my-run", "labels": {"team": "nlp"}, "encryptionSpec": {"kmsKeyName": "projects/p/k"},
           "jobSpec": yaml.safe_load(spec_yaml())}
    assert w.drop("incoming/v-2", spec=yaml.safe_dump(doc).encode()).action == "submitted"
    job = api.only()
    assert job["displayName"] == "my-run" and job["labels"]["team"] == "nlp"
    assert job["encryptionSpec"] == {"kmsKeyName": "projects/p/k"}


def test_the_distributed_and_container_samples_are_submitted_as_written():
    api, w = vertex_world()
    assert w.drop("incoming/dist", spec=(SAMPLES / "distributed.yaml").read_bytes()).action == "submitted"
    pools = api.only()["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == [1, 2, 1]
    assert all(p["pythonPackageSpec"]["packageUris"][0].startswith("gs://drop-outputs/staging/") for p in pools)
    api2, w2 = vertex_world()
    w2.put("incoming/box/job.yaml", (SAMPLES / "container.yaml").read_bytes())
    out = w2.deliver("incoming/box/job.yaml")  # a containers-only drop is complete with job.yaml alone
    assert out.action == "submitted", out
    assert api2.only()["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"].endswith("wine-trainer:1")


@pytest.mark.parametrize("extra, field, words", [
    ({"bogus": 1}, "jobSpec.bogus", "bogus"),
    ({"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 3,
                           "containerSpec": {"imageUri": "gcr.io/p/i"}}]},
     "jobSpec.workerPoolSpecs[0].replicaCount", "replicaCount must be 1"),
    ({"workerPoolSpecs": [{"machineSpec": {"machineType": "a2-megagpu-16g"}, "replicaCount": 1,
                           "containerSpec": {"imageUri": "gcr.io/p/i"}}]},
     "jobSpec.workerPoolSpecs[0].machineSpec.machineType", "deployment policy"),
    ({"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
                           "containerSpec": {"imageUri": "docker.io/someone/miner:latest"}}]},
     "jobSpec.workerPoolSpecs[0].containerSpec.imageUri", "allowed registry"),
    ({"baseOutputDirectory": {"outputUriPrefix": "gs://drop-bucket/incoming/x"}},
     "jobSpec.baseOutputDirectory.outputUriPrefix", "look like new drops"),
    ({"scheduling": {"timeout": "9999999s"}}, "jobSpec.scheduling.timeout", "exceeds the cap"),
    ({"enableWebAccess": True}, "jobSpec.enableWebAccess", "deployment policy"),
])
def test_refusals_name_the_custom_job_field(extra, field, words):
    api, w = vertex_world()
    base = yaml.safe_load(spec_yaml())
    base.update(extra)
    result = plan(w, yaml.safe_dump(base).encode(), packages=("gs://drop-bucket/incoming/v-1/p.tar.gz",))
    found = {v.field: v.message for v in result.violations}
    assert field in found and words in found[field], found


def test_the_report_says_which_shape_it_is():
    api, w = vertex_world()
    result = plan(w, spec_yaml(), packages=("gs://drop-bucket/incoming/v-1/p.tar.gz",))
    assert result.violations == []
    assert result.notes[0].startswith("job.yaml is a Vertex AI CustomJobSpec (recognised by its workerPoolSpecs key)")
    assert "jobSpec.workerPoolSpecs[0].pythonPackageSpec.packageUris filled from the drop's packages" in result.notes


def test_ai_platform_flags_do_not_apply_to_a_custom_job_spec_but_labels_and_job_id_do():
    from submitter.validation import check

    api, w = vertex_world()
    from submitter.planning import spec_defaults

    defaults = spec_defaults(w.settings, "incoming/v", "v_1", ("gs://drop-bucket/incoming/v/p.tar.gz",))
    checked = check(parse_job_yaml(spec_yaml()), defaults, "v_1", Policy(),
                    Overrides(scale_tier="BASIC", labels={"owner": "me"}, job_id="mine"))
    assert [v.field for v in checked.violations] == ["--scale-tier"]
    assert checked.job["jobId"] == "mine" and checked.job["labels"]["owner"] == "me"


def test_a_reserved_label_is_refused():
    api, w = vertex_world()
    doc = {"displayName": "d", "labels": {"submitter": "other"}, "jobSpec": yaml.safe_load(spec_yaml())}
    result = plan(w, yaml.safe_dump(doc).encode(), packages=("gs://drop-bucket/incoming/v-1/p.tar.gz",))
    assert "labels.submitter" in {v.field for v in result.violations}


# -- the ml v1 backend: refused with the reason ---------------------------------------------------------------------

def test_the_ml_v1_backend_refuses_vertex_shaped_specs_with_the_reason():
    w = World()
    out = w.drop("incoming/v-3", spec=spec_yaml())
    assert out.action == "rejected"
    [rejected] = w.messages()
    assert rejected["state"] == "REJECTED" and rejected["reason"] == "SPEC_INVALID"
    [violation] = rejected["violations"]
    assert violation["field"] == "job.yaml"
    assert "Vertex AI CustomJobSpec, which runs only on the Vertex AI backend" in violation["message"]
    assert "not translated back" in violation["message"]
    assert w.api.jobs == {}


# -- the drop protocol ----------------------------------------------------------------------------------------------

def test_the_output_dir_is_the_one_the_adapter_reads_back():
    job = parse_job_yaml(spec_yaml(baseOutputDirectory={"outputUriPrefix": "gs://outs/base"})).job
    assert vertex_spec.output_dir(job) == "gs://outs/base"
    job["customJob"]["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["args"] = ["--job-dir", "gs://outs/mine"]
    assert vertex_spec.output_dir(job) == "gs://outs/mine"


def test_completeness_of_a_vertex_shaped_drop():
    job = parse_job_yaml(spec_yaml()).job
    assert missing_packages(job, "b", "f", []) == ["a *.tar.gz package"]
    assert missing_packages(job, "b", "f", ["p.tar.gz"]) == []
    named = parse_job_yaml(spec_yaml(workerPoolSpecs=[{"pythonPackageSpec": {"packageUris": ["gs://b/f/t.tar.gz"]}}]))
    assert missing_packages(named.job, "b", "f", []) == ["t.tar.gz"]
    assert missing_packages(parse_job_yaml((SAMPLES / "container.yaml").read_bytes()).job, "b", "f", []) == []


def test_fake_vertex_is_the_api_the_tests_use():
    assert FakeVertexApi().jobs == {}
