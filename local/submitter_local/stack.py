"""The local stack: every part of the product on one machine, on real components.

`make up` starts, each in its own process group, with logs in `<root>/logs/`:
  pubsub     the official Pub/Sub emulator from the installed Cloud SDK (Java)
  storage    gcp-storage-emulator (in memory) behind our handler (storage_emulator.py): serves requests
             concurrently, accepts gcloud's uploads, enforces ifGenerationMatch and 404s reads of overwritten
             generations
  training   the local AI Platform Training service (`submitter_local.training`; `--create-quota-per-minute N`:
             with Google's per-minute create quota, StackConfig.create_quota_per_minute)
  function   functions-framework serving `on_object_finalized` (CloudEvent)
  reconcile  functions-framework serving `reconcile` (HTTP)
  relay      the Eventarc stand-in: new object generations of the drop bucket and the data buckets ->
             CloudEvents to `function`
  scheduler  the Cloud Scheduler stand-in: calls `reconcile` every second, and as soon as the training service
             reports a job change (its /local/v1/changes long poll; `--cloud-schedule`: once a minute, each call
             ticking every 5 s for 55 s, as deployed)
then creates the buckets, the topic and a subscription and writes shell
`export` lines to `<root>/stack.env`. `make up BACKEND=vertex` (StackConfig.backend) runs the
function on the Vertex AI backend: it talks to the local training service's customJobs subset
through the same SUBMITTER_TRAINING_API_ENDPOINT; a running stack of the other backend is
restarted. `make down` stops exactly what `make up`
started (process groups recorded in `<root>/stack.json`) and checks that no
emulator Java process survives. Tests start their own Stack on free ports in a
temporary root and never touch one a user left running.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / ".local"


class StackError(RuntimeError):
    """The stack could not start; the message names the part and its log file."""


@dataclasses.dataclass
class StackConfig:
    """What a stack serves. Names follow the field cases' conventions. `backend` is the function's
    SUBMITTER_BACKEND: "ml_v1" (default) or "vertex"; the local training service serves both.
    `min_state_seconds` is 0: no job state is held artificially, so a job takes as long as its work; the
    reconciler publishes the states it observes (never invented, never out of order), and a state shorter than
    a tick may go unobserved, as in the cloud. Tests that need to see each state set their own hold.
    `create_quota_per_minute` (None: none) gives the training service Google's per-minute create quota, so the
    submitter's quota queue can be seen at work; `create_quota_window_s` shortens its window for tests."""

    root: Path = DEFAULT_ROOT
    project: str = "demo-project"
    region: str = "us-central1"
    drop_bucket: str = "drop-bucket"
    output_bucket: str = "drop-outputs"
    state_bucket: str = "drop-state"
    drop_prefix: str = "incoming/"
    data_buckets: tuple[str, ...] = ("drop-data",)  # watched for trigger rules (SUBMITTER_DATA_BUCKETS)
    trigger_rules: Path | None = REPO / "samples" / "triggers.yaml"  # SUBMITTER_TRIGGER_RULES_FILE
    topic: str = "training-job-events"
    subscription: str = "training-job-events-sub"
    reconcile_interval_s: float = 1.0  # the scheduler's period (Cloud Scheduler: 60 s at best)
    reconcile_on_changes: bool = True  # also call reconcile as soon as the training service reports a job change
    reconcile_window_s: float = 0.0  # SUBMITTER_RECONCILE_WINDOW_SECONDS: one call keeps ticking this long (0: once)
    reconcile_tick_s: float = 5.0  # SUBMITTER_RECONCILE_INTERVAL_SECONDS: between those ticks
    min_state_seconds: float = 0.0
    training_paused: bool = False
    runtime_python: Path = REPO / ".local" / "runtime" / "bin" / "python"
    backend: str = "ml_v1"
    create_quota_per_minute: int | None = None  # the training service's --create-quota-per-minute
    create_quota_window_s: float = 60.0  # and its --create-quota-window-seconds


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pubsub_emulator_command(port: int) -> list[str]:
    """The single-process emulator script shipped in the Cloud SDK (it execs Java)."""
    root = subprocess.run(["gcloud", "info", "--format=value(installation.sdk_root)"], capture_output=True,
                          text=True, check=True).stdout.strip()
    script = Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if not script.exists():
        raise StackError(f"Pub/Sub emulator not found at {script}; install it with "
                         "`gcloud components install pubsub-emulator` or apt's google-cloud-cli-pubsub-emulator")
    return [str(script), "--host=127.0.0.1", f"--port={port}"]


