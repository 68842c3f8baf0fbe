"""`submitter watch` logic (`run_watch`) on in-memory doubles: ordering (subscribe, then read the current
state), dedupe by ce-id, never backwards, exit codes, JSON lines. The same command on the real stack is in
test_watch_stack.py."""

from __future__ import annotations

import json

import pytest
from test_contract import validate_message

from submitter.backends.ml_v1 import MlV1Backend
from submitter.drops import DropRef
from submitter.envelope import JobEvent, encode
from submitter_cli.watch import EXIT_ERROR, Tracker, WatchError, render, run_watch

from conftest import NOW, World
from fakes import FakeMlApi
from helpers import State

JOB = "run_001_1718000000000001"
DROP = DropRef("drop-bucket", "incoming/run-001", "incoming/run-001/job.yaml", 1718000000000001)
SOURCE = "//drop-submitter/projects/demo-project/buckets/drop-bucket"


def event(state: State, job_id: str = JOB, previous: State | None = None, **kw) -> dict:
    out = encode(JobEvent(key=job_id, state=state, origin={"drop": DROP.as_dict()}, time=NOW, previous_state=previous,
                          job_dir=f"gs://drop-outputs/incoming/run-001/{job_id}", **kw), source=SOURCE)
    return {"attributes": dict(out.attributes), "data": json.loads(out.data), "messageId": "m"}


class FakeFollower:
    """Context manager like EventFollower: yields the scripted events once, then nothing; waiting for events
    that do not come advances the virtual clock by the wait (so --timeout runs on virtual time)."""

    def __init__(self, log: list[str], events: list[dict], clock=None):
        self.log, self.pending, self.clock = log, list(events), clock

    def __enter__(self):
        self.log.append("subscribed")
        return self

    def __exit__(self, *exc):
        self.log.append("unsubscribed")

    def events(self, timeout_s: float):
        while self.pending:
            yield self.pending.pop(0)
        if self.clock is not None:
            self.clock.advance(timeout_s)


class LoggingApi(FakeMlApi):
    """The in-memory ml v1 API holding `jobs`, logging each call into the shared order log."""

    def __init__(self, log: list[str], jobs: dict[str, dict]):
        super().__init__()
        self.log = log
        self.jobs.update({k: dict(v) for k, v in jobs.items()})

    def _answer(self, kind, detail, handler):
        self.log.append(f"get {detail}" if kind == "get" else kind)
        return super()._answer(kind, detail, handler)


def Backend(log: list[str], jobs: dict[str, dict]) -> MlV1Backend:  # noqa: N802 - reads like the class it builds
    """The real ml v1 adapter over the logging in-memory API."""
    return MlV1Backend("demo-project", transport=LoggingApi(log, jobs))


def watch(jobs: dict, events: list[dict], job_id: str | None = JOB, as_json: bool = False, timeout_s=0.3,
          world: World | None = None):
    world = world or World()
    log, lines, notes = [], [], []
    code = run_watch(world.settings, Backend(log, jobs), lambda: FakeFollower(log, events, world.clock), job_id,
                     as_json, timeout_s, echo=lines.append, note=notes.append, ledger_factory=lambda: world.ledger,
                     clock=world.clock)
    return code, "\n".join(lines), notes, log


def api_job(state: str, **kw) -> dict:
    return {"jobId": JOB, "state": state, "labels": {"submitter": "drop"},
            "trainingInput": {"jobDir": f"gs://drop-outputs/incoming/run-001/{JOB}"}, **kw}


def test_already_final_job_is_printed_and_exits_at_once_after_subscribing():
    code, out, _, log = watch({JOB: api_job("SUCCEEDED")}, [event(State.RUNNING)])
    assert code == 0 and log == ["subscribed", f"get {JOB}", "unsubscribed"]
    assert f"{JOB}  SUCCEEDED  (training API)" in out and "outputs: gs://drop-outputs/" in out
    assert "RUNNING" not in out
    assert watch({JOB: api_job("CANCELLED", errorMessage="cancelled by user")}, [])[0] == 1


