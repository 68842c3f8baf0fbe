"""Issue 13 on the real local stack: a notebook-style trainer runs unmodified, submitted the way its notebook
submits it (`--package-path` of a folder with no setup.py, `--runtime-version 1.9 --python-version 3.5`),
both through a drop (`submitter submit`) and through the real gcloud.

The trainer is shaped like cloudml-samples' sklearn/notebooks/census_training/train.py (whose code is not
copied here): a module with no setup.py that downloads `adult.data` from the public `cloud-samples-data`
bucket with google-cloud-storage, trains a scikit-learn pipeline with pandas, and uploads a joblib model
to a bucket named in the code. Locally that bucket and synthetic census data with the same columns live in
the storage emulator, so the trainer needs no edit.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time

import pytest

from submitter_local.stack import REPO

from conftest import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]
GCLOUD = shutil.which("gcloud")
MODEL_BUCKET = "census-models"

TRAIN = f'''
import datetime

import joblib
import pandas as pd
from google.cloud import storage
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.compose import ColumnTransformer

BUCKET_NAME = "{MODEL_BUCKET}"

storage.Client().bucket("cloud-samples-data").blob("ai-platform/sklearn/census_data/adult.data") \\
    .download_to_filename("adult.data")
COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income-level")
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
               "native-country"]
data = pd.read_csv("./adult.data", header=None, names=COLUMNS)
labels = data.pop("income-level") == " >50K"
model = Pipeline([("encode", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
                                               remainder="passthrough")),
                  ("forest", RandomForestClassifier(n_estimators=20))])
model.fit(data, labels)
joblib.dump(model, "model.joblib")
name = datetime.datetime.now().strftime("census_%Y%m%d_%H%M%S") + "/model.joblib"
storage.Client().bucket(BUCKET_NAME).blob(name).upload_from_filename("model.joblib")
print("model written to gs://" + BUCKET_NAME + "/" + name)
'''


def adult_data(rows: int = 300) -> str:
    """Synthetic census rows with adult.data's 15 columns and its ', ' separators."""
    rng = random.Random(7)
    out = []
    for _ in range(rows):
        rich = rng.random() < 0.3
        out.append(", ".join(str(v) for v in (
            rng.randint(18, 80), rng.choice(["Private", "State-gov", "Self-emp-inc"]), rng.randint(20000, 400000),
            rng.choice(["Bachelors", "HS-grad", "Masters"]), rng.randint(5, 16),
            rng.choice(["Never-married", "Married-civ-spouse"]), rng.choice(["Adm-clerical", "Exec-managerial"]),
            rng.choice(["Husband", "Not-in-family"]), rng.choice(["White", "Black"]), rng.choice(["Male", "Female"]),
            rng.choice([0, 2174, 15024]) if rich else 0, 0, rng.randint(20, 60), "United-States",
            ">50K" if rich else "<=50K")))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=0.5, reconcile_interval_s=0.5) as s:
        from google.cloud import storage

        s_, env = s
        os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
        client = storage.Client(project=env["PROJECT"])
        client.create_bucket("cloud-samples-data").blob("ai-platform/sklearn/census_data/adult.data") \
            .upload_from_string(adult_data())
        client.create_bucket(MODEL_BUCKET)
        yield s


@pytest.fixture(scope="module")
def package_path(tmp_path_factory):
    """`./census_training`, as the notebook writes it: train.py and an empty __init__.py, no setup.py."""
    root = tmp_path_factory.mktemp("notebook")
    (root / "census_training").mkdir()
    (root / "census_training" / "__init__.py").write_text("")
    (root / "census_training" / "train.py").write_text(TRAIN)
    return root / "census_training"


NOTEBOOK_FLAGS = ("--module-name", "census_training.train", "--region", "us-central1", "--runtime-version", "1.9",
                  "--python-version", "3.5", "--scale-tier", "BASIC")


def wait_final(env: dict[str, str], job_id: str) -> dict:
    import requests

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs/{job_id}",
                           timeout=10).json()
        if job.get("state") in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return job
        time.sleep(1)
    raise AssertionError(f"{job_id} did not finish")


def models(env: dict[str, str]) -> list[str]:
    from google.cloud import storage

    return [b.name for b in storage.Client(project=env["PROJECT"]).list_blobs(MODEL_BUCKET)]


def test_the_notebook_trainer_runs_unmodified_through_a_drop(stack, package_path):
    s, env = stack
    before = len(models(env))
    done = subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), "submit", "--package-path", str(package_path),
                           "--folder", "census-drop", "--job-dir", "gs://drop-outputs/census", *NOTEBOOK_FLAGS,
                           "--json"], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    job_id = json.loads(done.stdout.strip().splitlines()[-1])["jobId"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), "status", job_id],
                                env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        if status.returncode == 0:
            break
        time.sleep(1)  # the function creates the job a moment after the drop
    job = wait_final(env, job_id)
    assert job["state"] == "SUCCEEDED", job.get("errorMessage")
    assert len(models(env)) == before + 1


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_the_notebook_trainer_runs_unmodified_through_the_real_gcloud(stack, package_path, tmp_path):
    s, env = stack
    before = len(models(env))
    config = tmp_path / "gcloud-config"
    keep = {"CLOUDSDK_PYTHON", "CLOUDSDK_PYTHON_SITEPACKAGES"}
    gcloud_env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_") or k in keep}
    gcloud_env["CLOUDSDK_CONFIG"] = str(config)
    for prop, value in (("api_endpoint_overrides/ml", env["TRAINING_API_ENDPOINT"] + "/"),
                        ("api_endpoint_overrides/storage", env["STORAGE_EMULATOR_HOST"] + "/storage/v1/"),
                        ("auth/disable_credentials", "true"), ("project", env["PROJECT"]),
                        ("component_manager/disable_update_check", "true")):
        subprocess.run([GCLOUD, "config", "set", prop, value], env=gcloud_env, check=True, capture_output=True)
    job_id = "census_training_gcloud"
    done = subprocess.run([GCLOUD, "ai-platform", "jobs", "submit", "training", job_id, "--job-dir",
                           "gs://drop-outputs/scikit_learn_job_dir", "--package-path", str(package_path),
                           "--staging-bucket", "gs://drop-outputs", *NOTEBOOK_FLAGS], env=gcloud_env,
                          capture_output=True, text=True, timeout=300, cwd=package_path.parent)
    assert done.returncode == 0, done.stderr
    job = wait_final(env, job_id)
    assert job["state"] == "SUCCEEDED", job.get("errorMessage")
    assert len(models(env)) == before + 1