class Stack:
    """Starts and stops the local stack rooted at `config.root`."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.root = Path(config.root)
        self.state_file = self.root / "stack.json"
        self.env_file = self.root / "stack.env"

    # -- state ---------------------------------------------------------------------------------
    def _load(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    @contextlib.contextmanager
    def _locked(self):
        """One `make up` / `make down` at a time per root (a second one waits), so concurrent starts cannot
        leave an orphaned stack or delete each other's state files."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "stack.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def running(self) -> dict | None:
        """The recorded stack when all its processes are alive, else None."""
        state = self._load()
        if state and all(self._alive(p["pgid"]) for p in state["processes"]):
            return state
        return None

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> dict[str, str]:
        """Start the stack unless it is already running; returns its environment (the stack.env values).

        Ports are picked free just before each service binds; another program can take one in between (a
        bind error), so a start that fails that way is tried once more on fresh ports.
        """
        with self._locked():
            try:
                return self._start()
            except StackError as exc:
                if "BindException" not in str(exc) and "already in use" not in str(exc).lower():
                    raise
                return self._start()

    def _start(self) -> dict[str, str]:
        current = self.running()
        if current and self.serves_config(current["env"]):
            return current["env"]
        if self._load():
            self._stop()  # a partial stack from a crash: clear it before starting anew
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        c = self.config
        ports = {name: free_port() for name in ("pubsub", "storage", "training", "function", "reconcile")}
        env = {
            "PROJECT": c.project,
            "REGION": c.region,
            "BUCKET": c.drop_bucket,
            "DATA_BUCKET": c.data_buckets[0] if c.data_buckets else "",
            "DROP_PREFIX": c.drop_prefix,
            "OUTPUT_BUCKET": c.output_bucket,
            "STATE_BUCKET": c.state_bucket,
            "TOPIC": f"projects/{c.project}/topics/{c.topic}",
            "SUBSCRIPTION": f"projects/{c.project}/subscriptions/{c.subscription}",
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{ports['pubsub']}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{ports['storage']}",
            "TRAINING_API_ENDPOINT": f"http://127.0.0.1:{ports['training']}",
            "FUNCTION_URL": f"http://127.0.0.1:{ports['function']}",
            "RECONCILE_URL": f"http://127.0.0.1:{ports['reconcile']}",
            "CLOUDSDK_CORE_PROJECT": c.project,
        }
        env.update(self.function_settings(env))
        env.update(self.training_settings())
        self._processes: list[dict] = []
        try:
            self._spawn("pubsub", pubsub_emulator_command(ports["pubsub"]), {})
            self._spawn("storage", [sys.executable, "-m", "submitter_local.storage_emulator", "--host", "127.0.0.1",
                                    "--port", str(ports["storage"])], {})
            self._wait_http("pubsub", f"http://{env['PUBSUB_EMULATOR_HOST']}/v1/projects/{c.project}/topics")
            self._wait_http("storage", f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b?project={c.project}")
            self._create_resources(env)
            training = [sys.executable, "-m", "submitter_local.training", "--host", "127.0.0.1",
                        "--port", str(ports["training"]), "--data-dir", str(self.root / "training"),
                        "--runtime-python", str(c.runtime_python), "--min-state-seconds", str(c.min_state_seconds),
                        "--mask-path", str(self.root)]  # trainers never see stack.env, logs or the stack's state
            if c.training_paused:
                training.append("--paused")
            if c.create_quota_per_minute is not None:
                training += ["--create-quota-per-minute", str(c.create_quota_per_minute),
                             "--create-quota-window-seconds", str(c.create_quota_window_s)]
            self._spawn("training", training, env)
            ff = str(Path(sys.executable).with_name("functions-framework"))
            source = str(REPO / "functions" / "main.py")
            self._spawn("function", [ff, "--source", source, "--target", "on_object_finalized",
                                     "--signature-type", "cloudevent", "--host", "127.0.0.1",
                                     "--port", str(ports["function"])], env)
            self._spawn("reconcile", [ff, "--source", source, "--target", "reconcile", "--signature-type", "http",
                                      "--host", "127.0.0.1", "--port", str(ports["reconcile"])], env)
            self._wait_http("training", f"{env['TRAINING_API_ENDPOINT']}/v1/projects/{c.project}/jobs")
            self._wait_http("function", env["FUNCTION_URL"], any_status=True)
            self._wait_http("reconcile", env["RECONCILE_URL"], any_status=True)
            watched = [arg for bucket in (c.drop_bucket, *c.data_buckets) for arg in ("--bucket", bucket)]
            self._spawn("relay", [sys.executable, "-m", "submitter_local.relay", "--storage",
                                  env["STORAGE_EMULATOR_HOST"], *watched, "--function-url", env["FUNCTION_URL"]], env)
            cue = ["--changes", f"{env['TRAINING_API_ENDPOINT']}/local/v1/changes"] if c.reconcile_on_changes else []
            self._spawn("scheduler", [sys.executable, "-m", "submitter_local.scheduler", "--url",
                                      env["RECONCILE_URL"], "--interval", str(c.reconcile_interval_s), *cue], env)
        except BaseException:
            self._save(env)
            self._stop()
            raise
        self._save(env)
        lines = [f"export {k}={shlex.quote(v)}\n" for k, v in env.items()]
        # so that `submitter` (installed in the venv) works after `source .local/stack.env`
        lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"\n')
        self.env_file.write_text("".join(lines))
        return env

    def serves_config(self, env: dict[str, str]) -> bool:
        """Whether a running stack (its saved `env`) runs this config's backend, reconcile schedule and create
        quota."""
        window = env.get("SUBMITTER_RECONCILE_WINDOW_SECONDS")
        quota = {k: v for k, v in env.items() if k.startswith("TRAINING_CREATE_QUOTA_")}
        return (env.get("SUBMITTER_BACKEND", "ml_v1") == self.config.backend
                and (float(window) if window else 0.0) == self.config.reconcile_window_s
                and quota == self.training_settings())

    def training_settings(self) -> dict[str, str]:
        """The training service's create quota as stack.env records it (nothing without one)."""
        c = self.config
        if c.create_quota_per_minute is None:
            return {}
        return {"TRAINING_CREATE_QUOTA_PER_MINUTE": str(c.create_quota_per_minute),
                "TRAINING_CREATE_QUOTA_WINDOW_SECONDS": f"{c.create_quota_window_s:g}"}

    def function_settings(self, env: dict[str, str]) -> dict[str, str]:
        """The function's SUBMITTER_* settings for this stack."""
        c = self.config
        return {
            "SUBMITTER_PROJECT": c.project,
            "SUBMITTER_DROP_BUCKET": c.drop_bucket,
            "SUBMITTER_DROP_PREFIX": c.drop_prefix,
            "SUBMITTER_OUTPUT_BUCKET": c.output_bucket,
            "SUBMITTER_STATE_BUCKET": c.state_bucket,
            "SUBMITTER_TOPIC": env["TOPIC"],
            "SUBMITTER_BACKEND": c.backend,
            "SUBMITTER_TRAINING_API_ENDPOINT": env["TRAINING_API_ENDPOINT"],
            "SUBMITTER_ANONYMOUS_CREDENTIALS": "true",
            "SUBMITTER_DEFAULT_REGION": c.region,
            "SUBMITTER_PUBLISH_TIMEOUT_SECONDS": "20",
            "SUBMITTER_DATA_BUCKETS": ",".join(c.data_buckets),
            **({"SUBMITTER_TRIGGER_RULES_FILE": str(c.trigger_rules)} if c.trigger_rules else {}),
            **({"SUBMITTER_RECONCILE_WINDOW_SECONDS": str(c.reconcile_window_s),
                "SUBMITTER_RECONCILE_INTERVAL_SECONDS": str(c.reconcile_tick_s)} if c.reconcile_window_s else {}),
        }

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str]) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")
        env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "functions"), str(REPO / "local"),
                                                          os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=self.root, start_new_session=True)
        log.close()
        self._processes.append({"name": name, "pid": proc.pid, "pgid": proc.pid, "argv": argv})

    def _wait_http(self, name: str, url: str, timeout_s: float = 60.0, any_status: bool = False) -> None:
        deadline = time.monotonic() + timeout_s
        proc = next(p for p in self._processes if p["name"] == name)
        while time.monotonic() < deadline:
            if not self._alive(proc["pgid"]):
                break
            if any_status:  # a function: ready once it accepts connections (a request would run it, e.g. a tick)
                host, _, port = url.removeprefix("http://").partition(":")
                with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2):
                    return
            else:
                try:
                    if requests.get(url, timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        tail = self._log_tail(name)
        if "already in use" in self._log_tail(name, lines=10_000).lower():
            tail = "(its port was taken: address already in use)\n" + tail
        raise StackError(f"{name} did not become ready at {url}; see {self.root / 'logs' / (name + '.log')}:\n{tail}")

    def _log_tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.root / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _create_resources(self, env: dict[str, str]) -> None:
        c = self.config
        base = env["STORAGE_EMULATOR_HOST"]
        for bucket in (c.drop_bucket, c.output_bucket, c.state_bucket, *c.data_buckets):
            answer = requests.post(f"{base}/storage/v1/b", params={"project": c.project}, json={"name": bucket},
                                   timeout=10)
            if answer.status_code not in (200, 409):
                raise StackError(f"creating bucket {bucket} failed: {answer.status_code} {answer.text[:200]}")
        host = f"http://{env['PUBSUB_EMULATOR_HOST']}/v1"
        answer = requests.put(f"{host}/{env['TOPIC']}", json={}, timeout=10)
        if answer.status_code not in (200, 409):
            raise StackError(f"creating topic failed: {answer.status_code} {answer.text[:200]}")
        answer = requests.put(f"{host}/{env['SUBSCRIPTION']}", json={"topic": env["TOPIC"],
                                                                    "enableMessageOrdering": True}, timeout=10)
        if answer.status_code not in (200, 409):
            raise StackError(f"creating subscription failed: {answer.status_code} {answer.text[:200]}")

    def _save(self, env: dict[str, str]) -> None:
        self.state_file.write_text(json.dumps({"env": env, "processes": self._processes}, indent=1))

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, grace_s: float = 5.0) -> list[str]:
        """Stop every recorded process group (SIGTERM, then SIGKILL); returns the names stopped."""
        with self._locked():
            return self._stop(grace_s)

    def _stop(self, grace_s: float = 5.0) -> list[str]:
        state = self._load()
        if not state:
            return []
        procs = state["processes"]
        for p in reversed(procs):
            if self._alive(p["pgid"]):
                os.killpg(p["pgid"], signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(self._alive(p["pgid"]) for p in procs):
            time.sleep(0.1)
        for p in procs:
            if self._alive(p["pgid"]):
                os.killpg(p["pgid"], signal.SIGKILL)
        # The emulator's Java process can outlive its wrapper in a group of its own: find it by its port.
        port = state["env"].get("PUBSUB_EMULATOR_HOST", "").rsplit(":", 1)[-1]
        for pid in _pids_matching("pubsub-emulator", f"--port={port}"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            try:  # reap our own children (when the stack was started in this process)
                os.waitpid(p["pid"], os.WNOHANG)
            except ChildProcessError:
                pass
        self.state_file.unlink(missing_ok=True)
        self.env_file.unlink(missing_ok=True)
        return [p["name"] for p in procs]


def _pids_matching(*needles: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            pids.append(int(entry.name))
    return pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop the local stack.")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--backend", choices=["ml_v1", "vertex"], default="ml_v1",
                        help="the function's training backend (make up BACKEND=vertex)")
    parser.add_argument("--cloud-schedule", action="store_true",
                        help="reconcile as deployed: the scheduler calls once a minute and each call ticks every "
                             "5 s for 55 s (Terraform's defaults), instead of one tick every second")
    parser.add_argument("--create-quota-per-minute", type=int, default=None, metavar="N",
                        help="the training service answers creates beyond N a minute per region 429 "
                             "RESOURCE_EXHAUSTED, as Google's quota does: watch the submitter queue them "
                             "(default: no quota)")
    args = parser.parse_args(argv)
    if args.create_quota_per_minute is not None and args.create_quota_per_minute < 1:
        parser.error("--create-quota-per-minute must be at least 1")
    config = StackConfig(root=args.root, backend=args.backend, create_quota_per_minute=args.create_quota_per_minute)
    if args.cloud_schedule:
        config = dataclasses.replace(config, reconcile_interval_s=60.0, reconcile_window_s=55.0, reconcile_tick_s=5.0,
                                     reconcile_on_changes=False)
    stack = Stack(config)
    if args.command == "up":
        already = stack.running()
        if already and not stack.serves_config(already["env"]):
            print(f"restarting the local stack: it runs backend {already['env'].get('SUBMITTER_BACKEND')} with "
                  f"reconcile window {already['env'].get('SUBMITTER_RECONCILE_WINDOW_SECONDS', '0')} s and create "
                  f"quota {already['env'].get('TRAINING_CREATE_QUOTA_PER_MINUTE', 'none')}; backend "
                  f"{args.backend} with window {config.reconcile_window_s:g} s and create quota "
                  f"{config.create_quota_per_minute or 'none'} was asked for")
            already = None
        try:
            env = stack.start()
        except StackError as exc:
            print(f"make up failed: {exc}", file=sys.stderr)
            return 1
        print("local stack already running" if already else f"local stack started (backend {args.backend})")
        for key in ("FUNCTION_URL", "TRAINING_API_ENDPOINT", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
            print(f"  {key}={env[key]}")
        print(f"  source {stack.env_file}   # to use it from a shell; `make down` stops it")
        return 0
    if args.command == "down":
        stopped = stack.stop()
        print(f"stopped: {', '.join(stopped)}" if stopped else "no local stack was running")
        return 0
    state = stack.running()
    print(json.dumps(state["env"], indent=1) if state else "not running")
    return 0 if state else 1


if __name__ == "__main__":
    sys.exit(main())
