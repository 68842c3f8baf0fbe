"""Tests of submitter_local.storage_emulator: gcp-storage-emulator that also accepts gcloud's
multipart uploads (single-quoted MIME boundary). gcloud's own upload is driven in
test_gcloud_cli.py; here the same request shape is sent with requests, and the regular
google-cloud-storage paths (multipart and resumable uploads, downloads, listing) are checked
against the fixed server.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from email.generator import BytesGenerator
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from pathlib import Path

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from submitter_local import storage_emulator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def emulator():
    server = storage_emulator.start("127.0.0.1", 0)
    yield server
    server.stop()


@pytest.fixture
def client(emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    return storage.Client(project="demo-project", credentials=AnonymousCredentials())


@pytest.mark.parametrize("value, expected", [
    ("multipart/related; boundary='===============6637166194564336471=='",
     'multipart/related; boundary="===============6637166194564336471=="'),
    ('multipart/related; boundary="abc"', 'multipart/related; boundary="abc"'),  # already valid
    ("multipart/related; boundary=abc", "multipart/related; boundary=abc"),
    ("application/json; charset=UTF-8", "application/json; charset=UTF-8"),
    ("application/octet-stream", "application/octet-stream"),
])
def test_normalize_content_type(value, expected):
    assert storage_emulator.normalize_content_type(value) == expected


class _ApitoolsGenerator(BytesGenerator):
    """apitools' MultipartBytesGenerator (gcloud's upload code): payloads written as they are."""

    def _handle_text(self, msg):
        if msg._payload is not None:
            self.write(msg._payload)

    def _encode(self, s):
        return s.encode("ascii", "surrogateescape")

    _writeBody = _handle_text


def _apitools_style_upload(url: str, bucket: str, name: str, data: bytes) -> requests.Response:
    """POST a multipart upload built the way gcloud's apitools builds it (transfer.py
    `__ConfigureMultipartRequest`): metadata part without a name (it is in the query), LF line
    ends, and the header written with `boundary=%r`, i.e. in single quotes."""
    root = MIMEMultipart("related")
    root._write_headers = lambda self: None  # the top-level headers go in HTTP, not the body
    meta = MIMENonMultipart("application", "json")
    meta.set_payload(json.dumps({"size": str(len(data))}))
    root.attach(meta)
    media = MIMENonMultipart("application", "x-tar")
    media["Content-Transfer-Encoding"] = "binary"
    media.set_payload(data)
    root.attach(media)
    out = io.BytesIO()
    _ApitoolsGenerator(out, mangle_from_=False).flatten(root, unixfrom=False)
    return requests.post(f"{url}/upload/storage/v1/b/{bucket}/o",
                         params={"alt": "json", "name": name, "uploadType": "multipart"}, data=out.getvalue(),
                         headers={"Content-Type": "multipart/related; boundary=%r" % root.get_boundary()},
                         timeout=10)


def test_single_quoted_boundary_upload_is_stored_intact(emulator, client):
    client.create_bucket("staging")
    data = bytes(range(256)) * 40 + b"\n--not-a-boundary\n\r\n"  # binary, with line ends inside
    answer = _apitools_style_upload(emulator.url, "staging", "job/pkg-0.1.tar.gz", data)
    assert answer.status_code == 200, answer.text
    meta = answer.json()
    assert meta["name"] == "job/pkg-0.1.tar.gz" and meta["size"] == str(len(data))
    assert client.bucket("staging").blob("job/pkg-0.1.tar.gz").download_as_bytes() == data


def test_google_cloud_storage_uploads_downloads_and_lists(client):
    bucket = client.create_bucket("drops")
    small = b"print('hello')\n"
    bucket.blob("a/small.py").upload_from_string(small)  # multipart upload
    big = os.urandom(600 * 1024)
    blob = bucket.blob("a/big.bin", chunk_size=256 * 1024)  # forces a resumable upload in 3 chunks
    blob.upload_from_string(big)
    assert bucket.blob("a/small.py").download_as_bytes() == small
    assert bucket.blob("a/big.bin").download_as_bytes() == big
    got = bucket.get_blob("a/big.bin")
    assert got.size == len(big) and got.md5_hash  # metadata as gcloud's post-upload check reads it
    assert sorted(b.name for b in client.list_blobs("drops", prefix="a/")) == ["a/big.bin", "a/small.py"]
    assert bucket.get_blob("a/missing") is None
    assert base64.b64decode(got.md5_hash) == hashlib.md5(big).digest()


def test_cli_serves_until_sigterm():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "local"))
    proc = subprocess.Popen([sys.executable, "-m", "submitter_local.storage_emulator", "--port", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        url = match.group(1)
        created = requests.post(f"{url}/storage/v1/b", params={"project": "demo-project"}, json={"name": "cli"},
                                timeout=10)
        assert created.status_code == 200, created.text
        answer = _apitools_style_upload(url, "cli", "x.bin", b"abc")
        assert answer.status_code == 200 and answer.json()["size"] == "3"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _raw_request_head(url: str, method: str, path: str, headers: dict[str, str]) -> tuple[socket.socket, bytes]:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers.items())]
    return sock, ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_stalled_request_does_not_block_others(emulator, client):
    """A client that sends half its upload and stalls holds its own thread only: other requests are answered
    meanwhile (one at a time, this listing would wait for the stalled body and time out), and the stalled
    upload completes once the rest of its body arrives."""
    bucket = client.create_bucket("concurrent")
    body = b"x" * 1000
    sock, head = _raw_request_head(emulator.url, "POST", "/upload/storage/v1/b/concurrent/o?uploadType=media"
                                   "&name=stalled.bin", {"Content-Type": "application/octet-stream",
                                                         "Content-Length": str(len(body))})
    with sock:
        sock.sendall(head + body[:400])  # the server is now reading a body that has not all arrived
        bucket.blob("other.txt").upload_from_string(b"meanwhile", timeout=10)
        assert [b.name for b in client.list_blobs("concurrent", timeout=10)] == ["other.txt"]
        sock.sendall(body[400:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert bucket.blob("stalled.bin").download_as_bytes() == body


def test_chunked_upload_is_stored_and_its_precondition_enforced(emulator, client):
    """Chunked request bodies are read whole before the storage is touched, and ifGenerationMatch holds for them."""
    client.create_bucket("chunked")
    url = f"{emulator.url}/upload/storage/v1/b/chunked/o"
    params = {"uploadType": "media", "name": "c.bin", "ifGenerationMatch": "0"}
    parts = [b"first part;", os.urandom(5000), b";last"]
    first = requests.post(url, params=params, data=iter(parts), timeout=10)  # a generator: sent chunked
    assert first.status_code == 200, first.text
    again = requests.post(url, params=params, data=iter(parts), timeout=10)
    assert again.status_code == 412, again.text
    assert client.bucket("chunked").blob("c.bin").download_as_bytes() == b"".join(parts)


def test_a_connection_serves_several_requests(emulator, client):
    """Keep-alive: uploads, a 412 and reads follow each other on one connection, each answered in full."""
    client.create_bucket("keepalive")
    host, port = emulator.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        answers = []
        sockets = []
        for body in (b"one", b"two"):
            conn.request("POST", "/upload/storage/v1/b/keepalive/o?uploadType=media&name=k.txt&ifGenerationMatch=0",
                         body=body)
            sockets.append(conn.sock)
            answer = conn.getresponse()
            answers.append((answer.status, answer.read()))
        conn.request("GET", "/download/storage/v1/b/keepalive/o/k.txt?alt=media")
        answer = conn.getresponse()
        answers.append((answer.status, answer.read()))
        sockets.append(conn.sock)
        assert sockets[0] is sockets[1] is sockets[2]  # never reconnected
    finally:
        conn.close()
    assert [status for status, _ in answers] == [200, 412, 200]
    assert json.loads(answers[0][1])["name"] == "k.txt" and answers[2][1] == b"one"
