"""Cached, layered Python environments for trainers, keyed by what they contain.

The cloud installs a job's packages into a runtime-version image with `pip install` before it
runs `python -m <pythonModule>`. Locally the "image" is the runtime venv
(`ServiceConfig.runtime_python`), and what pip would add on top is split into layers, each a
venv made with `--without-pip` from the runtime interpreter and chained to the one below by a
`.pth` file:

    job env      <job dir>/env              the job's own packages (--no-deps), per job, seconds
      dependency-set env  <envs_dir>/<key>/ the packages' declared requirements, cached by them
        runtime layer     <envs_dir>/<key>/ opt-in runtime libraries (TensorFlow), cached
          runtime venv                      make runtime: the image libraries (runtime table)

A layer's key is sha256 over its parent's key (or the runtime venv's fingerprint: its
interpreter and the distributions installed in it), its sorted requirements and the pip
arguments: changing a trainer's code changes none of them, so only the job env is rebuilt.

Layout of the cache:

    <envs_dir>/<key>/            the venv; `.complete` (JSON, written last) holds label,
                                 requirements, parent, bytes, seconds, created
    <envs_dir>/<key>.lock        flock: one builder per key, across threads and processes
    <envs_dir>/<key>.use         shared flock held by every job using the layer (eviction skips it)
    <envs_dir>/<key>.last-used   its mtime is the layer's last use (LRU eviction)

Builds happen in `<envs_dir>/.tmp-*` and are renamed into place, so a half-built layer is
never used. `max_bytes` caps the cache: after a build, least recently used layers that no job
holds and no other layer builds on are deleted until the total fits (the new one is kept even
when it alone is over the cap).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from . import procs

log = logging.getLogger(__name__)

#: Environment variables that would leak the service's own interpreter setup into pip.
_PYTHON_ENV_LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__",
                     "PYTHONEXECUTABLE", "PYTHONSAFEPATH")


def child_base_env() -> dict[str, str]:
    """os.environ without the variables that point at the service's own Python (for pip and
    probes run by the service itself; trainers get `replica_env.build` instead)."""
    return {k: v for k, v in os.environ.items() if k not in _PYTHON_ENV_LEAKS}


class InstallFailed(Exception):
    """pip (or venv creation) failed.

    `output` is pip's combined stdout+stderr of the failing command (what the job's log
    shows), `stderr` its stderr alone, `command` a one-word label ("wheel", "install", "venv")."""

    def __init__(self, stderr: str, output: str = "", command: str = "install"):
        super().__init__(stderr)
        self.stderr = stderr
        self.output = output or stderr
        self.command = command


class Interrupted(Exception):
    """The build was abandoned because the caller asked (cancel or service stop)."""


@dataclasses.dataclass(frozen=True)
class Env:
    """A ready environment.

    key: the cache key (sha256 hex) or "" for a job env; path: its directory; python: its
    interpreter; reused: False when this call built it; seconds: time spent in the call;
    chain: the keys of the cached layers it stands on, itself included, top first."""

    key: str
    path: Path
    python: Path
    reused: bool
    seconds: float
    chain: tuple[str, ...] = ()

    @property
    def site_packages(self) -> Path:
        """The layer's own site-packages directory (`lib/pythonX.Y/site-packages`)."""
        return next((self.path / "lib").glob("python*/site-packages"))


@dataclasses.dataclass(frozen=True)
class RuntimeInfo:
    """Facts about the runtime venv: site-packages paths, "3.11", pip's (major, minor), the
    venv's prefix and its base interpreter's prefix (both must be readable by trainers), and a
    fingerprint of what is installed in it (sha256 hex)."""

    purelib: str
    platlib: str
    version: str
    pip_version: tuple[int, ...]
    prefix: str
    base_prefix: str
    fingerprint: str


