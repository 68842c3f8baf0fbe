"""Benchmark: package inspection reads tar headers from a stream, so memory stays flat as a package grows.

Builds sdists holding one incompressible data file of 1, 16 and 128 MiB, inspects each from a file
stream (as the function streams from GCS), and reports the peak Python heap (tracemalloc) and the
wall time, each as a ratio against the 1 MiB package measured in the same run (the baseline). Every
figure is the median of --runs runs (default 5): machines here are small and noisy.

Run: make bench   (or .venv/bin/python bench/package_inspection.py --runs 5)
Target: peak memory ratio ~1.0 at 128x the size (flat); time grows with the bytes that must be
decompressed to skip past members (gzip has no index), i.e. roughly linearly.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

from submitter.package import inspect_package

SIZES_MIB = (1, 16, 128)


def build(path: Path, size_mib: int) -> None:
    """An sdist with setup.py, a package, and `size_mib` MiB of random bytes."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in (("setup.py", b"from setuptools import setup\nsetup(name='t')\n"),
                           ("trainer/__init__.py", b""), ("trainer/task.py", b"print('ok')\n")):
            info = tarfile.TarInfo(f"trainer-0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("trainer-0.1/trainer/data.bin")
        info.size = size_mib * 1024 * 1024
        with open("/dev/urandom", "rb") as rnd:
            tar.addfile(info, _Limited(rnd, info.size))


class _Limited(io.RawIOBase):
    def __init__(self, raw, n):
        self.raw, self.left = raw, n

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.raw.read(n)


def measure(path: Path) -> tuple[int, float]:
    """(peak traced bytes, seconds) of one inspection streamed from `path`."""
    tracemalloc.start()
    start = time.perf_counter()
    with path.open("rb") as stream:
        info = inspect_package(stream, path.name)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.module_problem("trainer.task") is None
    return peak, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for size in SIZES_MIB:
            path = Path(tmp) / f"trainer-{size}.tar.gz"
            build(path, size)
            runs = [measure(path) for _ in range(args.runs)]
            results[size] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                             os.path.getsize(path))
    base_mem, base_time, _ = results[SIZES_MIB[0]]
    print(f"package inspection, median of {args.runs} runs; baseline = the {SIZES_MIB[0]} MiB package")
    print(f"{'package':>10} {'file MiB':>9} {'peak KiB':>9} {'mem ratio':>10} {'ms':>8} {'time ratio':>11}")
    for size, (mem, secs, nbytes) in results.items():
        print(f"{size:>7} MiB {nbytes / 2**20:>9.1f} {mem / 1024:>9.1f} {mem / base_mem:>10.2f} "
              f"{secs * 1000:>8.1f} {secs / base_time:>11.2f}")


if __name__ == "__main__":
    main()
