"""What every row shares: the Row record, interleaved timing, a private stack, a private gcloud, a trivial trainer."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import REPO

GCLOUD = shutil.which("gcloud")
PROJECT = "demo-project"
REGION = "us-central1"
VENV_BIN = Path(sys.executable).parent
RUNTIME_PYTHON = REPO / ".local" / "runtime" / "bin" / "python"


@dataclasses.dataclass
class Spread:
    """Median, min and max of a list of values (ratios or seconds)."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of `values` (at least one)."""
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, unit: str = "×", digits: int = 2) -> str:
        """`1.23× (1.10–1.40, n=5)`; one value shows alone."""
        if self.n == 1:
            return f"{self.median:.{digits}f}{unit} (n=1)"
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}–{self.high:.{digits}f}, n={self.n})"


@dataclasses.dataclass
class Row:
    """One line of RESULTS.md.

    Attributes:
        number: the issue's row number (1..9); `label` tells sub-figures apart ("1", "2a", ...).
        figure: what was measured, with its absolute value.
        baseline: what it is compared with, with its absolute value.
        ratio: figure / baseline as text (median (min–max) or a single number), or "—".
        target: the issue's target.
        holds: True / False, or None when it could not be measured.
        note: how it was measured, what could not run and why.
    """

    number: int
    label: str
    figure: str
    baseline: str
    ratio: str
    target: str
    holds: bool | None
    note: str = ""


def unmeasured(number: int, label: str, figure: str, target: str, why: str) -> Row:
    """A row that could not be measured, saying why instead of crashing the run."""
    return Row(number, label, figure, "—", "—", target, None, f"not measured: {why}")


def interleaved(runs: int, baseline: Callable[[int], float], product: Callable[[int], float]
                ) -> tuple[list[float], list[float], list[float]]:
    """Run baseline then product `runs` times, alternating, so machine noise hits both alike.

    Returns (baseline values, product values, per-run ratios product/baseline).
    """
    base, prod, ratios = [], [], []
    for i in range(runs):
        b = baseline(i)
        p = product(i)
        base.append(b)
        prod.append(p)
        ratios.append(p / b if b > 0 else float("inf"))
    return base, prod, ratios


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (statistics.quantiles, inclusive: interpolated between the two nearest samples)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without CLOUDSDK_* / SUBMITTER_* / emulator variables, plus `extra`."""
    drop = ("CLOUDSDK_", "SUBMITTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)
           and k not in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
    env.update(extra)
    return env


@contextlib.contextmanager
def local_stack(**config: Any) -> Iterator[dict[str, str]]:
    """A local stack (submitter_local.stack) in a temporary root on free ports; yields its env, stops it after.

    It never touches a stack a user started with `make up`.
    """
    from submitter_local.stack import Stack, StackConfig

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as root:
        stack = Stack(StackConfig(root=Path(root), **config))
        env = stack.start()
        try:
            yield env
        finally:
            stack.stop()


class Gcloud:
    """The real gcloud with a private config dir pointed at local endpoints (as tests/test_gcloud_cli.py does).

    Args:
        config_dir: where its configuration lives (never the user's).
        ml_url / storage_url: the local training service and storage emulator, or None.
        path_first: a directory put first on PATH (gcloud local train runs `python` from PATH).
    """

    def __init__(self, config_dir: Path, ml_url: str | None = None, storage_url: str | None = None,
                 path_first: Path | None = None):
        if GCLOUD is None:
            raise RuntimeError("gcloud is not installed")
        keep = {"CLOUDSDK_PYTHON", "CLOUDSDK_PYTHON_SITEPACKAGES"}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_") or k in keep}
        self.env["CLOUDSDK_CONFIG"] = str(config_dir)
        if path_first is not None:
            self.env["PATH"] = f"{path_first}{os.pathsep}{self.env.get('PATH', '')}"
        props = [("auth/disable_credentials", "true"), ("project", PROJECT),
                 ("component_manager/disable_update_check", "true"), ("core/disable_usage_reporting", "true")]
        if ml_url:
            props.append(("api_endpoint_overrides/ml", ml_url.rstrip("/") + "/"))
        if storage_url:
            props.append(("api_endpoint_overrides/storage", storage_url.rstrip("/") + "/storage/v1/"))
        for prop, value in props:
            self.run("config", "set", prop, value)

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run gcloud; raises RuntimeError with its stderr when it fails."""
        done = subprocess.run([str(GCLOUD), *args], env=self.env, capture_output=True, text=True, timeout=300,
                              cwd=cwd)
        if done.returncode != 0:
            raise RuntimeError(f"gcloud {' '.join(args)} failed ({done.returncode}): {done.stderr[-800:]}")
        return done

    def timed(self, *args: str, cwd: Path | None = None) -> float:
        """Seconds one gcloud command took, process start to exit."""
        start = time.perf_counter()
        self.run(*args, cwd=cwd)
        return time.perf_counter() - start


TRIVIAL_TASK = "import sys\nprint('trivial trainer ok', sys.argv[1:])\n"
TRIVIAL_SETUP = "from setuptools import setup\nsetup(name='trainer', version='0.1', packages=['trainer'])\n"
TRIVIAL_JOB_YAML = b"""trainingInput:
  scaleTier: BASIC
  pythonModule: trainer.task
  runtimeVersion: "2.11"
  pythonVersion: "3.7"
labels:
  bench: trivial
"""


def trivial_trainer(where: Path) -> tuple[Path, Path]:
    """A trainer that prints one line: (its project folder, its sdist built with setuptools)."""
    project = where / "trivial"
    (project / "trainer").mkdir(parents=True, exist_ok=True)
    (project / "trainer" / "__init__.py").write_text("")
    (project / "trainer" / "task.py").write_text(TRIVIAL_TASK)
    (project / "setup.py").write_text(TRIVIAL_SETUP)
    out = where / "dist"
    out.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--formats=gztar", "--dist-dir", str(out)],
                   cwd=project, check=True, capture_output=True)
    return project, next(out.glob("trainer-0.1.tar.gz"))


def machine() -> str:
    """CPU model, cores, memory, OS and Python, one line."""
    import platform

    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem = f", {kib / 2**20:.1f} GiB RAM"
    return (f"{model}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")
