"""One job's life after it leaves QUEUED: PREPARING (download + install), RUNNING (every
replica as its own sandboxed process), then SUCCEEDED / FAILED / CANCELLED. One thread per job.

Files of a job, under `<data_dir>/jobs/<project>/<jobId>/`:
    packages/<i>/<name>     the downloaded packageUris
    wheels/                 their wheels (`pip wheel --no-deps`)
    env/                    the job's own environment: its packages, on a cached dependency-set
                            environment (see `envs.py`, `install.py`)
    work/<replica>/         each replica's working directory (on the cloud each is its own VM)
    home/<replica>/, tmp/<replica>/   its HOME and its /tmp (TMPDIR without namespaces)
    run/                    root-only: each replica's sandbox spec and exit status
    logs/<replica>.log      e.g. `master-0.log`, `worker-1.log`, `ps-0.log`: stdout and stderr
                            interleaved, with the service's notes (prefixed `[local-training]`;
                            notes about the whole job, and pip's output as the install runs, go
                            to the primary's log); served by the logs endpoint (`?replica=worker-1`)
    logs/<replica>.stdout.log, logs/<replica>.stderr.log   each stream alone
    logs/pip.stdout.log, logs/pip.stderr.log               every pip command of the job

What each replica sees (as on the cloud, docs "TF_CONFIG and distributed training"):
    argv  `python -m <pythonModule> <args...> [--job-dir <jobDir>]`
    env   built from an allowlist (`replica_env.py`): TF_CONFIG = {"cluster": {"master":
          ["127.0.0.1:<port>"], "worker": [...], "ps": [...]}, "task": {"type": "worker",
          "index": 1}, "job": <trainingInput>, "environment": "cloud"} (see `cluster.py`;
          addresses are free local ports); CLOUD_ML_JOB_ID; GOOGLE_CLOUD_PROJECT;
          STORAGE_EMULATOR_HOST; PATH, HOME, TMPDIR, USER, LANG; PYTHONUNBUFFERED=1
    files, processes, user: see `sandbox.py` (its own /tmp and process table, an unprivileged
          account, where the host allows)

What differs per API (ml v1 Job, Vertex CustomJob: replicas, commands, environment, refusals,
limits) comes from the job's run profile (`profiles.py`, `vertex_run.py`); the above is ml v1's.

Hyperparameter tuning jobs (`trainingInput.hyperparameters`) run their trials instead of one cluster
(`trials.py`): each trial is a `_Cluster` of the same replicas with its own directories under
`trials/<trialId>/`, logs under `logs/trials/<trialId>/`, its `--<parameterName>=<value>` args, and
`task.trial`, CLOUD_ML_TRIAL_ID and CLOUD_ML_HP_METRIC_FILE set (see `_replica_env`).

Outcome: the job ends when the primary (master) exits: status 0 -> SUCCEEDED, otherwise
FAILED with the failing exception line, then "The replica master 0 exited with a non-zero
status of N." and the scrubbed tail of its stderr (`messages.py`). A worker, parameter server or
evaluator that exits non-zero first fails the job the same way, naming itself. Whatever still
runs when the job ends (parameter servers typically never exit) is stopped: SIGTERM to each
replica's process group, SIGKILL after kill_grace_seconds, which ends the replica's PID
namespace and with it every process the replica started.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from . import cluster, envs, gcs_access, install, messages, procs, profiles, replica_env, runtimes, sandbox
from .config import ServiceConfig
from .model import CANCELLING, FAILED, PREPARING, RUNNING, SUCCEEDED, parse_duration
from .store import Change, JobRecord, JobStore

log = logging.getLogger(__name__)

#: The variable that marks a trainer process as ours (checked before killing after a restart).
RUN_TOKEN_ENV = "LOCAL_TRAINING_RUN_TOKEN"
#: Marks the processes of one tuning trial (stopping a trial must not touch the job's other trials).
TRIAL_TOKEN_ENV = "LOCAL_TRAINING_TRIAL_TOKEN"
#: Where cloudml-hypertune writes when CLOUD_ML_HP_METRIC_FILE is unset; the service sets the variable to the
#: same place under the replica's own /tmp (TMPDIR without namespaces).
HYPERTUNE_FILE = "hypertune/output.metrics"
USER_CANCEL_MESSAGE = "Job cancelled by the user (jobs.cancel)."


class _Stopped(Exception):
    """The service is stopping: leave the stored state alone."""


class _Cancelled(Exception):
    """The job is CANCELLING: finish as CANCELLED."""


class _JobFailed(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def job_dir(data_dir: Path, project: str, job_id: str) -> Path:
    """The directory holding a job's packages, work dir and logs."""
    return Path(data_dir) / "jobs" / project / job_id