def test_events_after_the_current_state_dedupe_and_never_go_backwards():
    events = [event(State.RUNNING, previous=State.QUEUED),  # the state already read from the API
              event(State.QUEUED, previous=State.SUBMITTED),  # late, lower seq
              event(State.CANCELLING, previous=State.RUNNING), event(State.CANCELLING, previous=State.RUNNING),
              event(State.RUNNING, "other_job"),  # another job
              event(State.FAILED, previous=State.CANCELLING, reason="JOB_FAILED", error_message="line 1\nline 2")]
    code, out, _, _ = watch({JOB: api_job("RUNNING")}, events)
    assert code == 1
    states = [line.split("  ")[2] for line in out.splitlines() if not line.startswith("    ")]
    assert states == ["RUNNING", "CANCELLING", "FAILED"]
    assert "FAILED  JOB_FAILED\n    line 1\n    line 2" in out


def test_job_not_yet_in_the_api_waits_for_its_events():
    events = [event(State.SUBMITTED), event(State.QUEUED, previous=State.SUBMITTED),
              event(State.SUCCEEDED, previous=State.QUEUED)]
    code, out, notes, _ = watch({}, events)
    assert code == 0 and [line.split("  ")[2] for line in out.splitlines() if not line.startswith(" ")] == [
        "SUBMITTED", "QUEUED", "SUCCEEDED"]
    assert "not in the training API (yet)" in notes[0]


def test_timeout_without_a_final_state_exits_2():
    code, out, notes, log = watch({JOB: api_job("RUNNING")}, [event(State.RUNNING, previous=State.QUEUED)],
                                  timeout_s=0.2)
    assert code == 2 and out.count("RUNNING") == 1 and "no final state within" in notes[-1]
    assert log[-1] == "unsubscribed"


def test_rejected_drop_found_in_the_ledger_exits_1_at_once():
    world = World()
    outcome = world.drop("incoming/run-bad", spec=b"trainingInput: {scaleTier: HUGE, pythonModule: trainer.task}\n")
    assert outcome.action == "rejected"
    code, out, _, _ = watch({}, [], job_id=outcome.job_id, world=world)
    assert code == 1 and f"{outcome.job_id}  REJECTED  SPEC_INVALID  (submitter's records)" in out
    assert "trainingInput.scaleTier" in out and out.startswith("2024-06-10T12:00:05.000Z")


def test_json_lines_carry_the_event_data_and_origin():
    events = [event(State.SUCCEEDED, previous=State.RUNNING)]
    code, out, _, _ = watch({JOB: api_job("RUNNING")}, events, as_json=True)
    first, second = (json.loads(line) for line in out.splitlines())
    assert code == 0 and first["origin"] == "api" and first["state"] == "RUNNING" and first["seq"] == 3
    assert second["origin"] == "topic" and second["ceId"] == f"{JOB}/SUCCEEDED"
    data = {k: v for k, v in second.items() if k not in ("origin", "ceId")}
    validate_message(events[0]["attributes"], data)


def test_all_jobs_mode_prints_active_jobs_then_events_until_the_timeout():
    jobs = {JOB: api_job("RUNNING"), "foreign": {"jobId": "foreign", "state": "RUNNING"}}
    events = [event(State.SUCCEEDED, previous=State.RUNNING), event(State.QUEUED, "other_job")]
    code, out, _, log = watch(jobs, events, job_id=None, timeout_s=0.2)
    assert code == 0 and log[:2] == ["subscribed", "list"] and "foreign" not in out
    assert [line.split("  ")[1:3] for line in out.splitlines() if not line.startswith(" ")] == [
        [JOB, "RUNNING"], [JOB, "SUCCEEDED"], ["other_job", "QUEUED"]]


def test_failure_to_subscribe_is_exit_3():
    world = World()

    def broken():
        raise RuntimeError("topic not found")

    with pytest.raises(WatchError) as caught:
        run_watch(world.settings, Backend([], {}), broken, JOB, False, 1, echo=print, note=print)
    assert caught.value.exit_code == EXIT_ERROR and "topic not found" in caught.value.message


