"""The scheduled path: observed states published once, in order, never before SUBMITTED (F17, F18)."""

from __future__ import annotations

import json

import pytest

from submitter.reconciler import BACKOFF_MAX_S

from conftest import World


def submitted(world: World, folder="incoming/run-024") -> str:
    out = world.drop(folder)
    assert out.action == "submitted"
    return out.job_id


def states_over(world: World, job_id: str, sequence):
    for state in sequence:
        world.api.set_state(job_id, state)
        world.reconciler.tick()
    return world.publisher.states(job_id)


def test_failed_job_publishes_each_state_once_with_error_message(world):
    job_id = submitted(world)
    world.api.jobs[job_id]["errorMessage"] = "The replica master 0 exited with a non-zero status of 1."
    assert states_over(world, job_id, ["QUEUED", "QUEUED", "PREPARING", "RUNNING", "FAILED", "FAILED"]) == [
        "SUBMITTED", "QUEUED", "PREPARING", "RUNNING", "FAILED"]
    failed = json.loads(world.publisher.messages[-1].data)
    assert failed["reason"] == "JOB_FAILED" and "non-zero status" in failed["errorMessage"]
    assert failed["previousState"] == "RUNNING" and failed["terminal"] is True
    assert world.publisher.messages[-1].attributes["terminal"] == "true"


def test_cancel_path(world):
    job_id = submitted(world)
    assert states_over(world, job_id, ["RUNNING", "CANCELLING", "CANCELLED"])[1:] == [
        "RUNNING", "CANCELLING", "CANCELLED"]


def test_unspecified_or_missing_state_is_ignored_and_polling_continues(world):
    job_id = submitted(world)
    assert states_over(world, job_id, ["RUNNING", "STATE_UNSPECIFIED", None, "RUNNING", "SUCCEEDED"])[1:] == [
        "RUNNING", "SUCCEEDED"]


def test_state_never_goes_backwards_and_one_terminal_event(world):
    job_id = submitted(world)
    assert states_over(world, job_id, ["RUNNING", "QUEUED", "SUCCEEDED", "RUNNING", "FAILED"])[1:] == [
        "RUNNING", "SUCCEEDED"]
    assert world.ledger.followed() == []  # forgotten after the terminal event


def test_empty_list_answer_and_nothing_followed_makes_no_calls(world):
    report = world.reconciler.tick()
    assert report.api_calls == 0 and not world.publisher.messages


def test_paged_listing_sees_every_job_and_ignores_foreign_jobs(world):
    ours = [submitted(world, f"incoming/run-{i:03d}") for i in range(45)]
    for i in range(45):  # jobs this submitter did not create are never published
        world.api.jobs[f"foreign_{i}"] = {"jobId": f"foreign_{i}", "state": "RUNNING"}
    for job_id in ours:
        world.api.set_state(job_id, "RUNNING")
    before = len(world.api.calls)
    report = world.reconciler.tick()
    assert sorted(j for j, s in report.published) == sorted(ours)
    assert all(s == "RUNNING" for _, s in report.published)
    # 90 active jobs at 100 per page: one list call, no per-job gets
    assert report.api_calls == 1 and len(world.api.calls) - before == 1


def test_finished_jobs_are_fetched_individually(world):
    job_id = submitted(world)
    world.api.set_state(job_id, "SUCCEEDED")
    report = world.reconciler.tick()
    assert report.published == [(job_id, "SUCCEEDED")]
    assert report.api_calls == 2  # one list (empty: `{}`) + one get for the job that left the active list


def test_a_job_the_api_forgot_is_given_up_after_five_ticks_without_inventing_a_state(world):
    job_id = submitted(world)
    del world.api.jobs[job_id]  # deleted, or another project: every get answers 404
    for _ in range(4):
        world.reconciler.tick()
        assert [r.key for r in world.ledger.followed()] == [job_id]
    world.reconciler.tick()
    assert world.ledger.followed() == [] and world.store.get(f"lost/{job_id}.json") is not None
    calls = len(world.api.calls)
    world.reconciler.tick()
    assert len(world.api.calls) == calls  # no more calls for it
    assert world.publisher.states(job_id) == ["SUBMITTED"]


