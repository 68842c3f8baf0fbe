"""Issue 14 on the real local stack: a job runs exactly the package that was dropped.

One drop's package is replaced by garbage right after its SUBMITTED, another drop's package is deleted: both
jobs still succeed (they run copies staged at submission, content-addressed in the outputs bucket), and the
drops' status documents say what happened. A drop whose job.yaml names a package not yet uploaded says WAITING
for it, in the status object and in `submitter drop-status`, after that one event.
"""

from __future__ import annotations

import os
import time

import pytest

from submitter_local.stack import REPO

from conftest import running_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=1.0, reconcile_interval_s=0.5) as s:
        yield s


def test_a_replaced_and_a_deleted_package_change_nothing_for_submitted_jobs(stack, sample_package):
    from google.cloud import storage

    from submitter.drops import status_key
    from submitter.settings import Settings
    from submitter_cli.common import ledger
    from submitter_cli.follow import EventFollower

    s, env = stack
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    jobs = {}
    with EventFollower(env["TOPIC"], "staging") as follower:
        for folder in ("incoming/replaced", "incoming/deleted"):
            bucket.blob(f"{folder}/trainer-0.1.0.tar.gz").upload_from_filename(str(sample_package))
            spec = bucket.blob(f"{folder}/job.yaml")
            spec.upload_from_string((REPO / "samples" / "job.yaml").read_bytes())
            jobs[folder] = f"{folder.split('/')[1]}_{spec.generation}"
        states: dict[str, list[str]] = {job: [] for job in jobs.values()}
        acted, deadline = set(), time.monotonic() + 240
        while time.monotonic() < deadline and not all(s and s[-1] in ("SUCCEEDED", "FAILED") for s in states.values()):
            for event in follower.events(timeout_s=1):
                data = event["data"]
                if data["jobId"] not in states:
                    continue
                states[data["jobId"]].append(data["state"])
                if data["state"] == "SUBMITTED" and data["jobId"] not in acted:
                    acted.add(data["jobId"])
                    if data["jobId"] == jobs["incoming/replaced"]:  # the job has not started: swap the bytes
                        bucket.blob("incoming/replaced/trainer-0.1.0.tar.gz").upload_from_string(b"garbage")
                    else:
                        bucket.blob("incoming/deleted/trainer-0.1.0.tar.gz").delete()
    assert all(s[-1] == "SUCCEEDED" for s in states.values()), states
    settings = Settings.from_env({**os.environ, **_settings_env(env)})
    records = ledger(settings)
    replaced = records.status(status_key(env["BUCKET"], "incoming/replaced"))
    deleted = records.status(status_key(env["BUCKET"], "incoming/deleted"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("uploaded again" in n for n in replaced.notes):
        time.sleep(0.5)  # the replacement's own event is handled by the function in its own time
        replaced = records.status(status_key(env["BUCKET"], "incoming/replaced"))
    assert any("uploaded again after job" in n for n in replaced.notes), replaced.notes
    assert any("replacing or deleting the drop's packages does not change it" in n for n in deleted.notes)


def _settings_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("SUBMITTER_")}


def test_a_drop_missing_its_package_says_what_it_waits_for_after_one_event(stack, sample_package):
    """job.yaml naming its package, uploaded alone: after that one event the status object and `drop-status` say
    WAITING for that file; the package uploaded next completes the drop and it is SUBMITTED."""
    import subprocess

    from google.cloud import storage

    from submitter.drops import status_key
    from submitter.model import DropStatus
    from submitter.settings import Settings
    from submitter_cli.common import ledger

    s, env = stack
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    folder = "incoming/waiting"
    bucket.blob(f"{folder}/job.yaml").upload_from_string(_merge_package_uri(env["BUCKET"], folder))
    records = ledger(Settings.from_env({**os.environ, **_settings_env(env)}))
    deadline, status = time.monotonic() + 30, None
    while time.monotonic() < deadline and status is None:
        status = records.status(status_key(env["BUCKET"], folder))
        time.sleep(0.3)
    assert status is not None and status.state is DropStatus.WAITING, status
    assert status.missing == ("trainer-0.1.0.tar.gz",) and status.reject_after is not None
    cli = [str(REPO / ".venv" / "bin" / "submitter"), "drop-status", folder]
    shown = subprocess.run(cli, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 3 and "WAITING  for trainer-0.1.0.tar.gz" in shown.stdout, shown.stdout + shown.stderr

    bucket.blob(f"{folder}/trainer-0.1.0.tar.gz").upload_from_filename(str(sample_package))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and status.state is DropStatus.WAITING:
        time.sleep(0.5)
        status = records.status(status_key(env["BUCKET"], folder))
    assert status.state is DropStatus.SUBMITTED, status


def _merge_package_uri(bucket: str, folder: str) -> str:
    """samples/job.yaml with trainingInput.packageUris naming the package the drop will hold."""
    import yaml

    spec = yaml.safe_load((REPO / "samples" / "job.yaml").read_text())
    spec["trainingInput"]["packageUris"] = [f"gs://{bucket}/{folder}/trainer-0.1.0.tar.gz"]
    return yaml.safe_dump(spec)
