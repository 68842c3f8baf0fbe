"""Issue 4 stress test on the real local stack: 50 drops whose events are each delivered 3 more times
concurrently (on top of the relay's own delivery), with job.yaml and package arriving in both orders
→ exactly 50 jobs in the training service, exactly one SUBMITTED message per job, zero REJECTED.

The training service's scheduler is paused (jobs stay QUEUED): this counts submissions, not runs."""

from __future__ import annotations

import collections
import concurrent.futures
import time

import pytest
import requests
from cloudevents.conversion import to_binary

from submitter_local.relay import storage_event
from submitter_local.stack import Stack, StackConfig

from conftest import BASELINE_TARBALL, BASELINE_YAML

pytestmark = pytest.mark.stack
DROPS = 50
EXTRA_DELIVERIES = 3


@pytest.fixture(scope="module")
def paused_stack(tmp_path_factory):
    stack = Stack(StackConfig(root=tmp_path_factory.mktemp("stress"), training_paused=True))
    env = stack.start()
    yield env
    stack.stop()


def _resource(env, name):
    answer = requests.get(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{env['BUCKET']}/o/"
                          + requests.utils.quote(name, safe=""), timeout=10)
    answer.raise_for_status()
    return answer.json()


def _deliver(env, resource):
    headers, body = to_binary(storage_event(resource))
    for _ in range(20):  # like Eventarc: redeliver on non-2xx (a claim held by a racing invocation)
        if requests.post(env["FUNCTION_URL"], data=body, headers=headers, timeout=120).ok:
            return
        time.sleep(0.5)
    raise AssertionError(f"{resource['name']} was never accepted")


def test_50_drops_each_event_delivered_4_times_concurrently(paused_stack, monkeypatch):
    env = paused_stack
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
    from google.cloud import storage

    from submitter_cli.follow import EventFollower

    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    with EventFollower(env["TOPIC"], "stress") as follower:
        names = []
        for i in range(DROPS):
            spec, package = f"incoming/stress-{i:02d}/job.yaml", f"incoming/stress-{i:02d}/trainer-0.1.tar.gz"
            order = [(package, BASELINE_TARBALL), (spec, BASELINE_YAML)]
            for name, data in (order if i % 2 else reversed(order)):  # both orders
                bucket.blob(name).upload_from_string(data)
                names.append(name)
        resources = [_resource(env, n) for n in names]
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(lambda r: _deliver(env, r), [r for r in resources for _ in range(EXTRA_DELIVERIES)]))
        states = collections.Counter()
        per_job = collections.Counter()
        deadline = time.monotonic() + 180
        for event in follower.events(timeout_s=15, dedupe=False):  # raw messages: duplicates count here
            states[event["attributes"]["state"]] += 1
            if event["attributes"]["state"] == "SUBMITTED":
                per_job[event["attributes"]["jobId"]] += 1
            if time.monotonic() > deadline:
                break
    jobs, token = [], None
    while True:
        page = requests.get(f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{env['PROJECT']}/jobs",
                            params={"filter": "jobId:stress_*", "pageSize": 100, **({"pageToken": token} if token
                                                                                      else {})}).json()
        jobs += page.get("jobs", [])
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(jobs) == DROPS
    assert len(per_job) == DROPS and set(per_job.values()) == {1}, per_job.most_common(3)
    assert states["REJECTED"] == 0 and states["SUBMIT_FAILED"] == 0
