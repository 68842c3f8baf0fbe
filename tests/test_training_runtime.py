"""What runtimeVersion promised, what the local runtime gives, and why an install fails (issue 13
points 2, 5, 6; issue 14 point 4).

Trainers here are generated, small equivalents of real ones: the package of
GoogleCloudPlatform/ai-platform-samples `training/sklearn/structured/base` declares
`tensorflow==2.8.0`, `scikit-learn>=0.20.2`, `pandas==1.4.1`, `cloudml-hypertune`; pip must fail
on the first and the job must say so, in errorMessage and in the logs endpoint. Tests that install
from PyPI need the network, as `make runtime` does.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time

import pytest
from google.auth.credentials import AnonymousCredentials
from test_training_service import (  # noqa: F401  (fixtures are used by name)
    BUCKET,
    PARENT,
    PROJECT,
    PYPROJECT,
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
from submitter_local.training import runtimes

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

IMPORTS = r'''
"""Imports what the runtime images shipped, without declaring any of it."""
import json
import hypertune, joblib, numpy, pandas, scipy, sklearn, xgboost, yaml
print("VERSIONS " + json.dumps({"numpy": numpy.__version__, "pandas": pandas.__version__,
                                "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__}))
'''

USES_MATPLOTLIB = "import matplotlib\n"
USES_TENSORFLOW = "import tensorflow\n"
CODE_V1 = "print('model v1')\n"
CODE_V2 = "print('model v2: a code-only change')\n"

BROKEN_BACKEND = r'''
def get_requires_for_build_wheel(config_settings=None):
    raise RuntimeError("this source distribution does not build here")

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("never reached")
'''
BROKEN_DEP = "localtest-brokendep-41"


def broken_sdist(dest):
    """An sdist (no wheel anywhere) whose build fails, as an old pin's would on Python 3.11."""
    name = BROKEN_DEP.replace("-", "_")
    files = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {BROKEN_DEP}\nVersion: 1.0\n", "pyproject.toml": PYPROJECT,
             "inline_backend.py": BROKEN_BACKEND}
    path = dest / f"{name}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-1.0/{rel}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    server = storage_emulator.start("127.0.0.1", 0)
    patched = pytest.MonkeyPatch()
    patched.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).create_bucket(BUCKET)
    src = tmp_path_factory.mktemp("sdists")
    packages = [
        make_sdist(src / "sklearn_base", "trainer", {"task": IMPORTS},
                   requires=("tensorflow==2.8.0", "scikit-learn>=0.20.2", "pandas==1.4.1", "cloudml-hypertune")),
        make_sdist(src / "imports", "imports", {"task": IMPORTS}),
        make_sdist(src / "mpl", "mpl", {"task": USES_MATPLOTLIB}),
        make_sdist(src / "tf", "tfuser", {"task": USES_TENSORFLOW}),
        make_sdist(src / "v1", "model", {"task": CODE_V1}, requires=("tabulate", "six")),
        make_sdist(src / "v2", "model", {"task": CODE_V2}, requires=("tabulate", "six"), version="0.2"),
        make_sdist(src / "dep_a", "deps_a", {"task": CODE_V1}, requires=("joblib",)),
        make_sdist(src / "dep_b", "deps_b", {"task": CODE_V1}, requires=("six",)),
        make_sdist(src / "needs_broken", "needsbroken", {"task": CODE_V1}, requires=(f"{BROKEN_DEP}==1.0",)),
    ]
    for path in packages:
        bucket.blob(f"packages/{path.parent.name}/{path.name}").upload_from_filename(str(path))
    links = tmp_path_factory.mktemp("links")
    broken_sdist(links)
    yield f"gs://{BUCKET}/packages", links
    server.stop()
    patched.undo()


def body(job_id, gcs, folder, package, module, **ti):
    return job_body(job_id, gcs[0], module=module, package=f"{folder}/{package}", **ti)