def replica_log_path(data_dir: Path, project: str, job_id: str, replica: str = "master-0") -> Path:
    """The combined stdout+stderr log of a replica (`master-0`, `worker-1`, ...)."""
    return job_dir(data_dir, project, job_id) / "logs" / f"{replica}.log"


def master_log_path(data_dir: Path, project: str, job_id: str) -> Path:
    """The combined stdout+stderr log of replica master-0."""
    return replica_log_path(data_dir, project, job_id, "master-0")


def status_text(rc: int) -> str:
    """An exit status as the cloud's messages show it: `3`, or `9(SIGKILL)` for a signal."""
    if rc < 0:
        try:
            return f"{-rc}({signal.Signals(-rc).name})"
        except ValueError:
            return str(-rc)
    return str(rc)


def default_storage_client(project: str) -> Any:
    """A google-cloud-storage client; anonymous when STORAGE_EMULATOR_HOST is set."""
    from google.cloud import storage  # imported lazily: only jobs that run need it

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client(project=project)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LogSink:
    """Appends lines to the combined log (and optionally a per-stream file), flushing each one
    so the logs endpoint sees output as it happens."""

    def __init__(self, combined: Path):
        combined.parent.mkdir(parents=True, exist_ok=True)
        self._combined = open(combined, "ab")
        self._lock = threading.Lock()

    def write(self, data: bytes, also: BinaryIO | None = None) -> None:
        with self._lock:
            if self._combined.closed:  # a straggler pump after the run ended
                return
            self._combined.write(data)
            self._combined.flush()
        if also is not None:
            also.write(data)
            also.flush()

    def note(self, text: str) -> None:
        self.write(f"[local-training] {text}\n".encode())

    def close(self) -> None:
        with self._lock:
            self._combined.close()


@dataclass
class _Cluster:
    """One run of the job's replicas: the job itself, or one trial of a tuning study (`trials.py`).

    root: where each replica's `work/`, `home/`, `tmp/` and the root-only `run/` live (the job's directory, or
    `trials/<trialId>/` under it); logs: where `<replica>.log` etc. go; sink: the primary's log; trial: the trial
    id (TF_CONFIG `task.trial`, CLOUD_ML_TRIAL_ID, CLOUD_ML_HP_METRIC_FILE), or None; token: the value of
    TRIAL_TOKEN_ENV in the trial's processes (stopping them never touches other trials), or None.
    """

    root: Path
    logs: Path
    sink: _LogSink
    trial: str | None = None
    token: str | None = None


@dataclass
class _ReplicaProc:
    """A started replica: its process (leader of its own process group), log sink and pumps."""

    replica: cluster.Replica
    popen: subprocess.Popen
    sink: _LogSink
    pumps: list[threading.Thread]
    status_file: Path
    reaped: bool = False


