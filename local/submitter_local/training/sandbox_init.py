"""The first process of a replica's sandbox (standard library only; run by `sandbox.py`).

    <python> sandbox_init.py SPEC_JSON_FILE

Run by the service as root, normally as PID 1 of fresh PID and mount namespaces
(`unshare --mount --pid --fork --kill-child --mount-proc`), it

1. reads the spec (and deletes the file): argv, env, cwd, uid/gid, the replica's own tmp
   directory, paths to hide (`masks`), host paths to keep visible (`exposes`), the status file;
2. prepares the mounts (namespaces only): the replica's tmp directory over /tmp; an empty
   read-only tmpfs over each mask and over any directory on the way to an exposed path that
   the trainer's account could not traverse (e.g. /root, mode 0700, holding the interpreter),
   then each exposed path bound back at its own place;
3. starts the trainer: drops to uid/gid with no supplementary groups and no_new_privs,
   changes to cwd and execs argv with env (exactly env: nothing is inherited);
4. as PID 1: forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to every process of
   the namespace, reaps orphans, and when the trainer exits writes `{"exit": N}` or
   `{"signal": N}` to the status file and exits; the kernel then kills whatever the trainer
   left behind in the namespace (a child in its own session included), as a VM going away would.

Without namespaces (`"namespaces": false`) it only applies 1 and 3 in place (exec, no fork).
Errors before the trainer starts are printed on stderr prefixed `[local-training sandbox]`
and exit with status 125.
"""

import ctypes
import json
import os
import signal
import stat
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
PR_SET_NO_NEW_PRIVS = 38
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def fail(message):
    sys.stderr.write(f"[local-training sandbox] {message}\n")
    sys.stderr.flush()
    os._exit(125)


def mount(src, target, fstype, flags, data=None):
    enc = (lambda s: s.encode() if s is not None else None)
    if _libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src or fstype} on {target}: {os.strerror(err)}")


def ancestors(path):
    """'/a/b/c' -> ['/', '/a', '/a/b'] (the directories one passes through)."""
    parts = path.strip("/").split("/")[:-1]
    return ["/"] + ["/" + "/".join(parts[:i + 1]) for i in range(len(parts))]


def traversable(path, uid, gid):
    try:
        st = os.stat(path)
    except OSError:
        return True  # created below, by root, 0755
    if uid == st.st_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if gid == st.st_gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


class Mounts:
    """Mask-and-expose over the current mount namespace (as root)."""

    def __init__(self, exposes):
        # O_PATH handles opened before anything is hidden: binds are made from them later
        self.fds = {}
        for p in exposes:
            try:
                fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # an optional path that does not exist: nothing to expose
            self.fds[os.path.realpath(p)] = fd
            # reached through a symlink (e.g. a shared runtime linked into a masked directory): the path as given
            # comes back too, since a mask hides the link itself
            self.fds.setdefault(os.path.abspath(p), fd)
        self.masked = set()

    def bind_from_fd(self, path, fd):
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)

    def mask(self, path):
        if path in self.masked or not os.path.isdir(path):
            return
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        self.masked.add(path)
        # the exposed paths under it come back; the tmpfs stays writable only for root
        for p, fd in sorted(self.fds.items()):
            if p != path and p.startswith(path.rstrip("/") + "/"):
                self.bind_from_fd(p, fd)

    def make_reachable(self, uid, gid):
        changed = True
        while changed:
            changed = False
            for p in sorted(self.fds):
                blocked = next((a for a in ancestors(p) if a not in self.masked and not traversable(a, uid, gid)),
                               None)
                if blocked is not None and blocked != "/":
                    self.mask(blocked)
                    changed = True


def prepare_mounts(spec):
    m = Mounts(spec.get("exposes", []))
    if spec.get("tmp"):
        tmp_fd = os.open(spec["tmp"], os.O_PATH | os.O_CLOEXEC)
        mount(f"/proc/self/fd/{tmp_fd}", "/tmp", None, MS_BIND | MS_REC)
        os.close(tmp_fd)
        for p, fd in sorted(m.fds.items()):  # exposed paths that lived under /tmp come back
            if p.startswith("/tmp/"):
                m.bind_from_fd(p, fd)
    for path in sorted(spec.get("masks", []), key=len):
        m.mask(os.path.realpath(path))
    for src, dst in spec.get("binds", []):
        if os.path.exists(src):
            os.makedirs(dst, exist_ok=True)
            mount(src, dst, None, MS_BIND | MS_REC)
    if spec.get("uid") not in (None, 0):
        m.make_reachable(spec["uid"], spec["gid"])
    for fd in set(m.fds.values()):
        os.close(fd)


def exec_trainer(spec):
    """Become the trainer (does not return)."""
    try:
        uid, gid = spec.get("uid"), spec.get("gid")
        if uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                fail("prctl(PR_SET_NO_NEW_PRIVS) failed")
        os.umask(0o022)
        os.chdir(spec["cwd"])
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as e:
        sys.stderr.write(f"[local-training sandbox] cannot start {spec['argv'][0]}: {e}\n")
        sys.stderr.flush()
        os._exit(127)


def open_status(path):
    """The status file, opened before the mounts hide where it lives (None without one)."""
    if not path:
        return None
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


def write_status(fd, status):
    if fd is None:
        return
    if os.WIFSIGNALED(status):
        data = {"signal": os.WTERMSIG(status)}
    else:
        data = {"exit": os.waitstatus_to_exitcode(status)}
    os.write(fd, json.dumps(data).encode())
    os.close(fd)


def main(argv):
    if len(argv) != 2:
        fail("usage: sandbox_init.py SPEC_JSON_FILE")
    try:
        with open(argv[1]) as f:
            spec = json.load(f)
        os.unlink(argv[1])
    except (OSError, ValueError) as e:
        fail(f"cannot read the spec {argv[1]}: {e}")
    if not spec.get("namespaces"):
        exec_trainer(spec)
    status_fd = open_status(spec.get("status_file"))
    try:
        prepare_mounts(spec)
    except OSError as e:
        fail(f"cannot prepare the replica's file system: {e}")
    child = os.fork()
    if child == 0:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, signal.SIG_DFL)
        exec_trainer(spec)

    def forward(signum, frame):
        try:
            os.kill(-1, signum)  # every process of the namespace but this one
        except ProcessLookupError:
            pass

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            fail("the trainer vanished")
        if pid == child:
            break
    write_status(status_fd, status)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main(sys.argv)
