"""The local storage emulator keeps GCS's generation semantics that exactly-once relies on:
create-only / generation-match uploads (412 otherwise) and 404 for reads of an overwritten generation."""

from __future__ import annotations

import concurrent.futures
import os
import threading

import pytest
import requests
from google.api_core.exceptions import NotFound, PreconditionFailed

from submitter.errors import ObjectGone as ObjectMissing
from submitter.gcs import GcsObjectStore as DropStorage
from submitter.state_store import GcsStateStore
from submitter_local.storage_emulator import start


@pytest.fixture
def client(monkeypatch):
    server = start("127.0.0.1", 0)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    from google.cloud import storage

    c = storage.Client(project="demo-project")
    c.create_bucket("drop-state")
    c.create_bucket("drop-bucket")
    yield c
    server.stop()


def test_create_only_and_generation_match(client):
    bucket = client.bucket("drop-state")
    blob = bucket.blob("claims/x.json")
    blob.upload_from_string("{}", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("claims/x.json").upload_from_string("{}", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("claims/x.json").upload_from_string("{}", if_generation_match=blob.generation + 1)
    bucket.blob("claims/x.json").upload_from_string("{}", if_generation_match=blob.generation)


def test_state_store_create_races_have_one_winner(client):
    store = GcsStateStore("drop-state", "submitter/", "demo-project", client=client)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        wins = list(pool.map(lambda i: store.create("claims/race.json", {"owner": i}), range(8)))
    assert len([w for w in wins if w is not None]) == 1
    doc, token = store.get("claims/race.json")
    assert store.replace("claims/race.json", {"owner": "next"}, token)
    assert not store.replace("claims/race.json", {"owner": "late"}, token)


def test_pinned_read_of_an_overwritten_generation_is_missing(client):
    bucket = client.bucket("drop-bucket")
    first = bucket.blob("incoming/r/job.yaml")
    first.upload_from_string("a: 1")
    bucket.blob("incoming/r/job.yaml").upload_from_string("a: 2")
    with pytest.raises(NotFound):
        bucket.blob("incoming/r/job.yaml", generation=first.generation).reload()
    storage = DropStorage("demo-project", client=client)
    with pytest.raises(ObjectMissing):
        storage.read("drop-bucket", "incoming/r/job.yaml", first.generation, max_bytes=100)


def test_copy_is_pinned_to_the_source_generation_and_create_only(client):
    bucket = client.bucket("drop-bucket")
    client.create_bucket("drop-outputs")
    first = bucket.blob("incoming/r/p.tar.gz")
    first.upload_from_string(b"first bytes")
    storage = DropStorage("demo-project", client=client)
    source = storage.stat("drop-bucket", "incoming/r/p.tar.gz")
    staged = storage.copy(source, "drop-outputs", "staging/abc/p.tar.gz")
    assert client.bucket("drop-outputs").blob(staged.name).download_as_bytes() == b"first bytes"
    assert storage.copy(source, "drop-outputs", "staging/abc/p.tar.gz").generation == staged.generation  # reused
    bucket.blob("incoming/r/p.tar.gz").upload_from_string(b"second bytes")  # replaced since inspected
    with pytest.raises(ObjectMissing):
        storage.copy(source, "drop-outputs", "staging/def/p.tar.gz")


def test_concurrent_create_only_uploads_of_one_name_have_exactly_one_winner(client):
    """N uploads with ifGenerationMatch=0 of one name, released together: one 200, N-1 412, and the
    object holds the winner's bytes (the check and the write are one step for the emulator)."""
    n = 16
    url = f"{os.environ['STORAGE_EMULATOR_HOST']}/upload/storage/v1/b/drop-state/o"
    start = threading.Barrier(n)

    def create(i: int) -> tuple[int, bytes]:
        body = f"writer {i}".encode()
        start.wait()
        answer = requests.post(url, params={"uploadType": "media", "name": "claims/one.json", "ifGenerationMatch": "0"},
                               data=body, timeout=30)
        return answer.status_code, body

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(create, range(n)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [412] * (n - 1)
    winner = next(body for status, body in results if status == 200)
    assert client.bucket("drop-state").blob("claims/one.json").download_as_bytes() == winner


def test_a_state_read_is_one_request_whose_generation_matches_its_bytes(client, monkeypatch):
    """Downloads carry x-goog-generation as on GCS, so GcsStateStore.get reads a document and its generation token
    in one request (no metadata read first), and the token is the one a generation-match write needs."""
    store = GcsStateStore("drop-state", "submitter/", "demo-project", client=client)
    first = store.create("jobs/k.json", {"v": 1})
    second = store.replace("jobs/k.json", {"v": 2}, first)
    sent: list[str] = []
    real = requests.Session.request

    def counting(self, method, url, *args, **kwargs):
        sent.append(f"{method} {url.split('?')[0]}")
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", counting)
    assert store.get("jobs/k.json") == ({"v": 2}, second)
    assert len(sent) == 1 and "/download/" in sent[0]
    assert store.get("jobs/absent.json") is None
    assert len(sent) == 2
    assert store.replace("jobs/k.json", {"v": 3}, second) is not None  # the token read is the live one


def test_a_server_that_sends_no_generation_with_downloads_still_gives_the_right_token(client, monkeypatch):
    from submitter_local.storage_emulator import _FixedRequestHandler

    monkeypatch.setattr(_FixedRequestHandler, "_media_headers", lambda self: [])
    store = GcsStateStore("drop-state", "submitter/", "demo-project", client=client)
    token = store.create("jobs/k.json", {"v": 1})
    assert store.get("jobs/k.json") == ({"v": 1}, token)  # metadata read, then that generation's bytes
