"""Running one replica's process isolated as the cloud isolates it, as far as this host allows.

On the cloud each replica is its own VM or container: its own /tmp, its own process table,
no view of the training service's machines, killed whole when the job ends. Here
(`HostIsolation.detect`, probed once when the service starts):

| the cloud                         | here, when the host allows it (root, util-linux `unshare`)     |
|-----------------------------------|----------------------------------------------------------------|
| a fresh environment               | always: `replica_env.build` (an allowlist)                     |
| own /tmp, own files               | a private mount namespace: the replica's `tmp/` dir is /tmp;   |
|                                   | the data dir (job store, other jobs) is hidden                 |
| own process table                 | a PID namespace: only the job's own processes are visible      |
| not root on the service's host    | an unprivileged account (`trainer_user`, created if missing)   |
| the VM goes away                  | PID 1 of the namespace exits -> the kernel kills every process |
|                                   | left, a child in its own session included                      |

Without namespaces the replica runs as a plain process group (as root, since the account
could not reach the interpreter under /root without the mount tricks), with its TMPDIR and
HOME set; a cancel then kills the group and every process still carrying the run token.
Each reason a protection is missing is one line of `HostIsolation.notes`, written at the top of
the primary's log. Not enforced anywhere: network reachability (trainers share the host's
network and can reach the local services' ports; see docs/local-training.md).

`launch` is the one entry point (ml v1 replicas today; Vertex workers and tuning trials later):
give it a `ReplicaSpec`, get a `subprocess.Popen` whose pid leads its own process group.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

INIT_SCRIPT = Path(__file__).with_name("sandbox_init.py")
UNSHARE_ARGS = ("--mount", "--pid", "--fork", "--kill-child", "--mount-proc")


@dataclasses.dataclass(frozen=True)
class HostIsolation:
    """What this host lets the service enforce.

    namespaces: replicas run in their own PID and mount namespaces (via `unshare`).
    user: (name, uid, gid) of the account trainers run as, or None (they run as the service's user).
    notes: one sentence per protection that is missing here, and why.
    """

    namespaces: bool
    user: tuple[str, int, int] | None
    notes: tuple[str, ...] = ()

    @classmethod
    def off(cls, reason: str) -> HostIsolation:
        """No namespaces, no account switch; `reason` becomes the one note."""
        return cls(False, None, (reason,))

    @classmethod
    def detect(cls, runtime_python: Path, user_name: str | None, exposes: list[str]) -> HostIsolation:
        """Probe what works by starting `runtime_python -c ...` the way replicas start (once per
        process for the same arguments: the host does not change under a running service).

        user_name: the account to run trainers as ("" or None: the service's own); it is
        created with `useradd --system` when missing and the service runs as root. exposes: the
        paths a trainer needs (runtime venv, its base interpreter), checked by the probe."""
        key = (str(runtime_python), user_name or "", tuple(exposes))
        if key not in _DETECTED:
            _DETECTED[key] = cls._detect(runtime_python, user_name, exposes)
        return _DETECTED[key]

    @classmethod
    def _detect(cls, runtime_python: Path, user_name: str | None, exposes: list[str]) -> HostIsolation:
        notes: list[str] = []
        unshare = shutil.which("unshare")
        user = None
        if user_name:
            if os.geteuid() != 0:
                notes.append(f"Trainers run as the service's own user: switching to {user_name!r} needs root.")
            else:
                user = ensure_user(user_name)
                if user is None:
                    notes.append(f"Trainers run as root: the account {user_name!r} does not exist and could not "
                                 "be created (useradd).")
        if unshare is None:
            notes.append("No private /tmp, process table or whole-job kill: util-linux `unshare` is not installed.")
            if user:
                notes.append("Trainers run as the service's user: without a mount namespace the account may not "
                             "reach the interpreter.")
            return cls(False, None, tuple(notes))
        candidate = cls(True, user, ())
        ok, why = candidate._probe(runtime_python, exposes)
        if ok:
            return cls(True, user, tuple(notes))
        if user is not None:
            root_only = cls(True, None, ())
            ok2, why2 = root_only._probe(runtime_python, exposes)
            if ok2:
                notes.append(f"Trainers run as root: running as {user[0]!r} failed here ({why}).")
                return cls(True, None, tuple(notes))
        notes.append(f"No private /tmp, process table or whole-job kill: `unshare {' '.join(UNSHARE_ARGS)}` "
                     f"failed here ({why}).")
        return cls(False, None, tuple(notes))

    def _probe(self, runtime_python: Path, exposes: list[str]) -> tuple[bool, str]:
        with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as d:
            work, tmp = Path(d) / "work", Path(d) / "tmp"
            os.chmod(d, 0o755)
            prepare_dirs(self, work, tmp)
            code = f"import os, sys; sys.exit(0 if os.access('/tmp', os.W_OK) and os.getcwd() == {str(work)!r} else 3)"
            spec = ReplicaSpec(argv=[str(runtime_python), "-c", code], env={"PATH": "/usr/bin:/bin"},
                               cwd=str(work), tmp=str(tmp), exposes=[*exposes, str(work)], masks=[],
                               run_dir=Path(d) / "run", name="probe")
            try:
                proc = launch(self, spec, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = proc.communicate(timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                return False, repr(e)
            status = read_status(spec.status_file, proc.returncode)
            if status == 0:
                return True, ""
            text = (err or b"").decode("utf-8", "replace").strip().splitlines()
            return False, (text[-1] if text else f"exit status {status}")


_DETECTED: dict[tuple[str, str, tuple[str, ...]], HostIsolation] = {}


@dataclasses.dataclass
class ReplicaSpec:
    """One replica process to start.

    argv: the command (argv[0] absolute); env: its whole environment; cwd: its working
    directory; tmp: its own directory that becomes /tmp (namespaces) -- TMPDIR in `env` should
    point at /tmp then, at `tmp` otherwise; exposes: host paths it must see (job environment,
    cached layers, runtime venv, its work/home/tmp dirs); masks: host paths to hide (the
    service's data dir); binds: (source, target) mounts to add (e.g. the /gcs view);
    run_dir: a root-only directory for the spec and status files; name: e.g. `master-0`.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    tmp: str
    exposes: list[str]
    masks: list[str]
    run_dir: Path
    name: str
    binds: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def status_file(self) -> Path:
        return self.run_dir / f"{self.name}.status"


def ensure_user(name: str) -> tuple[str, int, int] | None:
    """(name, uid, gid) of account `name`, creating it as a system account without a home or a
    login shell when it is missing (root only). None when it neither exists nor can be created."""
    try:
        pw = pwd.getpwnam(name)
        return name, pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    useradd = shutil.which("useradd") or ("/usr/sbin/useradd" if os.path.exists("/usr/sbin/useradd") else None)
    if useradd is None or os.geteuid() != 0:
        return None
    done = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", "/usr/sbin/nologin", "--comment", "drop-submitter local trainers", name],
                          capture_output=True, text=True)
    if done.returncode != 0 and "already exists" not in done.stderr:
        log.warning("useradd %s failed: %s", name, done.stderr.strip())
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return name, pw.pw_uid, pw.pw_gid


def prepare_dirs(iso: HostIsolation, *dirs: Path) -> None:
    """Create the replica's own directories (work, home, tmp), owned by the trainer account, 0700."""
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        if iso.user:
            os.chown(d, iso.user[1], iso.user[2])
        os.chmod(d, 0o700)


def launch(iso: HostIsolation, spec: ReplicaSpec, *, stdout: int | IO[bytes], stderr: int | IO[bytes],
           extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the replica; returns its Popen, leader of a new session (pid == process group id).

    With namespaces the leader is `unshare`, and the trainer runs under `sandbox_init.py` as
    PID 1's child; without, the leader is the trainer itself (after the init set it up).
    `extra_env` goes to the leader's own environment only (the run token that lets a restarted
    service find leftovers); the trainer gets exactly `spec.env`. Raises OSError."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(spec.run_dir, 0o700)
    spec.status_file.unlink(missing_ok=True)
    spec_file = spec.run_dir / f"{spec.name}.spec.json"
    payload = {"argv": spec.argv, "env": spec.env, "cwd": spec.cwd, "namespaces": iso.namespaces,
               "uid": iso.user[1] if iso.user else None, "gid": iso.user[2] if iso.user else None,
               "tmp": spec.tmp if iso.namespaces else None, "exposes": spec.exposes, "masks": spec.masks,
               "binds": spec.binds if iso.namespaces else [], "status_file": str(spec.status_file)}
    fd = os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    init = [sys.executable, "-I", "-S", str(INIT_SCRIPT), str(spec_file)]
    cmd = ["unshare", *UNSHARE_ARGS, "--", *init] if iso.namespaces else init
    leader_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(extra_env or {})}
    if not iso.namespaces:  # the init execs the trainer in place: the token must reach it too
        payload_env = {**spec.env, **(extra_env or {})}
        with open(spec_file, "w") as f:
            json.dump({**payload, "env": payload_env}, f)
    return subprocess.Popen(cmd, env=leader_env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True)


def read_status(status_file: Path, leader_rc: int | None) -> int | None:
    """The trainer's exit status as Popen reports it (negative = killed by that signal): from the
    status file the sandbox init writes, else the leader's own return code."""
    try:
        data = json.loads(Path(status_file).read_text())
    except (OSError, ValueError):
        return leader_rc
    if "signal" in data:
        return -int(data["signal"])
    return int(data.get("exit", leader_rc if leader_rc is not None else 1))
