"""In-memory doubles for the adapters' far sides: they behave like the real services where tests rely on it
(generations, pinned reads, 409s, paging, `{}` for empty lists), and count calls.

- `FakeStorage` implements the core's `ObjectStore` interface.
- `FakeMlApi` is the ml v1 REST API in memory, served through an httplib2-compatible `request` method:
  the real `MlV1Backend` adapter (discovery document, request building, error classification) talks to it
  as it talks to Google, the httpx way: a client built with a transport.
- `FakePublisher` records messages.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import itertools
import json
import re
import threading
import zlib
from urllib.parse import parse_qs, urlparse

import httplib2

from submitter.envelope import OutgoingMessage
from submitter.errors import ObjectGone, PublishFailed
from submitter.objects import ObjectInfo, TooLarge

UTC = dt.UTC
# crc32c by bytes object, shared by every FakeStorage of the process (GCS computes it server-side, once per write;
# the function never does): a fresh double per benchmark drop would otherwise checksum the same 5 MB package twice
# per drop. Identity-keyed, holding the object so an id is never reused; only the last few are kept.
_CRCS: dict[int, tuple[bytes, str]] = {}
_CRCS_KEPT = 16


def _crc(data: bytes) -> str:
    cached = _CRCS.get(id(data))
    if cached is not None and cached[0] is data:
        return cached[1]
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    if len(_CRCS) >= _CRCS_KEPT:
        _CRCS.pop(next(iter(_CRCS)))
    _CRCS[id(data)] = (data, crc)
    return crc


class FakeStorage:
    """Objects with generations; reads pinned to a generation fail once it is overwritten (like real GCS)."""

    def __init__(self):
        self.objects: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._gen = itertools.count(1_000_001)
        self.reads = 0
        self.locations: dict[str, str] = {}
        self.requests: dict[str, int] = {}
        # GCS stores an object's crc32c when it is written; the double computes it once per bytes object (_crc)
        # rather than on every info/list/stat, which for a 5 MB package cost more than the drop being measured.

    def _count(self, what):
        self.requests[what] = self.requests.get(what, 0) + 1

    def put(self, bucket: str, name: str, data: bytes, generation: int | None = None) -> ObjectInfo:
        gen = generation or next(self._gen)
        self.objects[(bucket, name)] = (gen, data)
        return self.info(bucket, name)

    def delete(self, bucket: str, name: str) -> None:
        self.objects.pop((bucket, name), None)

    def info(self, bucket: str, name: str) -> ObjectInfo:
        gen, data = self.objects[(bucket, name)]
        return ObjectInfo(bucket=bucket, name=name, generation=gen, size=len(data), crc32c=_crc(data))

    def list_folder(self, bucket, folder):
        self._count("list")
        prefix = folder + "/"
        return [self.info(b, n) for (b, n) in sorted(self.objects)
                if b == bucket and n.startswith(prefix) and "/" not in n[len(prefix):]]

    def stat(self, bucket, name):
        self._count("stat")
        if (bucket, name) not in self.objects:
            raise ObjectGone(f"gs://{bucket}/{name}: not found")
        return self.info(bucket, name)

    def _get(self, bucket, name, generation):
        found = self.objects.get((bucket, name))
        if found is None or found[0] != generation:
            raise ObjectGone(f"gs://{bucket}/{name}#{generation}")
        return found[1]

    def read(self, bucket, name, generation, *, max_bytes):
        self._count("read")
        self.reads += 1
        data = self._get(bucket, name, generation)
        if len(data) > max_bytes:
            raise TooLarge(f"gs://{bucket}/{name}", len(data), max_bytes)
        return data

    def open(self, bucket, name, generation, *, max_bytes):
        return io.BytesIO(self.read(bucket, name, generation, max_bytes=max_bytes))

    def bucket_location(self, bucket):
        return self.locations.get(bucket)

    def stamp(self, bucket, name, when):
        self._count("stamp")
        self.stamped = {**getattr(self, "stamped", {}), f"gs://{bucket}/{name}": when}

    def copy(self, source, bucket, name):
        """Server-side copy of exactly `source`'s generation, create-only (an existing name is returned)."""
        self._count("copy")
        data = self._get(source.bucket, source.name, source.generation)
        if (bucket, name) not in self.objects:
            self.put(bucket, name, data)
        return self.info(bucket, name)


def error_body(code: int, status: str, message: str, details=None) -> dict:
    """A Google JSON error body (https://cloud.google.com/apis/design/errors)."""
    return {"error": {"code": code, "status": status, "message": message, "details": details or []}}


