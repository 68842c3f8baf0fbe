"""In-memory doubles for the adapters: they behave like the real services where tests rely on it
(generations, pinned reads, 409s, paging, `{}` for empty lists), and count calls."""

from __future__ import annotations

import base64
import datetime as dt
import io
import itertools
import threading
import zlib

from submitter.backends import AlreadyExists, BackendError
from submitter.envelope import OutgoingMessage
from submitter.gcs import ObjectInfo, ObjectMissing
from submitter.publisher import PublishError

UTC = dt.timezone.utc


class FakeStorage:
    """Objects with generations; reads pinned to a generation fail once it is overwritten (like real GCS)."""

    def __init__(self):
        self.objects: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._gen = itertools.count(1_000_001)
        self.reads = 0

    def put(self, bucket: str, name: str, data: bytes, generation: int | None = None) -> ObjectInfo:
        gen = generation or next(self._gen)
        self.objects[(bucket, name)] = (gen, data)
        return self.info(bucket, name)

    def info(self, bucket: str, name: str) -> ObjectInfo:
        gen, data = self.objects[(bucket, name)]
        crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        return ObjectInfo(bucket=bucket, name=name, generation=gen, size=len(data), crc32c=crc)

    def list_folder(self, bucket, folder):
        prefix = folder + "/"
        return [self.info(b, n) for (b, n) in sorted(self.objects)
                if b == bucket and n.startswith(prefix) and "/" not in n[len(prefix):]]

    def _get(self, bucket, name, generation):
        found = self.objects.get((bucket, name))
        if found is None or found[0] != generation:
            raise ObjectMissing(f"gs://{bucket}/{name}#{generation}")
        return found[1]

    def read(self, bucket, name, generation, *, max_bytes):
        self.reads += 1
        data = self._get(bucket, name, generation)
        if len(data) > max_bytes:
            raise ValueError(f"gs://{bucket}/{name} is {len(data)} bytes; the limit is {max_bytes}")
        return data

    def open(self, bucket, name, generation, *, max_bytes):
        return io.BytesIO(self.read(bucket, name, generation, max_bytes=max_bytes))


class FakeBackend:
    """ml v1 jobs in memory. `create_errors` / `get_script` let tests script answers."""

    name = "ml_v1"

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.create_errors: list[BackendError] = []
        self.lock = threading.Lock()
        self.clock = itertools.count()

    def create_job(self, job):
        with self.lock:
            self.calls.append(("create", job["jobId"]))
            if self.create_errors:
                raise self.create_errors.pop(0)
            if job["jobId"] in self.jobs:
                raise AlreadyExists(409, "ALREADY_EXISTS", f"Job {job['jobId']} already exists", transient=False,
                                    reason="JOB_ID_CONFLICT")
            stored = {**job, "state": "QUEUED", "createTime": f"2024-06-10T12:00:{next(self.clock) % 60:02d}Z"}
            self.jobs[job["jobId"]] = stored
            return dict(stored)

    def get_job(self, job_id):
        with self.lock:
            self.calls.append(("get", job_id))
            if job_id not in self.jobs:
                raise BackendError(404, "NOT_FOUND", f"job {job_id} not found", transient=False, reason="NOT_FOUND")
            return dict(self.jobs[job_id])

    def list_jobs(self, *, filter=None, page_size=100, page_token=None):
        with self.lock:
            self.calls.append(("list", filter or ""))
            wanted = None
            if filter:
                wanted = {t.strip().removeprefix("state:") for t in filter.split(" OR ")}
            matching = [j for j in self.jobs.values() if wanted is None or j.get("state") in wanted]
            start = int(page_token or 0)
            page = matching[start:start + page_size]
            nxt = str(start + page_size) if start + page_size < len(matching) else None
            return [dict(j) for j in page], nxt

    def cancel_job(self, job_id):
        self.calls.append(("cancel", job_id))

    def set_state(self, job_id, state, **extra):
        with self.lock:
            if state is None:
                self.jobs[job_id].pop("state", None)
            else:
                self.jobs[job_id]["state"] = state
            self.jobs[job_id].update(extra)

    def count(self, kind):
        return sum(1 for k, _ in self.calls if k == kind)


class FakePublisher:
    """Records messages; `fail_next` makes the next publish raise PublishError like an unresolved future."""

    def __init__(self):
        self.messages: list[OutgoingMessage] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def publish(self, messages):
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise PublishError("publishing to projects/demo-project/topics/t failed: DeadlineExceeded")
            for m in messages:
                assert all(isinstance(v, str) and len(v.encode()) <= 1024 for v in m.attributes.values())
                self.messages.append(m)
            return [str(len(self.messages))]

    def states(self, job_id=None):
        return [m.attributes["state"] for m in self.messages if job_id is None or m.attributes["jobId"] == job_id]
