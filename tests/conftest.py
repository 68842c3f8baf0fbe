"""Shared fixtures: field-case conventions (../shared/cases/FIELD_CASES.md) and the in-memory submitter."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from submitter.app import App
from submitter.backends.ml_v1 import MlV1Backend
from submitter.clock import FakeClock
from submitter.events import parse_event
from submitter.ledger import Ledger
from submitter.settings import Settings
from submitter.state_store import InMemoryStateStore

from fakes import FakeMlApi, FakePublisher, FakeStorage

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NOW = dt.datetime(2024, 6, 10, 12, 0, 5, tzinfo=dt.UTC)

BASELINE_YAML = b"""trainingInput:
  scaleTier: BASIC
  pythonModule: trainer.task
  region: us-central1
  runtimeVersion: "2.11"
  pythonVersion: "3.7"
  jobDir: gs://drop-outputs/run-001
  args: ["--epochs", "3"]
labels:
  team: vision
"""

BASELINE_TASK = b"""import argparse
p = argparse.ArgumentParser(); p.add_argument("--epochs"); p.add_argument("--job-dir")
p.parse_args(); print("ok")
"""


def make_tarball(files: dict[str, bytes], top: str = "trainer-0.1") -> bytes:
    """A gzip tar with `files` under `top/` (paths relative to it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def baseline_files() -> dict[str, bytes]:
    return {
        "PKG-INFO": b"Metadata-Version: 2.1\nName: trainer\nVersion: 0.1\n",
        "setup.py": b"from setuptools import setup, find_packages\nsetup(name='trainer', version='0.1', "
                    b"packages=find_packages())\n",
        "trainer/__init__.py": b"",
        "trainer/task.py": BASELINE_TASK,
    }


BASELINE_TARBALL = make_tarball(baseline_files())


def at_once(*calls):
    """Run `calls` on threads of their own, released together by a barrier (two invocations racing on one input);
    returns their results in order, re-raising the first exception."""
    barrier = threading.Barrier(len(calls))

    def released(call):
        barrier.wait()
        return call()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(released, c) for c in calls]]


def settings(**overrides) -> Settings:
    base = dict(project="demo-project", drop_bucket="drop-bucket", output_bucket="drop-outputs",
                state_bucket="drop-state", topic="projects/demo-project/topics/training-job-events",
                drop_prefix="incoming/")
    base.update(overrides)
    return Settings(**base)


def storage_event(name: str, generation: int, size: int, *, event_id: str = "evt-0001",
                  time: str = "2024-06-10T12:00:00Z", bucket: str = "drop-bucket", metadata=None):
    """A parsed finalize event in Eventarc's shape (generation and size as strings on the wire)."""
    data = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(generation),
            "metageneration": "1", "size": str(size), "contentType": "application/x-yaml",
            "timeCreated": time, "updated": time}
    if metadata:
        data["metadata"] = metadata
    attrs = {"specversion": "1.0", "id": event_id, "type": "google.cloud.storage.object.v1.finalized",
             "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}", "subject": f"objects/{name}",
             "time": time}
    return parse_event(attrs, json.loads(json.dumps(data)))


