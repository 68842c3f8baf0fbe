"""The sample trainer (samples/trainer): its sdist, a local run, --fail and a gs:// job dir.

pytest runs in the project venv, which has no scikit-learn, so the trainer
itself runs in the runtime venv (.local/runtime, built by ``make runtime``).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack  # runs the trainer and builds its sdist: processes

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "trainer"
RUNTIME_PY = ROOT / ".local" / "runtime" / "bin" / "python"
RUNTIME_STAMP = ROOT / ".local" / "runtime" / ".installed"


@pytest.fixture(scope="session")
def runtime_python():
    """The runtime venv's python, building it with ``make runtime`` if needed."""
    if not (RUNTIME_PY.exists() and RUNTIME_STAMP.exists()):
        try:
            proc = subprocess.run(
                ["make", "runtime"], cwd=ROOT, capture_output=True, text=True, timeout=900
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"runtime venv missing and `make runtime` could not run: {exc}")
        if proc.returncode != 0 or not RUNTIME_PY.exists():
            pytest.fail("runtime venv (.local/runtime) missing and `make runtime` failed:\n" + proc.stderr[-2000:])
    return str(RUNTIME_PY)


def run_trainer(python, *args, env=None, timeout=180):
    """Run ``python -m trainer.task ARGS`` from the sample source tree (its tuning metric goes to a file of the
    test's own unless `env` names one: the trainer reports it on every run)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("CLOUD_ML_HP_METRIC_FILE", f"/tmp/sample-trainer-{uuid.uuid4().hex}/output.metrics")
    full_env["PYTHONPATH"] = str(SAMPLE)
    full_env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the sample tree clean
    return subprocess.run(
        [python, "-m", "trainer.task", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def test_sdist_has_one_top_level_dir(tmp_path):
    # Build from a copy so setuptools' egg-info never lands in the repo.
    src = tmp_path / "src"
    shutil.copytree(SAMPLE, src, ignore=shutil.ignore_patterns(
        "*.egg-info", "__pycache__", "build", "dist"))
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", str(src), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    archive = out / "trainer-0.1.0.tar.gz"
    assert archive.exists(), sorted(p.name for p in out.iterdir())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert {n.split("/", 1)[0] for n in names} == {"trainer-0.1.0"}
    for member in ("trainer/__init__.py", "trainer/task.py", "trainer/io.py", "pyproject.toml"):
        assert f"trainer-0.1.0/{member}" in names, names


def test_import_is_cheap():
    """Importing trainer.task must not pull in scikit-learn (works without it)."""
    code = "import sys, trainer.task; assert 'sklearn' not in sys.modules"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(SAMPLE)),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_trains_to_local_job_dir(runtime_python, tmp_path):
    job_dir = tmp_path / "job"
    proc = run_trainer(runtime_python, "--job-dir", str(job_dir),
                       "--n-estimators", "50", "--max-depth", "8", "--seed", "7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accuracy=" in proc.stdout

    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.8
    assert 0.0 <= metrics["f1_macro"] <= 1.0
    assert metrics["n_train"] > 0 and metrics["n_test"] > 0
    assert metrics["dataset"] == "wine"
    assert metrics["hyperparameters"] == {
        "n_estimators": 50, "max_depth": 8, "criterion": "gini", "test_size": 0.25, "seed": 7}

    check = subprocess.run(
        [runtime_python, "-c",
         "import joblib, sys; m = joblib.load(sys.argv[1]); print(type(m).__name__, m.n_estimators)",
         str(job_dir / "model.joblib")],
        capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["RandomForestClassifier", "50"]


def test_as_a_tuning_trial_it_takes_its_values_reports_accuracy_with_hypertune_and_writes_under_its_trial(
        runtime_python, tmp_path):
    job_dir, metric_file = tmp_path / "job", tmp_path / "hypertune" / "output.metrics"
    tf_config = {"cluster": {"master": ["127.0.0.1:1"]}, "task": {"type": "master", "index": 0, "trial": "3"},
                 "job": {}, "environment": "cloud"}
    proc = run_trainer(runtime_python, "--n-estimators=20", "--max-depth=4", "--criterion=entropy", "--job-dir",
                       str(job_dir), env={"TF_CONFIG": json.dumps(tf_config), "CLOUD_ML_TRIAL_ID": "3",
                                          "CLOUD_ML_HP_METRIC_FILE": str(metric_file)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((job_dir / "3" / "metrics.json").read_text())
    assert metrics["trial"] == "3" and metrics["hyperparameters"]["criterion"] == "entropy"
    [line] = [json.loads(x) for x in metric_file.read_text().splitlines()]
    assert line["trial"] == "3" and float(line["accuracy"]) == metrics["accuracy"]
    assert (job_dir / "3" / "model.joblib").exists() and not (job_dir / "model.joblib").exists()


def test_fail_flag_exits_1(runtime_python, tmp_path):
    job_dir = tmp_path / "job"
    proc = run_trainer(runtime_python, "--job-dir", str(job_dir), "--fail")
    assert proc.returncode == 1
    assert "--fail given, failing on purpose" in proc.stderr
    assert not (job_dir / "metrics.json").exists()


def test_job_dir_is_required(runtime_python):
    proc = run_trainer(runtime_python, env={"AIP_MODEL_DIR": ""})
    assert proc.returncode == 2
    assert "--job-dir" in proc.stderr


def test_job_dir_defaults_to_vertex_model_dir_and_only_the_primary_writes(runtime_python, tmp_path):
    model_dir = tmp_path / "model"
    worker = {"AIP_MODEL_DIR": str(model_dir), "CLUSTER_SPEC": json.dumps(
        {"cluster": {}, "task": {"type": "workerpool1", "index": 0}})}
    proc = run_trainer(runtime_python, "--n-estimators", "5", env=worker)
    assert proc.returncode == 0, proc.stderr
    assert "not the primary replica" in proc.stdout and not model_dir.exists()
    primary = {**worker, "CLUSTER_SPEC": json.dumps({"cluster": {}, "task": {"type": "workerpool0", "index": 0}})}
    proc = run_trainer(runtime_python, "--n-estimators", "5", env=primary)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((model_dir / "metrics.json").read_text())["hyperparameters"]["n_estimators"] == 5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs_emulator(monkeypatch):
    """An in-process gcp-storage-emulator; yields its ``STORAGE_EMULATOR_HOST``."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    host = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    try:
        yield host
    finally:
        server.stop()


