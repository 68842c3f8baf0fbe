"""Vertex AI translation (pure): the AI Platform job spec becomes a CustomJob that passes the aiplatform v1 schema
and the rules the schema cannot express; what has no Vertex equivalent is warned or rejected, never dropped
silently; violations name the AI Platform field the user wrote.

The corpus test is table-driven over every file of ../shared/corpus/real-configs/ (Google's published --config
files), completed as the function completes them (--module-name trainer.task --region us-central1, a package).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from submitter import schema
from submitter.backends import vertex_tables as tables
from submitter.backends import vertex_translate as vt
from submitter.backends import vertex_tuning as vtu
from submitter.naming import key_label_value
from submitter.policy import Policy
from submitter.spec import SpecDefaults
from submitter.validation import Overrides, check_text

from conftest import SHARED

CORPUS = sorted((SHARED / "corpus" / "real-configs").glob("*.yaml"))
PACKAGE = "gs://drop-bucket/incoming/run-001/trainer-0.1.tar.gz"
DEFAULTS = SpecDefaults((PACKAGE,), "gs://drop-outputs/incoming/run-001/run_001_1", "us-central1", "2.11", "3.7",
                        {"submitter": "drop"}, protected_prefixes=("gs://drop-bucket/incoming/",))
FLAGS = Overrides(module_name="trainer.task", region="us-central1")


# A deployment that allows what these tests exercise (the corpus test uses the default policy).
PERMISSIVE = Policy(allowed_regions=("us-central1", "europe-west4"), allowed_machine_types=("*",),
                    allowed_accelerators=tuple(schema.enum_values("AcceleratorConfig", "type")), max_replicas=100,
                    max_accelerators=100, allowed_networks=("projects/123/global/networks/vpc",),
                    allow_web_access=True, allowed_service_accounts=("mine@p.iam.gserviceaccount.com",))


def completed(text: str | bytes, name: str = "job.yaml", flags: Overrides = FLAGS, policy: Policy = PERMISSIVE):
    """The job as the function completes it (validation pipeline), with the ml v1 checks' verdict."""
    return check_text(text, name, DEFAULTS, "run_001_1", policy, flags)


def translated(text: str, key: str = "run_001_1", flags: Overrides = FLAGS, **options) -> vt.Translation:
    checked = completed(text, flags=flags)
    assert checked.valid, checked.violations  # these specs are valid AI Platform jobs
    return vt.translate(checked.job, key=key, display_name="incoming/run-001", options=vt.Options(**options))


def is_tuning(path: Path) -> bool:
    ti = (yaml.safe_load(path.read_text()) or {}).get("trainingInput") or {}
    return "hyperparameters" in ti


# -- the corpus --------------------------------------------------------------------------------------------------
def test_the_corpus_is_there_and_holds_both_kinds():
    assert len(CORPUS) >= 20
    assert sum(not is_tuning(p) for p in CORPUS) >= 10 and sum(is_tuning(p) for p in CORPUS) >= 8


@pytest.mark.parametrize("path", [p for p in CORPUS if not is_tuning(p)], ids=lambda p: p.name)
def test_every_non_tuning_real_config_translates_into_a_valid_custom_job(path):
    checked = completed(path.read_bytes(), path.name, policy=Policy())  # the default deployment policy
    assert checked.valid, [v.as_dict() for v in checked.violations]
    t = vt.translate(checked.job, key="run_001_1", display_name="incoming/run-001")
    assert t.violations == [], [v.as_dict() for v in t.violations]
    assert schema.check_custom_job(t.custom_job) == []
    assert vt.validate(t.custom_job) == []
    pools = t.custom_job["jobSpec"]["workerPoolSpecs"]
    assert pools[0]["replicaCount"] == 1 and pools[-1] != {}
    for pool in (p for p in pools if p):
        package = pool["pythonPackageSpec"]
        assert package["packageUris"] == [PACKAGE] and package["pythonModule"] == "trainer.task"
        assert package["args"][-2:] == ["--job-dir", checked.job["trainingInput"]["jobDir"]]
        assert package["executorImageUri"].startswith("us-docker.pkg.dev/vertex-ai/training/tf-")
    assert t.region == "us-central1" and t.custom_job["labels"]["submitter"] == "drop"
    assert t.custom_job["jobSpec"]["scheduling"] == {"timeout": "172800s"}  # the policy's cap, filled


