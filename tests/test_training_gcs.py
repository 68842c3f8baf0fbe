"""`gs://` from every library a trainer uses (issue 13 point 3), on the local training service and
on the whole local stack.

The trainer `gsio.task` reads its input CSV and writes its "model" through google-cloud-storage,
gcsfs (pandas `gs://` paths), `gcloud storage`, gsutil and, when TensorFlow is there,
`tf.io.gfile`; it declares only gcsfs, as a real trainer would. `/gcs/<bucket>/` paths (Vertex's
FUSE mounts) are not provided locally: a trainer using one fails with a message that says so.

The TensorFlow variant installs TensorFlow (~2 GB, a few minutes the first time): it runs only
with LOCAL_TRAINING_TF_TESTS=1.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from google.auth.credentials import AnonymousCredentials
from test_training_service import (  # noqa: F401  (fixtures are used by name)
    BUCKET,
    PARENT,
    PROJECT,
    RUNTIME_PYTHON,
    TERMINAL,
    envs_dir,
    job_body,
    jobs_api,
    logs,
    make_sdist,
    make_service,
    wait_for,
)

from submitter_local import storage_emulator

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

GSIO = r'''
"""Reads --input and writes the model to --job-dir through every gs:// library it has."""
import argparse, importlib.util, io, json, os, subprocess, tempfile
p = argparse.ArgumentParser()
p.add_argument("--input", required=True); p.add_argument("--job-dir", required=True)
p.add_argument("--only", default="")
args = p.parse_args()
want = set(args.only.split(",")) - {""}
bucket, _, blob = args.input[len("gs://"):].partition("/")
out_bucket, _, out_prefix = args.job_dir[len("gs://"):].partition("/")
results = {}


def run(lib, fn):
    if want and lib not in want:
        return
    fn()
    results[lib] = "ok"
    print(f"IO {lib} ok", flush=True)


def with_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    client = storage.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials())
    data = client.bucket(bucket).blob(blob).download_as_text()
    client.bucket(out_bucket).blob(out_prefix + "/model-storage.txt").upload_from_string("rows=%d" % data.count("\n"))


def with_pandas():
    import pandas as pd
    df = pd.read_csv(args.input)
    df.describe().to_csv(args.job_dir + "/model-pandas.csv")


def with_gcloud():
    data = subprocess.run(["gcloud", "storage", "cat", args.input], check=True, capture_output=True, text=True).stdout
    local = os.path.join(tempfile.mkdtemp(), "model.txt")
    open(local, "w").write("rows=%d" % data.count("\n"))
    subprocess.run(["gcloud", "storage", "cp", local, args.job_dir + "/model-gcloud.txt"], check=True)


def with_gsutil():
    data = subprocess.run(["gsutil", "cat", args.input], check=True, capture_output=True, text=True).stdout
    local = os.path.join(tempfile.mkdtemp(), "model.txt")
    open(local, "w").write("rows=%d" % data.count("\n"))
    subprocess.run(["gsutil", "cp", local, args.job_dir + "/model-gsutil.txt"], check=True)


def with_tf():
    import tensorflow as tf
    with tf.io.gfile.GFile(args.input) as f:
        data = f.read()
    listed = tf.io.gfile.listdir(args.input.rsplit("/", 1)[0])
    assert tf.io.gfile.exists(args.input) and blob.rsplit("/", 1)[-1] in listed
    with tf.io.gfile.GFile(args.job_dir + "/model-tf.txt", "w") as f:
        f.write("rows=%d" % data.count("\n"))


def with_gcs_mount():
    open(f"/gcs/{bucket}/{blob}").read()


run("google-cloud-storage", with_client)
run("gcsfs", with_pandas)
run("gcloud", with_gcloud)
run("gsutil", with_gsutil)
if importlib.util.find_spec("tensorflow") is not None:
    run("tf.io.gfile", with_tf)
if "gcs-mount" in want:
    run("gcs-mount", with_gcs_mount)
