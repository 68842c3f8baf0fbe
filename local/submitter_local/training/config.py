"""Settings of the local training service."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ServiceConfig:
    """How the local training service stores and runs jobs.

    data_dir: root of all state: `jobs.sqlite3`, `jobs/<project>/<jobId>/` (packages, work
        dir, logs), `envs/<hash>/` (cached trainer environments), `service.lock`.
    runtime_python: interpreter of the shared "runtime image" venv (e.g.
        `.local/runtime/bin/python`); its site-packages are visible to every trainer.
    max_running: most jobs in PREPARING/RUNNING/CANCELLING at once; None = os.cpu_count().
    min_state_seconds: each non-terminal state (QUEUED, PREPARING, RUNNING, CANCELLING) is held
        at least this long, so a poller ticking every second sees every state (default 0).
    paused: when true no job leaves QUEUED (toggle later with `TrainingService.set_paused`).
    poll_interval: seconds between scheduler passes and process-exit checks.
    kill_grace_seconds: SIGTERM -> SIGKILL delay when a trainer's process group is stopped.
    pip_args: extra arguments for `pip install` (e.g. `("--no-build-isolation",)` when the
        runtime has `wheel`, or `("--no-index", "--find-links", DIR)` for fully offline installs).
    envs_dir: where cached environments (one per dependency set, see `envs.py`) and built
        wheels live; None = `<data_dir>/envs` (tests share one).
    storage_client_factory: `f(project) -> google.cloud.storage.Client`; None = a client that
        honours STORAGE_EMULATOR_HOST (anonymous credentials when it is set).
    max_replicas_per_type: most processes started per non-primary replica type (worker, ps,
        evaluator) whatever the spec or preset tier asks (default 2; 0 = the master alone).
        TF_CONFIG lists the replicas that really run.
    time_scale: real seconds per second of `scheduling.maxWaitTime` / `maxRunningTime`
        (default 1.0). E.g. 0.001 turns the API's minimum maxWaitTime of 1800s into 1.8 real
        seconds, so tests can see the limits fire; specs are still validated at face value.
    check_storage: at jobs.create, check that jobDir's bucket exists and every packageUri can
        be read, answering 400 otherwise, as the cloud did (default true). Turn it off when the
        service runs without a reachable Cloud Storage (or emulator).
    isolation: "auto" (default): replicas run in their own PID and mount namespaces as
        `trainer_user` where the host allows it (see `sandbox.py`); "off": plain process groups
        as the service's user (still with an allowlisted environment and their own TMPDIR).
    trainer_user: account trainers run as (created with useradd when missing; default
        "drop-trainer"); "" = the service's own user.
    shared_paths: host directories trainers see at the same path (read and write, subject to
        their permissions): data a trainer reads from the local disk, test fixtures.
    mask_paths: host directories hidden from trainers besides the data dir and envs dir (e.g.
        the local stack's root with its stack.env).
    envs_max_bytes: cap of the environment cache in bytes; least recently used environments no
        job uses are deleted past it (default 20 GiB; None = no cap).
    runtime_tensorflow: install the TensorFlow a job's runtimeVersion shipped (its nearest
        version installable here, see `runtimes.py`) into a cached layer under the job's
        environment (default false: TensorFlow is ~2 GB; trainers may declare it themselves).
    extra_secrets: name -> value of further strings never to publish in an errorMessage (the
        service adds its own URL when it starts).
    create_quota_per_minute: None (default) = no create quota; N = at most N creates admitted per project and
        region in any window of `create_quota_window_s`, per API (ml v1 jobs.create by trainingInput.region;
        Vertex customJobs.create and hyperparameterTuningJobs.create together, by the location in the path);
        beyond it 429 RESOURCE_EXHAUSTED with Google's RATE_LIMIT_EXCEEDED ErrorInfo (`quota.py`).
    create_quota_window_s: the quota's sliding window in seconds (default 60, as Google's per-minute quotas;
        tests shorten it so the window frees within seconds).
    """

    data_dir: Path
    runtime_python: Path
    max_running: int | None = None
    min_state_seconds: float = 0.0
    paused: bool = False
    poll_interval: float = 0.1
    kill_grace_seconds: float = 5.0
    pip_args: tuple[str, ...] = ()
    envs_dir: Path | None = None
    storage_client_factory: Callable[[str], Any] | None = field(default=None, repr=False)
    max_replicas_per_type: int = 2
    time_scale: float = 1.0
    check_storage: bool = True
    isolation: str = "auto"
    trainer_user: str = "drop-trainer"
    shared_paths: tuple[Path, ...] = ()
    mask_paths: tuple[Path, ...] = ()
    envs_max_bytes: int | None = 20 * 1024 ** 3
    runtime_tensorflow: bool = False
    extra_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    create_quota_per_minute: int | None = None
    create_quota_window_s: float = 60.0

    def __post_init__(self) -> None:
        # absolute (not resolved: a venv's python is a symlink that must keep its venv path), so
        # trainers started in their own working directories find every path
        self.data_dir = Path(self.data_dir).absolute()
        self.runtime_python = Path(self.runtime_python).absolute()
        if self.envs_dir is not None:
            self.envs_dir = Path(self.envs_dir).absolute()
        if self.max_running is not None and self.max_running < 1:
            raise ValueError("max_running must be at least 1")
        if self.max_replicas_per_type < 0:
            raise ValueError("max_replicas_per_type must not be negative")
        if not self.time_scale > 0:
            raise ValueError("time_scale must be positive")
        if self.isolation not in ("auto", "off"):
            raise ValueError("isolation must be 'auto' or 'off'")
        self.shared_paths = tuple(Path(p).absolute() for p in self.shared_paths)
        self.mask_paths = tuple(Path(p).absolute() for p in self.mask_paths)
        if self.envs_max_bytes is not None and self.envs_max_bytes <= 0:
            raise ValueError("envs_max_bytes must be positive")
        if self.create_quota_per_minute is not None and self.create_quota_per_minute < 1:
            raise ValueError("create_quota_per_minute must be at least 1 (None: no quota)")
        if not self.create_quota_window_s > 0:
            raise ValueError("create_quota_window_s must be positive")

    @property
    def effective_max_running(self) -> int:
        return self.max_running or os.cpu_count() or 1

    @property
    def effective_envs_dir(self) -> Path:
        return self.envs_dir or self.data_dir / "envs"
