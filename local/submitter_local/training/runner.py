"""One job's life after it leaves QUEUED: PREPARING (download + install), RUNNING (the master
replica as a subprocess), then SUCCEEDED / FAILED / CANCELLED. One thread per job.

Files of a job, under `<data_dir>/jobs/<project>/<jobId>/`:
    packages/<i>/<name>     the downloaded packageUris
    work/                   the trainer's working directory
    logs/master-0.log       stdout and stderr interleaved, with the service's own notes
                            (prefixed `[local-training]`); served by the logs endpoint
    logs/master-0.stdout.log, logs/master-0.stderr.log   each stream alone
    logs/pip.stdout.log, logs/pip.stderr.log             the install, when this job built the env

What the trainer sees (as on the cloud, docs "TF_CONFIG and distributed training"):
    argv  `python -m <pythonModule> <args...> [--job-dir <jobDir>]`
    env   TF_CONFIG = {"cluster": {"master": ["127.0.0.1:<port>"]}, "task": {"type": "master",
          "index": 0}, "job": <trainingInput>, "environment": "cloud"}; CLOUD_ML_JOB_ID;
          GOOGLE_CLOUD_PROJECT; STORAGE_EMULATOR_HOST and the rest of the service's environment
          minus its Python settings (PYTHONPATH, VIRTUAL_ENV, ...); PYTHONUNBUFFERED=1 so logs
          stream.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

from . import envs, procs
from .config import ServiceConfig
from .model import CANCELLING, FAILED, PREPARING, RUNNING, SUCCEEDED, parse_duration
from .store import Change, JobRecord, JobStore

log = logging.getLogger(__name__)

#: The variable that marks a trainer process as ours (checked before killing after a restart).
RUN_TOKEN_ENV = "LOCAL_TRAINING_RUN_TOKEN"
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


def master_log_path(data_dir: Path, project: str, job_id: str) -> Path:
    """The combined stdout+stderr log of replica master-0."""
    return job_dir(data_dir, project, job_id) / "logs" / "master-0.log"


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


class JobRun:
    """Drives one job from PREPARING to a terminal state in its own thread.

    The scheduler creates it right after moving the job QUEUED -> PREPARING and calls
    `start()`. `request_cancel()` (after the API moved the job to CANCELLING) and
    `request_stop()` (service shutdown: kill processes, leave the record as it is) may be
    called from any thread. `on_done(run)` is called last, from the run's thread.
    """

    def __init__(self, rec: JobRecord, *, store: JobStore, config: ServiceConfig, env_cache: envs.EnvCache,
                 storage_factory: Callable[[str], Any], on_done: Callable[["JobRun"], None]):
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
        self._sink: _LogSink | None = None

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
            self._sink = _LogSink(self._dir / "logs" / "master-0.log")
            env = self._prepare()
            self._hold()
            self._enter_running()
            state, message = self._run_master(env)
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
            if self._sink is not None:
                self._sink.close()
            self._on_done(self)

    def _prepare(self) -> envs.Env:
        ti = self._job["trainingInput"]
        note = self._sink.note  # type: ignore[union-attr]
        if ti.get("masterConfig", {}).get("imageUri"):
            raise _JobFailed("Custom containers (masterConfig.imageUri) cannot run on the local training "
                             "service; use packageUris and pythonModule.")
        if "hyperparameters" in ti:
            raise _JobFailed("Hyperparameter tuning jobs are not supported by the local training service.")
        if int(ti.get("workerCount", "0")) or int(ti.get("parameterServerCount", "0")) \
                or int(ti.get("evaluatorCount", "0")):
            note("Only the master replica runs locally; workers, parameter servers and evaluators are ignored.")
        note(f"Preparing job projects/{self.project}/jobs/{self.job_id}.")
        pkg_root = self._dir / "packages"
        shutil.rmtree(pkg_root, ignore_errors=True)
        files: list[Path] = []
        client = None
        for i, uri in enumerate(ti.get("packageUris", [])):
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
        try:
            return self._envs.ensure(files, self._dir / "logs", self._interrupted, on_log=note)
        except envs.Interrupted:
            self._check()
            raise
        except envs.InstallFailed as e:
            raise _JobFailed(f"Installing packages failed: {e.tail}") from None

    def _enter_running(self) -> None:
        rec = self._store.transition(self.project, self.job_id, {PREPARING}, RUNNING)
        if rec is None:
            self._check()
            cur = self._store.get(self.project, self.job_id)
            if cur is not None and cur.state == CANCELLING:
                raise _Cancelled()
            raise _Stopped()  # someone else decided the outcome; nothing left to do
        self._state_since = rec.state_since

    def _trainer_env(self) -> tuple[dict[str, str], str]:
        ti = self._job["trainingInput"]
        token = uuid.uuid4().hex
        env = envs.child_base_env()
        env.update({
            "TF_CONFIG": json.dumps({
                "cluster": {"master": [f"127.0.0.1:{_free_port()}"]},
                "task": {"type": "master", "index": 0},
                "job": ti,
                "environment": "cloud",
            }),
            "CLOUD_ML_JOB_ID": self.job_id,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PYTHONUNBUFFERED": "1",
            RUN_TOKEN_ENV: token,
        })
        return env, token

    def _run_master(self, env_info: envs.Env) -> tuple[str, str | None]:
        ti = self._job["trainingInput"]
        note = self._sink.note  # type: ignore[union-attr]
        cmd = [str(env_info.python), "-m", ti["pythonModule"], *ti.get("args", [])]
        if ti.get("jobDir"):
            cmd += ["--job-dir", ti["jobDir"]]  # the service appends it, as the cloud does
        env, token = self._trainer_env()
        work = self._dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        logs = self._dir / "logs"
        note("Running command: python -m " + " ".join([ti["pythonModule"], *cmd[3:]]))
        self._check()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        pumps: list[threading.Thread] = []
        try:
            self._store.update(self.project, self.job_id,
                               lambda r: Change(runtime={"pid": proc.pid, "pgid": proc.pid, "token": token}))
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
                t = threading.Thread(target=self._pump, args=(stream, logs / f"master-0.{name}.log"),
                                     name=f"{self.job_id}-{name}", daemon=True)
                t.start()
                pumps.append(t)
            deadline = None
            max_running = ti.get("scheduling", {}).get("maxRunningTime")
            if max_running:
                deadline = self._state_since + parse_duration(max_running)
            why = procs.wait_exit(proc, self._wake, self._cfg.poll_interval, deadline)
            if why == "exited":
                rc = procs.reap_group(proc)
            else:
                if why == "deadline":
                    self._store.transition(
                        self.project, self.job_id, {RUNNING}, CANCELLING,
                        error_message=f"The job ran longer than scheduling.maxRunningTime ({max_running}) "
                                      "and was cancelled.")
                    self._cancel.set()
                note("Stopping the replica's processes (SIGTERM, then SIGKILL).")
                procs.stop_group(proc, self._cfg.kill_grace_seconds)
                self._check()
                raise _Stopped()  # unreachable: woken means cancel or stop
        finally:
            if proc.returncode is None:  # an exception before the wait: never leave a trainer behind
                procs.stop_group(proc, 0)
            for t in pumps:
                t.join(timeout=5)
        if rc == 0:
            note("Module completed; the replica master 0 exited with status 0.")
            return SUCCEEDED, None
        status = f"{-rc}({signal.Signals(-rc).name})" if rc < 0 else str(rc)
        note(f"The replica master 0 exited with a non-zero status of {status}.")
        tail = envs.read_tail(logs / "master-0.stderr.log")
        return FAILED, f"The replica master 0 exited with a non-zero status of {status}. {tail}".rstrip()

    def _pump(self, stream: BinaryIO, own_file: Path) -> None:
        with open(own_file, "ab") as own:
            for line in iter(stream.readline, b""):
                self._sink.write(line, also=own)  # type: ignore[union-attr]
        stream.close()

    # -- endings ---------------------------------------------------------------------------------
    def _finish(self, state: str, message: str | None) -> None:
        """Record the outcome unless the job was cancelled meanwhile (then CANCELLED wins)."""

        def decide(r: JobRecord) -> Change | None:
            if r.state in (PREPARING, RUNNING):
                return Change(state=state, error_message=message)
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
                               error_message=rec.job.get("errorMessage") or USER_CANCEL_MESSAGE)