def test_runtime_table_names_its_sources_and_every_runtime_version():
    t = runtimes.table()
    assert t["source"]["page"] == "https://cloud.google.com/ai-platform/training/docs/runtime-version-list"
    assert t["source"]["looked_up"] and t["source"]["status"]
    for v in [f"1.{m}" for m in range(16)] + [f"2.{m}" for m in range(1, 12)]:
        rv = runtimes.lookup(v)
        assert rv is not None and rv.tensorflow_shipped, v
        assert (rv.local_tensorflow is None) == v.startswith("1."), v  # no TensorFlow 1.x wheel for Python 3.11
    assert runtimes.lookup("1.13").libraries["scikit-learn"]["shipped"] == "0.20.2"
    assert all(lib["source"] for v in t["runtime_versions"].values() for lib in v.get("libraries", {}).values())
    # what the table says is installed is what local/runtime-requirements.txt pins
    pins = dict(line.split("==") for line in (RUNTIME_PYTHON.parents[3] / "local" / "runtime-requirements.txt")
                .read_text().splitlines() if "==" in line and not line.startswith("#"))
    assert {k: pins[k] for k in runtimes.local_libraries()} == runtimes.local_libraries()


def test_image_libraries_are_there_without_declaring_them(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=body("imports", gcs, "imports", "imports-0.1.tar.gz", "imports.task",
                                         runtimeVersion="1.9", pythonVersion="3.5")).execute()
    job, _ = wait_for(jobs, "imports", TERMINAL, timeout=120)
    assert job["state"] == "SUCCEEDED", job
    text = logs(svc, "imports")
    versions = json.loads(re.search(r"^VERSIONS (.*)$", text, re.M).group(1))
    local = runtimes.local_libraries()
    assert versions == {k: local[k] for k in versions}
    assert "runtime 1.9's image: TensorFlow 1.9.x" in text
    assert "No TensorFlow for runtime 1.9 here: TensorFlow 1.x has no wheel for Python 3.8 or later." in text


def test_sklearn_base_sample_fails_naming_its_unmeetable_pin(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=body("sklearn_base", gcs, "sklearn_base", "trainer-0.1.tar.gz", "trainer.task",
                                         runtimeVersion="1.15", pythonVersion="3.7")).execute()
    job, seen = wait_for(jobs, "sklearn_base", TERMINAL, timeout=300)
    assert job["state"] == "FAILED" and "RUNNING" not in seen
    first = job["errorMessage"].splitlines()[0]
    assert first.startswith("Installing packages failed: tensorflow==2.8.0 (required by trainer 0.1) cannot be "
                            "installed on the local runtime's Python 3.11: no release matching it has a wheel or "
                            "source distribution for Python 3.11 (releases available here: 2.12.0"), first
    assert first.endswith("; it has a wheel for Python 3.7, the job's pythonVersion. Also without a wheel for "
                          "Python 3.11: pandas==1.4.1."), first
    # the install stream is in the job's log, as served by the logs endpoint (`submitter logs`)
    text = logs(svc, "sklearn_base")
    assert "ERROR: No matching distribution found for tensorflow==2.8.0" in text
    assert "Installing the packages' requirements into a new environment" in text


def test_a_failed_source_build_names_the_package(make_service, gcs):
    links = gcs[1]
    svc = make_service(pip_args=("--find-links", str(links)))
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=body("broken_dep", gcs, "needs_broken", "needsbroken-0.1.tar.gz",
                                         "needsbroken.task")).execute()
    job, _ = wait_for(jobs, "broken_dep", TERMINAL, timeout=300)
    assert job["state"] == "FAILED"
    first = job["errorMessage"].splitlines()[0]
    assert first == (f"Installing packages failed: {BROKEN_DEP}==1.0 (required by needsbroken 0.1) has no wheel for "
                     "Python 3.11, so pip built its source distribution, and that failed: RuntimeError: this source "
                     "distribution does not build here."), first


