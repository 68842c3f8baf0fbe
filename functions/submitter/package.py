"""Inspect a training package (an sdist .tar.gz) without extracting it (pure over a byte stream).

Only tar headers are read, from a stream, with caps on member count and total
size; nothing is written to disk. The checks follow what makes a package
installable by the training service (`pip install` of an sdist) and runnable
as `python -m <pythonModule>`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import sys
import tarfile
import zlib
from typing import Any, BinaryIO, cast

from .errors import SpecRejected
from .reasons import Reason, Violation
from .text import safe_text

MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 2 * 1024 ** 3
# GNU long-name/long-link and PAX extended headers are read whole by tarfile; anything above this is
# refused before it is read, so memory stays bounded whatever the archive claims. Paths are at most
# 4096 bytes on Linux; a PAX record set for one member has no business being larger.
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
MAX_LINK_HOPS = 40  # like the kernel's symlink limit


class _HeaderTooLarge(Exception):
    def __init__(self, kind: str, size: int):
        super().__init__(f"has a {kind} header of {size} bytes (at most {MAX_EXTENDED_HEADER_BYTES}); refusing it "
                         "unread")


class _CappedTarInfo(tarfile.TarInfo):
    """TarInfo whose long-name and PAX headers are refused above MAX_EXTENDED_HEADER_BYTES before being read."""

    def _proc_gnulong(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_EXTENDED_HEADER_BYTES:
            raise _HeaderTooLarge("GNU long-name", self.size)
        return super()._proc_gnulong(archive)  # type: ignore[misc,no-any-return]

    def _proc_pax(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_EXTENDED_HEADER_BYTES:
            raise _HeaderTooLarge("PAX extended", self.size)
        return super()._proc_pax(archive)  # type: ignore[misc,no-any-return]


@dataclasses.dataclass(frozen=True)
class PackageInfo:
    """What the headers of one package say.

    Attributes:
        filename: the package object's file name (for messages).
        top_dir: the single top-level directory, e.g. "trainer-0.1".
        files: member file paths relative to top_dir.
        sha256: hex SHA-256 of the package's bytes, as read (names its staged copy).
    """

    filename: str
    top_dir: str
    files: frozenset[str]
    sha256: str = ""

    def module_problem(self, module: str) -> Violation | None:
        """Why `python -m <module>` would not find `module` once installed, or None if it would.

        Looks in the sdist's root and in a `src/` layout. A module inside a
        package needs an `__init__.py` in every package directory on its path.
        """
        parts = module.split(".")
        rel = "/".join(parts) + ".py"
        if parts[0] in sys.stdlib_module_names:
            return Violation("trainingInput.pythonModule", f"pythonModule {module!r} starts with {parts[0]!r}, a "
                             "module of Python's standard library, which `python -m` finds before any installed "
                             "package; rename your package", Reason.MODULE_NOT_IN_PACKAGE, module)
        for root in ("", "src/"):
            if root + rel in self.files or root + "/".join(parts) + "/__main__.py" in self.files:
                missing = [root + "/".join(parts[:i]) for i in range(1, len(parts))
                           if root + "/".join(parts[:i]) + "/__init__.py" not in self.files]
                if missing:
                    return Violation(
                        "trainingInput.pythonModule",
                        f"pythonModule {module!r}: {missing[0]}/ in {self.filename} has no __init__.py, so it "
                        "is not installed as a package; add an empty __init__.py",
                        Reason.MODULE_NOT_IN_PACKAGE, module)
                return None
        candidates = sorted({self._module_name(f) for f in self.files if f.endswith(".py")
                             and not f.endswith("__init__.py") and not f.startswith(("setup.py", "tests/"))})
        close = difflib.get_close_matches(module, candidates, n=3, cutoff=0.3)
        close += [c for c in candidates if c.endswith("." + parts[-1]) and c not in close]
        hint = f"; candidates: {', '.join(close[:3])}" if close else ""
        return Violation("trainingInput.pythonModule",
                         f"pythonModule {module!r} not found in {self.filename} (looked for {rel}){hint}",
                         Reason.MODULE_NOT_IN_PACKAGE, module)

    @property
    def distribution(self) -> str:
        """The distribution name from the sdist's top directory `name-version`, normalised (PEP 503)."""
        name = self.top_dir.rsplit("-", 1)[0] if "-" in self.top_dir else self.top_dir
        return re.sub(r"[-_.]+", "-", name).lower()

    @staticmethod
    def _module_name(path: str) -> str:
        return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


class PackageRejected(SpecRejected):
    """The package is not a safe, installable sdist; `violation` says why (reason PACKAGE_INVALID)."""

    def __init__(self, violation: Violation):
        super().__init__([violation])
        self.violation = violation