print("RESULTS " + json.dumps(results))
'''

INPUT = "a,b\n1,2\n3,4\n5,6\n"
OUTPUTS = {"google-cloud-storage": "model-storage.txt", "gcsfs": "model-pandas.csv", "gcloud": "model-gcloud.txt",
           "gsutil": "model-gsutil.txt", "tf.io.gfile": "model-tf.txt"}


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    bucket = client.create_bucket(BUCKET)
    path = make_sdist(tmp_path_factory.mktemp("sdists"), "gsio", {"task": GSIO}, requires=("gcsfs",))
    bucket.blob(f"packages/{path.name}").upload_from_filename(str(path))
    bucket.blob("inputs/data.csv").upload_from_string(INPUT)
    yield f"gs://{BUCKET}/packages", bucket
    server.stop()
    patched.undo()


def gsio_body(job_id: str, gcs, *extra: str, **ti) -> dict:
    return job_body(job_id, gcs[0], module="gsio.task", package="gsio-0.1.tar.gz",
                    args=["--input", f"gs://{BUCKET}/inputs/data.csv", *extra], jobDir=f"gs://{BUCKET}/out/{job_id}",
                    **ti)


def check_outputs(bucket, prefix: str, libraries) -> None:
    for lib in libraries:
        text = bucket.blob(f"{prefix}/{OUTPUTS[lib]}").download_as_text()
        if lib == "gcsfs":
            assert text.startswith(",a,b") and "count,3.0,3.0" in text, text
        else:
            assert text == "rows=4", (lib, text)


def test_every_gs_library_reads_the_input_and_writes_the_model(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=gsio_body("gsio", gcs)).execute()
    job, _ = wait_for(jobs, "gsio", TERMINAL, timeout=300)
    assert job["state"] == "SUCCEEDED", job
    results = json.loads(re.search(r"^RESULTS (.*)$", logs(svc, "gsio"), re.M).group(1))
    libraries = ["google-cloud-storage", "gcsfs", "gcloud", "gsutil"]
    assert results == dict.fromkeys(libraries, "ok")
    check_outputs(gcs[1], "out/gsio", libraries)


def test_a_vertex_gcs_mount_path_fails_saying_why(make_service, gcs):
    jobs = jobs_api(make_service())
    jobs.create(parent=PARENT, body=gsio_body("gcs_mount", gcs, "--only", "gcs-mount")).execute()
    job, _ = wait_for(jobs, "gcs_mount", TERMINAL, timeout=300)
    assert job["state"] == "FAILED"
    first = job["errorMessage"].splitlines()[0]
    assert first.startswith("FileNotFoundError: [Errno 2] No such file or directory: '/gcs/drops/inputs/data.csv' "
                            "(Vertex AI mounts buckets at /gcs/<bucket>/ with Cloud Storage FUSE; the local training "
                            "service cannot"), first


@pytest.mark.skipif(os.environ.get("LOCAL_TRAINING_TF_TESTS") != "1",
                    reason="installs TensorFlow (~2 GB): set LOCAL_TRAINING_TF_TESTS=1")
def test_tf_io_gfile_on_the_runtime_tensorflow(make_service, gcs, tmp_path_factory):
    svc = make_service(runtime_tensorflow=True, envs_dir=RUNTIME_PYTHON.parents[2] / "tf-test-envs")
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=gsio_body("gsio_tf", gcs, "--only", "tf.io.gfile,google-cloud-storage")).execute()
    job, _ = wait_for(jobs, "gsio_tf", TERMINAL, timeout=1800)
    assert job["state"] == "SUCCEEDED", job
    results = json.loads(re.search(r"^RESULTS (.*)$", logs(svc, "gsio_tf"), re.M).group(1))
    assert results == {"google-cloud-storage": "ok", "tf.io.gfile": "ok"}
    check_outputs(gcs[1], "out/gsio_tf", ["tf.io.gfile", "google-cloud-storage"])