class JobRun:
    """Drives one job from PREPARING to a terminal state in its own thread.

    The scheduler creates it right after moving the job QUEUED -> PREPARING and calls
    `start()`. `request_cancel()` (after the API moved the job to CANCELLING) and
    `request_stop()` (service shutdown: kill processes, leave the record as it is) may be
    called from any thread. `on_done(run)` is called last, from the run's thread.
    """

    def __init__(self, rec: JobRecord, *, store: JobStore, config: ServiceConfig, env_cache: envs.EnvCache,
                 storage_factory: Callable[[str], Any], on_done: Callable[[JobRun], None],
                 isolation: sandbox.HostIsolation | None = None, scrub: messages.Scrubber | None = None):
        self.project, self.job_id = rec.project, rec.job_id
        self.key = rec.key
        self._job = rec.job
        self._state_since = rec.state_since
        self._store = store
        self._cfg = config
        self._envs = env_cache
        self._storage_factory = storage_factory
        self._on_done = on_done
        self._wake = threading.Event()
        self._cancel = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"job-{rec.job_id}", daemon=True)
        self._dir = job_dir(config.data_dir, rec.project, rec.job_id)
        # what differs between an ml v1 Job and a Vertex CustomJob (profiles.py)
        self._profile = profiles.for_record(rec, config)
        self._plan = self._profile.plan
        self._sink: _LogSink | None = None  # the primary replica's log: job-level notes go there too
        self._running_since: float | None = None  # epoch seconds RUNNING was entered
        self._replicas_started = 0
        self._ended_at: float | None = None  # epoch seconds the last replica was stopped
        self._isolation = isolation or sandbox.HostIsolation.off("Isolation was not configured.")
        # values in the job's own spec (project, buckets) are its data, never redacted from its errors
        self._scrub = (scrub or messages.Scrubber({})).allowing(f"{rec.project} {json.dumps(rec.job)}")
        self._holds: list[envs.EnvHold] = []  # cached layers this job uses (kept from eviction)
        self._env_chain: tuple[str, ...] = ()  # their keys
        self._runtime = runtimes.lookup(self._profile.runtime_version)
        self._tensorflow_layer = False  # the job runs on our TensorFlow layer, not a TensorFlow of its own
        self._study: Any = None  # trials.StudyRun of a tuning job, once it runs

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def request_cancel(self) -> None:
        self._cancel.set()
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _check(self) -> None:
        if self._stop.is_set():
            raise _Stopped()
        if self._cancel.is_set():
            raise _Cancelled()

    def _interrupted(self) -> bool:
        return self._stop.is_set() or self._cancel.is_set()

    def _hold(self, cancellable: bool = True) -> None:
        """Stay in the current state until min_state_seconds have passed since entering it.

        Raises _Stopped on a stop, and _Cancelled on a cancel when `cancellable`."""
        while True:
            if cancellable:
                self._check()
            elif self._stop.is_set():
                raise _Stopped()
            left = self._state_since + self._cfg.min_state_seconds - time.time()
            if left <= 0:
                return
            if cancellable:
                self._wake.wait(left)
            else:  # _wake may stay set by the cancel being served: sleep in short steps
                self._wake.wait(min(left, self._cfg.poll_interval))

    # -- the life of a job ---------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._sink = _LogSink(self._dir / "logs" / f"{self._plan.primary.name}.log")
            for line in self._isolation.notes:
                self._sink.note(line)
            env = self._prepare()
            self._hold()
            self._enter_running()
            if self._profile.tuning:
                from .trials import StudyRun  # a tuning job runs its trials (trials.py)

                self._study = StudyRun(self, env)
                state, message = self._study.run()
            else:
                state, message = self._run_cluster(env)
            self._hold()
            self._finish(state, message)
        except _Stopped:
            pass
        except _Cancelled:
            self._finish_cancelled()
        except _JobFailed as e:
            self._finish(FAILED, e.message)
        except Exception as e:  # a bug or an environment problem: the job must not hang
            log.exception("job %s/%s: internal error", self.project, self.job_id)
            try:
                self._finish(FAILED, f"Internal error in the local training service: {e!r}")
            except Exception:
                log.exception("job %s/%s: could not record the failure", self.project, self.job_id)
        finally:
            for hold in self._holds:
                hold.release()
            if self._sink is not None:
                self._sink.close()
            self._on_done(self)

    def _prepare(self) -> Path:
        """Download the packages and install them (see `install.py`); returns the interpreter of
        the job's environment. Raises _JobFailed, _Cancelled, _Stopped."""
        profile = self._profile
        note = self._sink.note  # type: ignore[union-attr]
        refusal = profile.refusal()
        if refusal:
            note(refusal)
            self._hold()  # it fails in PREPARING: a poller sees that state too (min_state_seconds)
            raise _JobFailed(refusal)
        note(f"Preparing job {profile.resource_name}: replicas " + ", ".join(self._plan.names()) + ".")
        for line in self._plan.notes:
            note(line)
        # the cloud picked an image per runtimeVersion/pythonVersion (an executorImageUri on Vertex); locally
        # there is one runtime
        for line in profile.runtime_notes(self._runtime, self._envs.runtime_info().version,
                                          self._cfg.runtime_tensorflow):
            note(line)
        pkg_root = self._dir / "packages"
        shutil.rmtree(pkg_root, ignore_errors=True)
        files: list[Path] = []
        client = None
        for i, uri in enumerate(profile.package_uris()):
            self._check()
            bucket, _, name = uri[len("gs://"):].partition("/")
            dest = pkg_root / str(i) / Path(name).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            note(f"Downloading package {uri}")
            try:
                if client is None:
                    client = self._storage_factory(self.project)
                client.bucket(bucket).blob(name).download_to_filename(str(dest))
            except Exception as e:
                raise _JobFailed(f"The package {uri} could not be downloaded: {type(e).__name__}: {e}") from None
            files.append(dest)
        self._check()
        pip_log = envs.PipLog(self._dir / "logs", on_line=self._sink.write)  # type: ignore[union-attr]
        requirements: dict[str, str] = {}
        try:
            wheels = install.build_wheels(self._envs, files, self._dir / "wheels", pip_log, self._interrupted,
                                          on_note=note)
            requirements = install.declared_requirements(wheels)
            base = None
            tf = self._runtime.tensorflow_requirements if self._runtime else []
            if tf and self._cfg.runtime_tensorflow:  # the runtime's TensorFlow: a shared, cached layer
                base = self._envs.ensure(tf, None, pip_log, self._interrupted,
                                         label=f"runtime {self._runtime.version}'s TensorFlow",  # type: ignore
                                         on_note=note, constraints=[f"{k}=={v}" for k, v in
                                                                    runtimes.local_libraries().items()])
                self._tensorflow_layer = not any(install.requirement_name(r).startswith("tensorflow")
                                                 for r in requirements)
                self._holds.append(self._envs.hold(base))
                self._env_chain = base.chain
            if requirements:
                # in declaration order, as pip would meet them (the cache key sorts them)
                base = self._envs.ensure(list(requirements), base, pip_log, self._interrupted,
                                         label="the packages' requirements", on_note=note)
                self._holds.append(self._envs.hold(base))
                self._env_chain = base.chain
            else:
                note("The packages declare no requirements: nothing to install beyond the runtime.")
            t0 = time.monotonic()
            python = install.install_job_env(self._envs, base, wheels, self._dir / "env", pip_log,
                                             self._interrupted)
            note(f"Installed {', '.join(w.label for w in wheels) or 'no packages'} into the job's environment "
                 f"in {time.monotonic() - t0:.1f}s.")
            return python
        except envs.Interrupted:
            self._check()
            raise
        except envs.InstallFailed as e:
            cause = install.diagnose(e, requirements, self._envs, profile.python_version)
            text = self._scrub(f"Installing packages failed: {cause}\n{messages.tail(e.output)}")
            raise _JobFailed(messages.escape_controls(text.rstrip())) from None

    def _enter_running(self) -> None:
        rec = self._store.transition(self.project, self.job_id, {PREPARING}, RUNNING)
        if rec is None:
            self._check()
            cur = self._store.get(self.project, self.job_id)
            if cur is not None and cur.state == CANCELLING:
                raise _Cancelled()
            raise _Stopped()  # someone else decided the outcome; nothing left to do
        self._state_since = rec.state_since
        self._running_since = rec.state_since

    def _replica_env(self, replica: cluster.Replica, addresses: dict[str, str], python: Path,
                     run: _Cluster | None = None) -> dict[str, str]:
        """The replica's whole environment: the variables the cloud sets, the local storage
        settings, and an allowlisted base (`replica_env.build`); nothing else of the service's.

        For a tuning trial (`run.trial`), as AI Platform and Vertex AI set them: `task.trial` = the trial id in
        TF_CONFIG (and Vertex's CLUSTER_SPEC; the profile's `variables`), CLOUD_ML_TRIAL_ID = the trial id
        (cloudml-hypertune tags its lines with it) and CLOUD_ML_HP_METRIC_FILE = `<the replica's own
        /tmp>/hypertune/output.metrics` (cloudml-hypertune's default path, in this replica's own /tmp: parallel
        trials never share a file)."""
        variables = self._profile.variables(replica, addresses, run.trial if run is not None else None)
        dirs = self._replica_dirs(replica, run)
        # trainers read and write gs:// through the local storage emulator, whatever the library
        variables.update(gcs_access.replica_variables(os.environ.get("STORAGE_EMULATOR_HOST"), self.project,
                                                      str(dirs["home"]), self._tensorflow_layer))
        tmpdir = "/tmp" if self._isolation.namespaces else str(dirs["tmp"])
        if run is not None and run.trial is not None:
            variables["CLOUD_ML_TRIAL_ID"] = run.trial
            variables["CLOUD_ML_HP_METRIC_FILE"] = f"{tmpdir}/{HYPERTUNE_FILE}"
        user = self._isolation.user[0] if self._isolation.user else "root"
        return replica_env.build(variables, bin_dir=str(python.parent), home=str(dirs["home"]), tmpdir=tmpdir,
                                 user=user)

    def _replica_dirs(self, replica: cluster.Replica, run: _Cluster | None = None) -> dict[str, Path]:
        """The replica's own directories: `work/<name>` (cwd), `home/<name>` (HOME), `tmp/<name>`
        (its /tmp, or TMPDIR without namespaces), under the job's directory or its trial's."""
        root = run.root if run is not None else self._dir
        return {k: root / k / replica.name for k in ("work", "home", "tmp")}

    def _start_replica(self, replica: cluster.Replica, cmd: list[str], env: dict[str, str],
                       token: str, run: _Cluster | None = None) -> _ReplicaProc:
        logs = run.logs if run is not None else self._dir / "logs"
        primary_sink = run.sink if run is not None else self._sink
        sink = primary_sink if replica == self._plan.primary else _LogSink(logs / f"{replica.name}.log")
        dirs = self._replica_dirs(replica, run)
        sandbox.prepare_dirs(self._isolation, *dirs.values())
        if "BOTO_CONFIG" in env:  # gsutil's configuration, in the replica's own HOME
            boto = Path(env["BOTO_CONFIG"])
            boto.write_text(gcs_access.BOTO_CONFIG)
            if self._isolation.user:
                os.chown(boto, self._isolation.user[1], self._isolation.user[2])
        info = self._envs.runtime_info()
        exposes = [str(self._dir / "env"), *(str(self._envs.root / k) for k in self._env_chain),
                   info.prefix, info.base_prefix, str(dirs["work"]), str(dirs["home"]),
                   *(str(p) for p in self._cfg.shared_paths)]
        masks = [str(self._cfg.data_dir), str(self._envs.root), *(str(p) for p in self._cfg.mask_paths)]
        spec = sandbox.ReplicaSpec(argv=cmd, env=env, cwd=str(dirs["work"]), tmp=str(dirs["tmp"]), exposes=exposes,
                                   masks=masks, run_dir=(run.root if run is not None else self._dir) / "run",
                                   name=replica.name)
        marks = {RUN_TOKEN_ENV: token}
        if run is not None and run.token is not None:
            marks[TRIAL_TOKEN_ENV] = run.token
        try:
            popen = sandbox.launch(self._isolation, spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   extra_env=marks)
        except BaseException:
            if sink is not primary_sink:
                sink.close()  # type: ignore[union-attr]
            raise
        sink.note(f"Started replica {replica.name} (pid {popen.pid}).")  # type: ignore[union-attr]
        pumps = []
        for stream, kind in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            t = threading.Thread(target=self._pump, args=(stream, sink, logs / f"{replica.name}.{kind}.log"),
                                 name=f"{self.job_id}-{replica.name}-{kind}", daemon=True)
            t.start()
            pumps.append(t)
        return _ReplicaProc(replica, popen, sink, pumps, spec.status_file)  # type: ignore[arg-type]

    def _run_cluster(self, python: Path) -> tuple[str, str | None]:
        """Start every replica, watch them, stop what is left; returns (state, errorMessage).

        Raises _Cancelled / _Stopped when woken by a cancel, maxRunningTime or a service stop."""
        note = self._sink.note  # type: ignore[union-attr]
        commands = {r: self._profile.command(r) for r in self._plan.replicas}
        # one free local port per cluster member (ml v1: evaluators are not cluster members)
        addresses = {r.name: f"127.0.0.1:{_free_port()}" for r in self._plan.replicas if self._profile.addressed(r)}
        token = uuid.uuid4().hex
        # the token is recorded before any process exists, so a restart can always find them
        self._store.update(self.project, self.job_id, lambda r: Change(runtime={"token": token, "groups": []}))
        note("Running command: " + shlex.join(["python", "-m", *commands[self._plan.primary]]))
        self._check()
        started: list[_ReplicaProc] = []
        try:
            for replica in self._plan.replicas:
                env = self._replica_env(replica, addresses, python)
                started.append(self._start_replica(replica, [str(python), "-m", *commands[replica]], env, token))
                if commands[replica] != commands[self._plan.primary]:  # its pool runs another program
                    started[-1].sink.note("Running command: " + shlex.join(["python", "-m", *commands[replica]]))
                self._replicas_started = len(started)
                groups = [p.popen.pid for p in started]
                self._store.update(self.project, self.job_id, lambda r, g=groups: Change(runtime={
                    "groups": g, "pid": g[0], "pgid": g[0]}))
            return self._watch(started)
        finally:
            living = [p for p in started if not p.reaped]
            for p in living:
                if p.popen.returncode is None and not procs.has_exited(p.popen.pid):
                    p.sink.note("Stopping the replica's processes (SIGTERM, then SIGKILL).")
            procs.stop_groups([p.popen for p in living], self._cfg.kill_grace_seconds)
            if not self._isolation.namespaces:  # children that left the group (setsid) still carry the token
                procs.kill_processes_with_env(RUN_TOKEN_ENV, token)
            self._ended_at = time.time()
            for p in started:
                for t in p.pumps:
                    t.join(timeout=5)
                if p.sink is not self._sink:
                    p.sink.close()

    def _watch(self, started: list[_ReplicaProc]) -> tuple[str, str | None]:
        """Wait for the outcome: the primary's exit, another replica's failure, a cancel, a
        stop or maxRunningTime. Reaps the replica whose exit decided it."""
        primary = started[0]
        deadline = None
        max_running = self._profile.max_running_time()
        if max_running:
            deadline = self._state_since + parse_duration(max_running) * self._cfg.time_scale
        while True:
            if procs.has_exited(primary.popen.pid):
                return self._outcome(primary, self._exit_status(primary))
            for p in started[1:]:
                if not p.reaped and procs.has_exited(p.popen.pid):
                    rc = self._exit_status(p)
                    p.reaped = True
                    if rc != 0:
                        return self._outcome(p, rc)
                    p.sink.note(f"The replica {p.replica.label} exited with status 0.")
            if self._wake.is_set():
                self._check()
                raise _Stopped()  # unreachable: the wake event is only set by a cancel or a stop
            timeout = self._cfg.poll_interval
            if deadline is not None:
                left = deadline - time.time()
                if left <= 0:
                    self._max_running_time_reached(max_running)
                    continue  # the cancel flag is set now: the next pass raises _Cancelled
                timeout = min(timeout, left)
            self._wake.wait(timeout)

    def _max_running_time_reached(self, max_running: str) -> None:
        scale = self._cfg.time_scale
        scaled = "" if scale == 1 else f" (local time_scale {scale:g}: {parse_duration(max_running) * scale:g} " \
                                       "real seconds)"
        self._store.transition(self.project, self.job_id, {RUNNING}, CANCELLING,
                               error_message=f"The job ran longer than {self._profile.timeout_field} "
                                             f"({max_running}){scaled} and was cancelled.")
        self.request_cancel()

    @staticmethod
    def _exit_status(p: _ReplicaProc) -> int:
        """Reap replica `p`'s leader (killing what is left of its group) and return the
        trainer's own exit status (the sandbox init's status file, else the leader's)."""
        rc = procs.reap_group(p.popen)
        status = sandbox.read_status(p.status_file, rc)
        return rc if status is None else status

    def _outcome(self, p: _ReplicaProc, rc: int, run: _Cluster | None = None) -> tuple[str, str | None]:
        """The job's (or the trial's) (state, errorMessage) decided by replica `p` exiting with status `rc`."""
        p.reaped = True
        for t in p.pumps:  # its group is dead, so its pipes close: let the pumps write the last lines
            t.join(timeout=5)
        label = p.replica.label
        if rc == 0:
            p.sink.note(f"Module completed; the replica {label} exited with status 0.")
            return SUCCEEDED, None
        status = status_text(rc)
        p.sink.note(f"The replica {label} exited with a non-zero status of {status}.")
        if p.replica != self._plan.primary:
            (run.sink if run is not None else self._sink).note(  # type: ignore[union-attr]
                f"The replica {label} exited with a non-zero status of {status}: the "
                + ("trial fails." if run is not None and run.trial is not None else "job fails."))
        logs = run.logs if run is not None else self._dir / "logs"
        stderr = messages.read_text_tail(logs / f"{p.replica.name}.stderr.log")
        sentence = f"The replica {label} exited with a non-zero status of {status}."
        cause = messages.cause_line(stderr)
        hint = (runtimes.missing_module_hint(cause, self._runtime, self._cfg.runtime_tensorflow)
                or gcs_access.failure_hint(cause, self._tensorflow_layer))
        return FAILED, messages.failure_message(sentence, stderr, self._scrub, hint=hint)

    def _training_output(self) -> dict[str, Any]:
        """trainingOutput at the end: `consumedMLUnits` when replicas ran (an estimate, see
        `cluster.consumed_ml_units`); `isHyperparameterTuningJob` is false, which proto3 JSON
        leaves out, like every default value. A tuning job's comes from its study (`trials.py`)."""
        if self._study is not None:
            return dict(self._study.training_output())
        if self._running_since is None or not self._replicas_started:
            return {}
        ended = self._ended_at if self._ended_at is not None else time.time()
        units = cluster.consumed_ml_units(self._replicas_started, ended - self._running_since)
        return {"consumedMLUnits": units} if units else {}

    @staticmethod
    def _pump(stream: BinaryIO, sink: _LogSink, own_file: Path) -> None:
        with open(own_file, "ab") as own:
            for line in iter(stream.readline, b""):
                sink.write(line, also=own)
        stream.close()

    # -- endings ---------------------------------------------------------------------------------
    def _finish(self, state: str, message: str | None) -> None:
        """Record the outcome unless the job was cancelled meanwhile (then CANCELLED wins)."""

        output = self._training_output()

        def decide(r: JobRecord) -> Change | None:
            if r.state in (PREPARING, RUNNING):
                return Change(state=state, error_message=message, training_output=output)
            return None

        rec, changed = self._store.update(self.project, self.job_id, decide)
        if not changed and rec is not None and rec.state == CANCELLING:
            self._finish_cancelled()

    def _finish_cancelled(self) -> None:
        rec = self._store.get(self.project, self.job_id)
        if rec is None or rec.state != CANCELLING:
            return
        self._state_since = rec.state_since
        try:
            # the cancel is being served: a repeated jobs.cancel must not cut the hold short
            self._hold(cancellable=False)
        except _Stopped:
            return
        self._store.transition(self.project, self.job_id, {CANCELLING}, "CANCELLED",
                               error_message=rec.job.get("errorMessage") or USER_CANCEL_MESSAGE,
                               training_output=self._training_output())