def inspect_package(stream: BinaryIO, filename: str, *, max_members: int = MAX_MEMBERS,
                    max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> PackageInfo:
    """Read the tar headers of a gzip sdist from `stream` and check its shape.

    Requires a gzip tar whose members all sit under one top-level directory that
    holds `setup.py` or `pyproject.toml`. Refuses absolute paths, `..`
    components, links that leave the archive, and device/FIFO members.

    Args:
        stream: readable binary stream of the .tar.gz (read once, sequentially).
        filename: the package file name, for messages.
        max_members / max_unpacked_bytes: caps; over them the package is refused.
    Raises:
        PackageRejected: with reason PACKAGE_INVALID and a message naming the file.
    """
    def reject(message: str) -> PackageRejected:
        return PackageRejected(Violation(filename, message, Reason.PACKAGE_INVALID))

    def shown(name: str) -> str:
        return repr(safe_text(name, 120, keep_newlines=False))

    hashed = _HashingReader(stream)
    files: set[str] = set()
    links: dict[str, str] = {}  # symlink member path -> target, to resolve chains against the archive root
    tops: set[str] = set()
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=cast(BinaryIO, hashed), mode="r|gz", tarinfo=_CappedTarInfo) as archive:
            for member in archive:
                count += 1
                if count > max_members:
                    raise reject(f"has more than {max_members} members")
                total += max(member.size, 0)
                if total > max_unpacked_bytes:
                    raise reject(f"unpacks to more than {max_unpacked_bytes} bytes")
                name = member.name
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if name.startswith("/") or ".." in parts:
                    raise reject(f"member {shown(name)} has an absolute path or '..'; refusing an unsafe archive")
                if member.isdev() or member.isfifo():
                    raise reject(f"member {shown(name)} is a device or FIFO; refusing an unsafe archive")
                through = next((("/".join(parts[:i])) for i in range(1, len(parts)) if "/".join(parts[:i]) in links),
                               None)
                if through is not None:
                    raise reject(f"member {shown(name)} lies under the link {shown(through)}; refusing an archive that "
                                 "places files through links")
                if member.issym() or member.islnk():
                    target = member.linkname
                    base = parts[:-1] if member.issym() else []
                    if target.startswith("/") or _resolve(base + target.split("/"), links) is None:
                        raise reject(f"link {shown(name)} -> {shown(target)} points outside the archive")
                    if member.issym():
                        links["/".join(parts)] = target
                if not parts:
                    continue
                tops.add(parts[0])
                if member.isfile() and len(parts) > 1:
                    files.add("/".join(parts[1:]))
    except _HeaderTooLarge as exc:
        raise reject(str(exc)) from None
    except (tarfile.TarError, zlib.error, EOFError, OSError, UnicodeError) as exc:
        raise reject(f"is not a gzip-compressed tar archive (an sdist): {safe_text(str(exc), 200)}") from None
    if count == 0:
        raise reject("is an empty archive")
    if len(tops) != 1:
        found = ", ".join(shown(t) for t in sorted(tops)[:5])
        raise reject(f"must hold one top-level directory (an sdist like trainer-0.1/), found {found}")
    if not ({"setup.py", "pyproject.toml"} & files):
        raise reject(f"{shown(next(iter(tops)))} has neither setup.py nor pyproject.toml, so pip cannot install it")
    hashed.drain()
    return PackageInfo(filename=filename, top_dir=next(iter(tops)), files=frozenset(files), sha256=hashed.hexdigest())


class _HashingReader:
    """A read-only stream wrapper that hashes every byte read through it (bounded memory)."""

    def __init__(self, stream: BinaryIO):
        self._stream, self._hash = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        return data

    def drain(self) -> None:
        """Read what the tar reader left (end-of-archive padding), so the hash covers the whole package."""
        while self.read(1024 * 1024):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _resolve(parts: list[str], links: dict[str, str]) -> list[str] | None:
    """Resolve a path inside the archive, following the archive's own symlinks; None when it leaves the root."""
    out: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        target = links.get("/".join(out))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or target.startswith("/"):
                return None
            out.pop()
            pending = target.split("/") + pending
    return out


def module_violations(infos: list[PackageInfo], module: Any) -> list[Violation]:
    """A violation when `module` (a valid dotted name) is in none of the packages; [] otherwise."""
    if not infos or not isinstance(module, str):
        return []
    problems = [info.module_problem(module) for info in infos]
    first = problems[0]
    return [first] if first is not None and all(problems) else []


def duplicate_distributions(infos: list[PackageInfo]) -> list[Violation]:
    """Two packages of one distribution (e.g. trainer-0.1 and trainer-0.2) cannot be installed together:
    pip refuses, and the job would fail in PREPARING."""
    seen: dict[str, PackageInfo] = {}
    out = []
    for info in infos:
        first = seen.setdefault(info.distribution, info)
        if first is not info:
            out.append(Violation(info.filename, f"is distribution {info.distribution!r} like {first.filename}; pip "
                                 "cannot install two versions of one package: drop one of them",
                                 Reason.PACKAGE_INVALID, info.top_dir))
    return out
