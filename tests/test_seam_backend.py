"""The seam, proven before Vertex: a training API unlike ml v1 plugs in as an adapter, and the whole path works
with no change to the core.

`RunsApi` is a made-up training service that assigns its own ids ("runs/17"), names its states differently
("pending", "starting", "running", "stopping", "done", "error", "stopped") and never answers 409: creating
twice makes two runs. `RunsBackend` is its adapter: it maps the states onto JobState and owns idempotency
the way the Vertex adapter will (a label derived from the job key, looked up before creating; the core's
claim keeps two instances from creating at once).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import threading

import pytest

from submitter.errors import BackendRefused
from submitter.model import JobHandle, JobRequest, JobState, JobStatus, Submission
from submitter.naming import key_label_value
from submitter.reasons import Reason

from conftest import BASELINE_TARBALL, BASELINE_YAML, World

KEY_LABEL = "submitter-key"


class RunsApi:
    """The made-up service: runs with server-assigned ids, its own phases, no duplicate detection."""

    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.ids = itertools.count(1)
        self.creates = 0
        self.lock = threading.Lock()

    def create(self, spec: dict, labels: dict) -> dict:
        with self.lock:
            self.creates += 1
            run = {"id": f"runs/{next(self.ids)}", "phase": "pending", "labels": dict(labels), "spec": spec}
            self.runs[run["id"]] = run
            return dict(run)

    def get(self, run_id: str) -> dict | None:
        with self.lock:
            return dict(self.runs[run_id]) if run_id in self.runs else None

    def search(self, label: tuple[str, str] | None = None, phases: set[str] | None = None) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.runs.values()
                    if (label is None or r["labels"].get(label[0]) == label[1])
                    and (phases is None or r["phase"] in phases)]

    def set_phase(self, run_id: str, phase: str, **extra) -> None:
        with self.lock:
            self.runs[run_id].update(phase=phase, **extra)


PHASES = {"pending": JobState.QUEUED, "starting": JobState.PREPARING, "running": JobState.RUNNING,
          "stopping": JobState.CANCELLING, "done": JobState.SUCCEEDED, "error": JobState.FAILED,
          "stopped": JobState.CANCELLED}


class RunsBackend:
    """The adapter: TrainingBackend over RunsApi."""

    name = "runs"

    def __init__(self, api: RunsApi):
        self.api = api

    def _status(self, run: dict) -> JobStatus:
        key = run["labels"].get("submitter-job", "")
        return JobStatus(handle=JobHandle(self.name, run["id"], key), state=PHASES.get(run["phase"]),
                         api_state=run["phase"], error_message=run.get("failure"), labels=run["labels"],
                         output_dir=run["spec"].get("trainingInput", {}).get("jobDir"))

    def submit(self, request: JobRequest) -> Submission:
        found = self.find(request.key)
        if found is not None:
            return Submission(found, adopted=True)
        labels = {**request.job.get("labels", {}), KEY_LABEL: key_label_value(request.key),
                  "submitter-job": request.key}
        return Submission(self._status(self.api.create(request.job, labels)))

    def status(self, handle: JobHandle) -> JobStatus:
        run = self.api.get(handle.name)
        if run is None:
            raise BackendRefused(404, "NOT_FOUND", f"{handle.name} not found", reason=Reason.NOT_FOUND)
        return self._status(run)

    def find(self, key: str) -> JobStatus | None:
        runs = self.api.search(label=(KEY_LABEL, key_label_value(key)))
        return self._status(runs[0]) if runs else None

    def list_active(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        return [self._status(r) for r in self.api.search(phases={"pending", "starting", "running", "stopping"})], None

    def list_jobs(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        return [self._status(r) for r in self.api.search()], None

    def cancel(self, handle: JobHandle) -> None:
        self.api.set_phase(handle.name, "stopping")

    def describe(self, handle: JobHandle) -> dict:
        return self.api.get(handle.name) or {}


@pytest.fixture
def runs():
    api = RunsApi()
    return api, World(backend=RunsBackend(api), real_sleep=True)


def test_a_drop_runs_through_every_state_on_a_backend_with_server_ids_and_other_state_names(runs):
    api, w = runs
    out = w.drop("incoming/run-001", spec_generation=1718000000000001)
    assert out.action == "submitted" and out.job_id == "run_001_1718000000000001"
    [run] = api.runs.values()
    assert run["id"] == "runs/1" and run["spec"]["trainingInput"]["pythonModule"] == "trainer.task"
    for phase in ("pending", "starting", "running", "done"):
        api.set_phase("runs/1", phase)
        w.reconciler.tick()
    messages = w.messages()
    assert [m["state"] for m in messages] == ["SUBMITTED", "QUEUED", "PREPARING", "RUNNING", "SUCCEEDED"]
    assert {m["jobId"] for m in messages} == {"run_001_1718000000000001"}  # consumers keep the submitter's key
    assert {m["resourceName"] for m in messages} == {"runs/1"} and {m["backend"] for m in messages} == {"runs"}
    assert [m["seq"] for m in messages] == [0, 1, 2, 3, 5] and messages[-1]["terminal"]
    assert w.ledger.followed() == []  # forgotten after the terminal state


def test_an_unknown_state_is_waited_on_and_a_failure_carries_the_backends_message(runs):
    api, w = runs
    w.drop("incoming/run-002")
    api.set_phase("runs/1", "rebalancing")  # a state the adapter does not map: never guessed
    assert w.reconciler.tick().published == []
    api.set_phase("runs/1", "error", failure="worker 3 ran out of memory")
    w.reconciler.tick()
    failed = w.messages()[-1]
    assert failed["state"] == "FAILED" and failed["reason"] == "JOB_FAILED"
    assert failed["errorMessage"] == "worker 3 ran out of memory"


def test_without_409_the_same_event_twice_and_two_instances_at_once_still_make_one_run(runs):
    api, w = runs
    w.put("incoming/run-003/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-003/job.yaml", BASELINE_YAML)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(lambda i: w.deliver("incoming/run-003/job.yaml", event_id=f"evt-{i}"), range(3)))
    assert sorted(o.action for o in outcomes) == ["duplicate", "duplicate", "submitted"]
    assert api.creates == 1 and w.publisher.states() == ["SUBMITTED"]


def test_a_crash_between_create_and_publish_adopts_the_run_found_by_its_label(runs):
    from submitter.errors import PublishFailed

    api, w = runs
    w.put("incoming/run-004/package.tar.gz", BASELINE_TARBALL)
    w.put("incoming/run-004/job.yaml", BASELINE_YAML)
    w.publisher.fail_next = 1
    with pytest.raises(PublishFailed):
        w.deliver("incoming/run-004/job.yaml")
    assert api.creates == 1 and w.publisher.states() == []
    again = w.deliver("incoming/run-004/job.yaml", event_id="evt-redelivered")
    assert again.action == "adopted" and api.creates == 1
    assert w.publisher.states() == ["SUBMITTED"]
    assert json.loads(w.publisher.messages[0].data)["resourceName"] == "runs/1"
