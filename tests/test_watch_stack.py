"""Job events on the real local stack: the messages honour the JSON Schema contract, `submitter watch` (the
installed console script, as a subprocess) exits with the job's verdict whether it starts right after the
drop or after the job finished, `submitter logs` reads the trainer's output, and examples/consumer.py prints
where the model of a succeeded job is.

The stack is this module's own (free ports, a temporary root), like test_stack_e2e.py's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import requests
from test_contract import DATA, errors, validate_message

from submitter.naming import derive_job_id
from submitter_local.demo import run_drop
from submitter_local.stack import REPO

from conftest import running_stack
from helpers import assert_published_life

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

SUBMITTER = str(REPO / ".venv" / "bin" / "submitter")
JOB_TIMEOUT_S = 240
OK_JOB = "watch_ok_job"
FAIL_JOB = "watch_fail_job"
CONSUMER_SUBSCRIPTION = "consumer-example-sub"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("watch-stack"), min_state_seconds=1.0,
                       reconcile_interval_s=0.5) as (_, env):
        yield env


def spec(job_id: str | None, fail: bool = False) -> bytes:
    """samples/job.yaml, naming the jobId; `fail` puts the trainer's --fail first in args."""
    text = (REPO / "samples" / "job.yaml").read_text()
    if fail:
        text = text.replace('args: ["--n-estimators"', 'args: ["--fail", "--n-estimators"')
        assert "--fail" in text
    return (text + (f"jobId: {job_id}\n" if job_id else "")).encode()


