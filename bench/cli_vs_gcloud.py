"""Row 4: the `submitter` CLI against the matching gcloud commands, on the same local API.

Services (in this process, as tests/test_gcloud_cli.py runs them): the storage emulator wrapper and the local
training service (paused, so no trainer competes for the CPU). gcloud runs with a private config dir whose
endpoint overrides point `ai-platform` and its staging upload at them; `submitter` gets the local stack's
SUBMITTER_* settings. Each command is timed from process start to exit, alternating gcloud then submitter:

    submitter submit --packages <sdist> ...      gcloud ai-platform jobs submit training J --packages <sdist>
                                                 --staging-bucket gs://staging ...
    submitter status J                           gcloud ai-platform jobs describe J
    submitter jobs list                          gcloud ai-platform jobs list

`submitter submit` validates the drop offline (inspecting the sdist) and uploads it; the function then
submits it. gcloud uploads the sdist to its staging bucket and calls jobs.create.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from .common import (
    GCLOUD,
    PROJECT,
    REGION,
    RUNTIME_PYTHON,
    VENV_BIN,
    Gcloud,
    Row,
    Spread,
    clean_env,
    interleaved,
    trivial_trainer,
    unmeasured,
)

TARGETS = {"submit": 0.4, "status": 0.3, "jobs list": 0.3}
JOB_FLAGS = ("--module-name", "trainer.task", "--region", REGION, "--runtime-version", "2.11",
             "--python-version", "3.7")


def run(runs: int, smoke: bool) -> list[Row]:
    """Three rows: submit, status, jobs list."""
    if GCLOUD is None:
        return [unmeasured(4, f"4 ({name})", f"submitter {name}", f"≤ {t}×", "gcloud is not installed")
                for name, t in TARGETS.items()]
    from submitter_local import storage_emulator
    from submitter_local.stack import Stack, StackConfig
    from submitter_local.training import ServiceConfig, TrainingService

    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    server = storage_emulator.start("127.0.0.1", 0)
    os.environ["STORAGE_EMULATOR_HOST"] = server.url  # the training service checks packageUris there
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        root = Path(tmp)
        svc = TrainingService(ServiceConfig(data_dir=root / "training", runtime_python=RUNTIME_PYTHON, paused=True,
                                            envs_dir=root / "envs"))
        svc.start(host="127.0.0.1", port=0)
        try:
            for bucket in ("drop-bucket", "drop-outputs", "drop-state", "staging"):
                requests.post(f"{server.url}/storage/v1/b", params={"project": PROJECT}, json={"name": bucket},
                              timeout=10).raise_for_status()
            _, sdist = trivial_trainer(root)
            gcloud = Gcloud(root / "gcloud-config", ml_url=svc.url, storage_url=server.url)
            settings = Stack(StackConfig(data_buckets=(), trigger_rules=None)).function_settings(
                {"TOPIC": f"projects/{PROJECT}/topics/training-job-events", "TRAINING_API_ENDPOINT": svc.url})
            env = clean_env(**settings, STORAGE_EMULATOR_HOST=server.url)
            cli = str(VENV_BIN / "submitter")

            def submitter(*args: str) -> float:
                start = time.perf_counter()
                done = subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=300, cwd=root)
                elapsed = time.perf_counter() - start
                if done.returncode != 0:
                    raise RuntimeError(f"submitter {' '.join(args)} failed ({done.returncode}): {done.stderr[-800:]}")
                return elapsed

            # warm-up (unmeasured): first starts of both CLIs, and a job for status/describe to look at
            gcloud.timed("ai-platform", "jobs", "submit", "training", "bench_seed", "--packages", str(sdist),
                         "--staging-bucket", "gs://staging", *JOB_FLAGS)
            submitter("submit", "--packages", str(sdist), "--folder", "bench-warm", *JOB_FLAGS)
            series = {
                "submit": interleaved(
                    runs,
                    lambda i: gcloud.timed("ai-platform", "jobs", "submit", "training", f"bench_g{i}", "--packages",
                                           str(sdist), "--staging-bucket", "gs://staging", *JOB_FLAGS),
                    lambda i: submitter("submit", "--packages", str(sdist), "--folder", f"bench-{i}", *JOB_FLAGS)),
                "status": interleaved(runs, lambda i: gcloud.timed("ai-platform", "jobs", "describe", "bench_seed"),
                                      lambda i: submitter("status", "bench_seed")),
                "jobs list": interleaved(runs, lambda i: gcloud.timed("ai-platform", "jobs", "list"),
                                         lambda i: submitter("jobs", "list")),
            }
        finally:
            svc.stop()
            server.stop()
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous
    gcloud_names = {"submit": "gcloud ai-platform jobs submit training --packages <sdist>",
                    "status": "gcloud ai-platform jobs describe", "jobs list": "gcloud ai-platform jobs list"}
    rows = []
    for name, (base, prod, ratios) in series.items():
        r = Spread.of(ratios)
        shown = "submit --packages <sdist>" if name == "submit" else name
        rows.append(Row(4, f"4 ({name})", f"`submitter {shown}`: {Spread.of(prod).show(' s', 2)}",
                        f"`{gcloud_names[name]}`: {Spread.of(base).show(' s', 2)}", r.show(),
                        f"≤ {TARGETS[name]}×", r.median <= TARGETS[name],
                        "process start to exit, local training service (paused) and storage emulator; one "
                        "unmeasured warm-up of each CLI"))
    return rows
