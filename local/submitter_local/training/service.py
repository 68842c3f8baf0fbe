"""`TrainingService`: the local stand-in for AI Platform Training's `projects.jobs` API.

It owns the job store, the environment cache, the scheduler, the optional create quota (`quota.py`) and the
HTTP server, and implements each API method once (the Flask layer in `api.py` only translates HTTP).
"""

from __future__ import annotations

import base64
import binascii
import collections
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import cluster, errors, filters, jobspec, preflight, replica_env, study
from .config import ServiceConfig
from .envs import EnvCache
from .errors import ApiError
from .messages import Scrubber
from .model import QUEUED, job_name
from .quota import CreateQuota
from .runner import default_storage_client, job_dir, replica_log_path
from .sandbox import HostIsolation
from .scheduler import Scheduler
from .store import AlreadyExists, Change, JobRecord, JobStore

log = logging.getLogger(__name__)

_REPLICA_RE = re.compile(r"(master|chief|worker|ps|evaluator)-\d+")
_TRIAL_REPLICA_RE = re.compile(r"trial-(\d+)/((?:master|chief|worker|ps|evaluator)-\d+)")
DEFAULT_PAGE_SIZE = 20  # jobs.list pageSize: "The default value is 20, and the maximum page size is 100."
MAX_PAGE_SIZE = 100


