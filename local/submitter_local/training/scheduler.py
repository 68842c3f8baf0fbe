"""Moves QUEUED jobs into runs, within `max_running`, and routes cancels to them.

Order of admission (`JobStore.queued_in_order`, kept in SQL): higher `trainingInput.scheduling.priority` first, then
first created; a QUEUED job's 1-based place in that order is its `jobPosition`. A QUEUED job
is admitted only after `min_state_seconds` in QUEUED; a higher-priority job still in that
hold is not overtaken. `scheduling.maxWaitTime` ("If the training job has not entered the
`RUNNING` state after this duration, AI Platform Training cancels it", ml.v1.json) is
measured from creation, scaled by `time_scale`: a QUEUED job becomes CANCELLED (even while
paused), a PREPARING one CANCELLING and then CANCELLED once its run has stopped.

Restart recovery (`recover()`, before the loop starts): a job recorded as
PREPARING/RUNNING/CANCELLING has lost its run thread; any process of any of its replicas
that is still alive (identified by its run token) is killed, and the job becomes FAILED with
"The local training service restarted while the job was <STATE>; its processes are gone.".
QUEUED jobs simply wait for the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import envs, messages, procs, sandbox
from .config import ServiceConfig
from .errors import failed_precondition, not_found
from .model import (
    ACTIVE_STATES,
    CANCELLED,
    CANCELLING,
    FAILED,
    PREPARING,
    QUEUED,
    RUNNING,
    TERMINAL_STATES,
    job_name,
    parse_duration,
)
from .runner import RUN_TOKEN_ENV, USER_CANCEL_MESSAGE, JobRun
from .store import Change, JobRecord, JobStore

log = logging.getLogger(__name__)

RESTART_MESSAGE = "The local training service restarted while the job was {state}; its processes are gone."


def max_wait_message(max_wait: str, time_scale: float) -> str:
    """errorMessage of a job cancelled by scheduling.maxWaitTime."""
    scaled = "" if time_scale == 1 else f" (local time_scale {time_scale:g}: " \
                                        f"{parse_duration(max_wait) * time_scale:g} real seconds)"
    return (f"The job did not enter RUNNING within scheduling.maxWaitTime ({max_wait}){scaled} "
            "and was cancelled.")


class Scheduler:
    """The scheduler thread plus the cancel entry point. Thread-safe."""

    def __init__(self, store: JobStore, config: ServiceConfig, env_cache: envs.EnvCache,
                 storage_factory: Callable[[str], Any], isolation: sandbox.HostIsolation | None = None,
                 scrub: messages.Scrubber | None = None):
        self.isolation = isolation
        self.scrub = scrub
        self._store = store
        self._cfg = config
        self._envs = env_cache
        self._storage_factory = storage_factory
        self._cond = threading.Condition()
        self._runs: dict[tuple[str, str], JobRun] = {}
        self._paused = config.paused
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Fail jobs whose run died with a previous service process; returns their names."""
        failed = []
        for rec in self._store.in_states(ACTIVE_STATES):
            token = rec.runtime.get("token")
            groups = rec.runtime.get("groups") or [rec.runtime.get("pgid")]  # one group per replica
            for pgid in groups:
                if pgid and token and procs.kill_group_if_ours(pgid, RUN_TOKEN_ENV, token):
                    log.warning("killed leftover process group %s of %s", pgid, job_name(*rec.key))
            msg = RESTART_MESSAGE.format(state=rec.state)
            if self._store.transition(rec.project, rec.job_id, {rec.state}, FAILED, error_message=msg):
                failed.append(job_name(*rec.key))
        return failed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="training-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop admitting, kill every run's processes (records keep their state), wait for runs."""
        with self._cond:
            self._stopping = True
            runs = list(self._runs.values())
            self._cond.notify_all()
        for run in runs:
            run.request_stop()
        wait = timeout if timeout is not None else self._cfg.kill_grace_seconds + 10
        end = time.monotonic() + wait
        for run in runs:
            run.join(max(0.0, end - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.1, end - time.monotonic()))

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._paused = paused
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def wake(self) -> None:
        """Ask for a scheduling pass now (after a create)."""
        with self._cond:
            self._cond.notify_all()

    def running_count(self) -> int:
        with self._cond:
            return len(self._runs)

    # -- cancel ----------------------------------------------------------------------------------
    def cancel(self, project: str, job_id: str) -> None:
        """jobs.cancel: QUEUED -> CANCELLED; PREPARING/RUNNING -> CANCELLING, then the run kills
        the process group and ends CANCELLED; CANCELLING stays as is.

        Raises ApiError 404 for an unknown job, 400 FAILED_PRECONDITION for a terminal one.
        """

        def decide(r: JobRecord) -> Change | None:
            if r.state == QUEUED:
                return Change(state=CANCELLED, error_message=USER_CANCEL_MESSAGE)
            if r.state in (PREPARING, RUNNING):
                return Change(state=CANCELLING, error_message=USER_CANCEL_MESSAGE)
            return None

        rec, changed = self._store.update(project, job_id, decide)
        name = job_name(project, job_id)
        if rec is None:
            raise not_found(name)
        if rec.state in TERMINAL_STATES and not changed:
            raise failed_precondition("name", f"Cannot cancel job {name}: it is already in the terminal state "
                                              f"{rec.state}.", name)
        if rec.state == CANCELLING:
            with self._cond:
                run = self._runs.get(rec.key)
            if run is not None:
                run.request_cancel()
            elif changed:  # no live run (should not happen): nothing to stop
                self._store.transition(project, job_id, {CANCELLING}, CANCELLED)
        self.wake()

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
            try:
                delay = self._pass()
            except Exception:  # keep scheduling whatever one pass hit
                log.exception("scheduler pass failed")
                delay = 1.0
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(min(self._cfg.poll_interval * 5, delay))

    def _pass(self) -> float:
        """One scheduling pass; returns how long the loop may sleep before the next."""
        now = time.time()
        sleep = self._cfg.poll_interval * 5
        for rec in self._store.waiting_with_max_wait():
            self._enforce_max_wait(rec, now)
        with self._cond:
            if self._paused or self._stopping:
                return sleep
            free = self._cfg.effective_max_running - len(self._runs)
        if free <= 0:
            return sleep
        for rec in self._store.queued_in_order():  # parsed only as far as free slots go
            if free <= 0:
                break
            ready_at = rec.state_since + self._cfg.min_state_seconds
            if ready_at > now:
                sleep = min(sleep, ready_at - now)
                break  # do not let lower-priority / later jobs overtake it
            started = self._store.transition(rec.project, rec.job_id, {QUEUED}, PREPARING, start=True,
                                             training_output={})
            if started is None:
                continue  # cancelled meanwhile
            run = JobRun(started, store=self._store, config=self._cfg, env_cache=self._envs,
                         storage_factory=self._storage_factory, on_done=self._run_done,
                         isolation=self.isolation, scrub=self.scrub)
            with self._cond:
                if self._stopping:  # stop() raced this pass: hand the job back to the queue
                    self._store.transition(rec.project, rec.job_id, {PREPARING}, QUEUED)
                    return sleep
                self._runs[started.key] = run
            run.start()
            free -= 1
        return max(0.0, sleep)

    def _enforce_max_wait(self, rec: JobRecord, now: float) -> None:
        """Cancel a QUEUED or PREPARING job whose scheduling.maxWaitTime has passed."""
        wait = rec.job["trainingInput"].get("scheduling", {}).get("maxWaitTime")
        if not wait or now - rec.created_at < parse_duration(wait) * self._cfg.time_scale:
            return
        message = max_wait_message(wait, self._cfg.time_scale)
        if rec.state == QUEUED:
            self._store.transition(rec.project, rec.job_id, {QUEUED}, CANCELLED, error_message=message)
            return
        if self._store.transition(rec.project, rec.job_id, {PREPARING}, CANCELLING, error_message=message) is None:
            return  # it reached RUNNING meanwhile: maxWaitTime no longer applies
        with self._cond:
            run = self._runs.get(rec.key)
        if run is not None:
            run.request_cancel()
        else:  # no live run: nothing to stop
            self._store.transition(rec.project, rec.job_id, {CANCELLING}, CANCELLED)

    def _run_done(self, run: JobRun) -> None:
        with self._cond:
            self._runs.pop(run.key, None)
            self._cond.notify_all()
