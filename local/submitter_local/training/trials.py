"""Running a hyperparameter tuning job's trials inside its `JobRun`: an ml v1 Job with
`trainingInput.hyperparameters`, or a Vertex AI HyperparameterTuningJob (`vertex_tuning.py`). The job's run profile
(`profiles.py`, `vertex_run.py`) gives the study (`study_spec()`), each replica's trial command (`trial_command`),
its environment (`variables(..., trial)`) and a per-trial time limit (`trial_timeout()`, Vertex's
trialJobSpec.scheduling.timeout); everything else is the same for both APIs.

The job is RUNNING while its study runs: `StudyRun.run()` starts trials up to `maxParallelTrials` at once and
`maxTrials` in all, each a whole cluster of the job's replicas (`runner._Cluster`), and ends with the job's
(state, errorMessage). Every rule it applies (values per algorithm, the metric file, early stopping, failed
trials, trainingOutput) is a pure function of `study.py`; this module only runs processes and keeps the record.

A trial, by id ("1", "2", ...; a resumed study continues the previous job's numbering):

    argv   python -m <pythonModule> <args...> --<parameterName>=<value>... [--job-dir <jobDir>] (ml v1; on Vertex
           the replica's pool's args then the trial's --<parameterId>=<value>)
    env    the job's (runner._replica_env), plus TF_CONFIG task.trial = id (and CLUSTER_SPEC's on Vertex),
           CLOUD_ML_TRIAL_ID = id and CLOUD_ML_HP_METRIC_FILE = <the replica's own /tmp>/hypertune/output.metrics
    files  trials/<id>/{work,home,tmp,run}/<replica>/, logs under logs/trials/<id>/ (the logs endpoint:
           `?replica=trial-<id>/master-0`); the job's own log (master-0.log) notes each trial's start and end

Its outcome is the primary's exit as for a job (`JobRun._outcome`); its metric is read from the primary
replica's metric file while it runs (for early stopping, and for `allMetrics` of running trials) and when it
ends. trainingOutput is rewritten in the job record whenever a trial starts, reports or ends, so `jobs.get`
(and the submitter's trial events) see the study as it runs. A cancel, maxRunningTime or a service stop stops
every running trial (SIGTERM, then SIGKILL after kill_grace_seconds); their state becomes CANCELLED.
"""

from __future__ import annotations

import dataclasses
import shlex
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import procs
from .model import FAILED, RUNNING, SUCCEEDED, parse_duration, rfc3339
from .store import Change, JobRecord
from .study import (
    CANCELLED,
    StudyError,
    StudySpec,
    Suggester,
    TrialRecord,
    check_resumable,
    failure_verdict,
    median_rule_stops,
    read_metric_file,
    training_output,
)

if TYPE_CHECKING:
    from .runner import JobRun, _Cluster, _ReplicaProc


@dataclasses.dataclass
class _TrialRun:
    """A trial whose replicas run: its record, its cluster, its processes, the metric file of its primary."""

    record: TrialRecord
    cluster: _Cluster
    procs: list[_ReplicaProc]
    started_at: float
    metric_file: Path


