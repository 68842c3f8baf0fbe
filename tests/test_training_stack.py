"""The local training service's isolation and gs:// support seen from the whole local stack: a drop
in the bucket becomes a job whose events are read from the topic.

The stack's training service runs with the stack's settings in its environment (SUBMITTER_*,
every endpoint): a trainer that prints everything it can see, then fails, must show none of
it, neither in its log nor in any event; a trainer that reads its input and writes its model
through every gs:// library succeeds. Drops are written and events read with the Google client
libraries directly (a subscription of the test's own).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import pytest
import requests
from test_training_gcs import GSIO, INPUT, OUTPUTS
from test_training_isolation import SNOOP
from test_training_service import make_sdist

from conftest import running_stack

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("runtime_required")]

SNOOP_THEN_FAIL = SNOOP + r'''
import sys
print("everything I saw, on stderr: " + json.dumps(dict(os.environ)), file=sys.stderr)
print("\x1b[2J\x1b[31mterminal takeover\x1b[0m", file=sys.stderr)
raise RuntimeError("SNOOPED")
'''


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=0.2, reconcile_interval_s=0.5) as s:
        yield s


def drop_and_follow(env: dict[str, str], folder: str, package, job_yaml: str, timeout_s: float = 300):
    """Upload package then job.yaml into `incoming/<folder>/` and return every event of the drop
    until a terminal one: [{"data": {...}, "attributes": {...}}, ...]."""
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    from google.cloud import pubsub_v1, storage

    subscriber = pubsub_v1.SubscriberClient()
    sub = f"projects/{env['PROJECT']}/subscriptions/test-{uuid.uuid4().hex[:8]}"
    subscriber.create_subscription(name=sub, topic=env["TOPIC"])
    try:
        bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
        prefix = f"{env['DROP_PREFIX']}{folder}"
        bucket.blob(f"{prefix}/{package.name}").upload_from_filename(str(package))
        bucket.blob(f"{prefix}/job.yaml").upload_from_string(job_yaml)
        events, end = [], time.monotonic() + timeout_s
        while time.monotonic() < end:
            resp = subscriber.pull(subscription=sub, max_messages=20, timeout=10)
            if resp.received_messages:
                subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in resp.received_messages])
            for m in resp.received_messages:
                data = json.loads(m.message.data)
                if data.get("drop", {}).get("folder") != prefix:
                    continue
                events.append({"data": data, "attributes": dict(m.message.attributes)})
                if data.get("terminal"):
                    return events
        raise AssertionError(f"no terminal event for {prefix} within {timeout_s}s: {events}")
    finally:
        subscriber.delete_subscription(subscription=sub)
        subscriber.close()


def job_log(env, job_id: str) -> str:
    return requests.get(f"{env['TRAINING_API_ENDPOINT']}/local/v1/projects/{env['PROJECT']}/jobs/{job_id}/logs",
                        timeout=10).text


def test_a_snooping_trainer_shows_nothing_of_ours_in_its_output_or_any_event(stack, tmp_path):
    s, env = stack
    package = make_sdist(tmp_path, "snoop", {"task": SNOOP_THEN_FAIL})
    spec = "trainingInput:\n  pythonModule: snoop.task\n  runtimeVersion: '2.11'\n  pythonVersion: '3.7'\n"
    events = drop_and_follow(env, "snoop", package, spec)
    final = events[-1]["data"]
    assert final["state"] == "FAILED", final
    text = job_log(env, final["jobId"])
    assert "ENV {" in text and "PROC 1 " in text  # it did print what it saw

    ours = {k: v for k, v in env.items() if k in ("PUBSUB_EMULATOR_HOST", "TRAINING_API_ENDPOINT", "FUNCTION_URL",
                                                   "RECONCILE_URL", "STATE_BUCKET", "TOPIC", "SUBSCRIPTION")
            or k in ("SUBMITTER_STATE_BUCKET", "SUBMITTER_TOPIC", "SUBMITTER_TRAINING_API_ENDPOINT")}
    ours.update({f"{k} port": v.rsplit(":", 1)[1].strip("/") for k, v in env.items()
                 if k in ("PUBSUB_EMULATOR_HOST", "TRAINING_API_ENDPOINT", "FUNCTION_URL", "RECONCILE_URL")})
    trainer_output = "\n".join(ln for ln in text.splitlines() if not ln.startswith("[local-training]"))
    published = json.dumps(events)
    for name, value in ours.items():
        assert value not in trainer_output, f"{name} reached the trainer"
        assert value not in published, f"{name} reached an event"
    assert "SUBMITTER_" not in trainer_output and "SUBMITTER_" not in final["errorMessage"]
    assert final["errorMessage"].startswith("RuntimeError: SNOOPED\nThe replica master 0 exited with a non-zero "
                                            "status of 1. "), final["errorMessage"][:200]
    # escape sequences arrive as visible text, never as control characters
    assert "\x1b" not in final["errorMessage"] and "\\x1b[2J\\x1b[31mterminal takeover" in final["errorMessage"]
    assert "\\u001b" not in published


def test_a_trainer_using_every_gs_library_succeeds_through_a_drop(stack, tmp_path):
    s, env = stack
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    from google.cloud import storage

    outputs = storage.Client(project=env["PROJECT"]).bucket(env["OUTPUT_BUCKET"])
    outputs.blob("inputs/data.csv").upload_from_string(INPUT)
    package = make_sdist(tmp_path, "gsio", {"task": GSIO}, requires=("gcsfs",))
    spec = (f"trainingInput:\n  pythonModule: gsio.task\n  runtimeVersion: '2.11'\n  pythonVersion: '3.7'\n"
            f"  args: ['--input', 'gs://{env['OUTPUT_BUCKET']}/inputs/data.csv']\n")
    events = drop_and_follow(env, "gsio", package, spec, timeout_s=420)
    final = events[-1]["data"]
    assert final["state"] == "SUCCEEDED", final
    text = job_log(env, final["jobId"])
    results = json.loads(re.search(r"^RESULTS (.*)$", text, re.M).group(1))
    libraries = ["google-cloud-storage", "gcsfs", "gcloud", "gsutil"]
    assert results == dict.fromkeys(libraries, "ok")
    prefix = final["jobDir"].removeprefix(f"gs://{env['OUTPUT_BUCKET']}/").rstrip("/")
    for lib in libraries:
        assert outputs.blob(f"{prefix}/{OUTPUTS[lib]}").exists(), lib