def test_overlapping_ticks_do_not_run_and_a_dead_ticks_lock_expires(world):
    from submitter.leases import Leases
    from submitter.ledger import TICK_LOCK_KEY

    job_id = submitted(world)
    world.api.set_state(job_id, "RUNNING")
    assert Leases(world.store, world.clock).acquire(TICK_LOCK_KEY, "other-tick", 300)
    assert world.reconciler.tick().skipped and world.publisher.states(job_id) == ["SUBMITTED"]
    world.clock.advance(301)
    report = world.reconciler.tick()
    assert not report.skipped and report.published == [(job_id, "RUNNING")]


def test_warm_ledger_downloads_only_changed_records(world):
    ids = [submitted(world, f"incoming/run-{i:03d}") for i in range(20)]
    world.reconciler.tick()  # every job: SUBMITTED -> QUEUED
    gets = []
    original = world.store.get
    world.store.get = lambda key: (gets.append(key), original(key))[1]
    world.ledger.followed()
    first = len([k for k in gets if k.startswith("jobs/")])
    gets.clear()
    world.api.set_state(ids[0], "RUNNING")
    world.reconciler.tick()
    world.ledger.followed()
    assert first == 20
    assert len([k for k in gets if k.startswith("jobs/")]) == 1  # only the record the tick advanced


def test_after_an_outage_ticks_back_off_and_the_backlog_is_published_once_per_state(world):
    from submitter.errors import PublishFailed

    job_id = submitted(world)
    world.api.set_state(job_id, "RUNNING")
    world.publisher.fail_next = 1000  # Pub/Sub is down
    attempts = 0
    for _ in range(60):  # a minute of one-second scheduler periods
        try:
            report = world.reconciler.tick()
            assert report.skipped and report.backing_off
        except PublishFailed:
            attempts += 1
        world.clock.advance(1)
    assert 3 <= attempts <= 6  # 2 s, 4 s, 8 s, 16 s, 32 s apart: not 60 re-sends
    world.publisher.fail_next = 0
    world.api.set_state(job_id, "SUCCEEDED")
    world.clock.advance(300)
    world.reconciler.tick()
    assert world.publisher.states(job_id) == ["SUBMITTED", "SUCCEEDED"]
    assert not world.reconciler.tick().backing_off  # recovered: the normal cadence


def test_a_429_from_the_training_api_slows_the_reconciler_until_calls_succeed(world):
    from submitter.errors import BackendUnavailable

    job_id = submitted(world)
    for _ in range(200):
        world.api.fail("list", 429, "RESOURCE_EXHAUSTED", "slow down")
    with pytest.raises(BackendUnavailable):
        world.reconciler.tick()  # retried within the tick for its budget, then the tick fails
    assert world.reconciler.tick().backing_off
    world.api.errors.clear()
    world.api.set_state(job_id, "RUNNING")
    world.clock.advance(BACKOFF_MAX_S)
    assert world.reconciler.tick().published == [(job_id, "RUNNING")]


def test_published_trial_ids_are_kept_in_the_job_record_and_never_republished(world):
    from test_contract import TUNING_YAML, api_trial

    job_id = world.drop("incoming/tune", spec=TUNING_YAML).job_id
    world.api.set_state(job_id, "RUNNING", trainingOutput={"trials": [api_trial("1", "SUCCEEDED", 0.5),
                                                                      api_trial("2", "RUNNING")]})
    report = world.reconciler.tick()
    assert report.published == [(job_id, "RUNNING")] and report.trials == [(job_id, "1")]
    [record] = world.ledger.followed()
    assert record.published_trials == ("1",)
    assert world.store.get(f"jobs/{job_id}.json")[0]["publishedTrials"] == ["1"]
    assert world.reconciler.tick().trials == []  # the same status again: nothing new
    world.api.set_state(job_id, "RUNNING", trainingOutput={"trials": [api_trial("1", "SUCCEEDED", 0.5),
                                                                      api_trial("2", "CANCELLED")]})
    report = world.reconciler.tick()
    assert report.trials == [(job_id, "2")] and report.published == []  # a trial alone, the job still RUNNING
    ids = [m.attributes["ce-id"] for m in world.publisher.messages]
    assert ids.count(f"{job_id}/trial/1") == 1 and ids.count(f"{job_id}/trial/2") == 1


