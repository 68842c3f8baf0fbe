"""Issue 12, point 1: custom containers. A job whose master runs an image (`masterConfig.imageUri`) needs no
package and no pythonModule; its rules come from the ml v1 discovery document (functions/submitter/rules.py
`_check_containers` names each source); a drop of job.yaml alone is complete; `validate` and `submit` take the
gcloud flags of Google's custom-container samples."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from submitter.drops import missing_packages
from submitter.policy import Policy
from submitter.rules import image_problem
from submitter.spec import SpecDefaults
from submitter.validation import check_text
from submitter_cli import main as cli

from conftest import BASELINE_TARBALL, World

CTX = SpecDefaults(("gs://drop-bucket/incoming/run-001/package.tar.gz",), "gs://drop-outputs/incoming/run-001/j",
                   "us-central1", "2.11", "3.7", {"submitter": "drop"})
IMAGE = "gcr.io/demo-project/estimator-hypertune:latest"

# The job of GoogleCloudPlatform/ai-platform-samples training/tensorflow/custom_containers/hypertune, written out
# here (its code is not copied): config_resnet_hypertune.yaml holds the hyperparameter spec, and its submit script
# passes the machine, accelerator, image and trainer args as flags.
HYPERTUNE_CONFIG = """\
trainingInput:
  scaleTier: CUSTOM
  hyperparameters:
    goal: MAXIMIZE
    enableTrialEarlyStopping: true
    hyperparameterMetricTag: my_top_5_accuracy
    maxTrials: 32
    maxParallelTrials: 2
    params:
      - {parameterName: base_learning_rate, type: DOUBLE, scaleType: UNIT_REVERSE_LOG_SCALE, minValue: 0.02,
         maxValue: 0.5}
      - {parameterName: momentum, type: DOUBLE, scaleType: UNIT_LINEAR_SCALE, minValue: 0.1, maxValue: 1.0}
      - {parameterName: weight_decay, type: DOUBLE, scaleType: UNIT_LINEAR_SCALE, minValue: 0.00002,
         maxValue: 0.0005}
