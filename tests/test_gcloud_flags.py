"""Issue 12, point 2 in-process: parsing of gcloud's flags, their precedence over --config with notes,
`--package-path` as gcloud builds it, `--staging-bucket`'s layout and `submit --stream-logs`. The comparison
with the real gcloud is tests/test_gcloud_equivalence.py (stack)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from submitter.validation import Overrides, apply_overrides
from submitter_cli import main as cli
from submitter_cli.flags import kms_key_name, overrides_from, parse_accelerator, parse_scale_tier
from submitter_cli.packaging import build_package, staging_uris

from conftest import BASELINE_TARBALL, BASELINE_YAML


@pytest.fixture(autouse=True)
def no_deployment_env(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("SUBMITTER_")]:
        monkeypatch.delenv(key)


def test_scale_tiers_and_accelerators_parse_as_gcloud_spells_them():
    assert parse_scale_tier("custom") == parse_scale_tier("CUSTOM") == "CUSTOM"
    assert parse_scale_tier("standard-1") == parse_scale_tier("STANDARD_1") == "STANDARD_1"
    assert parse_accelerator("--x", "count=2,type=nvidia-tesla-t4") == {"type": "NVIDIA_TESLA_T4", "count": 2}
    assert parse_accelerator("--x", "type=TPU_V3,count=8") == {"type": "TPU_V3", "count": 8}
    for bad in ("type=nvidia-tesla-t4", "count=0,type=nvidia-tesla-t4", "type=gpu,count=1", "kind=t4,count=1"):
        with pytest.raises(click.UsageError):
            parse_accelerator("--x", bad)
    with pytest.raises(click.UsageError):
        parse_scale_tier("huge")


def test_kms_key_full_name_or_parts():
    full = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    assert kms_key_name({"kms_key": full}, "demo") == full
    assert kms_key_name({"kms_key": "k", "kms_keyring": "r", "kms_location": "l"}, "demo") == \
        "projects/demo/locations/l/keyRings/r/cryptoKeys/k"
    assert kms_key_name({"kms_key": "k", "kms_keyring": "r", "kms_location": "l", "kms_project": "x"}, "demo") == \
        "projects/x/locations/l/keyRings/r/cryptoKeys/k"
    for partial in ({"kms_key": "k"}, {"kms_keyring": "r"}, {"kms_key": "k", "kms_location": "l"}):
        with pytest.raises(click.UsageError, match="not fully specified"):
            kms_key_name(partial, "demo")


@pytest.mark.parametrize("kw, fragment", [
    ({"worker_count": 2}, "--worker-machine-type and --worker-count go together"),
    ({"parameter_server_machine_type": "n1-standard-4"}, "--parameter-server-machine-type and"),
    ({"async_": True, "stream_logs": True}, "mutually exclusive"),
    ({"use_chief_in_tf_config": "maybe"}, "not true or false"),
    ({"labels": "novalue"}, "not KEY=VALUE"),
])
def test_flag_combinations_gcloud_refuses_are_usage_errors(kw, fragment):
    with pytest.raises(click.UsageError, match=fragment):
        overrides_from(kw, None, "demo-project")


def test_flags_replace_only_their_field_and_say_so():
    job = {"labels": {"team": "vision"}, "trainingInput": {
        "masterType": "n1-standard-4", "workerCount": 1, "args": ["--a"], "enableWebAccess": True,
        "masterConfig": {"imageUri": "gcr.io/p/old:1", "acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 1}},
        "encryptionConfig": {"kmsKeyName": "projects/p/locations/l/keyRings/r/cryptoKeys/old"}}}
    flags = Overrides(master_type="n1-highmem-8", master_image_uri="gcr.io/p/new:2", worker_count=3,
                      kms_key_name="projects/p/locations/l/keyRings/r/cryptoKeys/new", use_chief_in_tf_config=True,
                      parameter_server_accelerator={"type": "NVIDIA_TESLA_V100", "count": 2})
    out, notes = apply_overrides(job, flags)
    ti = out["trainingInput"]
    assert ti["masterConfig"] == {"imageUri": "gcr.io/p/new:2",  # the file's accelerator is kept
                                  "acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 1}}
    assert ti["parameterServerConfig"] == {"acceleratorConfig": {"type": "NVIDIA_TESLA_V100", "count": 2}}
    assert ti["encryptionConfig"]["kmsKeyName"].endswith("/new") and ti["workerCount"] == 3
    assert ti["args"] == ["--a"] and ti["enableWebAccess"] is True and ti["useChiefInTfConfig"] is True
    assert sorted(n.split(" replaced ")[0] for n in notes) == ["--kms-key", "--master-image-uri",
                                                               "--master-machine-type", "--worker-count"]
    assert job["trainingInput"]["masterConfig"]["imageUri"] == "gcr.io/p/old:1"  # the input is not modified


def test_validate_takes_every_flag_and_keeps_the_file_elsewhere(tmp_path):
    (tmp_path / "job.yaml").write_bytes(BASELINE_YAML)
    (tmp_path / "trainer-0.1.tar.gz").write_bytes(BASELINE_TARBALL)
    res = CliRunner().invoke(cli, [
        "validate", "--config", str(tmp_path / "job.yaml"), "--packages", str(tmp_path / "trainer-0.1.tar.gz"),
        "--json", "--scale-tier", "custom", "--master-machine-type", "n1-standard-8",
        "--master-accelerator", "type=nvidia-tesla-t4,count=1", "--worker-machine-type", "n1-standard-8",
        "--worker-count", "2", "--async", "--labels", "env=prod", "--", "--epochs", "5", "--lr=0.1"])
    out = json.loads(res.output)
    assert res.exit_code == 0, out["violations"]
    ti = out["job"]["trainingInput"]
    assert ti["scaleTier"] == "CUSTOM" and ti["workerCount"] == 2 and ti["args"] == ["--epochs", "5", "--lr=0.1"]
    assert ti["jobDir"] == "gs://drop-outputs/run-001" and out["job"]["labels"]["team"] == "vision"
    assert ti["packageUris"] == ["gs://drop-bucket/incoming/" + tmp_path.name + "/trainer-0.1.tar.gz"]
    assert any("--scale-tier replaced trainingInput.scaleTier" in n for n in out["notes"])


def test_validate_refuses_a_folder_whose_spec_names_a_package_it_lacks(tmp_path):
    """Point 4: the live drop would wait for it; validate says so instead of "valid"."""
    folder = tmp_path / "run-7"
    folder.mkdir()
    (folder / "trainer-0.1.tar.gz").write_bytes(BASELINE_TARBALL)
    (folder / "job.yaml").write_bytes(BASELINE_YAML.replace(
        b"  args:", b"  packageUris: [gs://drop-bucket/incoming/run-7/trainer-0.2.tar.gz]\n  args:"))
    res = CliRunner().invoke(cli, ["validate", str(folder)])
    assert res.exit_code == 1
    assert "names trainer-0.2.tar.gz, which the drop folder does not hold" in res.output
    ok = (folder / "job.yaml").read_bytes().replace(b"trainer-0.2", b"trainer-0.1")
    (folder / "job.yaml").write_bytes(ok)
    assert CliRunner().invoke(cli, ["validate", str(folder)]).exit_code == 0


# -- --package-path and --staging-bucket ----------------------------------------------------------------------
def package_tree(root, setup: str | None = None):
    pkg = root / "trainer"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "task.py").write_text("print('hi')\n")
    if setup is not None:
        (root / "setup.py").write_text(setup)
    return pkg


def members(sdist) -> set[str]:
    with tarfile.open(sdist) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}


def test_package_path_without_a_parent_setup_gets_gcloud_s_generated_one(tmp_path):
    pkg = package_tree(tmp_path / "src")
    before = sorted(p.name for p in (tmp_path / "src").iterdir())
    sdist = build_package(pkg, tmp_path / "out", isolation=False)
    assert sdist.name == "trainer-0.0.0.tar.gz"  # gcloud's setup.py names the folder and gives no version
    assert {"trainer/__init__.py", "trainer/task.py", "setup.py"} <= members(sdist)
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == before  # the user's tree is not written to


def test_package_path_uses_the_parent_setup_py(tmp_path):
    pkg = package_tree(tmp_path / "src", "from setuptools import setup\nsetup(name='mytrainer', version='2.0', "
                                         "packages=['trainer'])\n")
    assert build_package(pkg, tmp_path / "out", isolation=False).name == "mytrainer-2.0.tar.gz"


def test_package_path_may_be_a_project_folder_and_must_be_something(tmp_path):
    from conftest import REPO

    assert build_package(REPO / "samples" / "trainer", tmp_path / "out", isolation=False).name.endswith(".tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(click.ClickException, match="holds no __init__.py"):
        build_package(tmp_path / "empty", tmp_path / "out2", isolation=False)


def test_staging_uris_follow_gcloud_s_layout(tmp_path):
    a, b = tmp_path / "a-1.tar.gz", tmp_path / "b-1.tar.gz"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    digest = hashlib.sha256(b"firstsecond").hexdigest()
    assert list(staging_uris([a, b], "gs://stage/", "job_1")) == [f"gs://stage/job_1/{digest}/a-1.tar.gz",
                                                                   f"gs://stage/job_1/{digest}/b-1.tar.gz"]
    with pytest.raises(click.UsageError):
        staging_uris([a], "stage", "job_1")


def test_validate_with_package_path_and_staging_bucket(tmp_path):
    pkg = package_tree(tmp_path / "src")
    res = CliRunner().invoke(cli, ["validate", "--package-path", str(pkg), "--staging-bucket", "gs://stage",
                                   "--module-name", "trainer.task", "--region", "us-central1", "--job-id", "j_1",
                                   "--packages", "gs://other-bucket/dep-1.0.tar.gz", "--json"])
    out = json.loads(res.output)
    assert res.exit_code == 0, out["violations"]
    first, second = out["job"]["trainingInput"]["packageUris"]
    assert first == "gs://other-bucket/dep-1.0.tar.gz"  # gcloud's order: gs:// ones, then uploaded ones
    assert second.startswith("gs://stage/j_1/") and second.endswith("/trainer-0.0.0.tar.gz")


# -- submit --stream-logs ---------------------------------------------------------------------------------------
class _Blob:
    def __init__(self, store, name):
        self.store, self.name, self.generation = store, name, None

    def upload_from_filename(self, path, **kw):
        self.upload_from_string(Path(path).read_bytes(), **kw)

    def upload_from_string(self, data, **kw):
        self.store[self.name] = data
        self.generation = 1718000000000001


class _Client:
    """The few google.cloud.storage calls `submitter submit` makes, in memory."""

    objects: dict[str, bytes] = {}

    def __init__(self, project=None):
        pass

    def bucket(self, name):
        client = self

        class _Bucket:
            def blob(self, blob_name):
                return _Blob(client.objects, f"{name}/{blob_name}")

        return _Bucket()


def test_submit_stream_logs_submits_then_watches_with_watch_s_exit_code(tmp_path, monkeypatch):
    from google.cloud import storage

    import submitter.backends
    from submitter_cli import watch

    for key, value in {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
                       "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
                       "SUBMITTER_TOPIC": "training-job-events", "SUBMITTER_DROP_PREFIX": "incoming/"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(storage, "Client", _Client)
    monkeypatch.setattr(submitter.backends, "build_backend", lambda settings: "backend")
    watched = []

    def fake_watch(settings, backend, follower_factory, job_id, as_json, timeout_s, **kwargs):
        watched.append((backend, job_id, timeout_s))
        return 1  # as for a FAILED job

    monkeypatch.setattr(watch, "run_watch", fake_watch)
    res = CliRunner().invoke(cli, ["submit", "--region", "us-central1", "--master-image-uri",
                                   "gcr.io/demo-project/trainer:1", "--folder", "c-1", "--stream-logs"])
    assert res.exit_code == 1, res.output
    assert watched == [("backend", "c_1_1718000000000001", None)]
    assert "incoming/c-1/job.yaml" in "".join(_Client.objects)  # a drop of job.yaml alone
    assert [k for k in _Client.objects if k.startswith("drop-bucket/incoming/c-1/")] == \
        ["drop-bucket/incoming/c-1/job.yaml"]
    plain = CliRunner().invoke(cli, ["submit", "--region", "us-central1", "--master-image-uri",
                                     "gcr.io/demo-project/trainer:1", "--folder", "c-2", "--async"])
    assert plain.exit_code == 0 and len(watched) == 1