class PipLog:
    """Where pip's output goes: appended to `log_dir/pip.stdout.log` / `pip.stderr.log` and, line
    by line as it arrives, to `on_line` (the job's combined log, so the logs endpoint shows the
    install as it happens)."""

    def __init__(self, log_dir: Path, on_line: Callable[[bytes], None] = lambda line: None):
        self.log_dir = Path(log_dir)
        self.on_line = on_line

    def run(self, cmd: list[str], interrupted: Callable[[], bool], poll: float,
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Run `cmd` in its own session; returns (exit status, stdout+stderr, stderr). Raises
        Interrupted (after killing the command's process group) when `interrupted()` turns true."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        run_env = env if env is not None else child_base_env()
        run_env = {**run_env, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=run_env, start_new_session=True)
        combined: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()

        def pump(stream: IO[bytes], name: str, sink: list[str] | None) -> None:
            with open(self.log_dir / f"pip.{name}.log", "ab") as own:
                for line in iter(stream.readline, b""):
                    own.write(line)
                    own.flush()
                    text = line.decode("utf-8", "replace")
                    with lock:
                        combined.append(text)
                        if sink is not None:
                            sink.append(text)
                    self.on_line(line)
            stream.close()

        pumps = [threading.Thread(target=pump, args=(proc.stdout, "stdout", None), daemon=True),
                 threading.Thread(target=pump, args=(proc.stderr, "stderr", errors), daemon=True)]
        for t in pumps:
            t.start()
        try:
            while not procs.has_exited(proc.pid):
                if interrupted():
                    procs.stop_group(proc, grace=0)
                    raise Interrupted()
                time.sleep(poll / 2)
            rc = procs.reap_group(proc)
        finally:
            if proc.returncode is None:
                procs.stop_group(proc, grace=0)
            for t in pumps:
                t.join(timeout=5)
        return rc, "".join(combined), "".join(errors)


def _dir_bytes(path: Path) -> int:
    """Bytes on disk under `path` (allocated blocks, so hard links and sparse files count as du does)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def make_venv(runtime_python: Path, dest: Path, parent_site_dirs: Iterable[str]) -> Path:
    """Create a pip-less venv at `dest` from the runtime interpreter whose `sys.path` continues,
    after its own site-packages, with `parent_site_dirs` (added with `site.addsitedir`, so their
    `.pth` files, and through them their own parents, are honoured). Returns its interpreter.
    Raises InstallFailed when `python -m venv` fails."""
    done = subprocess.run([str(runtime_python), "-m", "venv", "--without-pip", str(dest)], capture_output=True,
                          text=True, env=child_base_env())
    if done.returncode != 0:
        raise InstallFailed(done.stderr, command="venv")
    site = next((dest / "lib").glob("python*/site-packages"))
    lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_dirs]
    (site / "_parent_layer.pth").write_text("\n".join(lines) + "\n")
    return dest / "bin" / "python"


class EnvCache:
    """Builds, reuses and evicts layered environments; thread-safe.

    root: the cache directory; runtime_python: the runtime venv's interpreter; pip_args: extra
    `pip install` arguments (part of every key); poll: seconds between interrupt checks;
    max_bytes: cache cap in bytes (None = no cap). `builds` / `reuses` / `evictions` count what
    this object did.
    """

    def __init__(self, root: Path, runtime_python: Path, pip_args: tuple[str, ...] = (), poll: float = 0.1,
                 max_bytes: int | None = None):
        self.root = Path(root)
        self.runtime_python = Path(runtime_python)
        self.pip_args = tuple(pip_args)
        self.poll = poll
        self.max_bytes = max_bytes
        self.builds = 0
        self.reuses = 0
        self.evictions = 0
        self._info: RuntimeInfo | None = None
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- runtime facts -------------------------------------------------------------------------
    def runtime_info(self) -> RuntimeInfo:
        """Facts about the runtime venv (asked once per EnvCache)."""
        if self._info is None:
            code = ("import json, sys, sysconfig, importlib.metadata as m\n"
                    "try:\n    import pip; pv = pip.__version__\nexcept Exception:\n    pv = '0'\n"
                    "p = sysconfig.get_paths()\n"
                    "d = sorted('%s==%s' % (x.metadata['Name'], x.version) for x in m.distributions())\n"
                    "print(json.dumps([p['purelib'], p['platlib'], '%d.%d' % sys.version_info[:2], pv, sys.prefix,"
                    " sys.base_prefix, d]))")
            out = subprocess.run([str(self.runtime_python), "-c", code], capture_output=True, text=True,
                                 env=child_base_env(), check=True).stdout
            purelib, platlib, version, pv, prefix, base_prefix, dists = json.loads(out)
            pip_version = tuple(int(x) for x in pv.split(".")[:2] if x.isdigit())
            fp = hashlib.sha256(json.dumps([str(self.runtime_python.absolute()), dists]).encode()).hexdigest()
            self._info = RuntimeInfo(purelib, platlib, version, pip_version, prefix, base_prefix, fp)
        return self._info

    def runtime_site_dirs(self) -> list[str]:
        info = self.runtime_info()
        return [info.purelib] + ([info.platlib] if info.platlib != info.purelib else [])

    def pip_command(self, target_python: Path) -> list[str]:
        """`pip` run by the runtime interpreter against `target_python` (pip >= 22.3), else the
        target's own pip (found through the runtime's site-packages)."""
        if self.runtime_info().pip_version >= (22, 3):
            return [str(self.runtime_python), "-m", "pip", "--python", str(target_python)]
        return [str(target_python), "-m", "pip"]

    def key(self, requirements: Iterable[str], parent: Env | None, constraints: Iterable[str] = ()) -> str:
        """sha256 over the parent (its key, or the runtime fingerprint), the sorted requirements,
        the pip arguments and the sorted constraints."""
        h = hashlib.sha256()
        h.update((parent.key if parent else self.runtime_info().fingerprint).encode() + b"\0")
        h.update(json.dumps(sorted(set(requirements))).encode() + b"\0")
        h.update(json.dumps([self.pip_args, sorted(set(constraints))]).encode())
        return h.hexdigest()

    # -- the cache -------------------------------------------------------------------------------
    def ensure(self, requirements: list[str], parent: Env | None, pip_log: PipLog,
               interrupted: Callable[[], bool], label: str = "dependencies",
               on_note: Callable[[str], None] = lambda text: None, constraints: list[str] | None = None) -> Env:
        """Return the layer with `requirements` installed on top of `parent` (None = the runtime
        venv), building it if needed. `constraints` (pip `-c` lines such as `numpy==1.23.5`) keep
        versions pip must not change (a layer of runtime libraries must not shadow the runtime's
        own image libraries).

        pip's output goes to `pip_log`; `on_note` gets one-line progress notes naming `label`.
        `interrupted()` is polled while waiting for the per-key lock and while pip runs. Raises
        InstallFailed or Interrupted."""
        t0 = time.monotonic()
        digest = self.key(requirements, parent, constraints or ())
        final = self.root / digest
        chain = (digest, *(parent.chain if parent else ()))
        self.root.mkdir(parents=True, exist_ok=True)
        with self._guard:
            tlock = self._locks.setdefault(digest, threading.Lock())
        while not tlock.acquire(timeout=self.poll):
            if interrupted():
                raise Interrupted()
        try:
            with open(self.root / f"{digest}.lock", "w") as lockf:
                while True:  # flock: another service process may be building the same key
                    try:
                        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if interrupted():
                            raise Interrupted() from None
                        time.sleep(self.poll)
                self._touch(digest)
                if (final / ".complete").exists():
                    with self._guard:
                        self.reuses += 1
                    on_note(f"Reusing cached environment {digest[:12]} ({label}: already installed).")
                    return Env(digest, final, final / "bin" / "python", True, time.monotonic() - t0, chain)
                on_note(f"Installing {label} into a new environment {digest[:12]}: "
                        + (" ".join(sorted(requirements)) or "(none)"))
                self._build(digest, requirements, parent, pip_log, interrupted, label, list(constraints or ()))
                with self._guard:
                    self.builds += 1
                seconds = time.monotonic() - t0
                on_note(f"Environment {digest[:12]} ready in {seconds:.1f}s.")
        finally:
            tlock.release()
        self.evict(keep=set(chain))
        return Env(digest, final, final / "bin" / "python", False, seconds, chain)

    def hold(self, env: Env) -> EnvHold:
        """Mark every cached layer of `env` as in use until the returned hold is released (a
        shared flock per layer), so eviction leaves them alone."""
        return EnvHold(self.root, env.chain)

    def _touch(self, digest: str) -> None:
        p = self.root / f"{digest}.last-used"
        p.touch()
        os.utime(p)

    def clean_stale(self) -> None:
        """Remove leftovers of builds whose builder died (their key lock is free)."""
        if not self.root.is_dir():
            return
        for tmp in list(self.root.glob(".tmp-*")) + list(self.root.glob(".trash-*")):
            digest = tmp.name.split("-")[1]
            try:
                with open(self.root / f"{digest}.lock", "w") as lf:
                    fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    shutil.rmtree(tmp, ignore_errors=True)
            except BlockingIOError:
                pass  # a live builder owns it

    # -- size cap --------------------------------------------------------------------------------
    def layers(self) -> list[dict]:
        """Every complete layer: {"key", "label", "parent", "bytes", "last_used"} (epoch s)."""
        out = []
        if not self.root.is_dir():
            return out
        for d in self.root.iterdir():
            meta_file = d / ".complete"
            if d.name.startswith(".") or not meta_file.is_file():
                continue
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                continue
            try:
                used = (self.root / f"{d.name}.last-used").stat().st_mtime
            except OSError:
                used = meta.get("created", 0)
            out.append({"key": d.name, "label": meta.get("label", ""), "parent": meta.get("parent"),
                        "bytes": int(meta.get("bytes", 0)), "last_used": used})
        return out

    def total_bytes(self) -> int:
        """Bytes of every complete layer, as recorded when each was built."""
        return sum(layer["bytes"] for layer in self.layers())

    def evict(self, keep: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Delete least recently used layers until the cache fits `max_bytes`; returns the keys
        deleted. Never deletes a key in `keep`, a layer a job holds, or a parent of another layer."""
        if self.max_bytes is None:
            return []
        layers = self.layers()
        total = sum(layer["bytes"] for layer in layers)
        gone: list[str] = []
        parents = {layer["parent"] for layer in layers if layer["parent"]}
        for layer in sorted(layers, key=lambda x: x["last_used"]):
            if total <= self.max_bytes:
                break
            key = layer["key"]
            if key in keep or key in parents:
                continue
            if self._delete_if_unused(key):
                total -= layer["bytes"]
                gone.append(key)
                parents = {x["parent"] for x in self.layers() if x["parent"]}
        if gone:
            with self._guard:
                self.evictions += len(gone)
            log.info("evicted %d environment(s) to stay under %d bytes: %s", len(gone), self.max_bytes,
                     ", ".join(k[:12] for k in gone))
        return gone

    def _delete_if_unused(self, key: str) -> bool:
        try:
            with open(self.root / f"{key}.lock", "w") as lockf, open(self.root / f"{key}.use", "a") as usef:
                fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(usef, fcntl.LOCK_EX | fcntl.LOCK_NB)
                trash = self.root / f".trash-{key}-{uuid.uuid4().hex[:8]}"
                os.rename(self.root / key, trash)  # atomic: gone for readers at once
                shutil.rmtree(trash, ignore_errors=True)
                for suffix in (".last-used",):
                    (self.root / f"{key}{suffix}").unlink(missing_ok=True)
                return True
        except (BlockingIOError, FileNotFoundError):
            return False

    # -- building --------------------------------------------------------------------------------
    def _build(self, digest: str, requirements: list[str], parent: Env | None, pip_log: PipLog,
               interrupted: Callable[[], bool], label: str, constraints: list[str]) -> None:
        t0 = time.monotonic()
        final = self.root / digest
        tmp = self.root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            # appended after the layer's own site-packages, so what it installs wins over the parents
            parent_dirs = [str(parent.site_packages)] if parent else self.runtime_site_dirs()
            env_python = make_venv(self.runtime_python, tmp, parent_dirs)
            if requirements:
                extra: list[str] = []
                if constraints:
                    cfile = tmp / ".constraints.txt"
                    cfile.write_text("\n".join(constraints) + "\n")
                    extra = ["-c", str(cfile)]
                cmd = self.pip_command(env_python) + [
                    "install", "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
                    *self.pip_args, *extra, *requirements]
                rc, output, stderr = pip_log.run(cmd, interrupted, self.poll)
                if rc != 0:
                    raise InstallFailed(stderr, output)
            relocate_scripts(tmp, final)
            (tmp / ".complete").write_text(json.dumps({
                "label": label, "requirements": sorted(requirements), "parent": parent.key if parent else None,
                "bytes": _dir_bytes(tmp), "seconds": round(time.monotonic() - t0, 3), "created": time.time(),
            }))
            os.rename(tmp, final)  # atomic: the env appears complete or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


class EnvHold:
    """Shared flocks on `<key>.use` for each key; `release()` (or leaving the `with`) drops them."""

    def __init__(self, root: Path, keys: Iterable[str]):
        self._files = []
        for key in keys:
            f = open(Path(root) / f"{key}.use", "a")
            fcntl.flock(f, fcntl.LOCK_SH)
            self._files.append(f)

    def release(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> EnvHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def relocate_scripts(tmp: Path, final: Path) -> None:
    """Console scripts carry the build dir in their shebang; point them at the final dir."""
    old, new = str(tmp).encode(), str(final).encode()
    for script in (tmp / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(b"#!") and old in data:
            script.write_bytes(data.replace(old, new))