def test_a_job_that_finishes_between_ticks_publishes_its_last_trials_then_its_terminal_state(world):
    from test_contract import TUNING_YAML, api_trial

    job_id = world.drop("incoming/tune", spec=TUNING_YAML).job_id
    world.api.set_state(job_id, "FAILED", errorMessage="3 trials failed", trainingOutput={
        "trials": [api_trial("1", "FAILED"), api_trial("2", "FAILED"), api_trial("3", "FAILED")]})
    world.reconciler.tick()
    ids = [m.attributes["ce-id"] for m in world.publisher.messages]
    assert ids[-4:] == [f"{job_id}/trial/1", f"{job_id}/trial/2", f"{job_id}/trial/3", f"{job_id}/FAILED"]
    assert world.store.get(f"done/{job_id}.json")[0]["publishedTrials"] == ["1", "2", "3"]
    world.reconciler.tick()
    assert len(world.publisher.messages) == len(ids)  # forgotten after its terminal event


# ---- one scheduled invocation that keeps ticking (the cloud design: Cloud Scheduler fires once a minute) --------

def _scheduled_minutes(window_s: float, minutes: int = 10, jobs: int = 12, seed: int = 7) -> tuple[list[float], int]:
    """Jobs change state at random moments; Cloud Scheduler invokes reconcile at the start of every minute (virtual
    time). Returns the seconds from each published state change to its event, and how many changes were never
    published (a state that ended before any tick saw it: the reconciler publishes what it observes)."""
    import random

    world = World(reconcile_window_s=window_s, reconcile_interval_s=5.0)
    ids = [submitted(world, f"incoming/run-{i:03d}") for i in range(jobs)]
    start = world.clock.now()
    rng = random.Random(seed)
    changes = []  # (seconds after start, job, state)
    for job_id in ids:
        moments = sorted(rng.uniform(1, minutes * 60 - 70) for _ in range(4))
        changes += list(zip(moments, [job_id] * 4, ["QUEUED", "PREPARING", "RUNNING", "SUCCEEDED"], strict=True))
    changes.sort()
    changed_at: dict[tuple[str, str], float] = {}
    published_at: dict[tuple[str, str], float] = {}

    def elapsed() -> float:
        return (world.clock.now() - start).total_seconds()

    def advance_to(t: float) -> None:  # virtual time passes; the jobs change state meanwhile
        while changes and changes[0][0] <= t:
            moment, job_id, state = changes.pop(0)
            world.clock.advance(max(0.0, moment - elapsed()))
            world.api.set_state(job_id, state)
            changed_at[(job_id, state)] = moment
        world.clock.advance(max(0.0, t - elapsed()))

    world.clock.sleep = lambda seconds: advance_to(elapsed() + seconds)
    publish = world.publisher.publish

    def recording_publish(messages):
        for m in messages:
            published_at.setdefault((m.attributes["jobId"], m.attributes["state"]), elapsed())
        return publish(messages)

    world.publisher.publish = recording_publish
    for minute in range(minutes):
        advance_to(minute * 60.0)
        world.app.reconcile()
    assert all(states[-1] == "SUCCEEDED" for states in map(world.publisher.states, ids)), "every job ends published"
    seen = [key for key in changed_at if key in published_at]
    return [published_at[key] - changed_at[key] for key in seen], len(changed_at) - len(seen)