class StudyRun:
    """The trials of one tuning job (see the module docstring). Used by `JobRun._main` in the job's thread.

    Args:
        job: the JobRun (its plan, store, config, sandbox and replica helpers are the trials' too).
        python: the interpreter of the job's environment.
    Raises:
        runner._JobFailed: the spec cannot run (jobs.create checks it first, so this means a job stored by an
            older service).
    """

    def __init__(self, job: JobRun, python: Path):
        from .runner import _JobFailed

        self.job, self.python = job, python
        try:
            self.spec: StudySpec = job._profile.study_spec()
            previous = self._previous_trials()
        except StudyError as exc:
            raise _JobFailed(f"The hyperparameter tuning spec cannot run: {exc}") from None
        self.trials: list[TrialRecord] = previous
        self.resumed = len(previous)  # trials of the resumed job come first; the rest are this job's
        self.suggester = Suggester(self.spec, seed=f"{job.project}/{job.job_id}", tried=[t.values for t in previous])
        self.running: dict[str, _TrialRun] = {}
        self.started = 0  # trials this job started (resumed ones not counted: maxTrials is this job's)
        self.next_id = max((int(t.trial_id) for t in previous), default=0) + 1
        self.exhausted = False  # a grid search used every point
        self.groups: list[int] = []
        self.token = uuid.uuid4().hex
        self.other_tags: set[str] = set()
        # a per-trial running-time limit (Vertex trialJobSpec.scheduling.timeout), in real seconds
        self.trial_timeout = job._profile.trial_timeout()
        self.trial_timeout_field = job._profile.timeout_field
        self.trial_limit = (parse_duration(self.trial_timeout) * job._cfg.time_scale
                            if self.trial_timeout else None)

    def _previous_trials(self) -> list[TrialRecord]:
        if self.spec.resume_from is None:
            return []
        found = self.job._store.get(self.job.project, self.spec.resume_from)
        trials = check_resumable(self.spec, found.job if found else None, self.spec.resume_from)
        self.job._sink.note(f"Resuming the study of job {self.spec.resume_from}: {len(trials)} earlier trial(s) "
                            "are part of this job's trials; new trials are numbered after them.")
        return trials

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> tuple[str, str | None]:
        """Run the study to its end; returns the job's (state, errorMessage).

        Raises runner._Cancelled / runner._Stopped (a cancel, maxRunningTime, a service stop), after every running
        trial was stopped."""
        job, spec = self.job, self.spec
        note = job._sink.note
        note(f"Hyperparameter tuning: goal {spec.goal} on metric {spec.metric_tag!r}, up to {spec.max_trials} "
             f"trial(s), {spec.max_parallel} at a time, algorithm {spec.algorithm}"
             + (" (local stand-in, not Bayesian optimisation: see docs/local-training.md)"
                if spec.algorithm == "ALGORITHM_UNSPECIFIED" else "")
             + (", early stopping by the median rule" if spec.early_stopping else "")
             + (f", failing after {spec.max_failed} failed trial(s)" if spec.max_failed else "") + ".")
        job._store.update(job.project, job.job_id, lambda r: Change(runtime={"token": self.token, "groups": []}))
        max_running = job._profile.max_running_time()
        deadline = job._state_since + parse_duration(max_running) * job._cfg.time_scale if max_running else None
        self._publish()
        try:
            while True:
                job._check()
                changed = self._reap()
                changed = self._watch_metrics() or changed
                verdict = failure_verdict(spec, self._count(FAILED, own=True), self._count(SUCCEEDED, own=True))
                if verdict is not None:
                    self._stop_all(CANCELLED)
                    self._keep_messages()
                    return FAILED, self._failure_message(verdict)
                while len(self.running) < spec.max_parallel and self.started < spec.max_trials and not self.exhausted:
                    values = self.suggester.suggest(self._scored())
                    if values is None:
                        self.exhausted = True
                        note(f"The grid has no untried point left after {self.started} trial(s) of this job.")
                        break
                    self._launch(values)
                    changed = True
                if changed:
                    self._publish()
                if not self.running:
                    break
                timeout = job._cfg.poll_interval
                if deadline is not None:
                    left = deadline - time.time()
                    if left <= 0:
                        job._max_running_time_reached(str(max_running))
                        continue  # the cancel flag is set now: the next pass raises _Cancelled
                    timeout = min(timeout, left)
                job._wake.wait(timeout)
        finally:
            self._stop_all(CANCELLED)
        self._keep_messages()
        return self._outcome()

    def training_output(self) -> dict[str, Any]:
        """trainingOutput as it stands (study.training_output), with consumedMLUnits: one ML unit per
        replica-hour of the trials' running time (runner's estimate, summed over trials)."""
        now = time.time()
        seconds = sum(t.replica_seconds for t in self.trials)
        seconds += sum(len(r.procs) * (now - r.started_at) for r in self.running.values())
        return training_output(self.spec, self.trials, round(seconds / 3600.0, 6))

    # -- trials ----------------------------------------------------------------------------------------------
    def _launch(self, values: dict[str, str]) -> None:
        from .runner import _Cluster, _LogSink

        job, profile = self.job, self.job._profile
        trial_id = str(self.next_id)
        self.next_id += 1
        self.started += 1
        root, logs = job._dir / "trials" / trial_id, job._dir / "logs" / "trials" / trial_id
        sink = _LogSink(logs / f"{job._plan.primary.name}.log")
        cluster = _Cluster(root=root, logs=logs, sink=sink, trial=trial_id, token=uuid.uuid4().hex)
        record = TrialRecord(trial_id, values, start_time=rfc3339(time.time()))
        self.trials.append(record)
        commands = {r: profile.trial_command(r, self.spec.args(values)) for r in job._plan.replicas}
        command = shlex.join(["python", "-m", *commands[job._plan.primary]])
        job._sink.note(f"Trial {trial_id} started: {' '.join(self.spec.args(values))} "
                       f"(its log: replica trial-{trial_id}/{job._plan.primary.name}).")
        sink.note(f"Trial {trial_id} of job {profile.resource_name}. Running command: {command}")
        addresses = {r.name: f"127.0.0.1:{_free_port()}" for r in job._plan.replicas if profile.addressed(r)}
        started: list[_ReplicaProc] = []
        try:
            for replica in job._plan.replicas:
                env = job._replica_env(replica, addresses, self.python, cluster)
                cmd = [str(self.python), "-m", *commands[replica]]
                started.append(job._start_replica(replica, cmd, env, self.token, cluster))
                self.groups.append(started[-1].popen.pid)
                groups = list(self.groups)
                job._store.update(job.project, job.job_id, lambda r, g=groups: Change(runtime={"groups": g}))
        except OSError as exc:
            trial = _TrialRun(record, cluster, started, time.time(), Path("/nonexistent"))
            self._end(trial, FAILED, f"The trial's replicas could not be started: {exc}")
            return
        primary_tmp = job._replica_dirs(job._plan.primary, cluster)["tmp"]
        from .runner import HYPERTUNE_FILE

        self.running[trial_id] = _TrialRun(record, cluster, started, time.time(), primary_tmp / HYPERTUNE_FILE)

    def _reap(self) -> bool:
        """End the trials whose outcome is decided (as `JobRun._watch` decides a job's); True when one ended."""
        ended = False
        for trial in list(self.running.values()):
            primary = trial.procs[0]
            outcome: tuple[str, str | None] | None = None
            if procs.has_exited(primary.popen.pid):
                outcome = self.job._outcome(primary, self.job._exit_status(primary), trial.cluster)
            else:
                for p in trial.procs[1:]:
                    if not p.reaped and procs.has_exited(p.popen.pid):
                        rc = self.job._exit_status(p)
                        p.reaped = True
                        if rc != 0:
                            outcome = self.job._outcome(p, rc, trial.cluster)
                            break
                        p.sink.note(f"The replica {p.replica.label} exited with status 0.")
            if outcome is None and self.trial_limit is not None and time.time() - trial.started_at >= self.trial_limit:
                outcome = (FAILED, f"The trial ran longer than {self.trial_timeout_field} ({self.trial_timeout}) and "
                                   "was stopped.")
                trial.cluster.sink.note(outcome[1])
            if outcome is not None:
                self._end(trial, *outcome)
                ended = True
        return ended

    def _watch_metrics(self) -> bool:
        """Read each running trial's metric file; stop by the median rule when early stopping is on. True when a
        measurement arrived or a trial was stopped."""
        changed = False
        completed = [t.measurements for t in self.trials if t.state == SUCCEEDED and t.measurements]
        for trial in list(self.running.values()):
            if self._read(trial):
                changed = True
                if self.spec.early_stopping and median_rule_stops(self.spec.goal, trial.record.measurements,
                                                                  completed):
                    trial.record.stopped_early = True
                    trial.cluster.sink.note("Stopped early: its best value so far is worse than the median of the "
                                            "completed trials' running averages at its step (median rule).")
                    self._end(trial, SUCCEEDED, None)
        return changed

    def _read(self, trial: _TrialRun) -> bool:
        """Refresh the trial's measurements from its metric file; True when they changed."""
        try:
            text = trial.metric_file.read_text(errors="replace")
        except OSError:
            return False
        reading = read_metric_file(text, self.spec.metric_tag)
        self.other_tags.update(reading.other_tags)
        if list(reading.measurements) == trial.record.measurements:
            return False
        trial.record.measurements = list(reading.measurements)
        return True

    def _end(self, trial: _TrialRun, state: str, message: str | None) -> None:
        """Stop what is left of the trial, read its metric one last time, record how it ended."""
        self._stop(trial)
        self._read(trial)
        record = trial.record
        record.state, record.message = state, message
        record.end_time = rfc3339(time.time())
        record.replica_seconds = len(trial.procs) * (time.time() - trial.started_at)
        self.running.pop(record.trial_id, None)
        if state == SUCCEEDED and record.final is None:
            others = f" (it reported {', '.join(sorted(self.other_tags))})" if self.other_tags else ""
            trial.cluster.sink.note(f"The trial reported no value of the metric {self.spec.metric_tag!r} to "
                                    f"CLOUD_ML_HP_METRIC_FILE{others}: report it with cloudml-hypertune "
                                    "(hypertune.HyperTune().report_hyperparameter_tuning_metric(hyperparameter_"
                                    f"metric_tag={self.spec.metric_tag!r}, metric_value=...)).")
        final = f", final {self.spec.metric_tag} {record.final[1]:g} at step {record.final[0]}" if record.final else ""
        self.job._sink.note(f"Trial {record.trial_id} ended {state}{' (stopped early)' if record.stopped_early else ''}"
                            f"{final}.")
        trial.cluster.sink.close()

    def _stop(self, trial: _TrialRun) -> None:
        living = [p for p in trial.procs if not p.reaped]
        procs.stop_groups([p.popen for p in living], self.job._cfg.kill_grace_seconds)
        if not self.job._isolation.namespaces and trial.cluster.token:
            from .runner import TRIAL_TOKEN_ENV

            procs.kill_processes_with_env(TRIAL_TOKEN_ENV, trial.cluster.token)
        for p in trial.procs:
            p.reaped = True
            for t in p.pumps:
                t.join(timeout=5)
            if p.sink is not trial.cluster.sink:
                p.sink.close()

    def _stop_all(self, state: str) -> None:
        for trial in list(self.running.values()):
            trial.cluster.sink.note("Stopping the trial's processes (SIGTERM, then SIGKILL): the study ends.")
            self._end(trial, state, None)

    # -- results ---------------------------------------------------------------------------------------------
    def _count(self, state: str, own: bool = False) -> int:
        """Trials in `state`; with `own`, only this job's (not a resumed job's)."""
        return sum(1 for t in self.trials[self.resumed if own else 0:] if t.state == state)

    def _scored(self) -> list[tuple[dict[str, str], float]]:
        return [(t.values, t.final[1]) for t in self.trials if t.state == SUCCEEDED and t.final is not None]

    def _publish(self) -> None:
        """Write trainingOutput into the job record while the job is RUNNING (a new etag each time)."""
        output = self.training_output()

        def decide(r: JobRecord) -> Change | None:
            return Change(training_output=output, runtime={"trial_messages": self._messages()}) \
                if r.state == RUNNING else None

        self.job._store.update(self.job.project, self.job.job_id, decide)

    def _messages(self) -> dict[str, str]:
        """Why each failed trial failed ({trialId: message}): ml v1's HyperparameterOutput has no field for it;
        a Vertex Trial's `infeasibleReason` does (`vertex_tuning.render`)."""
        return {t.trial_id: t.message for t in self.trials if t.message}

    def _keep_messages(self) -> None:
        """Record the trials' messages once the study ends (internal bookkeeping only: no new etag)."""
        messages = self._messages()
        self.job._store.update(self.job.project, self.job.job_id,
                               lambda r: Change(runtime={"trial_messages": messages}))

    def _failure_message(self, verdict: str) -> str:
        failed = [t for t in self.trials if t.state == FAILED and t.message]
        first = f" Trial {failed[0].trial_id}: {failed[0].message}" if failed else ""
        return f"The hyperparameter tuning job failed: {verdict}.{first}"

    def _outcome(self) -> tuple[str, str | None]:
        if self._scored():
            return SUCCEEDED, None
        if any(t.state == SUCCEEDED for t in self.trials):
            others = f" Metrics reported under other tags: {', '.join(sorted(self.other_tags))}." \
                if self.other_tags else ""
            return FAILED, (f"No trial reported the metric {self.spec.metric_tag!r} ({self.spec.metric_field}): "
                            "trainers report it with cloudml-hypertune, which writes to the file named by "
                            f"CLOUD_ML_HP_METRIC_FILE.{others}")
        if not self.trials:
            return FAILED, "The hyperparameter tuning job ran no trial."
        return FAILED, self._failure_message(f"all {len(self.trials)} trial(s) failed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["StudyRun"]
