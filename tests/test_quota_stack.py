"""The create quota on the real local stack: the training service limits creates as Google does
(`create_quota_per_minute`, 429 RESOURCE_EXHAUSTED with a RATE_LIMIT_EXCEEDED ErrorInfo), and the submitter's quota
queue (README "The create quota") holds the excess without loss.

A burst of 6 drops against a quota of 3 creates per window: the first 3 are SUBMITTED at once, the other 3 wait
(status WAITING, reason RATE_LIMITED, shown by `submitter drop-status`), nothing is REJECTED or SUBMIT_FAILED, and
once the window frees the reconcile tick (every 0.5 s) submits the queued ones oldest first: 6 drops, 6 jobs, one
SUBMITTED event each. Once on each backend: ml v1 jobs.create and Vertex customJobs.create (each answered by the
local service's quota for its API).

The window is 15 s instead of Google's minute (`create_quota_window_s`), long enough for the whole burst to reach
its first verdicts inside it on a busy machine, short enough to keep the test well under a minute of waiting.
Training is paused: the jobs stay QUEUED, so no trainer competes for the CPU.
"""

from __future__ import annotations

import collections
import os
import subprocess
import time

import pytest
import requests

from submitter_local.stack import REPO

from conftest import running_stack

pytestmark = pytest.mark.stack
QUOTA = 3
DROPS = 6
WINDOW_S = 15.0
REGION = "us-central1"  # the stack's default region, which the sample job.yaml gets
TIMEOUT_S = 180


@pytest.fixture(scope="module", params=["ml_v1", "vertex"])
def stack(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"quota-{request.param}")
    with running_stack(root, create_quota_per_minute=QUOTA, create_quota_window_s=WINDOW_S, reconcile_interval_s=0.5,
                       training_paused=True, backend=request.param) as (s, env), \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])  # clients read these when they are built
        mp.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
        yield s, env


def _ledger(env):
    from submitter.settings import Settings
    from submitter_cli.common import ledger

    return ledger(Settings.from_env({**os.environ, **{k: v for k, v in env.items() if k.startswith("SUBMITTER_")}}))


def _creation_order(env) -> list[str]:
    """The job keys the training service holds for the burst, oldest first (its lists are newest first)."""
    api = f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}"
    if env["SUBMITTER_BACKEND"] == "ml_v1":
        jobs = requests.get(f"{api}/jobs", params={"filter": "jobId:burst_*", "pageSize": 100}, timeout=30).json()
        return [j["jobId"] for j in reversed(jobs["jobs"])]
    jobs = requests.get(f"{api}/locations/{REGION}/customJobs", params={"pageSize": 100}, timeout=30).json()
    # the Vertex adapter names the job key in the label submitter-job ("-x" for each capital X; keys here have none)
    return [j["labels"]["submitter-job"] for j in reversed(jobs["customJobs"])]


def _drop_status(env, folder):
    return subprocess.run([str(REPO / ".venv" / "bin" / "submitter"), "drop-status", folder],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_a_burst_beyond_the_create_quota_waits_in_the_queue_then_every_drop_is_submitted_once_oldest_first(
        stack, sample_package):
    from google.cloud import storage

    from submitter.drops import status_key
    from submitter.model import DropStatus
    from submitter.quota import input_id
    from submitter_cli.follow import EventFollower

    s, env = stack
    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    folders = [f"incoming/burst-{i}" for i in range(DROPS)]
    records = _ledger(env)
    events: list[dict] = []
    seen_ids: set[str] = set()

    def collect(follower) -> None:
        for event in follower.events(timeout_s=0.3, dedupe=False):
            if (event["data"].get("drop") or {}).get("folder") in folders and event["messageId"] not in seen_ids:
                seen_ids.add(event["messageId"])  # a Pub/Sub redelivery is not a second publication
                events.append(event)

    def statuses():
        return {f: records.status(status_key(env["BUCKET"], f)) for f in folders}

    with EventFollower(env["TOPIC"], "quota") as follower:
        for folder in folders:  # every package first, then every job.yaml: six drops complete within a moment
            bucket.blob(f"{folder}/trainer-0.1.0.tar.gz").upload_from_filename(str(sample_package))
        generations = {}
        for folder in folders:
            spec = bucket.blob(f"{folder}/job.yaml")
            spec.upload_from_string((REPO / "samples" / "job.yaml").read_bytes())
            generations[folder] = spec.generation

        # The first verdicts: QUOTA drops submitted, the others queued, before the window can free.
        deadline = time.monotonic() + TIMEOUT_S
        now = statuses()
        while time.monotonic() < deadline:
            now = statuses()
            decided = [st for st in now.values() if st and (st.state is DropStatus.SUBMITTED or (
                st.state is DropStatus.WAITING and st.reason == "RATE_LIMITED"))]
            if len(decided) == DROPS:
                break
            time.sleep(0.3)
        submitted_first = sorted(f for f, st in now.items() if st and st.state is DropStatus.SUBMITTED)
        waiting = sorted(f for f, st in now.items() if st and st.state is DropStatus.WAITING)
        assert len(submitted_first) == QUOTA and len(waiting) == DROPS - QUOTA, {
            f: (st.state, st.reason, st.message) if st else None for f, st in now.items()}
        assert all(now[f].reason == "RATE_LIMITED" and now[f].waiting_since is not None for f in waiting)
        # the queue, oldest first, as the state store holds it (entries are named by the input's record key)
        by_ident = {input_id(f"drops/{env['BUCKET']}/{f}/{generations[f]}"): f for f in folders}
        queue = [by_ident[e.ident] for e in records.queue_of(env["SUBMITTER_BACKEND"], REGION)]
        assert sorted(queue) == waiting, queue
        shown = _drop_status(env, waiting[0])
        assert shown.returncode == 3, shown.stdout + shown.stderr
        assert "WAITING  in the queue for the training API's create quota (429 RATE_LIMITED)" in shown.stdout
        health = requests.get(f"{env['TRAINING_API_ENDPOINT']}/local/v1/health", timeout=10).json()
        assert health["create_quota"]["per_minute"] == QUOTA and health["create_quota"]["refused"] >= 1

        # Then the window frees and the reconcile tick submits the queued drops.
        while time.monotonic() < deadline:
            collect(follower)
            done = {e["data"]["drop"]["folder"] for e in events if e["data"]["state"] == "SUBMITTED"}
            if done == set(folders):
                break
        collect(follower)  # anything published right after

    per_folder = collections.Counter(e["data"]["drop"]["folder"] for e in events if e["data"]["state"] == "SUBMITTED")
    assert per_folder == dict.fromkeys(folders, 1), (per_folder, {
        f: (st.state, st.reason, st.message) if st else None for f, st in statuses().items()})
    assert not [e for e in events if e["data"]["state"] in ("REJECTED", "SUBMIT_FAILED")]
    job_ids = {e["data"]["drop"]["folder"]: e["data"]["jobId"] for e in events if e["data"]["state"] == "SUBMITTED"}
    assert len(set(job_ids.values())) == DROPS
    final = statuses()
    assert all(st is not None and st.state is DropStatus.SUBMITTED and st.key == job_ids[f] for f, st in final.items())
    assert records.queue_of(env["SUBMITTER_BACKEND"], REGION) == []
    # the training service created the queued jobs after the first ones, in queue order
    created = [next(f for f, j in job_ids.items() if j == key) for key in _creation_order(env)]
    assert len(created) == DROPS and sorted(created[:QUOTA]) == submitted_first and created[QUOTA:] == queue, created
