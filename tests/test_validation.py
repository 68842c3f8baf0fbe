"""Issue 3: complete validation — semantic rules, policy, merge precedence, `submitter validate`, and the
spec cases of ../shared/cases/FIELD_CASES.md (F6, F7, F8, F11, F12, F13, spec parts of F2 and F5)."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from submitter.policy import Policy
from submitter.spec import SpecDefaults as DropContext
from submitter.validation import Overrides, check_text
from submitter_cli import main as cli

from conftest import BASELINE_TARBALL, BASELINE_YAML, SHARED, World, baseline_files, make_tarball

CORPUS = sorted((SHARED / "corpus" / "real-configs").glob("*.yaml"))
CTX = DropContext(("gs://drop-bucket/incoming/run-001/package.tar.gz",), "gs://drop-outputs/incoming/run-001/j",
                  "us-central1", "2.11", "3.7", {"submitter": "drop"})


def check(yaml_text: str, policy: Policy | None = None, flags: Overrides | None = None):
    return check_text(yaml_text.encode(), "job.yaml", CTX, "run_001_1", policy or Policy(), flags)


def fields(result) -> dict[str, str]:
    """{field path: every "REASON: message" for it, joined}."""
    out: dict[str, str] = {}
    for v in result.violations:
        out[v.field] = (out[v.field] + " | " if v.field in out else "") + f"{v.reason}: {v.message}"
    return out


def base(**ti) -> str:
    doc = {"trainingInput": {"pythonModule": "trainer.task", "runtimeVersion": "2.11", **ti}}
    return yaml.safe_dump(doc)


@pytest.fixture(autouse=True)
def no_deployment_env(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("SUBMITTER_")]:
        monkeypatch.delenv(key)


# -- the corpus ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CORPUS, ids=[p.name[:60] for p in CORPUS])
def test_every_real_config_validates_with_cli(path, tmp_path):
    package = tmp_path / "trainer-0.1.tar.gz"
    package.write_bytes(BASELINE_TARBALL)
    result = CliRunner().invoke(cli, ["validate", "--config", str(path), "--packages", str(package),
                                      "--module-name", "trainer.task", "--region", "us-central1", "--json"])
    out = json.loads(result.output)
    assert result.exit_code == 0, out["violations"]
    assert out["valid"] and out["job"]["trainingInput"]["pythonModule"] == "trainer.task"


def test_corpus_is_present():
    assert len(CORPUS) >= 20


def test_retired_runtime_is_a_warning_and_python_is_filled():
    result = check(base(runtimeVersion="1.13"))
    assert result.valid and any("retired" in w for w in result.warnings)
    assert result.job["trainingInput"]["pythonVersion"] == "3.5"


# -- semantic rules: one invalid variant per rule -----------------------------------------------
@pytest.mark.parametrize("ti, field, fragment", [
    ({"scaleTier": "CUSTOM"}, "trainingInput.masterType", "masterType is required when scaleTier is CUSTOM"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "workerCount": 2}, "trainingInput.workerType",
     "workerType is required when workerCount > 0"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "parameterServerCount": 1},
     "trainingInput.parameterServerType", "required"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "evaluatorCount": 1}, "trainingInput.evaluatorType",
     "required"),
    ({"scaleTier": "BASIC", "workerCount": 2, "workerType": "n1-standard-8"}, "trainingInput.workerType",
     "only be used when scaleTier is CUSTOM"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "workerType": "complex_model_m", "workerCount": 1},
     "trainingInput", "mixes Compute Engine machine types and legacy"),
    ({"scaleTier": "CUSTOM", "masterType": "complex_model_m", "masterConfig": {"acceleratorConfig": {
        "type": "NVIDIA_TESLA_T4", "count": 1}}}, "trainingInput.masterConfig.acceleratorConfig",
     "only allowed on Compute Engine"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "masterConfig": {"acceleratorConfig": {
        "type": "NVIDIA_TESLA_T4", "count": 0}}}, "trainingInput.masterConfig.acceleratorConfig.count", "positive"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-4", "masterConfig": {"acceleratorConfig": {
        "type": "NVIDIA_TESLA_A100", "count": 1}}}, "trainingInput.masterConfig.acceleratorConfig.type",
     "only available on a2-highgpu"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "masterConfig": {"acceleratorConfig": {"count": 1}}},
     "trainingInput.masterConfig.acceleratorConfig.type", "needs a type"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "masterConfig": {"acceleratorConfig": {
        "type": "NVIDIA_TESLA_T4", "count": 3}}}, "trainingInput.masterConfig.acceleratorConfig.count",
     "counts of"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standrd-8"}, "trainingInput.masterType", "did you mean"),
    ({"runtimeVersion": "2.11", "pythonVersion": "2.7"}, "trainingInput.pythonVersion", "offers pythonVersion 3.7"),
    ({"runtimeVersion": "9.9"}, "trainingInput.runtimeVersion", "not an AI Platform Training runtime"),
    ({"runtimeVersion": "2.11", "masterConfig": {"imageUri": "gcr.io/p/t:1"}}, "trainingInput.runtimeVersion",
     "mutually exclusive"),
    ({"packageUris": ["http://example.com/p.tar.gz"]}, "trainingInput.packageUris[0]", "gs://"),
    ({"packageUris": [f"gs://b/p{i}.tar.gz" for i in range(101)]}, "trainingInput.packageUris", "at most 100"),
    ({"pythonModule": "trainer-task"}, "trainingInput.pythonModule", "dotted module name"),
    ({"jobDir": "gs://B_/x"}, "trainingInput.jobDir", "valid bucket name"),
    ({"region": "us central"}, "trainingInput.region", "region name"),
    ({"scheduling": {"maxWaitTime": "600s"}}, "trainingInput.scheduling.maxWaitTime", "at least 1800s"),
    ({"scheduling": {"maxRunningTime": "0s"}}, "trainingInput.scheduling.maxRunningTime", "greater than 0s"),
    ({"scheduling": {"priority": 1001}}, "trainingInput.scheduling.priority", "between 0 and 1000"),
    ({"serviceAccount": "not-an-email"}, "trainingInput.serviceAccount", "email"),
    ({"masterConfig": {"diskConfig": {"bootDiskType": "pd-balanced"}}},
     "trainingInput.masterConfig.diskConfig.bootDiskType", "pd-ssd"),
    ({"masterConfig": {"diskConfig": {"bootDiskSizeGb": 5}}}, "trainingInput.masterConfig.diskConfig.bootDiskSizeGb",
     "between 10 and 64000"),
])
def test_each_rule_has_an_invalid_variant(ti, field, fragment):
    result = check(base(**ti))
    assert field in fields(result), fields(result)
    assert fragment in fields(result)[field]


@pytest.mark.parametrize("hp, field, fragment", [
    ({"params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": 0.1, "maxValue": 1}]},
     "trainingInput.hyperparameters.goal", "goal is required"),
    ({"goal": "MAXIMIZE", "params": [{"parameterName": "a", "type": "INTEGER", "minValue": 1, "maxValue": 2},
                                     {"parameterName": "a", "type": "INTEGER", "minValue": 1, "maxValue": 2}]},
     "trainingInput.hyperparameters.params[1].parameterName", "duplicate"),
    ({"goal": "MAXIMIZE", "params": [{"parameterName": "a", "type": "DOUBLE", "minValue": 1}]},
     "trainingInput.hyperparameters.params[0]", "needs minValue and maxValue"),
    ({"goal": "MAXIMIZE", "params": [{"parameterName": "a", "type": "CATEGORICAL"}]},
     "trainingInput.hyperparameters.params[0].categoricalValues", "needs categoricalValues"),
    ({"goal": "MAXIMIZE", "params": [{"parameterName": "a", "type": "DISCRETE", "discreteValues": [1, 3, 2]}]},
     "trainingInput.hyperparameters.params[0].discreteValues", "strictly increasing"),
    ({"goal": "MAXIMIZE", "params": [{"parameterName": "a", "type": "DOUBLE", "minValue": 0, "maxValue": 1,
                                      "scaleType": "UNIT_LOG_SCALE"}]},
     "trainingInput.hyperparameters.params[0].minValue", "positive range"),
    ({"goal": "MAXIMIZE", "algorithm": "GRID_SEARCH", "params": [{"parameterName": "a", "type": "DOUBLE",
                                                                  "minValue": 1, "maxValue": 2}]},
     "trainingInput.hyperparameters.params[0].type", "GRID_SEARCH"),
    ({"goal": "MAXIMIZE", "maxTrials": 2, "maxParallelTrials": 4, "params": [
        {"parameterName": "a", "type": "INTEGER", "minValue": 1, "maxValue": 2}]},
     "trainingInput.hyperparameters.maxParallelTrials", "must not exceed maxTrials"),
])
def test_hyperparameter_rules(hp, field, fragment):
    result = check(base(hyperparameters=hp))
    assert fragment in fields(result).get(field, ""), fields(result)


def test_every_violation_is_collected_with_paths():
    result = check(base(scaleTier="CUSTOM", workerCount=2, scheduling={"maxWaitTime": "60s", "priority": -1}))
    assert {"trainingInput.masterType", "trainingInput.workerType", "trainingInput.scheduling.maxWaitTime",
            "trainingInput.scheduling.priority"} <= set(fields(result))


def test_schema_layer_reports_unknown_fields_and_enums():
    result = check(base(pythonModul="x", scaleTier="PREMIUM_2"))
    assert "pythonModule" in fields(result)["trainingInput.pythonModul"]
    assert "PREMIUM_1" in fields(result)["trainingInput.scaleTier"]


# -- policy: one invalid variant per cap --------------------------------------------------------
@pytest.mark.parametrize("ti, policy, field", [
    ({"region": "asia-south1"}, Policy(), "trainingInput.region"),
    ({"scaleTier": "PREMIUM_1"}, Policy(), "trainingInput.scaleTier"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-highmem-96"}, Policy(allowed_machine_types=("n1-standard-*",)),
     "trainingInput.masterType"),
    ({"scaleTier": "CUSTOM", "masterType": "a2-highgpu-1g", "masterConfig": {"acceleratorConfig": {
        "type": "NVIDIA_TESLA_A100", "count": 1}}}, Policy(allowed_machine_types=("*",)),
     "trainingInput.masterConfig.acceleratorConfig.type"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "workerType": "n1-standard-8", "workerCount": 20},
     Policy(max_replicas=16), "trainingInput"),
    ({"scaleTier": "CUSTOM", "masterType": "n1-standard-8", "masterConfig": {"acceleratorConfig": {
        "type": "NVIDIA_TESLA_T4", "count": 4}}, "workerType": "n1-standard-8", "workerCount": 2,
      "workerConfig": {"acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 4}}}, Policy(), "trainingInput"),
    ({"scheduling": {"maxRunningTime": "604800s"}}, Policy(), "trainingInput.scheduling.maxRunningTime"),
    ({"serviceAccount": "trainer@demo-project.iam.gserviceaccount.com"}, Policy(), "trainingInput.serviceAccount"),
])
def test_policy_caps(ti, policy, field):
    result = check(base(**ti), policy=policy)
    assert "POLICY_VIOLATION" in fields(result).get(field, ""), fields(result)


def test_policy_allows_listed_service_account_and_fills_running_time():
    account = "trainer@demo-project.iam.gserviceaccount.com"
    result = check(base(serviceAccount=account), policy=Policy(allowed_service_accounts=(account,),
                                                               max_running_time_s=3600))
    assert result.valid and result.job["trainingInput"]["scheduling"]["maxRunningTime"] == "3600s"


def test_policy_file_parsing(tmp_path):
    policy = Policy.from_yaml("allowed_regions: [europe-west4]\nmax_running_time_s: 86400s\nmax_replicas: 4\n")
    assert policy.allowed_regions == ("europe-west4",) and policy.max_running_time_s == 86400
    with pytest.raises(ValueError, match="unknown key 'max_gpus'"):
        Policy.from_yaml("max_gpus: 3")


# -- merge precedence ----------------------------------------------------------------------------
def test_flags_override_file_with_notes_and_keep_what_gcloud_loses():
    text = base(args=["--epochs", "3"], region="us-east1", packageUris=["gs://mine/p.tar.gz"]) + \
        "labels: {team: vision, env: dev}\n"
    result = check(text, flags=Overrides(region="us-central1", labels={"env": "prod"}, args=None))
    ti = result.job["trainingInput"]
    assert ti["region"] == "us-central1" and any("replaced trainingInput.region" in n for n in result.notes)
    assert ti["args"] == ["--epochs", "3"]                       # no `--` remainder: file args kept
    assert ti["packageUris"] == ["gs://mine/p.tar.gz"]           # config-only packageUris kept
    assert result.job["labels"] == {"team": "vision", "env": "prod", "submitter": "drop"}  # merged, not replaced


# -- field cases (spec parts) --------------------------------------------------------------------
def drop_and_verdict(spec: bytes, package: bytes = BASELINE_TARBALL):
    w = World()
    out = w.drop("incoming/run-100", spec=spec, package=package)
    return out, (w.messages() or [None])[0], w


def test_F6_module_not_in_package_variants():
    files = baseline_files()
    files.pop("trainer/task.py")
    files.update({"trainer/legacy/__init__.py": b"", "trainer/legacy/task.py": b""})
    out, msg, w = drop_and_verdict(BASELINE_YAML, make_tarball(files))
    assert msg["reason"] == "MODULE_NOT_IN_PACKAGE" and "candidates: trainer.legacy.task" in msg["message"]
    files = baseline_files()
    files.pop("trainer/__init__.py")
    out, msg, w = drop_and_verdict(BASELINE_YAML, make_tarball(files))
    assert msg["reason"] == "MODULE_NOT_IN_PACKAGE" and "no __init__.py" in msg["message"]
    out, msg, w = drop_and_verdict(BASELINE_YAML.replace(b"trainer.task", b"trainer/task.py"))
    assert msg["reason"] == "SPEC_INVALID" and "dotted module name" in msg["message"]
    assert w.api.count("create") == 0


def test_F8_yaml_coercions():
    out, msg, _ = drop_and_verdict(BASELINE_YAML.replace(b'runtimeVersion: "2.11"', b"runtimeVersion: 2.10"))
    assert msg["state"] == "REJECTED" and 'runtimeVersion: "2.10"' in msg["message"]
    out, msg, w = drop_and_verdict(BASELINE_YAML.replace(b'runtimeVersion: "2.11"', b'runtimeVersion: "1.9"')
                                   .replace(b'  pythonVersion: "3.7"\n', b""))
    assert msg["state"] == "SUBMITTED"  # a retired runtime is a warning; pythonVersion filled from it
    assert w.api.jobs[out.job_id]["trainingInput"]["pythonVersion"] == "3.5"
    out, msg, _ = drop_and_verdict(BASELINE_YAML + b"  masterConfig: {imageUri: gcr.io/demo-project/trainer:1}\n"
                                   .replace(b"  masterConfig", b"masterConfig"))
    assert msg["state"] == "REJECTED"


def test_F11_json_with_trailing_commas_submits():
    spec = (b'{"trainingInput": {"scaleTier": "CUSTOM", "masterType": "n1-highmem-8", "pythonModule": '
            b'"trainer.task", "region": "us-central1", "runtimeVersion": "2.11", "pythonVersion": "3.7",},}')
    out, msg, _ = drop_and_verdict(spec)
    assert msg["state"] == "SUBMITTED"


def test_F11_accelerator_combo_is_rejected_as_invalid_machine_config():
    spec = BASELINE_YAML.replace(b"scaleTier: BASIC", b"scaleTier: CUSTOM\n  masterType: n1-standard-4\n  "
                                 b"masterConfig: {acceleratorConfig: {type: NVIDIA_TESLA_A100, count: 1}}")
    out, msg, w = drop_and_verdict(spec)
    assert msg["reason"] == "INVALID_MACHINE_CONFIG" and w.api.count("create") == 0


def test_F12_quoted_placeholder_count_and_job_dir():
    spec = BASELINE_YAML.replace(b"scaleTier: BASIC", b'scaleTier: CUSTOM\n  masterType: n1-standard-16\n  '
                                 b'workerType: n1-standard-16\n  workerCount: "{{worker_batches}}"')
    out, msg, _ = drop_and_verdict(spec)
    assert "trainingInput.workerCount" in {v["field"] for v in msg["violations"]}
    assert "{{worker_batches}}" in msg["message"]
    out, msg, _ = drop_and_verdict(BASELINE_YAML.replace(b"gs://drop-outputs/run-001", b"gs://<bucket>/jobs/run-018"))
    assert {v["field"] for v in msg["violations"]} == {"trainingInput.jobDir"}


def test_F5_rejection_lists_every_violation_once():
    out, msg, w = drop_and_verdict(b"trainingInput:\n  scaleTier: CUSTOM\n  workerCount: 2\n  pythonModule: t/x.py\n"
                                   b"labels: {Team: x}\n")
    assert msg["state"] == "REJECTED" and len(msg["violations"]) >= 4
    assert len(w.publisher.messages) == 1


# -- the CLI ------------------------------------------------------------------------------------
def test_validate_drop_folder_exit_codes_and_human_output(tmp_path):
    (tmp_path / "job.yaml").write_bytes(BASELINE_YAML)
    (tmp_path / "trainer-0.1.tar.gz").write_bytes(BASELINE_TARBALL)
    ok = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert ok.exit_code == 0 and "valid" in ok.output and "jobId:" in ok.output
    (tmp_path / "job.yaml").write_text("trainingInput: {scaleTier: CUSTOM, pythonModule: trainer.task}\n")
    bad = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert bad.exit_code == 1 and "masterType is required when scaleTier is CUSTOM" in bad.output
    usage = CliRunner().invoke(cli, ["validate"])
    assert usage.exit_code == 2


def test_validate_user_args_after_double_dash_replace_file_args(tmp_path):
    (tmp_path / "job.yaml").write_bytes(BASELINE_YAML)
    (tmp_path / "p.tar.gz").write_bytes(BASELINE_TARBALL)
    res = CliRunner().invoke(cli, ["validate", str(tmp_path), "--json", "--", "--epochs", "9"])
    out = json.loads(res.output)
    assert out["job"]["trainingInput"]["args"] == ["--epochs", "9"]
    assert any("replaced trainingInput.args" in n for n in out["notes"])


def test_region_far_from_the_drop_bucket_is_a_warning_not_a_rejection():
    w = World()
    w.storage.bucket_location = lambda bucket: "europe-west4"
    out = w.drop("incoming/run-200")
    assert out.action == "submitted"
    [msg] = w.messages()
    assert any("differs from the drop bucket's location europe-west4" in x for x in msg["warnings"])


def test_one_pass_lists_rule_and_policy_problems_of_the_same_field():
    result = check(base(scaleTier="CUSTOM", masterType="n1-standard-4",
                        masterConfig={"acceleratorConfig": {"type": "NVIDIA_TESLA_A100", "count": 1}}))
    text = fields(result)["trainingInput.masterConfig.acceleratorConfig.type"]
    assert "INVALID_MACHINE_CONFIG" in text and "POLICY_VIOLATION" in text
    big = check(base(scaleTier="CUSTOM", masterType="n1-standard-8", workerType="n1-standard-8", workerCount=100,
                     workerConfig={"acceleratorConfig": {"type": "NVIDIA_TESLA_V100", "count": 8}}))
    assert "replicas" in fields(big)["trainingInput"] and "accelerators" in fields(big)["trainingInput"]


@pytest.mark.parametrize("job_dir", ["gs://drop-bucket/incoming/loop", "gs://drop-state/submitter/x"])
def test_job_dir_inside_the_drop_area_or_the_state_is_rejected(job_dir):
    ctx = DropContext(CTX.package_uris, CTX.default_job_dir, "us-central1", "2.11", "3.7", {},
                      protected_prefixes=("gs://drop-bucket/incoming/", "gs://drop-state/submitter/"))
    result = check_text(base(jobDir=job_dir).encode(), "job.yaml", ctx, "j1", Policy())
    assert "look like new drops" in fields(result)["trainingInput.jobDir"]


def test_job_dir_passed_in_args_is_rejected():
    result = check(base(jobDir="gs://drop-outputs/x", args=["--epochs", "3", "--job-dir", "gs://drop-outputs/y"]))
    assert "passes --job-dir" in fields(result)["trainingInput.args[2]"]


def test_validate_config_with_trainer_args_after_double_dash(tmp_path):
    (tmp_path / "job.yaml").write_bytes(BASELINE_YAML)
    (tmp_path / "p.tar.gz").write_bytes(BASELINE_TARBALL)
    res = CliRunner().invoke(cli, ["validate", "--config", str(tmp_path / "job.yaml"), "--packages",
                                   str(tmp_path / "p.tar.gz"), "--json", "--", "--epochs", "7"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["job"]["trainingInput"]["args"] == ["--epochs", "7"]


def test_validate_refuses_an_oversized_spec_like_the_function(tmp_path, monkeypatch):
    (tmp_path / "job.yaml").write_bytes(BASELINE_YAML + b"#" * (2 * 1024 * 1024))
    (tmp_path / "p.tar.gz").write_bytes(BASELINE_TARBALL)
    res = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert res.exit_code == 1 and "SPEC_TOO_LARGE" in res.output


def test_policy_limits_image_registries_networks_and_web_access():
    bad = check(base(masterConfig={"imageUri": "docker.io/someone/miner:latest"},
                     network="projects/123/global/networks/corp", enableWebAccess=True))
    found = fields(bad)
    assert "POLICY_VIOLATION" in found["trainingInput.masterConfig.imageUri"]
    assert "POLICY_VIOLATION" in found["trainingInput.network"]
    assert "POLICY_VIOLATION" in found["trainingInput.enableWebAccess"]
    allowed = Policy.from_yaml("allowed_image_registries: ['docker.io/someone/*']\n"
                               "allowed_networks: [projects/123/global/networks/corp]\nallow_web_access: true\n")
    ok = check(base(masterConfig={"imageUri": "docker.io/someone/miner:latest"},
                    network="projects/123/global/networks/corp", enableWebAccess=True), policy=allowed)
    assert not [v for v in ok.violations if v.reason == "POLICY_VIOLATION"]
    with pytest.raises(ValueError, match="allow_web_access must be true or false"):
        Policy.from_yaml("allow_web_access: yes please\n")


def test_hyperparameter_fields_that_must_be_unset_for_a_type_are_refused_naming_the_field():
    hp = {"goal": "MAXIMIZE", "hyperparameterMetricTag": "accuracy", "maxTrials": 4, "params": [
        {"parameterName": "optimizer", "type": "CATEGORICAL", "categoricalValues": ["adam", "sgd"],
         "minValue": 0, "scaleType": "UNIT_LINEAR_SCALE"},
        {"parameterName": "width", "type": "DISCRETE", "discreteValues": list(range(1001))}]}
    found = fields(check(base(hyperparameters=hp)))
    categorical = "trainingInput.hyperparameters.params[0]"
    assert "must be unset for the CATEGORICAL parameter 'optimizer'" in found[f"{categorical}.minValue"]
    assert "must be unset" in found["trainingInput.hyperparameters.params[0].scaleType"]
    assert "at most 1000" in found["trainingInput.hyperparameters.params[1].discreteValues"]
    assert "trainingInput.hyperparameters.params[0].maxValue" not in found


def test_the_default_policy_refuses_none_of_googles_published_sample_shapes():
    # The shape of cloudml-samples tensorflow/standard/legacy/criteo_tft/config-large.yaml: 1 + 60 + 29 replicas.
    large = check(yaml.safe_dump({"trainingInput": {
        "scaleTier": "CUSTOM", "masterType": "large_model", "workerType": "complex_model_m",
        "parameterServerType": "large_model", "workerCount": 60, "parameterServerCount": 29,
        "pythonModule": "trainer.task", "runtimeVersion": "1.15"}}))
    assert large.valid, large.violations
    capped = Policy.from_yaml("max_replicas: 16\n")  # a deployer's own cap still applies
    assert "at most 16" in fields(check(yaml.safe_dump({"trainingInput": {
        "scaleTier": "CUSTOM", "masterType": "large_model", "workerType": "complex_model_m", "workerCount": 60,
        "pythonModule": "trainer.task", "runtimeVersion": "1.15"}}), policy=capped))["trainingInput"]
