"""Issue 15 on the real local stack: the relay watches the data bucket drop-data, the function runs the rules of
samples/triggers.yaml (a marker rule on incoming-data/*/, a quiet rule with a queue on quiet-data/*/), jobs run in the
local training service on the sample trainer, which reads the folder it is given.

- Three CSVs then `_SUCCESS` in one folder start exactly one job whose args name that folder; it trains on exactly
  those files; every event of those objects POSTed to the function again (as Eventarc redelivers) starts nothing.
- Quiet period: objects arriving a second apart form one batch; an object arriving after that batch closed forms
  the next one, which waits for the first job to end (overlap: queue).
"""

from __future__ import annotations

import collections
import time

import pytest
import requests
from cloudevents.conversion import to_binary

from submitter_local.demo import DATA_PACKAGE, read_metrics, sample_csv
from submitter_local.relay import storage_event

from conftest import running_stack

pytestmark = pytest.mark.stack
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def stack(tmp_path_factory, sample_package):
    # Jobs stay at least 3 s in each state, so the first quiet-period job still runs when the next window closes.
    root = tmp_path_factory.mktemp("triggers")
    with running_stack(root, min_state_seconds=3.0, reconcile_interval_s=0.5) as (s, env), \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])  # clients read these when they are built
        mp.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
        from google.cloud import storage

        bucket = storage.Client(project=env["PROJECT"]).bucket(env["DATA_BUCKET"])
        bucket.blob(DATA_PACKAGE).upload_from_filename(str(sample_package))
        yield s, env, bucket


def _jobs(env, prefix):
    answer = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs",
                          params={"filter": f"jobId:{prefix}*", "pageSize": 100}, timeout=30).json()
    return answer.get("jobs", [])


def _redeliver(env, bucket, name):
    """POST the object's finalize event to the function as Eventarc would redeliver it (a new event id); the
    function answers once it has decided."""
    resource = requests.get(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{bucket}/o/"
                            + requests.utils.quote(name, safe=""), timeout=10).json()
    headers, body = to_binary(storage_event(resource))
    answer = requests.post(env["FUNCTION_URL"], data=body, headers=headers, timeout=120)
    assert answer.ok, answer.text


def _follow(follower, until, timeout_s=TIMEOUT_S):
    """Events (raw: duplicates count) until `until(events)` holds; fails after `timeout_s` without it."""
    events = []
    deadline = time.monotonic() + timeout_s
    for event in follower.events(timeout_s=timeout_s, dedupe=False):
        events.append(event)
        if until(events) or time.monotonic() > deadline:
            break
    assert until(events), [(e["data"]["jobId"], e["data"]["state"]) for e in events]
    return events


def _final(events, job_id):
    return any(e["data"]["jobId"] == job_id and e["data"]["terminal"] for e in events)


def test_three_csvs_and_a_marker_start_one_job_on_that_folder_and_replayed_events_start_nothing(stack):
    from submitter_cli.follow import EventFollower

    s, env, bucket = stack
    folder = "incoming-data/2024-06-10"
    names = [f"{folder}/part-0000{i}.csv" for i in range(3)]
    with EventFollower(env["TOPIC"], "triggers-marker") as follower:
        for i, name in enumerate(names):
            bucket.blob(name).upload_from_string(sample_csv(i))
        bucket.blob(f"{folder}/_SUCCESS").upload_from_string(b"")
        mine = lambda e: (e["data"].get("trigger") or {}).get("folder") == folder  # noqa: E731
        events = _follow(follower, lambda evs: any(mine(e) and e["data"]["state"] == "SUBMITTED" for e in evs))
        job_id = next(e["data"]["jobId"] for e in events if mine(e))
        # every event of the batch's objects again, while the job runs: each POST returns once decided
        for name in [*names, f"{folder}/_SUCCESS"] * 2:
            _redeliver(env, bucket.name, name)
        assert [j["jobId"] for j in _jobs(env, "csv_folders_incoming_data_2024_06_10")] == [job_id]
        events += _follow(follower, lambda evs: _final(events + evs, job_id))
    batch_events = [e for e in events if mine(e)]
    states = collections.Counter(e["data"]["state"] for e in batch_events)
    assert states["SUBMITTED"] == 1 and states["SUCCEEDED"] == 1 and not states["REJECTED"], states
    assert {e["data"]["jobId"] for e in batch_events} == {job_id}
    first = batch_events[0]["data"]
    assert first["trigger"] == {"rule": "csv-folders", "mode": "marker", "batchId": job_id, "folder": folder,
                                "count": 3, "objects": names}
    [job] = _jobs(env, job_id)
    assert job["trainingInput"]["args"][:2] == ["--data", f"gs://drop-data/{folder}/"]
    metrics = read_metrics(env, batch_events[-1]["data"]["jobDir"])
    assert metrics["data_files"] == [f"gs://drop-data/{n}" for n in names] and metrics["n_rows"] == 180


def test_a_quiet_period_makes_one_batch_and_a_later_object_the_next_queued_behind_the_first_job(stack):
    from submitter_cli.follow import EventFollower

    s, env, bucket = stack
    folder = "quiet-data/stream-1"
    mine = lambda e: (e["data"].get("trigger") or {}).get("folder") == folder  # noqa: E731
    submitted = lambda evs: [e["data"] for e in evs if mine(e) and e["data"]["state"] == "SUBMITTED"]  # noqa: E731
    with EventFollower(env["TOPIC"], "triggers-quiet") as follower:
        for i in range(3):  # arriving over a few seconds, each well inside the rule's 5 s quiet period
            bucket.blob(f"{folder}/part-{i}.csv").upload_from_string(sample_csv(10 + i))
            time.sleep(1)
        events = _follow(follower, lambda evs: len(submitted(evs)) == 1)
        first = submitted(events)[0]
        assert first["trigger"]["count"] == 3 and first["trigger"]["mode"] == "quiet"
        assert first["trigger"]["objects"] == [f"{folder}/part-{i}.csv" for i in range(3)]
        bucket.blob(f"{folder}/part-3.csv").upload_from_string(sample_csv(13))  # after the batch closed
        events += _follow(follower, lambda evs: len(submitted(events + evs)) == 2)
        second = submitted(events)[1]
        events += _follow(follower, lambda evs: _final(events + evs, second["jobId"]))
    assert second["trigger"]["objects"] == [f"{folder}/part-3.csv"] and second["jobId"] != first["jobId"]
    order = [(e["data"]["jobId"], e["data"]["state"]) for e in events if mine(e)]
    first_end = next(i for i, (j, st) in enumerate(order) if j == first["jobId"] and st in ("SUCCEEDED", "FAILED"))
    assert order[first_end][1] == "SUCCEEDED"
    assert first_end < order.index((second["jobId"], "SUBMITTED")), order  # never two of this rule's jobs at once
    logs = (s.root / "logs" / "function.log").read_text() + (s.root / "logs" / "reconcile.log").read_text()
    assert f"queued (overlap: queue, position 1) behind job {first['jobId']}" in logs
    assert len(_jobs(env, "quiet_csv_quiet_data_stream_1")) == 2