@pytest.mark.parametrize("path", [p for p in CORPUS if is_tuning(p)], ids=lambda p: p.name)
def test_every_tuning_real_config_translates_into_a_valid_hyperparameter_tuning_job(path):
    """Table-driven over the corpus's tuning specs: each becomes a HyperparameterTuningJob that passes the bundled
    aiplatform v1 schema and the rules it cannot express, with the study mapped field by field."""
    checked = completed(path.read_bytes(), path.name, policy=Policy())
    assert checked.valid, [v.as_dict() for v in checked.violations]
    t = vt.translate(checked.job, key="run_001_1", display_name="incoming/run-001")
    assert t.violations == [], [v.as_dict() for v in t.violations]
    assert t.collection == "hyperparameterTuningJobs" and t.region == "us-central1"
    body = t.custom_job
    assert schema.check_document(body, vtu.TUNING_JOB) == [] and vtu.validate(body) == []
    hp = checked.job["trainingInput"]["hyperparameters"]
    study = body["studySpec"]
    assert study["metrics"] == [{"metricId": hp.get("hyperparameterMetricTag", "training/hptuning/metric"),
                                 "goal": hp["goal"]}]
    assert [p["parameterId"] for p in study["parameters"]] == [p["parameterName"] for p in hp["params"]]
    for param, out in zip(hp["params"], study["parameters"]):
        kind = {"DOUBLE": "doubleValueSpec", "INTEGER": "integerValueSpec", "CATEGORICAL": "categoricalValueSpec",
                "DISCRETE": "discreteValueSpec"}[param["type"]]
        assert kind in out and out.get("scaleType") == param.get("scaleType")
        if param["type"] == "INTEGER":
            assert out[kind] == {"minValue": str(param["minValue"]), "maxValue": str(param["maxValue"])}
        elif param["type"] == "DOUBLE":
            assert out[kind] == {"minValue": param["minValue"], "maxValue": param["maxValue"]}
        else:
            assert out[kind]["values"] == param["categoricalValues"]
    assert study["measurementSelectionType"] == "LAST_MEASUREMENT"
    assert ("medianAutomatedStoppingSpec" in study) == bool(hp.get("enableTrialEarlyStopping"))
    assert body["maxTrialCount"] == hp["maxTrials"] and body["parallelTrialCount"] == hp["maxParallelTrials"]
    # the trials run exactly the CustomJob the same spec would run without tuning
    plain = {**checked.job, "trainingInput": {k: v for k, v in checked.job["trainingInput"].items()
                                              if k != "hyperparameters"}}
    custom = vt.translate(plain, key="run_001_1", display_name="incoming/run-001")
    assert body["trialJobSpec"] == custom.custom_job["jobSpec"] and body["labels"] == custom.custom_job["labels"]
    assert body["displayName"] == "incoming/run-001"


# -- pools and machines ---------------------------------------------------------------------------------------------
def test_roles_go_to_their_pools_with_empty_placeholders_for_absent_middle_pools():
    t = translated("""trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-8
  evaluatorType: n1-highcpu-16
  evaluatorCount: 1
""")
    pools = t.custom_job["jobSpec"]["workerPoolSpecs"]
    assert [bool(p) for p in pools] == [True, False, False, True]
    assert pools[0]["machineSpec"] == {"machineType": "n1-standard-8"}
    assert pools[3]["machineSpec"] == {"machineType": "n1-highcpu-16"} and pools[3]["replicaCount"] == 1
    assert t.violations == []