class _QuietHandler(WSGIRequestHandler):
    """werkzeug logs every request to stderr by default; a poller makes that noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, self.path, code)


class TrainingService:
    """The local training service (ml v1 `projects.jobs` subset + a logs endpoint).

    Usage::

        svc = TrainingService(ServiceConfig(data_dir=..., runtime_python=...))  # nothing started
        svc.start(host="127.0.0.1", port=0)   # HTTP server + scheduler; port 0 = any free port
        svc.url                               # "http://127.0.0.1:PORT"
        svc.stop()                            # server down, trainer process groups killed

    Jobs survive a stop/start on the same data_dir; jobs that were PREPARING/RUNNING/CANCELLING
    become FAILED on the next start (their processes were killed). One service per data_dir
    at a time (enforced with a lock file).
    """

    def __init__(self, config: ServiceConfig):
        self.config = config
        self._store: JobStore | None = None
        self._scheduler: Scheduler | None = None
        self._envs = EnvCache(config.effective_envs_dir, config.runtime_python, config.pip_args,
                              poll=config.poll_interval, max_bytes=config.envs_max_bytes)
        self.isolation: HostIsolation | None = None
        self._server: BaseWSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._lock_file: Any = None
        self._calls: collections.Counter[str] = collections.Counter()
        self._calls_lock = threading.Lock()
        self._preflight_clients: dict[str, Any] = {}  # project -> storage client of jobs.create's checks
        self._create_quota = (CreateQuota(config.create_quota_per_minute, config.create_quota_window_s)
                              if config.create_quota_per_minute else None)
        from .api import create_app  # late import: api imports this module's types

        self.app = create_app(self)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> TrainingService:
        """Open the store, recover jobs of a previous run, start the scheduler and the HTTP server.

        Raises RuntimeError if already started or another service holds the data_dir, OSError
        if the port is taken.
        """
        if self._server is not None:
            raise RuntimeError("the training service is already started")
        data_dir = self.config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(data_dir / "service.lock", "w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise RuntimeError(f"another local training service is using {data_dir}") from None
        try:
            self._store = JobStore(data_dir / "jobs.sqlite3")
            factory = self.config.storage_client_factory or default_storage_client
            self.isolation = self._detect_isolation()
            for line in self.isolation.notes:
                log.warning("isolation: %s", line)
            self._scheduler = Scheduler(self._store, self.config, self._envs, factory, isolation=self.isolation)
            for name in self._scheduler.recover():
                log.warning("%s failed: the service restarted while it was active", name)
            self._envs.clean_stale()
            self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
            self._scheduler.scrub = self._scrubber()
        except BaseException:
            if self._store is not None:
                self._store.close()
                self._store = None
            lock_file.close()
            raise
        self._lock_file = lock_file
        self._scheduler.start()
        self._server_thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                               name="training-http", daemon=True)
        self._server_thread.start()
        log.info("local training service listening on %s (data dir %s)", self.url, data_dir)
        return self

    def _detect_isolation(self) -> HostIsolation:
        if self.config.isolation == "off":
            return HostIsolation.off("Isolation is off (isolation=off): trainers run as plain processes of the "
                                     "service's user, with their own TMPDIR and an allowlisted environment.")
        info = self._envs.runtime_info()
        return HostIsolation.detect(self.config.runtime_python, self.config.trainer_user,
                                    [info.prefix, info.base_prefix])

    def _scrubber(self) -> Scrubber:
        """What never leaves the service in an errorMessage: its own settings and URL (see
        `messages.Scrubber`); what trainers are given anyway (the storage emulator endpoint, the
        passed-through variables such as SSL_CERT_FILE) stays."""
        extra = {"the training API": self.url, **self.config.extra_secrets}
        given = [os.environ.get("STORAGE_EMULATOR_HOST", "")] + [os.environ[k] for k in replica_env.PASS_THROUGH
                                                                  if k in os.environ]
        return Scrubber.from_environ(os.environ, allowed_values=given, extra=extra)

    def stop(self) -> None:
        """Stop the HTTP server and the scheduler, kill every trainer process group (SIGTERM,
        then SIGKILL after kill_grace_seconds) and close the store. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(5)
            self._server_thread = None
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def __enter__(self) -> TrainingService:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the training service is not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """Base URL for `client_options={"api_endpoint": url}`, e.g. http://127.0.0.1:8090."""
        if self._server is None:
            raise RuntimeError("the training service is not started")
        host = self._server.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._server.server_port}"

    def set_paused(self, paused: bool) -> None:
        """Pause (no job leaves QUEUED) or resume scheduling."""
        self.config.paused = paused
        if self._scheduler is not None:
            self._scheduler.set_paused(paused)

    def stats(self) -> dict[str, Any]:
        """Counters for tests and the stack: {"api_calls": {"jobs.create": n, ...},
        "env_builds": n, "env_reuses": n, "env_evictions": n, "env_cache_bytes": n,
        "isolation": {"namespaces": bool, "user": name | None, "notes": [...]},
        "active_runs": n, "paused": bool, "create_quota": None | {"per_minute": n, "window_s": s,
        "refused": n (creates answered 429 so far)}}."""
        with self._calls_lock:
            calls = dict(self._calls)
        return {
            "api_calls": calls,
            "env_builds": self._envs.builds,
            "env_reuses": self._envs.reuses,
            "env_evictions": self._envs.evictions,
            "env_cache_bytes": self._envs.total_bytes(),
            "isolation": {"namespaces": bool(self.isolation and self.isolation.namespaces),
                          "user": self.isolation.user[0] if self.isolation and self.isolation.user else None,
                          "notes": list(self.isolation.notes) if self.isolation else []},
            "active_runs": self._scheduler.running_count() if self._scheduler else 0,
            "paused": self.config.paused,
            "create_quota": None if self._create_quota is None else {
                "per_minute": self._create_quota.limit, "window_s": self._create_quota.window_s,
                "refused": self._create_quota.refused},
        }

    # -- API methods (called by api.py; each raises ApiError) ------------------------------------
    def _count(self, method: str) -> None:
        with self._calls_lock:
            self._calls[method] += 1

    def count(self, method: str) -> None:
        """Count one call of an API method (`stats()["api_calls"]`), e.g. "customJobs.create"."""
        self._count(method)

    def charge_create(self, service: str, project: str, region: str) -> None:
        """Charge one create to the create quota of (service, project, region), when the service has one
        (`ServiceConfig.create_quota_per_minute`). Called first thing in a create, before the body is checked: Google
        charges a rate quota at its front end, so a create then answered 400 or 409 counts, one answered 429 not.

        service: "ml.googleapis.com" or "aiplatform.googleapis.com" (`errors.CREATE_QUOTAS`).
        Raises ApiError 429 RESOURCE_EXHAUSTED (`errors.rate_limited`) when the window is full."""
        if self._create_quota is None:
            return
        decision = self._create_quota.admit((service, project, region))
        if not decision.admitted:
            log.info("%s create in %s/%s refused: create quota of %d per %g s used (a slot frees in %.1f s)",
                     service, project, region, self._create_quota.limit, self._create_quota.window_s,
                     decision.retry_after_s)
            raise errors.rate_limited(service, project, region, self._create_quota.limit,
                                      self._create_quota.window_s)

    @property
    def scheduler(self) -> Scheduler:
        """The running scheduler (wake it after storing a job; cancel through it); 503 when not started."""
        if self._scheduler is None:
            raise errors.ApiError(503, "UNAVAILABLE", "The local training service is not started.")
        return self._scheduler

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise errors.ApiError(503, "UNAVAILABLE", "The local training service is not started.")
        return self._store

    def create_job(self, project: str, body: Any) -> dict[str, Any]:
        """jobs.create: charge the create quota, validate, check Cloud Storage, store as QUEUED, return the Job.

        429 RESOURCE_EXHAUSTED beyond the create quota of trainingInput.region (when configured);
        400 INVALID_ARGUMENT for a bad body or (with `check_storage`) a missing jobDir bucket /
        unreadable packageUri; 409 ALREADY_EXISTS; 503 UNAVAILABLE when Cloud Storage cannot
        be reached for the check."""
        self._count("jobs.create")
        self.charge_create("ml.googleapis.com", project, _region_of(body))
        req = jobspec.validate_create(body)
        if self.store.get(project, req.job_id) is not None:  # 409 before any storage traffic
            raise errors.already_exists(job_name(project, req.job_id))
        if "hyperparameters" in req.training_input:
            self._check_study(project, req.training_input)
        if self.config.check_storage:
            preflight.check_storage(req.training_input, lambda: self._preflight_client(project))
        try:
            rec = self.store.insert(project, req.job_id, req.labels, req.training_input, req.priority)
        except AlreadyExists:
            raise errors.already_exists(job_name(project, req.job_id)) from None
        if self._scheduler is not None:
            self._scheduler.wake()
        return self._with_position(rec, self.store.queue_position(*rec.key)) if rec.state == QUEUED else rec.job

    def _preflight_client(self, project: str) -> Any:
        """One storage client per project for jobs.create's checks, kept: a client per create cost a new session and
        new connections to Cloud Storage each time (most of a create's CPU in a burst)."""
        with self._calls_lock:
            client = self._preflight_clients.get(project)
        if client is None:
            factory = self.config.storage_client_factory or default_storage_client
            client = factory(project)
            with self._calls_lock:
                client = self._preflight_clients.setdefault(project, client)
        return client

    def _check_study(self, project: str, ti: dict[str, Any]) -> None:
        """400 INVALID_ARGUMENT for a hyperparameter spec the study cannot run (`study.StudySpec`), or a
        resumePreviousJobId that does not name a finished tuning job of this project with the same parameters."""
        field = "training_input.hyperparameters"
        try:
            spec = study.StudySpec.from_training_input(ti)
        except study.StudyError as exc:
            raise errors.invalid_argument([(field, str(exc))]) from None
        if spec.resume_from is not None:
            found = self.store.get(project, spec.resume_from)
            try:
                study.check_resumable(spec, found.job if found else None, spec.resume_from)
            except study.StudyError as exc:
                raise errors.invalid_argument([(f"{field}.resume_previous_job_id", str(exc))]) from None

    def get_job(self, project: str, job_id: str) -> dict[str, Any]:
        """jobs.get: the Job, or 404 NOT_FOUND."""
        self._count("jobs.get")
        rec = self._require(project, job_id)
        return self._with_position(rec, self.store.queue_position(*rec.key)) if rec.state == QUEUED else rec.job

    def _queue_positions(self) -> dict[tuple[str, str], int]:
        """1-based place of every QUEUED job (all projects share the local machine) in
        admission order."""
        return {key: i for i, key in enumerate(self.store.queue_keys(), start=1)}

    @staticmethod
    def _with_position(rec: JobRecord, position: dict[tuple[str, str], int] | int) -> dict[str, Any]:
        """The Job with `jobPosition` (ml.v1.json: "It's only effect when the job is in QUEUED
        state. If it's positive, it indicates the job's position in the job scheduler. It's 0
        when the job is already scheduled."). int64, so a decimal string on the wire; 0 is
        left out like every proto3 default. Computed on read: it changes without a new etag."""
        pos = position if isinstance(position, int) else position.get(rec.key, 0)
        pos = pos if rec.state == QUEUED else 0
        return {**rec.job, "jobPosition": str(pos)} if pos else rec.job

    def _require(self, project: str, job_id: str) -> JobRecord:
        rec = self.store.get(project, job_id)
        if rec is None:
            raise errors.not_found(job_name(project, job_id))
        return rec

    def list_jobs(self, project: str, page_size: int | None, page_token: str | None,
                  filter_text: str | None) -> dict[str, Any]:
        """jobs.list: newest createTime first; `{"jobs": [...], "nextPageToken": "..."}`, or `{}`
        when nothing matches. pageSize default 20, capped at 100. 400 on a bad filter/token."""
        self._count("jobs.list")
        if page_size is None or page_size == 0:
            page_size = DEFAULT_PAGE_SIZE
        if page_size < 0:
            raise errors.invalid_argument([("page_size", "The page size must not be negative.")])
        page_size = min(page_size, MAX_PAGE_SIZE)
        try:
            node = filters.parse(filter_text)
        except filters.FilterError as e:
            raise errors.invalid_argument([("filter", f"Invalid filter {filter_text!r}: {e}")]) from None
        filter_hash = hashlib.sha256((filter_text or "").encode()).hexdigest()[:12]
        cursor = self._decode_token(page_token, project, filter_hash) if page_token else None
        jobs: list[JobRecord] = []
        more = False
        # In list order, after the cursor, only in the states the filter can match: a page parses its own jobs.
        for rec in self.store.iter_project(project, states=node.states(), before=cursor):
            if not node.matches(rec.job):
                continue
            if len(jobs) == page_size:
                more = True
                break
            jobs.append(rec)
        if not jobs:
            return {}  # the real API answers an empty object, not {"jobs": []}
        positions = self._queue_positions() if any(r.state == QUEUED for r in jobs) else {}
        out: dict[str, Any] = {"jobs": [self._with_position(r, positions) for r in jobs]}
        if more:
            out["nextPageToken"] = self._encode_token(jobs[-1], project, filter_hash)
        return out

    @staticmethod
    def _encode_token(last: JobRecord, project: str, filter_hash: str) -> str:
        # keyset cursor: stable even when jobs are created between pages
        raw = json.dumps({"p": project, "f": filter_hash, "t": last.create_time, "s": last.seq})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: str, project: str, filter_hash: str) -> tuple[str, int]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            cursor = (str(data["t"]), int(data["s"]))
            ok = data["p"] == project and data["f"] == filter_hash
        except (ValueError, KeyError, TypeError, binascii.Error):
            ok = False
        if not ok:
            raise errors.invalid_argument([("page_token", "The page token is not valid for this request "
                                                          "(it must come from a list call with the same filter).")])
        return cursor

    def cancel_job(self, project: str, job_id: str) -> dict[str, Any]:
        """jobs.cancel: `{}`; 404 NOT_FOUND; 400 FAILED_PRECONDITION when already terminal."""
        self._count("jobs.cancel")
        if self._scheduler is None:
            raise errors.ApiError(503, "UNAVAILABLE", "The local training service is not started.")
        self._scheduler.cancel(project, job_id)
        return {}

    def patch_job(self, project: str, job_id: str, body: Any, update_mask: str | None) -> dict[str, Any]:
        """jobs.patch with updateMask `labels` (and optionally `etag`): replace the labels.

        An etag in the body must match the stored one, else 409 ABORTED (AIP-154). Returns the
        updated Job. 400 for other masks or bad labels, 404 for an unknown job.
        """
        self._count("jobs.patch")
        labels, etag = jobspec.validate_patch(body, update_mask)
        name = job_name(project, job_id)
        mismatch = False

        def decide(r: JobRecord) -> Change | None:
            nonlocal mismatch
            if etag is not None and not _same_etag(etag, r.job.get("etag", "")):
                mismatch = True
                return None
            return Change(labels=labels)

        rec, _ = self.store.update(project, job_id, decide)
        if rec is None:
            raise errors.not_found(name)
        if mismatch:
            raise errors.aborted_etag(name)
        return rec.job

    def read_logs(self, project: str, job_id: str, replica: str | None = None,
                  offset: int = 0) -> tuple[bytes, int]:
        """Our extension: bytes of a replica's combined stdout+stderr from byte `offset`, and the
        offset to ask for next. `replica` is `<type>-<index>` as in TF_CONFIG (`master-0`,
        `worker-1`, `ps-0`, `evaluator-0`); None = the primary. 404 NOT_FOUND for an unknown
        job or a replica that does not run for this job (`max_replicas_per_type` counts). A tuning
        trial's replica is `trial-<trialId>/<type>-<index>` (`trial-3/master-0`)."""
        self._count("local.logs")
        rec = self._require(project, job_id)
        plan = cluster.plan(rec.job["trainingInput"], self.config.max_replicas_per_type)
        replica = replica or plan.primary.name
        path: Path = replica_log_path(self.config.data_dir, project, job_id, replica)
        trial = _TRIAL_REPLICA_RE.fullmatch(replica)
        if trial is not None:
            path = job_dir(self.config.data_dir, project, job_id) / "logs" / "trials" / trial.group(1) / \
                f"{trial.group(2)}.log"
            if not path.is_file():
                raise errors.ApiError(404, "NOT_FOUND", f"Trial replica {replica!r} has no log in job "
                                                        f"{job_name(project, job_id)} (not started yet, or no such "
                                                        "trial).")
        # the file counts too: the job may have run under another max_replicas_per_type
        elif replica not in plan.names() and not (_REPLICA_RE.fullmatch(replica) and path.is_file()):
            raise errors.ApiError(404, "NOT_FOUND", f"Replica {replica!r} does not exist in job "
                                                    f"{job_name(project, job_id)}; its replicas are "
                                                    f"{', '.join(plan.names())}.")
        try:
            with open(path, "rb") as f:
                f.seek(max(0, offset))
                data = f.read()
        except FileNotFoundError:
            return b"", max(0, offset)
        return data, max(0, offset) + len(data)


def _region_of(body: Any) -> str:
    """trainingInput.region of a create body not yet validated ("" when it has none: validation then refuses it)."""
    ti = body.get("trainingInput") if isinstance(body, dict) else None
    region = ti.get("region") if isinstance(ti, dict) else None
    return region if isinstance(region, str) else ""


def _same_etag(a: str, b: str) -> bool:
    """Etags are `bytes` fields: clients may send them in standard or URL-safe base64
    (apitools, used by gcloud, re-encodes URL-safe), so compare the decoded bytes."""
    def raw(text: str) -> bytes | None:
        try:
            return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            return None
    ra = raw(a)
    return ra is not None and ra == raw(b)


__all__ = ["TrainingService", "ServiceConfig", "ApiError"]