def test_tracker_rules():
    t = Tracker()
    assert t.accept("j", "RUNNING", 3)
    assert not t.accept("j", "RUNNING", 3, "j/RUNNING")  # the state shown from the API
    assert not t.accept("j", "QUEUED", 1, "j/QUEUED")
    assert t.accept("j", "SUCCEEDED", 5, "j/SUCCEEDED") and not t.accept("j", "SUCCEEDED", 5, "j/SUCCEEDED")
    assert t.accept("k", "STATE_UNSPECIFIED", None)


def test_render_lists_violations_of_a_rejected_drop():
    e = event(State.REJECTED, reason="SPEC_INVALID", message="job.yaml: bad",
              violations=({"field": "trainingInput.scaleTier", "message": "unknown", "reason": "SPEC_INVALID"},))
    text = render({**e["data"], "origin": "topic"}, as_json=False)
    assert text.splitlines() == [f"2024-06-10T12:00:05.000Z  {JOB}  REJECTED  SPEC_INVALID",
                                 "    trainingInput.scaleTier: unknown  [SPEC_INVALID]"]


def test_logs_without_a_local_training_service_points_to_cloud_logging(monkeypatch):
    from click.testing import CliRunner

    from submitter_cli import main

    for name in [n for n in __import__("os").environ if n.startswith("SUBMITTER_")]:
        monkeypatch.delenv(name)
    env = {"SUBMITTER_PROJECT": "demo-project", "SUBMITTER_DROP_BUCKET": "drop-bucket",
           "SUBMITTER_OUTPUT_BUCKET": "drop-outputs", "SUBMITTER_STATE_BUCKET": "drop-state",
           "SUBMITTER_TOPIC": "training-job-events"}
    result = CliRunner().invoke(main, ["logs", JOB, "--replica", "worker-1"], env=env)
    assert result.exit_code == 1
    assert (f"gcloud logging read 'resource.type=\"ml_job\" AND resource.labels.job_id=\"{JOB}\" AND "
            "labels.task_name=\"worker-replica-1\"' --project=demo-project") in result.output
    google = CliRunner().invoke(main, ["logs", JOB], env={**env, "SUBMITTER_TRAINING_API_ENDPOINT":
                                                          "https://us-central1-ml.googleapis.com"})
    assert google.exit_code == 1 and "Cloud Logging" in google.output


def test_a_refusal_under_the_drops_own_id_ends_a_watch_of_the_named_job():
    world = World()
    log, lines, notes = [], [], []
    refused = event(State.REJECTED, job_id="drop_own_id_7", reason="SPEC_INVALID", message="job.yaml: bad")
    code = run_watch(world.settings, Backend(log, {}), lambda: FakeFollower(log, [refused], world.clock), "named_job",
                     False, 30, echo=lines.append, note=notes.append, ledger_factory=lambda: world.ledger,
                     clock=world.clock, refusal_id="drop_own_id_7")
    assert code == 1 and "drop_own_id_7  REJECTED" in "\n".join(lines)


def test_a_job_submitted_another_way_is_followed_through_the_api():
    world = World()
    log, lines, notes = [], [], []
    jobs = {"g_job": {"jobId": "g_job", "state": "QUEUED", "labels": {}, "trainingInput": {"jobDir": "gs://b/o"}}}
    api = LoggingApi(log, jobs)
    backend = MlV1Backend("demo-project", transport=api)
    ticks = iter(["RUNNING", "RUNNING", "SUCCEEDED"])
    real_sleep = world.clock.sleep

    def sleep(seconds):  # the job moves on between two polls
        real_sleep(seconds)
        api.set_state("g_job", next(ticks))

    world.clock.sleep = sleep
    code = run_watch(world.settings, backend, lambda: FakeFollower(log, [], world.clock), "g_job", False, 60,
                     echo=lines.append, note=notes.append, ledger_factory=lambda: world.ledger, clock=world.clock)
    states = [line.split("  ")[2] for line in lines]
    assert code == 0 and states == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert "not submitted by this submitter" in notes[0]
