"""Process-group helpers: every child the service starts runs in its own session
(`start_new_session=True`), so its pid is also its process group id and the whole tree
(trainer plus anything it forked) can be stopped with one `killpg`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def has_exited(pid: int) -> bool:
    """True when child `pid` has exited; does not reap it (WNOWAIT), so its pid, and with it
    the process group id, cannot be reused while we still signal stragglers of the group."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    """True while any process of group `pgid` exists."""
    return signal_group(pgid, 0)


def wait_exit(proc: subprocess.Popen, wake: threading.Event, poll: float,
              deadline: float | None = None) -> str:
    """Wait until `proc` exits ("exited"), `wake` is set ("woken") or time passes `deadline`
    (epoch seconds, "deadline"). Does not reap the process."""
    while True:
        if has_exited(proc.pid):
            return "exited"
        if wake.is_set():
            return "woken"
        timeout = poll
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0:
                return "deadline"
            timeout = min(poll, left)
        wake.wait(timeout)


def stop_group(proc: subprocess.Popen, grace: float, poll: float = 0.05) -> int:
    """Stop the process group led by `proc`: SIGTERM, up to `grace` seconds for the leader
    to exit, then SIGKILL for whatever is left of the group. Reaps and returns the exit code."""
    pgid = proc.pid
    if not has_exited(proc.pid):
        signal_group(pgid, signal.SIGTERM)
        end = time.monotonic() + grace
        while time.monotonic() < end and not has_exited(proc.pid):
            time.sleep(poll)
    signal_group(pgid, signal.SIGKILL)  # stragglers too: on the cloud the VM goes away
    return proc.wait()


def stop_groups(processes: list[subprocess.Popen], grace: float, poll: float = 0.05) -> None:
    """`stop_group` for several groups at once: SIGTERM to every group, one shared grace
    period of up to `grace` seconds for the leaders to exit, then SIGKILL to every group
    (stragglers included) and reap every leader. A cluster thus stops in about `grace`
    seconds, not `grace` times its size."""
    for proc in processes:
        if not has_exited(proc.pid):
            signal_group(proc.pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and not all(has_exited(p.pid) for p in processes):
        time.sleep(poll)
    for proc in processes:
        signal_group(proc.pid, signal.SIGKILL)
    for proc in processes:
        proc.wait()


def reap_group(proc: subprocess.Popen) -> int:
    """After the leader exited on its own: kill what is left of its group, reap the leader."""
    signal_group(proc.pid, signal.SIGKILL)
    return proc.wait()


def process_has_env(pid: int, name: str, value: str) -> bool:
    """True if process `pid` runs with environment variable name=value (Linux /proc)."""
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{name}={value}".encode() in data.split(b"\0")


def kill_group_if_ours(pgid: int, name: str, value: str) -> bool:
    """SIGKILL process group `pgid` if any member still carries env name=value.

    Used after a restart: the recorded group may have outlived the service (or its leader),
    and pids get reused, so the run token in the environment proves the group is ours.
    Returns True if it sent the signal."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and process_has_env(int(entry.name), name, value):
            return signal_group(pgid, signal.SIGKILL)
    return False


def kill_processes_with_env(name: str, value: str) -> list[int]:
    """SIGKILL every process whose environment holds name=value, whatever its process group
    or session (a trainer's child that called setsid() left the group but kept the variable).
    Returns the pids signalled. Linux /proc; needs permission to read their environ."""
    killed = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        if process_has_env(pid, name, value):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
    return killed
