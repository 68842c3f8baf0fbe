"""Both entry points of functions/main.py through functions-framework's own test client, the way the framework
loads them in production (`create_app(target, source, signature_type)`), with the submitter's adapters
replaced by the in-memory doubles. What Eventarc sees is the HTTP status: 2xx acknowledges, 500 redelivers.
"""

from __future__ import annotations

import json

import pytest
from functions_framework import create_app

from conftest import BASELINE_TARBALL, BASELINE_YAML, REPO, World

MAIN = str(REPO / "functions" / "main.py")


@pytest.fixture
def world(monkeypatch):
    import submitter.app

    w = World()
    monkeypatch.setattr(submitter.app, "_app", w.app)  # what get_app() returns on a warm instance
    return w


def post_event(client, name: str, generation: int, size: int, event_id: str = "evt-1"):
    """A storage finalize CloudEvent in the binary content mode Eventarc uses."""
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": "google.cloud.storage.object.v1.finalized",
               "ce-source": "//storage.googleapis.com/projects/_/buckets/drop-bucket",
               "ce-subject": f"objects/{name}", "ce-time": "2024-06-10T12:00:00Z", "Content-Type": "application/json"}
    data = {"bucket": "drop-bucket", "name": name, "generation": str(generation), "metageneration": "1",
            "size": str(size)}
    return client.post("/", headers=headers, data=json.dumps(data))


def drop(world: World, folder: str) -> int:
    world.put(f"{folder}/package.tar.gz", BASELINE_TARBALL)
    return world.put(f"{folder}/job.yaml", BASELINE_YAML).generation


def test_finalize_event_submits_and_answers_200(world):
    client = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    generation = drop(world, "incoming/run-001")
    answer = post_event(client, "incoming/run-001/job.yaml", generation, len(BASELINE_YAML))
    assert answer.status_code == 200
    assert world.publisher.states() == ["SUBMITTED"]


def test_a_transient_fault_answers_500_so_eventarc_redelivers(world):
    client = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    generation = drop(world, "incoming/run-002")
    world.publisher.fail_next = 1
    assert post_event(client, "incoming/run-002/job.yaml", generation, len(BASELINE_YAML)).status_code == 500
    assert post_event(client, "incoming/run-002/job.yaml", generation, len(BASELINE_YAML), "evt-2").status_code == 200
    assert world.publisher.states() == ["SUBMITTED"]


def test_an_unexpected_exception_is_reported_once_and_never_redelivered(world, monkeypatch):
    client = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    generation = drop(world, "incoming/run-003")

    def bug(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(world.app.submitter.planner, "plan", bug)
    answers = [post_event(client, "incoming/run-003/job.yaml", generation, len(BASELINE_YAML), f"evt-{i}").status_code
               for i in range(3)]
    assert answers == [200, 200, 200]  # acknowledged: no 24 h of redeliveries
    [report] = world.messages()
    assert report["state"] == "SUBMIT_FAILED" and report["reason"] == "INTERNAL_ERROR"
    assert "TypeError" in report["message"] and "bug" in report["message"]
    assert world.api.count("create") == 0


def test_a_malformed_event_is_acknowledged_without_a_verdict(world):
    client = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    headers = {"ce-specversion": "1.0", "ce-id": "e", "ce-type": "google.cloud.storage.object.v1.finalized",
               "ce-source": "//storage.googleapis.com/projects/_/buckets/drop-bucket",
               "Content-Type": "application/json"}
    answer = client.post("/", headers=headers, data=json.dumps({"bucket": "drop-bucket", "name": "x"}))
    assert answer.status_code == 200 and world.publisher.messages == []


def test_reconcile_answers_a_json_summary(world):
    events = create_app("on_object_finalized", MAIN, "cloudevent").test_client()
    generation = drop(world, "incoming/run-004")
    post_event(events, "incoming/run-004/job.yaml", generation, len(BASELINE_YAML))
    job_id = world.messages()[0]["jobId"]
    world.api.set_state(job_id, "RUNNING")
    answer = create_app("reconcile", MAIN, "http").test_client().post("/")
    assert answer.status_code == 200
    assert answer.get_json() == {"followed": 1, "apiCalls": 1, "skipped": False,
                                 "published": [{"jobId": job_id, "state": "RUNNING"}]}