def test_custom_counts_accelerators_and_disks_carry_over():
    t = translated("""trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-8
  masterConfig:
    acceleratorConfig: {type: NVIDIA_TESLA_T4, count: 2}
    diskConfig: {bootDiskType: pd-ssd, bootDiskSizeGb: 50}
  workerType: n1-standard-8
  workerCount: "1"
  workerConfig:
    acceleratorConfig: {type: NVIDIA_TESLA_V100, count: "4"}
  parameterServerType: n1-highmem-8
  parameterServerCount: 2
""")
    chief, workers, ps = t.custom_job["jobSpec"]["workerPoolSpecs"]
    assert chief["machineSpec"] == {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4",
                                    "acceleratorCount": 2}
    assert chief["diskSpec"] == {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100}  # Vertex's minimum
    assert any("bootDiskSizeGb 50 became 100" in w for w in t.warnings)
    assert workers["replicaCount"] == 1 and workers["machineSpec"]["acceleratorCount"] == 4  # int64 text -> int
    assert ps["replicaCount"] == 2 and ps["machineSpec"] == {"machineType": "n1-highmem-8"}
    assert "tf-gpu" in chief["pythonPackageSpec"]["executorImageUri"]
    assert "tf-cpu" in ps["pythonPackageSpec"]["executorImageUri"]
    assert t.violations == []


@pytest.mark.parametrize("legacy", sorted(tables.LEGACY_MACHINES))
def test_every_legacy_machine_type_maps_to_a_vertex_machine_by_the_table(legacy):
    t = translated(f"trainingInput:\n  scaleTier: CUSTOM\n  masterType: {legacy}\n")
    machine = tables.LEGACY_MACHINES[legacy]
    spec = t.custom_job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec["machineType"] == machine.machine_type
    assert spec.get("acceleratorType") == machine.accelerator_type
    assert t.violations == []
    assert any(f"masterType {legacy}" in w for w in t.warnings)  # never silently


def test_legacy_k80_types_get_a_current_gpu_and_say_so():
    t = translated("trainingInput:\n  scaleTier: CUSTOM\n  masterType: complex_model_l_gpu\n")
    spec = t.custom_job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec == {"machineType": "n1-highcpu-32", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 4}
    assert any("K80" in w and "retired" in w for w in t.warnings)


def test_an_explicit_k80_accelerator_becomes_a_t4_with_a_warning():
    t = translated("""trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-8
  masterConfig: {acceleratorConfig: {type: NVIDIA_TESLA_K80, count: 8}}
""")
    spec = t.custom_job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    assert spec["acceleratorType"] == "NVIDIA_TESLA_T4" and spec["acceleratorCount"] == 4
    assert any("NVIDIA_TESLA_K80 is retired" in w for w in t.warnings) and t.violations == []


