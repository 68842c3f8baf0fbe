"""Issue 12, point 2: every flag of `gcloud ai-platform jobs submit training` builds the same Job in `submitter`.

Each row of TABLE is one command line. The real gcloud runs it (`jobs submit training JOB --async ...`) with an
isolated configuration (CLOUDSDK_CONFIG=<tmp>, every other CLOUDSDK_* variable removed) whose ml endpoint is
`Recorder`, a tiny HTTP server here that records the POSTed Job and answers it back; its storage endpoint is the
storage emulator (staging uploads of --packages/--package-path) and its logging endpoint the recorder again
(`--stream-logs` polls logs, then jobs.get, which answers SUCCEEDED with an endTime). The same flags go to
`submitter validate --json --job-id JOB`, and the completed Job it prints is compared with gcloud's after these
normalisations, each of a difference that is legitimate:

1. int64 fields (`count`, `workerCount`, `parameterServerCount`) travel as JSON strings in gcloud's (apitools')
   encoding; a YAML config and the submitter keep numbers. Compared as numbers.
2. What the submitter's completion adds is dropped from its Job only where gcloud's has no such field, after
   asserting it is exactly the deployment default (`DEFAULTS`): the `submitter: drop` label, the default jobDir in
   the outputs bucket, runtimeVersion/pythonVersion defaults (not for containers), scaleTier BASIC and the policy's
   scheduling.maxRunningTime. gcloud would leave these to the service.
3. `--enable-web-access` absent: gcloud writes `enableWebAccess: false` over the file's value (a data loss); that
   field is dropped from gcloud's Job and the submitter's must hold the file's value.
4. A sdist built from `--package-path` differs in its bytes (tar timestamps), so the sha256 segment of the staging
   URI differs; packageUris are compared with that segment masked (bucket, job and file name must match).
5. Local packages without `--staging-bucket` ride in the drop folder in the submitter (gcloud would stage them
   under `--job-dir`); no row needs this: every local package row gives `--staging-bucket`.

Where gcloud loses data the submitter keeps it (README, "The CLI"); the last tests assert both behaviours:
`--labels` merges instead of replacing, an empty `--` keeps the file's args, a config-only packageUris is kept
(gcloud refuses the job: "Non-custom jobs must have packages"), `enableWebAccess: true` in the file survives.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from submitter_cli import main as cli
from submitter_local import storage_emulator

pytestmark = pytest.mark.stack

GCLOUD = shutil.which("gcloud")
PROJECT = "demo-project"  # the local defaults' project: gcloud's core/project here, the default of --kms-project
STAGING = "staging-bucket"
IMAGE = "gcr.io/demo-project/estimator-hypertune:latest"
INT64 = {"count", "workerCount", "parameterServerCount", "evaluatorCount"}
# What `submitter validate` adds under the local defaults (Settings.offline, Policy()), by field path.
DEFAULTS = {"labels.submitter": "drop", "trainingInput.scaleTier": "BASIC", "trainingInput.runtimeVersion": "2.11",
            "trainingInput.pythonVersion": "3.7", "trainingInput.scheduling": {"maxRunningTime": "172800s"}}
DEFAULT_JOB_DIR = re.compile(r"gs://drop-outputs/incoming/[^/]+/(?P<job>\w+)")


class Recorder:
    """The ml v1 jobs API as far as `jobs submit training` needs it: records each created Job."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.startswith("/v2/entries:list"):  # Cloud Logging, polled by --stream-logs
                    self._answer(200, {})
                    return
                recorder.jobs[body["jobId"]] = body
                self._answer(200, {**body, "state": "QUEUED"})

            def do_GET(self) -> None:  # noqa: N802
                job_id = self.path.split("?")[0].rsplit("/", 1)[-1]
                if job_id in recorder.jobs:
                    # gcloud's --stream-logs stops once the job has an endTime
                    self._answer(200, {**recorder.jobs[job_id], "state": "SUCCEEDED",
                                       "endTime": "2024-06-10T12:00:00Z"})
                else:
                    self._answer(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gcloud(tmp_path_factory):
    """`gcloud(*args) -> CompletedProcess` against the recorder and the storage emulator; yields (run, recorder)."""
    assert GCLOUD is not None, "the Cloud SDK (gcloud) is required for these tests"
    recorder = Recorder()
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    storage.Client(project=PROJECT, credentials=AnonymousCredentials()).create_bucket(STAGING)
    config_dir = tmp_path_factory.mktemp("gcloud-config")
    keep = {"CLOUDSDK_PYTHON", "CLOUDSDK_PYTHON_SITEPACKAGES"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_") or k in keep}
    env["CLOUDSDK_CONFIG"] = str(config_dir)

    def run(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([GCLOUD, *args], env=env, capture_output=True, text=True, timeout=180, cwd=cwd)
        if check and done.returncode != 0:
            raise AssertionError(f"gcloud {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    for prop, value in (("api_endpoint_overrides/ml", f"{recorder.url}/"),
                        ("api_endpoint_overrides/logging", f"{recorder.url}/"),
                        ("api_endpoint_overrides/storage", f"{server.url}/storage/v1/"),
                        ("auth/disable_credentials", "true"), ("project", PROJECT),
                        ("ml_engine/polling_interval", "1"),
                        ("component_manager/disable_update_check", "true"),
                        ("core/disable_usage_reporting", "true")):
        run("config", "set", prop, value)
    yield run, recorder
    recorder.stop()
    server.stop()
    patched.undo()


@pytest.fixture(autouse=True)
def no_deployment_env(monkeypatch):
    for key in [k for k in os.environ if k.startswith("SUBMITTER_")]:
        monkeypatch.delenv(key)


def gcloud_job(gcloud, job_id: str, argv: list[str], cwd: Path) -> dict[str, Any]:
    run, recorder = gcloud
    run("ai-platform", "jobs", "submit", "training", job_id, *argv, cwd=cwd)
    return recorder.jobs[job_id]


def submitter_job(job_id: str, argv: list[str], cwd: Path) -> dict[str, Any]:
    old = Path.cwd()
    os.chdir(cwd)  # relative paths on the command line resolve as they do for gcloud
    try:
        res = CliRunner().invoke(cli, ["validate", "--json", "--job-id", job_id, *argv])
    finally:
        os.chdir(old)
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.output)


def _numbers(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if key in INT64 and isinstance(value, str) and value.isdigit():
        return int(value)  # normalisation 1
    return value


def _mask_digest(uris: list[str]) -> list[str]:
    return [re.sub(r"/[0-9a-f]{64}/", "/<sha256>/", u) for u in uris]  # normalisation 4


def normalise(ours: dict[str, Any], theirs: dict[str, Any], argv: list[str], config: dict[str, Any] | None,
              built: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ours, gcloud's) with the documented normalisations applied."""
    ours, theirs = _numbers(copy.deepcopy(ours)), _numbers(copy.deepcopy(theirs))
    ti, their_ti = ours["trainingInput"], theirs["trainingInput"]
    for path, default in DEFAULTS.items():  # normalisation 2
        section, _, field = path.partition(".")
        mine, gcloud_side = ours.get(section, {}), theirs.get(section, {})
        if field in mine and field not in gcloud_side:
            assert mine[field] == default, f"{path} = {mine[field]!r} is not the default {default!r}"
            del mine[field]
    if "jobDir" in ti and "jobDir" not in their_ti:
        match = DEFAULT_JOB_DIR.fullmatch(ti["jobDir"])
        assert match and match.group("job") == ours["jobId"], ti["jobDir"]
        del ti["jobDir"]
    if not ours.get("labels") and "labels" not in theirs:
        ours.pop("labels", None)
    if "--enable-web-access" not in argv:  # normalisation 3
        assert their_ti.pop("enableWebAccess") is False
        file_value = ((config or {}).get("trainingInput") or {}).get("enableWebAccess")
        assert ti.pop("enableWebAccess", None) == file_value
    if built:
        ti["packageUris"], their_ti["packageUris"] = _mask_digest(ti["packageUris"]), \
            _mask_digest(their_ti["packageUris"])
    return ours, theirs


def write_package_tree(root: Path, with_setup: bool) -> Path:
    """A package folder `trainer/` (and, with_setup, the parent's setup.py naming it `trainer_pkg`)."""
    (root / "trainer").mkdir(parents=True)
    (root / "trainer" / "__init__.py").write_text("")
    (root / "trainer" / "task.py").write_text("print('hello')\n")
    if with_setup:
        (root / "setup.py").write_text("from setuptools import setup\nsetup(name='trainer_pkg', version='1.2', "
                                       "packages=['trainer'])\n")
    return root / "trainer"


CONFIG = {"jobId": "ignored_by_both", "trainingInput": {
    "scaleTier": "CUSTOM", "masterType": "n1-standard-8", "region": "europe-west4", "pythonModule": "trainer.task",
    "masterConfig": {"acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 1}},
    "hyperparameters": {"goal": "MAXIMIZE", "hyperparameterMetricTag": "accuracy", "maxTrials": 4,
                        "params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": 0.01, "maxValue": 0.1}]},
    "args": ["--epochs", "3"], "pythonVersion": "3.7"}}
HYPERTUNE_CONFIG = {"trainingInput": {"scaleTier": "CUSTOM", "hyperparameters": {
    "goal": "MAXIMIZE", "enableTrialEarlyStopping": True, "hyperparameterMetricTag": "my_top_5_accuracy",
    "maxTrials": 32, "maxParallelTrials": 2, "params": [
        {"parameterName": "base_learning_rate", "type": "DOUBLE", "scaleType": "UNIT_REVERSE_LOG_SCALE",
         "minValue": 0.02, "maxValue": 0.5},
        {"parameterName": "momentum", "type": "DOUBLE", "scaleType": "UNIT_LINEAR_SCALE", "minValue": 0.1,
         "maxValue": 1.0},
        {"parameterName": "weight_decay", "type": "DOUBLE", "scaleType": "UNIT_LINEAR_SCALE", "minValue": 0.00002,
         "maxValue": 0.0005}]}}}
PKG = "gs://drop-packages/trainer-0.1.tar.gz"

# (id, config or None, flags and user args; "{pkg}" / "{pkg_path}" / "{local}" are filled in per row)
TABLE: list[tuple[str, dict[str, Any] | None, list[str]]] = [
    ("runtime_flags", None, ["--region", "us-central1", "--runtime-version", "2.11", "--python-version", "3.7",
                             "--module-name", "trainer.task", "--packages", PKG, "--job-dir", "gs://drop-outputs/x/",
                             "--scale-tier", "basic-gpu", "--labels", "team=vision,env=dev", "--async",
                             "--service-account", "trainer@demo-project.iam.gserviceaccount.com",
                             "--", "--epochs", "2"]),
    ("custom_cluster", None, ["--region", "us-central1", "--runtime-version", "2.11", "--module-name", "trainer.task",
                              "--packages", PKG + ",gs://drop-packages/extra-1.0.tar.gz", "--scale-tier", "custom",
                              "--master-machine-type", "n1-highmem-8",
                              "--master-accelerator", "count=1,type=nvidia-tesla-v100",
                              "--worker-machine-type", "n1-highmem-8", "--worker-count", "3",
                              "--worker-accelerator", "type=NVIDIA_TESLA_V100,count=2",
                              "--parameter-server-machine-type", "n1-standard-16", "--parameter-server-count", "2",
                              "--parameter-server-accelerator", "type=nvidia-tesla-t4,count=1"]),
    ("containers", None, ["--region", "us-central1", "--scale-tier", "CUSTOM", "--master-machine-type", "n1-standard-8",
                          "--master-image-uri", IMAGE, "--worker-machine-type", "n1-standard-8", "--worker-count", "2",
                          "--worker-image-uri", "gcr.io/demo-project/worker:2",
                          "--parameter-server-machine-type", "n1-standard-4", "--parameter-server-count", "1",
                          "--parameter-server-image-uri", "us-central1-docker.pkg.dev/demo-project/r/ps:1",
                          "--use-chief-in-tf-config", "true", "--enable-web-access",
                          "--kms-key", "key1", "--kms-keyring", "ring1", "--kms-location", "us-central1",
                          "--kms-project", "other-project", "--", "--steps", "100"]),
    ("config_precedence", CONFIG, ["--config", "{config}", "--region", "us-central1", "--packages", PKG,
                                   "--master-machine-type", "n1-highmem-16", "--master-image-uri", IMAGE,
                                   "--use-chief-in-tf-config", "no",
                                   "--kms-key", "projects/p1/locations/us-central1/keyRings/r/cryptoKeys/k",
                                   "--scale-tier", "custom", "--python-version", "3.5", "--", "--epochs", "9"]),
    ("kms_default_project", None, ["--region", "us-central1", "--master-image-uri", IMAGE, "--kms-key", "k",
                                   "--kms-keyring", "r", "--kms-location", "europe-west4", "--stream-logs"]),
    ("hypertune_sample", HYPERTUNE_CONFIG, [
        "--scale-tier", "CUSTOM", "--master-machine-type", "n1-highmem-8",
        "--master-accelerator", "count=1,type=nvidia-tesla-v100", "--region", "us-central1",
        "--master-image-uri", IMAGE, "--config", "{config}", "--",
        "--data_dir=gs://cloud-tpu-test-datasets/fake_imagenet", "--model_dir=gs://my-bucket/resnet_hypertune",
        "--resnet_depth=50", "--train_steps=1024"]),
    ("package_path_generated_setup", None, ["--region", "us-central1", "--runtime-version", "2.11",
                                            "--module-name", "trainer.task", "--package-path", "{pkg_path}",
                                            "--staging-bucket", f"gs://{STAGING}"]),
    ("package_path_parent_setup_and_local_packages", None, [
        "--region", "us-central1", "--runtime-version", "2.11", "--module-name", "trainer.task",
        "--package-path", "{pkg_path_setup}", "--packages", f"{{local}},{PKG}", "--staging-bucket", f"gs://{STAGING}/"]),
]


@pytest.fixture
def workdir(tmp_path):
    """Files the rows name: a config, package trees, a local sdist."""
    from conftest import BASELINE_TARBALL

    (tmp_path / "dep-0.1.tar.gz").write_bytes(BASELINE_TARBALL)
    return tmp_path


def fill(argv: list[str], workdir: Path, config: dict[str, Any] | None, row: str) -> list[str]:
    import yaml

    values = {"config": str(workdir / "config.yaml"), "local": str(workdir / "dep-0.1.tar.gz")}
    if config is not None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    if any("{pkg_path}" in a for a in argv):
        values["pkg_path"] = str(write_package_tree(workdir / f"{row}-src", with_setup=False))
    if any("{pkg_path_setup}" in a for a in argv):
        values["pkg_path_setup"] = str(write_package_tree(workdir / f"{row}-src", with_setup=True))
    return [a.format(**values) if "{" in a and not a.startswith("--") else a for a in argv]


@pytest.mark.parametrize("row, config, argv", TABLE, ids=[r[0] for r in TABLE])
def test_each_gcloud_flag_builds_the_same_job(gcloud, workdir, row, config, argv):
    argv = fill(argv, workdir, config, row)
    job_id = f"eq_{row}"
    theirs = gcloud_job(gcloud, job_id, argv, workdir)
    out = submitter_job(job_id, argv, workdir)
    ours, theirs = normalise(out["job"], theirs, argv, config, built="--package-path" in argv)
    assert ours == theirs, f"violations: {out['violations']}"


def test_the_table_covers_every_flag_of_gcloud_submit_training(gcloud):
    """Every flag `gcloud ai-platform jobs submit training --help` lists appears in some row (and `--`)."""
    run, _ = gcloud
    usage = run("ai-platform", "jobs", "submit", "training", "--help").stdout
    synopsis = usage.split("DESCRIPTION")[0]
    listed = set(re.findall(r"--[a-z][a-z-]+", synopsis))
    assert len(listed) >= 30, sorted(listed)
    used = {a for _, _, argv in TABLE for a in argv if a.startswith("--") and a != "--"}
    used |= {"--config"}  # gcloud-wide flags are not submit-training's own
    assert listed - used == set(), f"flags with no row: {sorted(listed - used)}"
    assert any("--" in argv for _, _, argv in TABLE)


# -- where gcloud loses data, the submitter keeps it ----------------------------------------------------------
LABELLED = {"labels": {"team": "vision", "env": "dev"}, "trainingInput": {
    "pythonModule": "trainer.task", "runtimeVersion": "2.11", "args": ["--epochs", "3"], "enableWebAccess": True,
    "packageUris": [PKG]}}


def test_labels_merge_where_gcloud_replaces_them(gcloud, workdir):
    argv = fill(["--config", "{config}", "--region", "us-central1", "--packages", PKG, "--labels", "env=prod"],
                workdir, LABELLED, "labels")
    theirs = gcloud_job(gcloud, "loss_labels", argv, workdir)
    ours = submitter_job("loss_labels", argv, workdir)["job"]
    assert theirs["labels"] == {"env": "prod"}                                   # gcloud: the file's team is lost
    assert ours["labels"] == {"team": "vision", "env": "prod", "submitter": "drop"}


def test_an_empty_double_dash_keeps_the_file_args(gcloud, workdir):
    argv = fill(["--config", "{config}", "--region", "us-central1", "--packages", PKG, "--"], workdir, LABELLED,
                "dash")
    theirs = gcloud_job(gcloud, "loss_args", argv, workdir)
    out = submitter_job("loss_args", argv, workdir)
    assert "args" not in theirs["trainingInput"]                                 # gcloud: wiped
    assert out["job"]["trainingInput"]["args"] == ["--epochs", "3"]


def test_config_only_package_uris_are_kept_where_gcloud_refuses_the_job(gcloud, workdir):
    argv = fill(["--config", "{config}", "--region", "us-central1"], workdir, LABELLED, "pkgs")
    run, _ = gcloud
    refused = run("ai-platform", "jobs", "submit", "training", "loss_pkgs", *argv, check=False, cwd=workdir)
    assert refused.returncode != 0 and "Non-custom jobs must have packages" in refused.stderr
    out = submitter_job("loss_pkgs", argv, workdir)
    assert out["job"]["trainingInput"]["packageUris"] == [PKG]


def test_enable_web_access_in_the_file_survives_when_the_flag_is_absent(gcloud, workdir):
    argv = fill(["--config", "{config}", "--region", "us-central1", "--packages", PKG], workdir, LABELLED, "web")
    theirs = gcloud_job(gcloud, "loss_web", argv, workdir)
    out = submitter_job("loss_web", argv, workdir)
    assert theirs["trainingInput"]["enableWebAccess"] is False                   # gcloud: overwritten
    assert out["job"]["trainingInput"]["enableWebAccess"] is True
    assert any("enableWebAccess" in v["field"] for v in out["violations"])      # and the default policy refuses it
