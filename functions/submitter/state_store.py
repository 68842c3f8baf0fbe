"""The state store: one interface for the submitter's own records, with compare-and-set.

Records are small JSON documents addressed by key. `create` is create-only and `replace` is
conditional on the generation read, so two instances racing on the same record cannot both win. On
GCS this is `ifGenerationMatch` (0 = must not exist). Plain gcp-storage-emulator ignores
preconditions; the local stack's wrapper (`submitter_local.storage_emulator`) enforces them, and
`InMemoryStateStore` enforces them for the unit tests.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from .errors import ObjectGone
from .events import WRITTEN_BY_KEY, WRITTEN_BY_VALUE
from .gcs import storage_errors

Document = dict[str, Any]


class StateStore(Protocol):
    """Key -> JSON document store with generation tokens.

    Every method raises `errors.StorageUnavailable` for faults a retry may fix and
    `errors.StorageRefused` for permanent ones.
    """

    def get(self, key: str) -> tuple[Document, int] | None:
        """(document, generation token) or None when absent."""
        ...

    def create(self, key: str, doc: Document) -> int | None:
        """Write only if absent; returns the new generation token, or None when the key already exists."""
        ...

    def replace(self, key: str, doc: Document, token: int) -> int | None:
        """Write only if the stored generation is `token`; returns the new token, or None otherwise."""
        ...

    def put(self, key: str, doc: Document) -> None:
        """Write unconditionally (last writer wins; for documents nobody reads-then-writes)."""
        ...

    def delete(self, key: str, token: int | None = None) -> None:
        """Remove the key if present (and, with `token`, only if its generation is still `token`)."""
        ...

    def versions(self, prefix: str) -> dict[str, int]:
        """{key: generation token} for keys starting with `prefix` (one listing; lets callers cache documents)."""
        ...


class InMemoryStateStore:
    """A thread-safe StateStore in memory that enforces every precondition (tests, CLI dry runs).

    Attributes:
        requests: how many calls were made, by method name (for the request-count benchmark and tests).
    """

    def __init__(self) -> None:
        self._docs: dict[str, tuple[str, int]] = {}
        self._next = 1
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}

    def _count(self, method: str) -> None:
        self.requests[method] = self.requests.get(method, 0) + 1

    def get(self, key: str) -> tuple[Document, int] | None:
        with self._lock:
            self._count("get")
            if key not in self._docs:
                return None
            raw, gen = self._docs[key]
            return json.loads(raw), gen

    def create(self, key: str, doc: Document) -> int | None:
        with self._lock:
            self._count("create")
            if key in self._docs:
                return None
            return self._put(key, doc)

    def replace(self, key: str, doc: Document, token: int) -> int | None:
        with self._lock:
            self._count("replace")
            if key not in self._docs or self._docs[key][1] != token:
                return None
            return self._put(key, doc)

    def put(self, key: str, doc: Document) -> None:
        with self._lock:
            self._count("put")
            self._put(key, doc)

    def delete(self, key: str, token: int | None = None) -> None:
        with self._lock:
            self._count("delete")
            if key in self._docs and (token is None or self._docs[key][1] == token):
                del self._docs[key]

    def versions(self, prefix: str) -> dict[str, int]:
        with self._lock:
            self._count("versions")
            return {k: gen for k, (_, gen) in self._docs.items() if k.startswith(prefix)}

    def all_keys(self) -> list[str]:
        """Every key, sorted (tests)."""
        with self._lock:
            return sorted(self._docs)

    def _put(self, key: str, doc: Document) -> int:
        token = self._next
        self._docs[key] = (json.dumps(doc, sort_keys=True), token)
        self._next += 1
        return token


class GcsStateStore:
    """StateStore on a GCS bucket (objects `<prefix><key>`), using generation preconditions.

    Every object carries custom metadata `written-by: submitter`, so even a deployment that puts the
    state bucket next to drops never re-triggers itself.

    Args:
        bucket: bucket name.
        prefix: object-name prefix ending in "/".
        project: project for a client built here.
        client: a google.cloud.storage.Client (built lazily from `project` when None).
    """

    def __init__(self, bucket: str, prefix: str, project: str, client: Any = None):
        self.bucket_name, self.prefix, self.project = bucket, prefix, project
        self._client = client
        self._lock = threading.Lock()

    def _bucket(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client(project=self.project)
            return self._client.bucket(self.bucket_name)

    def get(self, key: str) -> tuple[Document, int] | None:
        bucket = self._bucket()
        blob = bucket.blob(self.prefix + key)
        try:
            with storage_errors(f"read state {key}"):
                data = blob.download_as_bytes()
        except ObjectGone:
            return None
        if blob.generation:  # GCS sends x-goog-generation with the bytes: one request, and they agree
            return json.loads(data), int(blob.generation)
        return self._get_in_two_reads(bucket, key)

    def _get_in_two_reads(self, bucket: Any, key: str) -> tuple[Document, int] | None:
        """For a server that sends no generation with downloads: the metadata, then that generation's bytes."""
        for _ in range(5):  # the document can be replaced between the two reads; then read it again
            meta = bucket.blob(self.prefix + key)
            try:
                with storage_errors(f"read state {key}"):
                    meta.reload()  # the generation comes from the metadata, not from download headers
            except ObjectGone:
                return None
            try:
                with storage_errors(f"read state {key}"):
                    data = bucket.blob(self.prefix + key, generation=meta.generation).download_as_bytes()
            except ObjectGone:
                continue
            return json.loads(data), int(meta.generation)
        return None

    def put(self, key: str, doc: Document) -> None:
        self._write(key, doc, None)

    def _write(self, key: str, doc: Document, generation_match: int | None) -> int | None:
        from google.api_core.exceptions import PreconditionFailed

        blob = self._bucket().blob(self.prefix + key)
        blob.metadata = {WRITTEN_BY_KEY: WRITTEN_BY_VALUE}
        try:
            with storage_errors(f"write state {key}"):
                try:
                    blob.upload_from_string(json.dumps(doc, sort_keys=True), content_type="application/json",
                                            if_generation_match=generation_match)
                except PreconditionFailed:
                    return None
        except ObjectGone:
            return None  # a replace of a document deleted meanwhile
        return int(blob.generation or 0)

    def create(self, key: str, doc: Document) -> int | None:
        return self._write(key, doc, 0)

    def replace(self, key: str, doc: Document, token: int) -> int | None:
        return self._write(key, doc, token)

    def delete(self, key: str, token: int | None = None) -> None:
        from google.api_core.exceptions import PreconditionFailed

        try:
            with storage_errors(f"delete state {key}"):
                try:
                    self._bucket().blob(self.prefix + key).delete(if_generation_match=token)
                except PreconditionFailed:
                    pass  # someone else's version now: leave it
        except ObjectGone:
            pass

    def versions(self, prefix: str) -> dict[str, int]:
        bucket = self._bucket()
        with storage_errors(f"list state {prefix}"):
            return {b.name[len(self.prefix):]: int(b.generation or 0)
                    for b in bucket.client.list_blobs(bucket, prefix=self.prefix + prefix)}