def test_an_invocation_ticking_for_its_minute_publishes_each_change_within_ten_seconds():
    delays, missed = _scheduled_minutes(window_s=55)
    assert max(delays) <= 10.0  # ticks at 0, 5, ..., 50 s of each minute: the longest wait is 50 s -> 60 s
    # One tick per invocation (window 0) on the same schedule and the same changes: up to a minute late, and more
    # short-lived states are never seen at all.
    one_tick, missed_by_one_tick = _scheduled_minutes(window_s=0)
    assert max(one_tick) > 30.0 and sum(one_tick) / len(one_tick) > 3 * sum(delays) / len(delays)
    assert missed < missed_by_one_tick


def test_the_window_loop_stops_before_the_next_invocation_and_combines_its_ticks(world):
    windowed = World(reconcile_window_s=55, reconcile_interval_s=5.0)
    job_id = submitted(windowed)
    windowed.api.set_state(job_id, "RUNNING")
    report = windowed.app.reconcile()
    assert windowed.clock.slept == [5.0] * 10  # eleven ticks: at 0, 5, ..., 50 s
    assert report.published == [(job_id, "RUNNING")] and report.api_calls == 11
    assert world.app.reconcile().api_calls <= 1 and world.clock.slept == []  # the default: a single tick


def test_a_transient_fault_in_the_sweep_holds_back_neither_the_tick_nor_the_drop():
    world = World()
    running = submitted(world, "incoming/run-900")
    world.put("incoming/run-901/package.tar.gz", b"not read before the sweep")
    world.deliver("incoming/run-901/package.tar.gz")  # waits for job.yaml
    from conftest import BASELINE_TARBALL, BASELINE_YAML
    world.put("incoming/run-901/package.tar.gz", BASELINE_TARBALL)
    world.put("incoming/run-901/job.yaml", BASELINE_YAML)  # its event is lost: only the sweep can decide the drop
    world.clock.advance(world.settings.incomplete_drop_s + 1)
    world.api.set_state(running, "RUNNING")
    for _ in range(200):  # the API fails every create for longer than the retry budget (a 429 would queue it)
        world.api.fail("create", 503, "UNAVAILABLE", "down")
    report = world.app.reconcile()  # answers normally: the state change is published, the sweep resumes next tick
    assert (running, "RUNNING") in report.published
    assert not any(m["drop"]["folder"] == "incoming/run-901" for m in world.messages() if "drop" in m)
    world.api.errors.clear()
    world.app.reconcile()
    swept = [m for m in world.messages() if m.get("drop", {}).get("folder") == "incoming/run-901"]
    assert [m["state"] for m in swept] == ["SUBMITTED"]


def test_a_later_tick_that_fails_ends_the_window_and_keeps_what_earlier_ticks_published():
    from submitter.errors import PublishFailed

    world = World(reconcile_window_s=55, reconcile_interval_s=5.0)
    job_id = submitted(world)
    world.api.set_state(job_id, "RUNNING")

    sleeps = []

    def sleep(seconds):  # between the ticks the job finishes, and Pub/Sub goes down
        sleeps.append(seconds)
        world.clock.advance(seconds)
        world.api.set_state(job_id, "SUCCEEDED")
        world.publisher.fail_next = 1000

    world.clock.sleep = sleep
    report = world.app.reconcile()  # answers normally with the first tick's report
    assert report.published == [(job_id, "RUNNING")] and len(sleeps) == 1  # the window ended at the failure
    assert world.publisher.states(job_id) == ["SUBMITTED", "RUNNING"]
    world.clock.advance(BACKOFF_MAX_S)  # the next invocation, after the persisted backoff
    with pytest.raises(PublishFailed):  # its first tick failing is its failure: a 500 the scheduler's alert sees
        world.app.reconcile()
    world.publisher.fail_next = 0
    world.clock.advance(BACKOFF_MAX_S)
    world.app.reconcile()
    assert world.publisher.states(job_id) == ["SUBMITTED", "RUNNING", "SUCCEEDED"]
