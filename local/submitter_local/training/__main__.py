"""CLI: run the local training service until SIGTERM/SIGINT, then stop it cleanly.

    python -m submitter_local.training --host 127.0.0.1 --port 8090 --data-dir DIR \
        --runtime-python .local/runtime/bin/python [--max-running N] [--min-state-seconds S] [--paused]
        [--max-replicas-per-type N] [--time-scale X] [--no-storage-check] [--kill-grace-seconds S]
        [--pip-arg ARG]... [--envs-dir DIR] [--envs-max-gb G] [--poll-interval S] [--log-level LEVEL]
        [--runtime-tensorflow] [--isolation auto|off] [--trainer-user NAME] [--share-path DIR]... [--mask-path DIR]...
        [--create-quota-per-minute N [--create-quota-window-seconds S]]

Every flag sets the `ServiceConfig` field of the same name (see config.py and
docs/local-training.md); `--create-quota-window-seconds` sets `create_quota_window_s`.

Prints one line `local training service listening on http://HOST:PORT` on stdout once it
accepts requests (useful with --port 0). Exit status 0 after a signal, 1 if it cannot start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .config import ServiceConfig
from .service import TrainingService


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m submitter_local.training",
                                description="Local AI Platform Training (ml v1 projects.jobs) service.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090, help="0 picks a free port (default 8090)")
    p.add_argument("--data-dir", type=Path, required=True, help="job store, logs and cached environments")
    p.add_argument("--runtime-python", type=Path, required=True, help="interpreter of the runtime venv")
    p.add_argument("--max-running", type=int, default=None, help="jobs running at once (default: CPU count)")
    p.add_argument("--min-state-seconds", type=float, default=0.0,
                   help="hold each non-terminal state at least this long (default 0)")
    p.add_argument("--paused", action="store_true", help="keep every job QUEUED")
    p.add_argument("--create-quota-per-minute", type=int, default=None, metavar="N",
                   help="answer creates beyond N per project and region in a minute 429 RESOURCE_EXHAUSTED, as "
                        "Google's rate quota does (ml v1 and Vertex each; default: no quota)")
    p.add_argument("--create-quota-window-seconds", type=float, default=60.0, metavar="S",
                   help="the create quota's sliding window (default 60; tests shorten it)")
    p.add_argument("--kill-grace-seconds", type=float, default=5.0, help="SIGTERM -> SIGKILL delay (default 5)")
    p.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                   help="extra pip install argument (repeatable), e.g. --pip-arg=--no-index")
    p.add_argument("--envs-dir", type=Path, default=None,
                   help="cached trainer environments (default DATA_DIR/envs)")
    p.add_argument("--poll-interval", type=float, default=0.1,
                   help="seconds between scheduler passes and process checks (default 0.1)")
    p.add_argument("--max-replicas-per-type", type=int, default=2,
                   help="processes per worker/ps/evaluator type at most (default 2; 0 = master only)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="real seconds per second of maxWaitTime/maxRunningTime (default 1.0)")
    p.add_argument("--no-storage-check", dest="check_storage", action="store_false",
                   help="do not check jobDir's bucket and packageUris at jobs.create")
    p.add_argument("--envs-max-gb", type=float, default=20.0,
                   help="cap of the environment cache in GiB; 0 = no cap (default 20)")
    p.add_argument("--runtime-tensorflow", action="store_true",
                   help="give jobs the TensorFlow their runtimeVersion shipped (nearest installable; ~2 GB, cached)")
    p.add_argument("--isolation", choices=["auto", "off"], default="auto",
                   help="auto: PID/mount namespaces and an unprivileged account where possible (default)")
    p.add_argument("--trainer-user", default="drop-trainer",
                   help="account trainers run as, created if missing ('' = the service's own; default drop-trainer)")
    p.add_argument("--share-path", action="append", default=[], type=Path, metavar="DIR",
                   help="host directory trainers see at the same path (repeatable)")
    p.add_argument("--mask-path", action="append", default=[], type=Path, metavar="DIR",
                   help="host directory hidden from trainers, besides the data dir (repeatable)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = ServiceConfig(data_dir=args.data_dir, runtime_python=args.runtime_python,
                            max_running=args.max_running, min_state_seconds=args.min_state_seconds,
                            paused=args.paused, kill_grace_seconds=args.kill_grace_seconds,
                            create_quota_per_minute=args.create_quota_per_minute,
                            create_quota_window_s=args.create_quota_window_seconds,
                            pip_args=tuple(args.pip_arg), max_replicas_per_type=args.max_replicas_per_type,
                            time_scale=args.time_scale, check_storage=args.check_storage,
                            envs_dir=args.envs_dir, poll_interval=args.poll_interval,
                            envs_max_bytes=int(args.envs_max_gb * 1024 ** 3) if args.envs_max_gb > 0 else None,
                            isolation=args.isolation, runtime_tensorflow=args.runtime_tensorflow,
                            trainer_user=args.trainer_user,
                            shared_paths=tuple(args.share_path), mask_paths=tuple(args.mask_path))
    except ValueError as e:
        print(f"cannot start the local training service: {e}", file=sys.stderr)
        return 1
    svc = TrainingService(cfg)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        svc.start(host=args.host, port=args.port)
    except (OSError, RuntimeError) as e:
        print(f"cannot start the local training service: {e}", file=sys.stderr)
        return 1
    print(f"local training service listening on {svc.url}", flush=True)
    try:
        while not done.wait(0.5):  # wake up regularly: signal handlers run between waits
            pass
    finally:
        svc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
