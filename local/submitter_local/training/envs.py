"""Per-package-hash trainer environments layered on the shared runtime venv.

The cloud installs the job's packages into a runtime-version image with
`pip install` before it runs `python -m <pythonModule>`. Here the "image" is the runtime
venv (`ServiceConfig.runtime_python`) and each distinct set of package bytes gets its own
environment, built once and reused:

    <envs_dir>/<hash>/            venv made with `--without-pip` from the runtime interpreter
        lib/pythonX.Y/site-packages/_runtime_image.pth   -> adds the runtime's site-packages
        .complete                 JSON: packages, seconds, created (written last)
    <envs_dir>/<hash>.lock        flock: one builder per hash, across threads and processes

The packages go in with `<runtime python> -m pip --python <env python> install ...`
(pip >= 22.3; older pips run as `<env python> -m pip`, found through the .pth). Dependencies
already in the runtime (scikit-learn, google-cloud-storage) count as installed and are not
fetched again. A build happens in `<envs_dir>/.tmp-*` and is renamed into place, so a
half-built environment is never used.
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
from pathlib import Path
from typing import Callable

from . import procs

log = logging.getLogger(__name__)

#: Environment variables that would leak the service's own interpreter setup into children.
_PYTHON_ENV_LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__",
                     "PYTHONEXECUTABLE", "PYTHONSAFEPATH")


def child_base_env() -> dict[str, str]:
    """os.environ without the variables that point at the service's own Python."""
    return {k: v for k, v in os.environ.items() if k not in _PYTHON_ENV_LEAKS}


class InstallFailed(Exception):
    """pip (or venv creation) failed; `tail` is the end of its stderr."""

    def __init__(self, tail: str):
        super().__init__(tail)
        self.tail = tail


class Interrupted(Exception):
    """The build was abandoned because the caller asked (cancel or service stop)."""


@dataclasses.dataclass(frozen=True)
class Env:
    """A ready environment. `python` runs trainers; `reused` is False when this call built it."""

    hash: str
    path: Path
    python: Path
    reused: bool
    seconds: float


@dataclasses.dataclass(frozen=True)
class _RuntimeInfo:
    purelib: str
    platlib: str
    version: str  # "3.11"
    pip_version: tuple[int, ...]


def tail_text(text: str, lines: int = 20, chars: int = 4000) -> str:
    """The last `lines` lines of `text`, at most `chars` characters (keeping the end)."""
    out = "\n".join(text.rstrip().splitlines()[-lines:])
    return out[-chars:]