def cli(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([SUBMITTER, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def start_watch(env, *args) -> subprocess.Popen:
    return subprocess.Popen([SUBMITTER, "watch", *args], env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def drop_and_watch(env, package, job_yaml: bytes, folder: str, job_id: str | None, *watch_args):
    """Drop, start `submitter watch` right after the upload (the job may be in any state by the time it
    reads), follow the drop's events to a final one; returns (state, events, watch result)."""
    procs: list[subprocess.Popen] = []

    def on_line(line: str) -> None:
        if not procs:  # the first line is printed right after the upload
            jid = job_id or derive_job_id(folder.removeprefix(env["DROP_PREFIX"]),
                                          int(re.search(r"generation (\d+)", line).group(1)))
            procs.append(start_watch(env, jid, "--timeout", str(JOB_TIMEOUT_S), *watch_args))

    try:
        state, events = run_drop(env, package, job_yaml, folder, timeout_s=JOB_TIMEOUT_S, out=on_line)
        out, err = procs[0].communicate(timeout=JOB_TIMEOUT_S + 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return state, events, subprocess.CompletedProcess(procs[0].args, procs[0].returncode, out, err)


def wait_for_subscription(env, name: str, proc: subprocess.Popen) -> None:
    url = f"http://{env['PUBSUB_EMULATOR_HOST']}/v1/projects/{env['PROJECT']}/subscriptions/{name}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if requests.get(url, timeout=5).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"the consumer did not create {name}")


@pytest.fixture(scope="module")
def succeeded(stack, sample_package):
    """The sample drop run to SUCCEEDED, with `watch --json` started right after the drop and the consumer
    example listening on a subscription it created before the drop."""
    env = stack
    consumer = subprocess.Popen([sys.executable, str(REPO / "examples" / "consumer.py"), CONSUMER_SUBSCRIPTION,
                                 "--max-actions", "1", "--timeout", str(JOB_TIMEOUT_S)],
                                env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        wait_for_subscription(env, CONSUMER_SUBSCRIPTION, consumer)
        state, events, watched = drop_and_watch(env, sample_package, spec(OK_JOB), "incoming/watch-ok", OK_JOB,
                                                "--json")
        out, err = consumer.communicate(timeout=JOB_TIMEOUT_S + 30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    consumed = subprocess.CompletedProcess(consumer.args, consumer.returncode, out, err)
    return {"state": state, "events": events, "watch": watched, "consumer": consumed}


def test_sample_drop_messages_validate_against_the_schema(succeeded):
    events = succeeded["events"]
    assert succeeded["state"] == "SUCCEEDED", [e["data"]["state"] for e in events]
    assert_published_life([e["data"]["state"] for e in events], "SUCCEEDED")
    for e in events:
        validate_message(e["attributes"], e["data"])
    final = events[-1]["data"]
    assert final["jobId"] == OK_JOB and final["jobDir"].startswith("gs://drop-outputs/incoming/watch-ok/")
    assert "createTime" in final and "endTime" in final


def test_watch_started_right_after_the_drop_exits_0_on_success(succeeded):
    watched = succeeded["watch"]
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert lines and lines[-1]["state"] == "SUCCEEDED" and lines[-1]["jobId"] == OK_JOB
    seqs = [line["seq"] for line in lines if line["seq"] is not None]
    assert seqs == sorted(set(seqs)), "a state printed twice or out of order"
    for line in lines:
        if line["origin"] == "topic":  # events are printed as their data, schema-valid
            data = {k: v for k, v in line.items() if k not in ("origin", "ceId")}
            assert line["ceId"] == f"{OK_JOB}/{line['state']}"
            assert errors(DATA, data) == []


def test_watch_after_the_job_succeeded_prints_it_and_exits_at_once(succeeded, stack):
    # --timeout would give 2: exiting 0 shows it did not wait for an event (none will come)
    done = cli(stack, "watch", OK_JOB, "--timeout", "60")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert f"{OK_JOB}  SUCCEEDED  (training API)" in done.stdout and "outputs: gs://drop-outputs/" in done.stdout


def test_consumer_example_prints_where_the_model_is(succeeded):
    consumed = succeeded["consumer"]
    job_dir = succeeded["events"][-1]["data"]["jobDir"]
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.strip() == f"{OK_JOB} SUCCEEDED: model in {job_dir}"
    assert "created and listening" in consumed.stderr


def test_failing_trainer_one_failed_event_with_its_error_and_watch_exits_1(stack, sample_package):
    env = stack
    state, events, watched = drop_and_watch(env, sample_package, spec(FAIL_JOB, fail=True), "incoming/watch-fail",
                                            FAIL_JOB)
    assert state == "FAILED", [e["data"]["state"] for e in events]
    for e in events:
        validate_message(e["attributes"], e["data"])
    failed = [e["data"] for e in events if e["data"]["state"] == "FAILED"]
    assert len(failed) == 1 and failed[0]["reason"] == "JOB_FAILED"
    assert "failing on purpose" in failed[0]["errorMessage"]
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    assert f"{FAIL_JOB}  FAILED  JOB_FAILED" in watched.stdout and "failing on purpose" in watched.stdout
    after = cli(env, "watch", FAIL_JOB, "--timeout", "60")
    assert after.returncode == 1 and "FAILED" in after.stdout and "(training API)" in after.stdout
    logs = cli(env, "logs", FAIL_JOB)
    assert logs.returncode == 0 and "failing on purpose" in logs.stdout
    followed = cli(env, "logs", FAIL_JOB, "--follow")  # the job is final: prints everything and returns
    assert followed.returncode == 0 and "failing on purpose" in followed.stdout
    missing = cli(env, "logs", FAIL_JOB, "--replica", "worker-7")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_rejected_drop_watch_exits_1_during_and_after(stack, sample_package):
    env = stack
    bad = b"trainingInput:\n  scaleTier: HUGE\n  pythonModule: trainer.task\n"
    state, events, watched = drop_and_watch(env, sample_package, bad, "incoming/watch-rejected", None)
    assert state == "REJECTED"
    [event] = events
    validate_message(event["attributes"], event["data"])
    job_id = event["data"]["jobId"]
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    assert f"{job_id}  REJECTED" in watched.stdout and "trainingInput.scaleTier" in watched.stdout
    after = cli(env, "watch", job_id, "--timeout", "60")  # not in the API: found in the state bucket
    assert after.returncode == 1, (after.stdout, after.stderr)
    assert re.match(rf"\d{{4}}-\d\d-\d\dT[\d:.]+Z  {job_id}  REJECTED  SPEC_INVALID  \(submitter's records\)",
                    after.stdout)


def test_watch_of_an_unknown_job_times_out_with_2(stack):
    waited = cli(stack, "watch", "no_such_job_1", "--timeout", "2")
    assert waited.returncode == 2 and "no final state within 2s" in waited.stderr


def _watch_subscriptions(env) -> list[str]:
    url = f"http://{env['PUBSUB_EMULATOR_HOST']}/v1/projects/{env['PROJECT']}/subscriptions"
    return [s["name"] for s in requests.get(url, timeout=10).json().get("subscriptions", [])
            if s["name"].rsplit("/", 1)[-1].startswith("watch-")]


def test_watch_all_jobs_until_the_timeout_exits_0_and_leaves_no_subscription(stack):
    done = cli(stack, "watch", "--timeout", "2")
    assert done.returncode == 0 and "following every job" in done.stderr
    assert _watch_subscriptions(stack) == []


def test_ctrl_c_exits_130_and_deletes_the_temporary_subscription(stack):
    import signal

    proc = start_watch(stack, "not_dropped_yet_1")
    try:
        assert "not in the training API (yet)" in proc.stderr.readline()  # subscribed, current state read
        assert len(_watch_subscriptions(stack)) == 1
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert _watch_subscriptions(stack) == []
