"""Rows 2 and 3: one drop in-process on the test doubles (conftest.World: FakeStorage, the real MlV1Backend over
FakeMlApi, FakePublisher, InMemoryStateStore), its time against reading the package's tar headers, its peak
Python heap for a 5 MB and a 200 MB package, and the storage requests it makes (counted by the doubles).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
import tracemalloc
from collections.abc import Callable

from .common import Row, Spread, interleaved

SPEC_BYTES = 10 * 1024
TODAY_REQUESTS = 20  # the "today's ~20" storage requests per drop


def job_yaml(size: int = SPEC_BYTES) -> bytes:
    """conftest's baseline job.yaml padded with comment lines to `size` bytes (a 10 KB spec)."""
    from conftest import BASELINE_YAML

    pad = size - len(BASELINE_YAML)
    line = b"# padding: a long job.yaml is mostly comments and args in real drops\n"
    body = BASELINE_YAML + (line * (pad // len(line) + 1))[:pad]
    return body[: size - 1] + b"\n"


def package(mib: int) -> bytes:
    """conftest's baseline sdist plus `mib` MiB of incompressible data (gzip level 1: built fast)."""
    from conftest import baseline_files

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in {**baseline_files(), "trainer/data.bin": os.urandom(mib * 2**20)}.items():
            info = tarfile.TarInfo(f"trainer-0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_headers(data: bytes) -> int:
    """The baseline: iterate the tar headers of a gzip sdist from a stream; returns the member count."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
        return sum(1 for _ in tar)


class Drop:
    """One drop on a fresh World: package then job.yaml, both events delivered, as conftest.World.drop does.

    Storage requests are counted by the doubles: FakeStorage.requests (the drop bucket: list, stat, read,
    copy) plus InMemoryStateStore.requests (the state bucket's records). `before_create` is that count when
    the training API's jobs.create arrives.
    """

    def __init__(self, pkg: bytes, spec: bytes):
        from conftest import World

        self.world = World()
        self.pkg, self.spec = pkg, spec
        self.before_create: int | None = None
        api = self.world.api
        create = api._create

        def counting_create(job: dict) -> tuple[int, dict]:
            if self.before_create is None:
                self.before_create = self.requests()
            return create(job)

        api._create = counting_create  # the instance attribute wins over FakeMlApi._create

    def requests(self) -> int:
        """Storage requests so far (drop bucket + state bucket)."""
        return sum(self.world.storage.requests.values()) + sum(self.world.store.requests.values())

    def breakdown(self) -> str:
        """Requests by kind, e.g. `list 2, read 1, get 5, ...`."""
        kinds = {**{f"objects.{k}": v for k, v in self.world.storage.requests.items()},
                 **{f"state.{k}": v for k, v in self.world.store.requests.items()}}
        return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))

    def run(self) -> str:
        """Drop and return the job.yaml outcome's action (`submitted` for a good drop)."""
        outcome = self.world.drop("incoming/bench-run", spec=self.spec, package=self.pkg)
        return outcome.action.value


def timed_drop(pkg: bytes, spec: bytes) -> float:
    """Seconds for one drop on a fresh World (the World's construction is not timed)."""
    drop = Drop(pkg, spec)
    start = time.perf_counter()
    action = drop.run()
    elapsed = time.perf_counter() - start
    if action != "submitted":
        raise RuntimeError(f"the benchmark drop was not submitted: {action}")
    return elapsed


def peak_heap(fn: Callable[[], object]) -> int:
    """Peak traced Python heap bytes while `fn` runs (tracemalloc; allocations made before it do not count)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(runs: int, smoke: bool) -> list[Row]:
    """Rows 2 (time, memory) and 3 (storage requests)."""
    spec = job_yaml()
    small = package(5)

    def baseline(_: int) -> float:
        start = time.perf_counter()
        read_headers(small)
        return time.perf_counter() - start

    timed_drop(small, spec)  # warm-up: first-use imports and the discovery document are not part of a drop
    base, prod, ratios = interleaved(runs, baseline, lambda _: timed_drop(small, spec))
    r = Spread.of(ratios)
    rows = [Row(2, "2a", f"one drop in-process, 10 KB job.yaml + 5 MB package: {Spread.of(prod).show(' s', 3)}",
                f"reading the package's tar headers: {Spread.of(base).show(' s', 3)}", r.show(), "≤ 1.5×",
                r.median <= 1.5, "both events of the drop (package, then job.yaml) on conftest.World's doubles; "
                "time excludes building the World; one unmeasured warm-up drop first")]

    big_mib = 50 if smoke else 200
    peaks = {}
    for mib in (5, big_mib):
        pkg = package(mib)
        drop = Drop(pkg, spec)
        peaks[mib] = peak_heap(drop.run)
        del drop, pkg
    growth = peaks[big_mib] - peaks[5]
    rows.append(Row(2, "2b", f"peak Python heap of one drop: {peaks[5] / 2**20:.2f} MiB (5 MB package), "
                             f"{peaks[big_mib] / 2**20:.2f} MiB ({big_mib} MB package); growth "
                             f"{growth / 2**20:.2f} MiB", "the 5 MB drop's peak", f"{peaks[big_mib] / peaks[5]:.2f}×",
                    "growth 5 → 200 MB < 20 MB", growth < 20 * 2**20,
                    "tracemalloc peak during the drop, one run per size (allocation is deterministic); the package "
                    "bytes already sit in FakeStorage and are not counted"
                    + ("; smoke: 50 MB instead of 200 MB" if smoke else "")))

    counted = Drop(small, spec)
    counted.run()
    total, before = counted.requests(), counted.before_create
    rows.append(Row(3, "3", f"storage requests per good drop: {total} ({before} before jobs.create)",
                    f"today's ~{TODAY_REQUESTS}", f"{total / TODAY_REQUESTS:.2f}×", "≤ 8, and ≤ 3 before jobs.create",
                    total <= 8 and before is not None and before <= 3,
                    "counted by FakeStorage and InMemoryStateStore over both events of the drop: "
                    + counted.breakdown()))
    return rows