@pytest.mark.parametrize("tier,shape", [("BASIC", [1]), ("BASIC_GPU", [1]), ("STANDARD_1", [1, 4, 3])])
def test_preset_scale_tiers_become_their_documented_replicas(tier, shape):
    t = translated(f"trainingInput:\n  scaleTier: {tier}\n")
    pools = t.custom_job["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == shape
    assert {p["machineSpec"]["machineType"] for p in pools} == {"n1-standard-4"}
    if tier == "BASIC_GPU":
        assert pools[0]["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_T4"
    if tier == "STANDARD_1":
        assert any("did not document the tier's machine types" in w for w in t.warnings)


# -- TPUs ------------------------------------------------------------------------------------------------------------
def test_a_cloud_tpu_worker_becomes_vertex_documented_tpu_vm_layout():
    t = translated("""trainingInput:
  scaleTier: CUSTOM
  masterType: standard
  workerType: cloud_tpu
  workerCount: 1
  workerConfig: {acceleratorConfig: {type: TPU_V3, count: 8}}
""")
    [pool] = t.custom_job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V3", "acceleratorCount": 8}
    assert pool["replicaCount"] == 1 and "tf-tpu" in pool["pythonPackageSpec"]["executorImageUri"]
    assert any("TPUClusterResolver" in w for w in t.warnings) and t.violations == []


def test_basic_tpu_gets_the_default_tpu_and_a_pod_slice_keeps_its_count():
    basic = translated("trainingInput:\n  scaleTier: BASIC_TPU\n")
    [pool] = basic.custom_job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "cloud-tpu", "acceleratorType": "TPU_V2", "acceleratorCount": 8}
    pod = translated("""trainingInput:
  scaleTier: CUSTOM
  masterType: standard
  workerType: cloud_tpu
  workerCount: 1
  workerConfig: {acceleratorConfig: {type: TPU_V2_POD, count: 64}}
""")
    assert pod.custom_job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorCount"] == 64


@pytest.mark.parametrize("extra,field", [
    ("  workerConfig: {acceleratorConfig: {type: TPU_V4_POD, count: 32}}\n",
     "trainingInput.workerConfig.acceleratorConfig.type"),
    ("  workerConfig: {acceleratorConfig: {type: TPU_V2_POD, count: 48}}\n",
     "trainingInput.workerConfig.acceleratorConfig.count"),
    ("  parameterServerType: standard\n  parameterServerCount: 1\n", "trainingInput.parameterServerType"),
])
def test_tpu_layouts_vertex_does_not_document_are_rejected_naming_the_field(extra, field):
    checked = completed("trainingInput:\n  scaleTier: CUSTOM\n  masterType: standard\n  workerType: cloud_tpu\n"
                        "  workerCount: 1\n" + extra)
    t = vt.translate(checked.job, key="k", display_name="d")
    assert field in {v.field for v in t.violations}


# -- programs, outputs, scheduling, the rest --------------------------------------------------------------------------
def test_job_dir_becomes_the_base_output_directory_and_the_job_dir_arg_the_trainer_expects():
    t = translated("trainingInput:\n  args: ['--epochs', '3']\n")
    spec = t.custom_job["jobSpec"]
    job_dir = "gs://drop-outputs/incoming/run-001/run_001_1"
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": job_dir}
    assert spec["workerPoolSpecs"][0]["pythonPackageSpec"]["args"] == ["--epochs", "3", "--job-dir", job_dir]
    assert vt._with_job_dir(["--job-dir=gs://x/y"], job_dir) == ["--job-dir=gs://x/y"]  # never twice


def test_a_custom_container_becomes_a_container_spec_and_workers_inherit_the_master_image():
    checked = completed("""trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-8
  masterConfig: {imageUri: us-docker.pkg.dev/p/r/trainer:1, containerCommand: [python, -m, t]}
  workerType: n1-standard-8
  workerCount: 2
  args: [--lr, '0.1']
""", flags=Overrides(region="us-central1"))
    job = json.loads(json.dumps(checked.job))
    job["trainingInput"].pop("runtimeVersion", None)  # containers name no runtime
    job["trainingInput"].pop("pythonVersion", None)
    t = vt.translate(job, key="k", display_name="d")
    chief, workers = t.custom_job["jobSpec"]["workerPoolSpecs"]
    assert chief["containerSpec"]["imageUri"] == "us-docker.pkg.dev/p/r/trainer:1"
    assert chief["containerSpec"]["command"] == ["python", "-m", "t"]
    assert chief["containerSpec"]["args"][:2] == ["--lr", "0.1"] and "--job-dir" in chief["containerSpec"]["args"]
    assert workers["containerSpec"]["imageUri"] == "us-docker.pkg.dev/p/r/trainer:1"
    assert "pythonPackageSpec" not in chief and t.violations == []


def test_scheduling_service_account_network_and_encryption_carry_over():
    t = translated("""trainingInput:
  scheduling: {maxRunningTime: 3600s, maxWaitTime: 7200s, priority: 5}
  network: projects/123/global/networks/vpc
  encryptionConfig: {kmsKeyName: projects/p/locations/us-central1/keyRings/r/cryptoKeys/k}
  enableWebAccess: true
""", service_account="training@p.iam.gserviceaccount.com")
    cj = t.custom_job
    assert cj["jobSpec"]["scheduling"] == {"timeout": "3600s", "maxWaitDuration": "7200s"}
    assert any("FLEX_START" in w for w in t.warnings) and any("priority has no Vertex equivalent" in w
                                                              for w in t.warnings)
    assert cj["jobSpec"]["network"] == "projects/123/global/networks/vpc" and cj["jobSpec"]["enableWebAccess"]
    assert cj["encryptionSpec"] == {"kmsKeyName": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"}
    assert cj["jobSpec"]["serviceAccount"] == "training@p.iam.gserviceaccount.com"  # the deployment's, by default


def test_a_spec_service_account_wins_over_the_deployment_default():
    checked = completed("trainingInput:\n  serviceAccount: mine@p.iam.gserviceaccount.com\n")
    t = vt.translate(checked.job, key="k", display_name="d", options=vt.Options(service_account="dep@p.iam.x.com"))
    assert t.custom_job["jobSpec"]["serviceAccount"] == "mine@p.iam.gserviceaccount.com"


def test_fields_without_a_vertex_equivalent_are_warned_never_dropped_silently():
    t = translated("trainingInput:\n  useChiefInTfConfig: true\n")
    assert any("useChiefInTfConfig" in w for w in t.warnings)
    job = completed("trainingInput:\n  pythonModule: trainer.task\n").job
    t = vt.translate({**job, "etag": "BwXhqX1L0RE="}, key="k", display_name="d")
    assert any(w.startswith("etag is ignored") for w in t.warnings)


def test_labels_carry_the_key_hash_and_the_key_and_the_reserved_ones_are_refused():
    t = translated("trainingInput: {}\nlabels: {team: vision}\n", key="Run_A_1718000000000001")
    labels = t.custom_job["labels"]
    assert labels["team"] == "vision" and labels["submitter"] == "drop"
    assert labels[vt.KEY_LABEL] == key_label_value("Run_A_1718000000000001")
    assert vt.decode_key(labels[vt.JOB_LABEL]) == "Run_A_1718000000000001"
    assert vt.encode_key("x" * 70) is None  # does not fit a label: only the hash label then
    checked = completed("trainingInput: {}\nlabels: {submitter-key: mine}\n")
    refused = vt.translate(checked.job, key="k", display_name="d")
    assert [v.field for v in refused.violations] == ["labels.submitter-key"]


def test_a_long_display_name_is_cut_with_a_hash_and_a_warning():
    name, warning = vt.display_name_for("incoming/" + "x" * 300)
    assert len(name) == 128 and warning and "128" in warning
    assert name != vt.display_name_for("incoming/" + "x" * 299 + "y")[0]


def test_the_executor_image_follows_the_region_and_says_when_versions_change():
    t = translated("trainingInput:\n  region: europe-west4\n", flags=Overrides(module_name="trainer.task"))
    uri = t.custom_job["jobSpec"]["workerPoolSpecs"][0]["pythonPackageSpec"]["executorImageUri"]
    assert uri.startswith("europe-docker.pkg.dev/vertex-ai/training/tf-cpu.") and t.region == "europe-west4"
    assert any("runtimeVersion 2.11" in w and "TensorFlow" in w for w in t.warnings)


# -- the image table's rule ----------------------------------------------------------------------------------------
def test_the_image_table_is_well_formed_and_sourced():
    assert tables.REVIEWED <= dt.date.today() and "pre-built-containers" in tables.IMAGES_SOURCE
    names = [i.name for i in tables.TRAINING_IMAGES]
    assert len(names) == len(set(names))
    assert {i.kind for i in tables.TRAINING_IMAGES} == {"cpu", "gpu", "tpu"}
    for runtime in [f"1.{n}" for n in range(16)] + [f"2.{n}" for n in range(1, 12)]:
        for kind in ("cpu", "gpu", "tpu"):
            choice = tables.pick_training_image(tables.runtime_tensorflow(runtime), "3.7", kind)
            assert choice.image.kind == kind


def test_the_nearest_available_image_is_chosen_when_the_table_has_one(monkeypatch):
    monkeypatch.setattr(tables, "REVIEWED", dt.date(2024, 1, 1))  # as if reviewed when 2.11 was still offered
    exact = tables.pick_training_image((2, 11), "3.7", "cpu")
    assert (exact.image.name, exact.exact, exact.available) == ("tf-cpu.2-11", True, True)
    assert tables.pick_training_image((2, 11), "3.10", "cpu").image.name == "tf-cpu.2-11.py310"
    assert tables.pick_training_image((2, 10), None, "cpu").image.version == (2, 11)  # no 2.10: the next newer
    assert tables.pick_training_image((1, 13), None, "gpu").image.name == "tf-gpu.1-15"
    assert tables.pick_training_image((3, 0), None, "cpu").image.version == (2, 17)  # nothing newer: the newest


def test_when_no_image_is_still_available_the_one_available_longest_is_chosen():
    choice = tables.pick_training_image((2, 11), "3.7", "cpu")
    assert choice.image.name == "tf-cpu.2-17.py310" and not choice.exact and not choice.available
    assert tables.registry_for("asia-east1") == "asia-docker.pkg.dev"
    assert tables.registry_for("northamerica-northeast1") == "us-docker.pkg.dev"


# -- validation of the result: the rules the schema cannot express -----------------------------------------------
def _job(**pool):
    base = {"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
            "pythonPackageSpec": {"executorImageUri": "u", "packageUris": ["gs://b/p.tar.gz"], "pythonModule": "m"}}
    base.update(pool)
    return {"displayName": "d", "jobSpec": {"workerPoolSpecs": [{k: v for k, v in base.items() if v is not None}]}}


@pytest.mark.parametrize("custom_job,path", [
    (_job(replicaCount=2), "jobSpec.workerPoolSpecs[0].replicaCount"),
    (_job(containerSpec={"imageUri": "i"}), "jobSpec.workerPoolSpecs[0]"),
    (_job(pythonPackageSpec=None), "jobSpec.workerPoolSpecs[0]"),
    (_job(machineSpec={"acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 1}),
     "jobSpec.workerPoolSpecs[0].machineSpec.machineType"),
    (_job(machineSpec={"machineType": "n1-standard-4", "acceleratorType": "NVIDIA_TESLA_T4"}),
     "jobSpec.workerPoolSpecs[0].machineSpec.acceleratorCount"),
    (_job(machineSpec={"machineType": "n1-standard-4", "acceleratorCount": 2}),
     "jobSpec.workerPoolSpecs[0].machineSpec.acceleratorType"),
    ({**_job(), "displayName": "x" * 129}, "displayName"),
    ({**_job(), "displayName": ""}, "displayName"),
    (_job(replicaCount="one"), "jobSpec.workerPoolSpecs[0].replicaCount"),  # the schema: int64
    (_job(diskSpec={"bootDiskSizeGb": 10}), "jobSpec.workerPoolSpecs[0].diskSpec.bootDiskSizeGb"),
    ({**_job(), "labels": {"Team": "x"}}, "labels.Team"),
])
def test_each_rule_finds_its_problem(custom_job, path):
    found = vt.validate(custom_job)
    assert path in {v.field for v in found}, [v.as_dict() for v in found]


def test_a_violation_names_the_ai_platform_field_and_the_vertex_field():
    job = completed("""trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-8
  masterConfig: {acceleratorConfig: {type: NVIDIA_TESLA_T4, count: 0}}
""").job
    t = vt.translate(job, key="k", display_name="d")
    [v] = [v for v in t.violations if "acceleratorCount" in v.message]
    assert v.field == "trainingInput.masterConfig.acceleratorConfig.count"
    assert "(Vertex field jobSpec.workerPoolSpecs[0].machineSpec.acceleratorCount)" in v.message


def test_the_schema_walker_checks_a_custom_job_against_the_aiplatform_document():
    assert schema.enum_values("CustomJob", "state", doc=schema.AIPLATFORM_V1)[-1] == "JOB_STATE_PARTIALLY_SUCCEEDED"
    assert schema.is_output_only("CustomJob", "name", doc=schema.AIPLATFORM_V1)
    found = {v.field: v for v in schema.check_custom_job({"displayName": "d", "state": "JOB_STATE_RUNNING",
                                                          "jobSpec": {"workerPoolSpec": []}})}
    assert "output only" in found["state"].message
    assert "workerPoolSpecs" in found["jobSpec.workerPoolSpec"].message  # the suggestion works there too
    assert schema.document() is schema.document(schema.ML_V1)  # ml v1 stays the default, parsed once


def test_translation_never_raises_on_type_confused_specs():
    from test_fuzz_spec import CTX, random_specs

    for text in random_specs(seed=23, n=1500):
        checked = check_text(text, "job.yaml", CTX, "j_1", Policy())
        t = vt.translate(checked.job, key="j_1", display_name="incoming/fuzz")
        for v in t.violations:
            assert v.field.startswith(("jobId", "labels", "trainingInput", "displayName")), v
            json.dumps(v.as_dict())