def read_tail(path: Path, lines: int = 20, chars: int = 4000) -> str:
    """`tail_text` of a file's last 64 KiB (empty string if the file is missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            data = f.read()
    except OSError:
        return ""
    return tail_text(data.decode("utf-8", "replace"), lines, chars)


class EnvCache:
    """Builds and reuses trainer environments; thread-safe.

    `builds` / `reuses` count what `ensure` did since this object was created.
    """

    def __init__(self, root: Path, runtime_python: Path, pip_args: tuple[str, ...] = (), poll: float = 0.1):
        self.root = Path(root)
        self.runtime_python = Path(runtime_python)
        self.pip_args = tuple(pip_args)
        self.poll = poll
        self.builds = 0
        self.reuses = 0
        self._info: _RuntimeInfo | None = None
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- runtime facts -------------------------------------------------------------------------
    def runtime_info(self) -> _RuntimeInfo:
        """Site-packages paths, Python and pip versions of the runtime (asked once)."""
        if self._info is None:
            code = ("import json, sys, sysconfig\n"
                    "try:\n    import pip; pv = pip.__version__\nexcept Exception:\n    pv = '0'\n"
                    "p = sysconfig.get_paths()\n"
                    "print(json.dumps([p['purelib'], p['platlib'], '%d.%d' % sys.version_info[:2], pv]))")
            out = subprocess.run([str(self.runtime_python), "-c", code], capture_output=True, text=True,
                                 env=child_base_env(), check=True).stdout
            purelib, platlib, version, pv = json.loads(out)
            pip_version = tuple(int(x) for x in pv.split(".")[:2] if x.isdigit())
            self._info = _RuntimeInfo(purelib, platlib, version, pip_version)
        return self._info

    def key(self, package_files: list[Path]) -> str:
        """sha256 over the package bytes (in order), the runtime interpreter path and pip args."""
        h = hashlib.sha256()
        h.update(str(self.runtime_python.absolute()).encode() + b"\0")
        h.update(json.dumps(self.pip_args).encode() + b"\0")
        for p in package_files:
            fh = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    fh.update(chunk)
            h.update(fh.digest())
        return h.hexdigest()

    # -- the cache -------------------------------------------------------------------------------
    def ensure(self, package_files: list[Path], log_dir: Path, interrupted: Callable[[], bool],
               on_log: Callable[[str], None] = lambda line: None) -> Env:
        """Return an environment with `package_files` installed, building it if needed.

        pip's output goes to `log_dir/pip.stdout.log` and `pip.stderr.log`; `on_log` gets
        one-line progress notes. `interrupted()` is polled while waiting for the per-hash
        lock and while pip runs. Raises InstallFailed or Interrupted.
        """
        t0 = time.monotonic()
        digest = self.key(package_files)
        final = self.root / digest
        self.root.mkdir(parents=True, exist_ok=True)
        with self._guard:
            tlock = self._locks.setdefault(digest, threading.Lock())
        while not tlock.acquire(timeout=self.poll):
            if interrupted():
                raise Interrupted()
        try:
            with open(self.root / f"{digest}.lock", "w") as lockf:
                while True:  # flock: another service process may be building the same hash
                    try:
                        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if interrupted():
                            raise Interrupted() from None
                        time.sleep(self.poll)
                if (final / ".complete").exists():
                    with self._guard:
                        self.reuses += 1
                    on_log(f"Reusing cached environment {digest[:12]} (packages already installed).")
                    return Env(digest, final, final / "bin" / "python", True, time.monotonic() - t0)
                on_log(f"Installing packages into a new environment {digest[:12]}.")
                self._build(digest, package_files, log_dir, interrupted)
                with self._guard:
                    self.builds += 1
                seconds = time.monotonic() - t0
                on_log(f"Environment {digest[:12]} ready in {seconds:.1f}s.")
                return Env(digest, final, final / "bin" / "python", False, seconds)
        finally:
            tlock.release()

    def clean_stale(self) -> None:
        """Remove leftovers of builds whose builder died (their hash lock is free)."""
        if not self.root.is_dir():
            return
        for tmp in self.root.glob(".tmp-*"):
            digest = tmp.name.split("-")[1]
            lock = self.root / f"{digest}.lock"
            try:
                with open(lock, "w") as lf:
                    fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    shutil.rmtree(tmp, ignore_errors=True)
            except BlockingIOError:
                pass  # a live builder owns it

    # -- building --------------------------------------------------------------------------------
    def _run(self, cmd: list[str], out: Path, err: Path, interrupted: Callable[[], bool]) -> int:
        env = child_base_env()
        env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        with open(out, "ab") as fo, open(err, "ab") as fe:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=env,
                                    start_new_session=True)
        try:
            while not procs.has_exited(proc.pid):
                if interrupted():
                    procs.stop_group(proc, grace=0)
                    raise Interrupted()
                time.sleep(self.poll / 2)
            return procs.reap_group(proc)
        finally:
            if proc.returncode is None:
                procs.stop_group(proc, grace=0)

    def _build(self, digest: str, package_files: list[Path], log_dir: Path,
               interrupted: Callable[[], bool]) -> None:
        info = self.runtime_info()
        final = self.root / digest
        tmp = self.root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        log_dir.mkdir(parents=True, exist_ok=True)
        out, err = log_dir / "pip.stdout.log", log_dir / "pip.stderr.log"
        try:
            rc = self._run([str(self.runtime_python), "-m", "venv", "--without-pip", str(tmp)], out, err, interrupted)
            if rc != 0:
                raise InstallFailed(read_tail(err))
            site = tmp / "lib" / f"python{info.version}" / "site-packages"
            # addsitedir (not a bare path) so .pth files of the runtime are honoured too;
            # appended after the env's own site-packages, so the job's packages win.
            lines = [f"import site; site.addsitedir({info.purelib!r})"]
            if info.platlib != info.purelib:
                lines.append(f"import site; site.addsitedir({info.platlib!r})")
            (site / "_runtime_image.pth").write_text("\n".join(lines) + "\n")
            env_python = tmp / "bin" / "python"
            pip = ([str(self.runtime_python), "-m", "pip", "--python", str(env_python)]
                   if info.pip_version >= (22, 3) else [str(env_python), "-m", "pip"])
            cmd = pip + ["install", "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
                         *self.pip_args, *[str(p) for p in package_files]]
            rc = self._run(cmd, out, err, interrupted)
            if rc != 0:
                raise InstallFailed(read_tail(err))
            self._relocate_scripts(tmp, final)
            (tmp / ".complete").write_text(json.dumps({
                "packages": [p.name for p in package_files], "created": time.time(),
            }))
            os.rename(tmp, final)  # atomic: the env appears complete or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _relocate_scripts(tmp: Path, final: Path) -> None:
        """Console scripts carry the build dir in their shebang; point them at the final dir."""
        old, new = str(tmp).encode(), str(final).encode()
        for script in (tmp / "bin").iterdir():
            if script.is_symlink() or not script.is_file():
                continue
            data = script.read_bytes()
            if data.startswith(b"#!") and old in data:
                script.write_bytes(data.replace(old, new))