def test_trains_to_gcs_job_dir(runtime_python, gcs_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="demo-project", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"trainer-test-{uuid.uuid4().hex[:8]}")

    job_dir = f"gs://{bucket.name}/jobs/run-1"
    proc = run_trainer(runtime_python, "--job-dir", job_dir, "--n-estimators", "30",
                       env={"STORAGE_EMULATOR_HOST": gcs_emulator,
                            "CLOUD_ML_PROJECT": "demo-project"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {job_dir}/metrics.json" in proc.stdout

    names = sorted(b.name for b in client.list_blobs(bucket.name))
    assert names == ["jobs/run-1/metrics.json", "jobs/run-1/model.joblib"]
    metrics = json.loads(bucket.blob("jobs/run-1/metrics.json").download_as_bytes())
    assert metrics["accuracy"] > 0.8
    assert metrics["hyperparameters"]["n_estimators"] == 30
    assert bucket.blob("jobs/run-1/model.joblib").download_as_bytes()[:1] == b"\x80"  # pickle


def _csv(seed, rows=60):
    from submitter_local.demo import sample_csv

    return sample_csv(seed, rows)


def test_trains_on_a_local_folder_of_csvs_and_skips_markers(runtime_python, tmp_path):
    data = tmp_path / "day-1"
    data.mkdir()
    for i in range(3):
        (data / f"part-{i}.csv").write_bytes(_csv(i))
    (data / "_SUCCESS").write_bytes(b"")
    (data / ".part-0.csv.crc").write_bytes(b"\x00garbage")
    (data / "sub").mkdir()
    (data / "sub" / "other.csv").write_bytes(b"not,read\n")
    proc = run_trainer(runtime_python, "--job-dir", str(tmp_path / "job"), "--data", str(data), "--n-estimators", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["dataset"] == "csv" and metrics["n_rows"] == 180 and metrics["accuracy"] > 0.7
    assert metrics["data_files"] == [str(data / f"part-{i}.csv") for i in range(3)]


def test_a_folder_without_csvs_fails_with_a_clear_message(runtime_python, tmp_path):
    proc = run_trainer(runtime_python, "--job-dir", str(tmp_path / "job"), "--data", str(tmp_path))
    assert proc.returncode != 0 and "no *.csv file directly in" in proc.stderr


def test_trains_on_a_gcs_folder_of_csvs(runtime_python, gcs_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="demo-project", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"trainer-data-{uuid.uuid4().hex[:8]}")
    for i in range(3):
        bucket.blob(f"incoming/day-1/part-{i}.csv").upload_from_string(_csv(i))
    bucket.blob("incoming/day-1/_SUCCESS").upload_from_string(b"")
    bucket.blob("incoming/day-2/part-0.csv").upload_from_string(_csv(9))  # another folder: not read
    proc = run_trainer(runtime_python, "--job-dir", f"gs://{bucket.name}/out", "--data",
                       f"gs://{bucket.name}/incoming/day-1/", "--n-estimators", "20",
                       env={"STORAGE_EMULATOR_HOST": gcs_emulator, "CLOUD_ML_PROJECT": "demo-project"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads(bucket.blob("out/metrics.json").download_as_bytes())
    assert metrics["data_files"] == [f"gs://{bucket.name}/incoming/day-1/part-{i}.csv" for i in range(3)]
    assert metrics["n_rows"] == 180