class FakeMlApi:
    """The ml v1 `projects.jobs` REST API in memory, as an httplib2-compatible transport.

    Attributes:
        jobs: jobId -> stored Job resource.
        calls: (kind, detail) in order: ("create", jobId), ("get", jobId), ("list", filter), ("cancel", jobId).
        errors: kind -> list of (HTTP status, body dict) answered, first one first, before handling normally.
    """

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.errors: dict[str, list[tuple[int, dict]]] = {}
        self.lock = threading.Lock()
        self.clock = itertools.count()

    # -- scripting --------------------------------------------------------------------------------
    def fail(self, kind: str, code: int, status: str = "", message: str = "scripted", details=None) -> None:
        """Answer the next `kind` call ("create", "get", "list", "cancel") with an error."""
        self.errors.setdefault(kind, []).append((code, error_body(code, status, message, details)))

    def set_state(self, job_id, state, **extra):
        with self.lock:
            if state is None:
                self.jobs[job_id].pop("state", None)
            else:
                self.jobs[job_id]["state"] = state
            self.jobs[job_id].update(extra)

    def count(self, kind):
        return sum(1 for k, _ in self.calls if k == kind)

    # -- httplib2.Http.request --------------------------------------------------------------------
    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        url = urlparse(uri)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        with self.lock:
            if method == "POST" and re.fullmatch(r"/v1/projects/[^/]+/jobs", path):
                job = json.loads(body)
                return self._answer("create", job.get("jobId", ""), lambda: self._create(job))
            m = re.fullmatch(r"/v1/projects/[^/]+/jobs/([^/:]+):cancel", path)
            if method == "POST" and m:
                return self._answer("cancel", m.group(1), lambda: self._cancel(m.group(1)))
            m = re.fullmatch(r"/v1/projects/[^/]+/jobs/([^/:]+)", path)
            if method == "GET" and m:
                return self._answer("get", m.group(1), lambda: self._get(m.group(1)))
            if method == "GET" and re.fullmatch(r"/v1/projects/[^/]+/jobs", path):
                return self._answer("list", query.get("filter", ""), lambda: self._list(query))
        return self._respond(404, error_body(404, "NOT_FOUND", f"no route {method} {path}"))

    def _answer(self, kind, detail, handler):
        self.calls.append((kind, detail))
        if self.errors.get(kind):
            code, payload = self.errors[kind].pop(0)
            return self._respond(code, payload)
        code, payload = handler()
        return self._respond(code, payload)

    @staticmethod
    def _respond(code, payload):
        resp = httplib2.Response({"status": str(code), "content-type": "application/json"})
        return resp, json.dumps(payload).encode()

    def _create(self, job):
        job_id = job["jobId"]
        if job_id in self.jobs:
            return 409, error_body(409, "ALREADY_EXISTS", f"Job {job_id} already exists")
        stored = {**job, "state": "QUEUED", "createTime": f"2024-06-10T12:00:{next(self.clock) % 60:02d}Z"}
        self.jobs[job_id] = stored
        return 200, stored

    def _get(self, job_id):
        if job_id not in self.jobs:
            return 404, error_body(404, "NOT_FOUND", f"job {job_id} not found")
        return 200, self.jobs[job_id]

    def _cancel(self, job_id):
        if job_id not in self.jobs:
            return 404, error_body(404, "NOT_FOUND", f"job {job_id} not found")
        return 200, {}

    def _list(self, query):
        wanted = None
        if query.get("filter"):
            wanted = {t.strip().removeprefix("state:") for t in query["filter"].split(" OR ")}
        matching = [j for j in self.jobs.values() if wanted is None or j.get("state") in wanted]
        start = int(query.get("pageToken") or 0)
        size = int(query.get("pageSize") or 100)
        page = matching[start:start + size]
        if not page:
            return 200, {}  # the API answers {} when nothing matches
        answer = {"jobs": page}
        if start + size < len(matching):
            answer["nextPageToken"] = str(start + size)
        return 200, answer


class FakePublisher:
    """Records messages; `fail_next` makes the next publish raise PublishFailed like an unresolved future."""

    def __init__(self):
        self.messages: list[OutgoingMessage] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def publish(self, messages):
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise PublishFailed("publishing to projects/demo-project/topics/t failed: DeadlineExceeded")
            for m in messages:
                assert all(isinstance(v, str) and len(v.encode()) <= 1024 for v in m.attributes.values())
                assert len(m.data) < 10 * 1024 * 1024
                self.messages.append(m)
            return [str(len(self.messages))]

    def states(self, job_id=None):
        return [m.attributes["state"] for m in self.messages if job_id is None or m.attributes["jobId"] == job_id]