class World:
    """The submitter wired to in-memory doubles, plus helpers to drop files and deliver events.

    `api` is the in-memory ml v1 API; `backend` the real MlV1Backend adapter talking to it (or a test
    backend passed in); `clock` a FakeClock at NOW that only moves when a test (or a wait) moves it; with
    `real_sleep`, waits also take real time, for tests where other threads must progress meanwhile.
    """

    def __init__(self, backend=None, real_sleep=False, rules: str | None = None, **setting_overrides):
        if rules is not None:  # trigger rules, as the rules file would hold them (Settings.from_env restricts them)
            from submitter.triggers import load_rules, restrict

            loaded = load_rules(rules, "triggers.yaml")
            data = setting_overrides.get("data_bucket_names")
            buckets = tuple(data.split(",")) if data is not None else loaded.buckets
            setting_overrides["trigger_rules"] = restrict(loaded, buckets, {"drop-bucket": "is the drop bucket",
                                                                            "drop-state": "is the state bucket"})
        self.settings = settings(**setting_overrides)
        self.clock = FakeClock(NOW, real_sleep=real_sleep)
        self.storage = FakeStorage()
        self.api = FakeMlApi()
        self.backend = backend or MlV1Backend("demo-project", transport=self.api)
        self.publisher = FakePublisher()
        self.store = InMemoryStateStore()
        self.ledger = Ledger(self.store)
        self.app = App(self.settings, clock=self.clock, storage=self.storage, ledger=self.ledger,
                       backend=self.backend, publisher=self.publisher)
        self.handler = self.app.drop_handler
        self.reconciler = self.app.reconciler

    def put(self, name: str, data: bytes, generation: int | None = None):
        return self.storage.put("drop-bucket", name, data, generation)

    def deliver(self, name: str, generation: int | None = None, **kw):
        info = self.storage.info("drop-bucket", name) if generation is None else None
        gen = generation if generation is not None else info.generation
        size = kw.pop("size", None)
        if size is None:
            found = self.storage.objects.get(("drop-bucket", name))
            size = len(found[1]) if found else 1
        return self.handler.handle(storage_event(name, gen, size, **kw))

    def drop(self, folder: str, spec: bytes = BASELINE_YAML, package: bytes = BASELINE_TARBALL,
             spec_generation: int | None = None):
        """Upload package then job.yaml and deliver both events; returns the job.yaml outcome."""
        self.put(f"{folder}/package.tar.gz", package)
        self.deliver(f"{folder}/package.tar.gz")
        self.put(f"{folder}/job.yaml", spec, spec_generation)
        return self.deliver(f"{folder}/job.yaml")

    def messages(self):
        return [json.loads(m.data) for m in self.publisher.messages]

    # -- data buckets (trigger rules) --------------------------------------------------------------------------
    def put_data(self, name: str, data: bytes = b"a,b\n1,2\n", bucket: str = "data-bucket", generation=None):
        return self.storage.put(bucket, name, data, generation)

    def deliver_data(self, name: str, bucket: str = "data-bucket", generation: int | None = None, **kw):
        """Deliver a finalize event for a data-bucket object through the App's routing (as the function does)."""
        found = self.storage.objects.get((bucket, name))
        gen = generation if generation is not None else found[0]
        size = kw.pop("size", None)
        if size is None:
            size = len(found[1]) if found else 1
        event = storage_event(name, gen, size, bucket=bucket, **kw)
        return self.app.handler_for(bucket).handle(event)

    def tick(self):
        """One scheduled tick (reconciler, drop sweep, trigger sweep), as the reconcile entry point runs it."""
        return self.app.reconcile()


@pytest.fixture
def world():
    return World()


# -- the real local stack (tests marked `stack`) --------------------------------------------------
_RUNNING_STACKS: list[Path] = []  # roots of the stacks running_stack holds open now
_STOPPED_STACKS: list[Path] = []  # roots of the stacks it stopped, in order (a test's own `with` stack is gone by
# the time its report is made)
_STOPPED_BEFORE = pytest.StashKey[int]()
_LOG_NOISE = ("Resource not found", "is retired", "runs as n1-", "prebuilt image", "prebuilt images")  # normal 404s
# of the storage emulator, and the sample job.yaml's own warnings
_LOG_SIGNS = ("WARNING", "ERROR", "Traceback", "Exception", '"severity": "WARNING"', '"severity": "ERROR"')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that ran against a local stack gets the warnings and errors of that stack's logs in its
    report (a CI run keeps nothing else: the stack's temporary root is gone with the machine)."""
    if call.when == "setup":
        item.stash[_STOPPED_BEFORE] = len(_STOPPED_STACKS)
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for root in _RUNNING_STACKS + _STOPPED_STACKS[item.stash.get(_STOPPED_BEFORE, len(_STOPPED_STACKS)):]:
        for log in sorted((root / "logs").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            notable = [line[:400] for line in lines
                       if any(sign in line for sign in _LOG_SIGNS) and not any(n in line for n in _LOG_NOISE)]
            if notable:
                report.sections.append((f"stack log {log.name} (warnings and errors, last 40 of {len(notable)})",
                                        "\n".join(notable[-40:])))

@contextlib.contextmanager
def running_stack(root: Path, **config):
    """A local stack started in `root` on free ports; yields (Stack, env) and checks on exit that the
    emulator's Java process is gone."""
    from submitter_local.stack import Stack, StackConfig, _pids_matching

    stack = Stack(StackConfig(root=root, **config))
    env = stack.start()
    _RUNNING_STACKS.append(root)
    try:
        yield stack, env
    finally:
        _RUNNING_STACKS.remove(root)
        _STOPPED_STACKS.append(root)
        port = env["PUBSUB_EMULATOR_HOST"].rsplit(":", 1)[-1]
        stack.stop()
    assert _pids_matching("pubsub-emulator", f"--port={port}") == [], "the emulator's Java process survived"


@pytest.fixture(scope="module")
def sample_package(tmp_path_factory):
    """The sample trainer's sdist, built once per module."""
    from submitter_local.demo import build_sdist

    return build_sdist(REPO / "samples" / "trainer", tmp_path_factory.mktemp("sdist"))


@pytest.fixture(scope="session")
def runtime_required():
    """The local training runtime (`make runtime`, which `make test` runs first). Missing, it is a failure that
    says what to do, never a silent skip of every test that needs it."""
    runtime = REPO / ".local" / "runtime" / "bin" / "python"
    assert runtime.exists(), f"the training runtime is missing ({runtime}): run `make runtime` (make test does)"
    return runtime
