"""Issue 14 on the real local stack: a Pub/Sub outage while a drop is submitted and its job runs.

The emulator's Java process is frozen (SIGSTOP) for longer than the publish timeout, during which the sample
is dropped: the function creates the job but cannot announce it (500, the relay redelivers), and the
reconciler has nothing it may announce yet (ticks that fail to publish back off: test_reconciler.py).
After the emulator is thawed, a subscriber that existed before the outage sees exactly one SUBMITTED and
one terminal state per job, by CloudEvent id.

A publish whose outcome is unknown (the request reached the frozen emulator, then the client gave up) is
sent again after the outage under the same ce-id: that is the duplicate the design allows (consumers
dedupe by ce-id), and the test counts and prints such copies (by Pub/Sub message id: a subscription's own
redelivery is not a copy) instead of forbidding them; a state published after the outage has none.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from submitter_local.stack import REPO, _pids_matching

from conftest import running_stack
from helpers import assert_published_life

pytestmark = pytest.mark.stack
OUTAGE_S = 30  # longer than the stack's publish timeout (20 s)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("stack"), min_state_seconds=0.5, reconcile_interval_s=0.5) as s:
        yield s


def test_after_a_pubsub_outage_each_job_has_one_submitted_and_one_terminal_event(stack, sample_package):
    from google.cloud import storage

    from submitter_cli.follow import EventFollower

    s, env = stack
    os.environ["STORAGE_EMULATOR_HOST"] = env["STORAGE_EMULATOR_HOST"]
    os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]
    port = env["PUBSUB_EMULATOR_HOST"].rsplit(":", 1)[-1]
    java = _pids_matching("pubsub-emulator", f"--port={port}")
    assert java, "the emulator's process was not found"
    bucket = storage.Client(project=env["PROJECT"]).bucket(env["BUCKET"])
    with EventFollower(env["TOPIC"], "outage") as follower:
        for pid in java:
            os.kill(pid, signal.SIGSTOP)
        try:
            bucket.blob("incoming/outage/trainer-0.1.0.tar.gz").upload_from_filename(str(sample_package))
            spec = bucket.blob("incoming/outage/job.yaml")
            spec.upload_from_string((REPO / "samples" / "job.yaml").read_bytes())
            job_id = f"outage_{spec.generation}"
            time.sleep(OUTAGE_S)  # the outage itself: the scenario, not a wait for a result
        finally:
            for pid in java:
                os.kill(pid, signal.SIGCONT)
        events, deadline = [], time.monotonic() + 180
        while time.monotonic() < deadline:
            batch = [e for e in follower.events(timeout_s=2, dedupe=False) if e["data"]["jobId"] == job_id]
            events += batch
            if any(e["data"]["terminal"] for e in events):
                break
        events += [e for e in follower.events(timeout_s=5, dedupe=False) if e["data"]["jobId"] == job_id]
    # Published copies are told apart by Pub/Sub message id: the subscription redelivering a message it saw acked
    # late (a loaded machine) repeats its id, and is the subscriber's business, not a resend by the submitter.
    by_id: dict[str, set[str]] = {}
    for e in events:
        by_id.setdefault(e["attributes"]["ce-id"], set()).add(e["messageId"])
    states = [e["data"]["state"] for e in sorted({e["attributes"]["ce-id"]: e for e in events}.values(),
                                                  key=lambda e: e["data"]["seq"])]
    assert_published_life(states, "SUCCEEDED")
    copies = sum(len(ids) - 1 for ids in by_id.values())
    print(f"after a {OUTAGE_S}s outage: states {states}; {copies} same-ce-id copies published; "
          f"{len(events)} deliveries")
    # Copies come only from publishes whose outcome was unknown during the outage (the submitter's retry, and the
    # client library's own RPC retries whose requests the frozen emulator still held): the terminal state, published
    # after the outage, has none, and the SUBMITTED copies stay a handful (a resend loop would not).
    submitted, terminal = (len(by_id[f"{job_id}/{state}"]) for state in ("SUBMITTED", "SUCCEEDED"))
    assert terminal == 1, by_id
    assert submitted <= 1 + OUTAGE_S // 5, by_id