def test_missing_image_library_and_tensorflow_say_what_to_do(make_service, gcs):
    svc = make_service()
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=body("mpl", gcs, "mpl", "mpl-0.1.tar.gz", "mpl.task")).execute()
    jobs.create(parent=PARENT, body=body("tfuser", gcs, "tf", "tfuser-0.1.tar.gz", "tfuser.task")).execute()
    mpl, _ = wait_for(jobs, "mpl", TERMINAL, timeout=120)
    assert mpl["errorMessage"].splitlines()[0] == (
        "ModuleNotFoundError: No module named 'matplotlib' (matplotlib was part of runtime 2.11's image but is not "
        "in the local runtime: declare it in your package's requirements (install_requires).)")
    tf, _ = wait_for(jobs, "tfuser", TERMINAL, timeout=120)
    assert tf["errorMessage"].splitlines()[0].startswith(
        "ModuleNotFoundError: No module named 'tensorflow' (TensorFlow was part of runtime 2.11's image; locally it "
        "is opt-in: start the local training service with --runtime-tensorflow")
    assert "The runtime's TensorFlow is not installed (opt-in" in logs(svc, "tfuser")


def test_a_code_only_change_reuses_the_environment(make_service, gcs, capsys):
    svc = make_service()
    jobs = jobs_api(svc)
    timings = {}
    for job_id, folder, package in (("model_v1", "v1", "model-0.1.tar.gz"), ("model_v2", "v2", "model-0.2.tar.gz")):
        before = svc.stats()
        t0 = time.monotonic()
        jobs.create(parent=PARENT, body=body(job_id, gcs, folder, package, "model.task")).execute()
        job, _ = wait_for(jobs, job_id, TERMINAL, timeout=300)
        timings[job_id] = time.monotonic() - t0
        assert job["state"] == "SUCCEEDED", job
        after = svc.stats()
        timings[job_id + " builds"] = after["env_builds"] - before["env_builds"]
    assert "model v2: a code-only change" in logs(svc, "model_v2")
    assert timings["model_v2 builds"] == 0, "the dependency set did not change: no new environment"
    assert "Reusing cached environment" in logs(svc, "model_v2")
    assert "into a new environment" not in logs(svc, "model_v2")
    with capsys.disabled():
        print(f"\n[measured] create->SUCCEEDED: first {timings['model_v1']:.1f}s "
              f"({timings['model_v1 builds']} env built), code-only change {timings['model_v2']:.1f}s")


def test_cache_cap_evicts_the_least_recently_used_environment(make_service, gcs, tmp_path):
    svc = make_service(envs_dir=tmp_path / "envs", envs_max_bytes=1)  # every new layer is over the cap
    jobs = jobs_api(svc)
    jobs.create(parent=PARENT, body=body("deps_a", gcs, "dep_a", "deps_a-0.1.tar.gz", "deps_a.task")).execute()
    assert wait_for(jobs, "deps_a", TERMINAL, timeout=120)[0]["state"] == "SUCCEEDED"
    layers_a = {p.name for p in (tmp_path / "envs").iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert len(layers_a) == 1
    jobs.create(parent=PARENT, body=body("deps_b", gcs, "dep_b", "deps_b-0.1.tar.gz", "deps_b.task")).execute()
    assert wait_for(jobs, "deps_b", TERMINAL, timeout=120)[0]["state"] == "SUCCEEDED"
    layers_b = {p.name for p in (tmp_path / "envs").iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert len(layers_b) == 1 and layers_b != layers_a, "the older, unused environment was evicted"
    assert svc.stats()["env_evictions"] == 1
    # the evicted set is simply rebuilt when needed again
    jobs.create(parent=PARENT, body=body("deps_a2", gcs, "dep_a", "deps_a-0.1.tar.gz", "deps_a.task")).execute()
    assert wait_for(jobs, "deps_a2", TERMINAL, timeout=120)[0]["state"] == "SUCCEEDED"