"""
HYPERTUNE_FLAGS = ["--scale-tier", "CUSTOM", "--master-machine-type", "n1-highmem-8",
                   "--master-accelerator", "count=1,type=nvidia-tesla-v100", "--region", "us-central1",
                   "--master-image-uri", IMAGE]
HYPERTUNE_ARGS = ["--", "--data_dir=gs://cloud-tpu-test-datasets/fake_imagenet",
                  "--model_dir=gs://my-bucket/resnet_hypertune", "--resnet_depth=50", "--train_steps=1024"]


@pytest.fixture(autouse=True)
def no_deployment_env(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("SUBMITTER_")]:
        monkeypatch.delenv(key)


def check(ti: dict, policy: Policy | None = None):
    return check_text(yaml.safe_dump({"trainingInput": ti}).encode(), "job.yaml", CTX, "run_001_1",
                      policy or Policy())


def fields(result) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in result.violations:
        out[v.field] = (out[v.field] + " | " if v.field in out else "") + f"{v.reason}: {v.message}"
    return out


CUSTOM = {"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "masterConfig": {"imageUri": IMAGE}}


# -- the rules ------------------------------------------------------------------------------------------------
def test_a_container_job_needs_no_package_module_or_runtime():
    result = check(CUSTOM)
    assert result.valid, result.violations
    ti = result.job["trainingInput"]
    assert "runtimeVersion" not in ti and "pythonVersion" not in ti and "pythonModule" not in ti
    assert "packageUris" not in ti  # the drop's packages are not added to a container job


def test_what_a_container_job_ignores_is_a_warning():
    result = check({**CUSTOM, "pythonModule": "trainer.task", "packageUris": ["gs://b-1/p.tar.gz"]})
    assert result.valid
    assert any("not used by a custom-container job" in w and "pythonModule" in w for w in result.warnings)
    chief = check({"pythonModule": "trainer.task", "runtimeVersion": "2.11", "useChiefInTfConfig": True})
    assert any("useChiefInTfConfig has no effect" in w for w in chief.warnings)


@pytest.mark.parametrize("ti, field, fragment", [
    # ml.v1.json masterConfig: "Only one of masterConfig.imageUri and runtimeVersion should be set"
    ({**CUSTOM, "runtimeVersion": "2.11"}, "trainingInput.runtimeVersion", "mutually exclusive"),
    # worker/ps/evaluator images fall back to the master's: they need one
    ({"pythonModule": "t.m", "runtimeVersion": "2.11", "scaleTier": "CUSTOM", "masterType": "n1-standard-8",
      "workerType": "n1-standard-8", "workerCount": 1, "workerConfig": {"imageUri": IMAGE}},
     "trainingInput.workerConfig.imageUri", "needs masterConfig.imageUri"),
    # ReplicaConfig.containerCommand: "It cannot be set if custom container image is not provided"
    ({"pythonModule": "t.m", "runtimeVersion": "2.11", "scaleTier": "CUSTOM", "masterType": "n1-standard-8",
      "masterConfig": {"containerCommand": ["python", "-m", "t.m"]}},
     "trainingInput.masterConfig.containerCommand", "only be set on a replica that runs a custom container"),
    # ReplicaConfig.containerArgs: "this field and [TrainingInput.args] are mutually exclusive"
    ({**CUSTOM, "masterConfig": {"imageUri": IMAGE, "containerArgs": ["--x"]}, "args": ["--y"]},
     "trainingInput.masterConfig.containerArgs", "mutually exclusive"),
    # ReplicaConfig.tpuTfVersion: "required if the replica is a TPU worker that uses a custom container"
    ({**CUSTOM, "workerType": "cloud_tpu", "workerCount": 1}, "trainingInput.workerConfig.tpuTfVersion",
     "is required for a TPU worker"),
    # "Otherwise, do not specify this field"
    ({**CUSTOM, "masterConfig": {"imageUri": IMAGE, "tpuTfVersion": "2.11"}},
     "trainingInput.masterConfig.tpuTfVersion", "only for a TPU worker"),
    ({**CUSTOM, "workerType": "cloud_tpu", "workerCount": 1, "workerConfig": {"tpuTfVersion": "2.99"}},
     "trainingInput.workerConfig.tpuTfVersion", "not a runtime version"),
    # masterConfig: "You should only set masterConfig.acceleratorConfig if masterType is set to a Compute Engine
    # machine type"
    ({"masterConfig": {"imageUri": IMAGE, "acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 1}}},
     "trainingInput.masterConfig.acceleratorConfig", "needs masterType"),
    ({**CUSTOM, "masterConfig": {"imageUri": IMAGE, "acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 3}}},
     "trainingInput.masterConfig.acceleratorConfig.count", "counts of"),
    # the image reference's form
    ({**CUSTOM, "masterConfig": {"imageUri": "ubuntu:22.04"}}, "trainingInput.masterConfig.imageUri",
     "names no registry host"),
    ({**CUSTOM, "masterConfig": {"imageUri": "gcr.io/Demo/Trainer:1"}}, "trainingInput.masterConfig.imageUri",
     "lower case"),
    ({**CUSTOM, "masterConfig": {"imageUri": ""}}, "trainingInput.masterConfig.imageUri", "is empty"),
])
def test_each_container_rule_has_an_invalid_variant(ti, field, fragment):
    found = fields(check(ti))
    assert field in found, found
    assert fragment in found[field]


def test_container_rules_accept_what_the_api_allows():
    tpu = {**CUSTOM, "workerType": "cloud_tpu", "workerCount": 1, "workerConfig": {"tpuTfVersion": "2.11"},
           "masterConfig": {"imageUri": IMAGE, "containerCommand": ["python", "-m", "trainer.task"],
                            "containerArgs": ["--epochs", "3"]}}
    result = check(tpu)
    assert result.valid, result.violations
    mixed = check({**CUSTOM, "workerType": "n1-standard-8", "workerCount": 2,
                   "workerConfig": {"imageUri": "europe-docker.pkg.dev/demo/repo/worker@sha256:" + "a" * 64},
                   "useChiefInTfConfig": True})
    assert mixed.valid, mixed.violations


@pytest.mark.parametrize("image", ["gcr.io/p/i", "gcr.io/p/i:latest", "eu.gcr.io/p/a/b:1.0-rc_1",
                                   "us-central1-docker.pkg.dev/p/r/i@sha256:" + "0" * 64, "localhost:5000/a/b"])
def test_image_references_of_valid_form(image):
    assert image_problem(image) is None


@pytest.mark.parametrize("image", ["trainer", "library/ubuntu:22.04", "gcr.io/p/i:", "gcr.io/p/i:bad tag",
                                   "gcr.io//i", "gcr.io/p/i@sha256:abc", "gcr.io/p/" + "a" * 300])
def test_image_references_of_bad_form(image):
    assert image_problem(image) is not None


def test_policy_still_decides_the_registry():
    found = fields(check({**CUSTOM, "masterConfig": {"imageUri": "quay.io/someone/miner:1"}}))
    assert "POLICY_VIOLATION" in found["trainingInput.masterConfig.imageUri"]


# -- completeness ---------------------------------------------------------------------------------------------
def test_a_container_drop_is_complete_with_job_yaml_alone():
    job = {"trainingInput": CUSTOM}
    assert missing_packages(job, "drop-bucket", "incoming/c", []) == []
    named = {"trainingInput": {**CUSTOM, "packageUris": ["gs://drop-bucket/incoming/c/extra.tar.gz"]}}
    assert missing_packages(named, "drop-bucket", "incoming/c", []) == ["extra.tar.gz"]  # named: still awaited
    assert missing_packages({"trainingInput": {"pythonModule": "t.m"}}, "drop-bucket", "incoming/c", []) \
        == ["a *.tar.gz package"]


def hypertune_job_yaml() -> bytes:
    """The sample's config with its submit script's flags applied, as `submitter submit` would upload it."""
    doc = yaml.safe_load(HYPERTUNE_CONFIG)
    ti = doc["trainingInput"]
    ti.update(masterType="n1-highmem-8", region="us-central1", args=HYPERTUNE_ARGS[1:],
              masterConfig={"imageUri": IMAGE, "acceleratorConfig": {"type": "NVIDIA_TESLA_V100", "count": 1}})
    return yaml.safe_dump(doc).encode()


def test_hypertune_sample_as_a_drop_of_job_yaml_alone_gets_a_verdict_at_once():
    w = World()
    w.put("incoming/hypertune/job.yaml", hypertune_job_yaml())
    out = w.deliver("incoming/hypertune/job.yaml")
    assert out.action == "submitted", out
    [msg] = w.messages()
    assert msg["state"] == "SUBMITTED"
    job = w.api.jobs[out.job_id]
    assert job["trainingInput"]["masterConfig"]["imageUri"] == IMAGE
    assert "packageUris" not in job["trainingInput"] and "runtimeVersion" not in job["trainingInput"]


def test_a_container_job_with_a_bad_image_is_rejected_at_once():
    w = World()
    w.put("incoming/bad-image/job.yaml", hypertune_job_yaml().replace(IMAGE.encode(), b"estimator-hypertune"))
    out = w.deliver("incoming/bad-image/job.yaml")
    assert out.action == "rejected"
    assert "names no registry host" in w.messages()[0]["message"]


# -- the CLI --------------------------------------------------------------------------------------------------
def test_hypertune_sample_with_its_submit_script_flags_validates(tmp_path):
    config = tmp_path / "config_resnet_hypertune.yaml"
    config.write_text(HYPERTUNE_CONFIG)
    res = CliRunner().invoke(cli, ["validate", "--config", str(config), "--json", *HYPERTUNE_FLAGS,
                                   *HYPERTUNE_ARGS])
    out = json.loads(res.output)
    assert res.exit_code == 0, out["violations"]
    ti = out["job"]["trainingInput"]
    assert ti["masterConfig"] == {"imageUri": IMAGE, "acceleratorConfig": {"type": "NVIDIA_TESLA_V100", "count": 1}}
    assert ti["masterType"] == "n1-highmem-8" and ti["scaleTier"] == "CUSTOM"
    assert ti["args"] == HYPERTUNE_ARGS[1:] and ti["hyperparameters"]["maxTrials"] == 32
    assert "runtimeVersion" not in ti and "packageUris" not in ti


def test_validate_a_container_drop_folder_of_job_yaml_alone(tmp_path):
    (tmp_path / "job.yaml").write_bytes(hypertune_job_yaml())
    res = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert res.exit_code == 0, res.output
    (tmp_path / "job.yaml").write_text("trainingInput: {pythonModule: trainer.task}\n")
    res = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert res.exit_code == 1 and "no package" in res.output


def test_flags_alone_make_a_container_job():
    res = CliRunner().invoke(cli, ["validate", "--region", "us-central1", "--master-image-uri", IMAGE, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["job"]["trainingInput"]["masterConfig"] == {"imageUri": IMAGE}


def test_a_package_drop_still_runs_with_its_package():
    w = World()
    out = w.drop("incoming/plain", package=BASELINE_TARBALL)
    assert out.action == "submitted"
