"""The state store: one interface for the submitter's own records, with compare-and-set.

Records are small JSON documents addressed by key. `create` is create-only and
`replace` is conditional on the generation read, so two instances racing on
the same record cannot both win. On GCS this is `ifGenerationMatch`
(0 = must not exist). Plain gcp-storage-emulator ignores preconditions; the
local stack's wrapper (`submitter_local.storage_emulator`) enforces them, and
`InMemoryStateStore` enforces them for the unit tests.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from .events import WRITTEN_BY_KEY, WRITTEN_BY_VALUE


class StateStore(Protocol):
    """Key → JSON document store with generation tokens."""

    def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        """(document, generation token) or None when absent."""

    def create(self, key: str, doc: dict[str, Any]) -> bool:
        """Write only if absent; False when the key already exists."""

    def replace(self, key: str, doc: dict[str, Any], token: int) -> bool:
        """Write only if the stored generation is `token`; False otherwise."""

    def put(self, key: str, doc: dict[str, Any]) -> None:
        """Write unconditionally (last writer wins; for documents nobody reads-then-writes)."""

    def delete(self, key: str) -> None:
        """Remove the key if present."""

    def list(self, prefix: str) -> list[str]:
        """Keys starting with `prefix`, sorted."""

    def versions(self, prefix: str) -> dict[str, int]:
        """{key: generation token} for keys starting with `prefix` (one listing; lets callers cache documents)."""


class InMemoryStateStore:
    """A thread-safe StateStore in memory that enforces every precondition (tests, CLI dry runs)."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[str, int]] = {}
        self._next = 1
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._docs:
                return None
            raw, gen = self._docs[key]
            return json.loads(raw), gen

    def create(self, key, doc):
        with self._lock:
            if key in self._docs:
                return False
            self._put(key, doc)
            return True

    def replace(self, key, doc, token):
        with self._lock:
            if key not in self._docs or self._docs[key][1] != token:
                return False
            self._put(key, doc)
            return True

    def put(self, key, doc):
        with self._lock:
            self._put(key, doc)

    def delete(self, key):
        with self._lock:
            self._docs.pop(key, None)

    def list(self, prefix):
        with self._lock:
            return sorted(k for k in self._docs if k.startswith(prefix))

    def versions(self, prefix):
        with self._lock:
            return {k: gen for k, (_, gen) in self._docs.items() if k.startswith(prefix)}

    def _put(self, key, doc):
        self._docs[key] = (json.dumps(doc, sort_keys=True), self._next)
        self._next += 1


class GcsStateStore:
    """StateStore on a GCS bucket (objects `<prefix><key>`), using generation preconditions.

    Every object carries custom metadata `written-by: submitter`, so even a
    deployment that puts the state bucket next to drops never re-triggers itself.

    Args:
        bucket: bucket name.
        prefix: object-name prefix ending in "/".
        client: a google.cloud.storage.Client (built lazily from `project` when None).
    """

    def __init__(self, bucket: str, prefix: str, project: str, client=None):
        self.bucket_name, self.prefix, self.project = bucket, prefix, project
        self._client = client
        self._lock = threading.Lock()

    def _bucket(self):
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client(project=self.project)
            return self._client.bucket(self.bucket_name)

    def get(self, key):
        from google.api_core.exceptions import NotFound

        bucket = self._bucket()
        for _ in range(5):  # the document can be replaced between the two reads; then read it again
            meta = bucket.blob(self.prefix + key)
            try:
                meta.reload()  # the generation comes from the metadata, not from download headers
            except NotFound:
                return None
            try:
                pinned = bucket.blob(self.prefix + key, generation=meta.generation)
                return json.loads(pinned.download_as_bytes()), int(meta.generation)
            except NotFound:
                continue
        return None

    def put(self, key, doc):
        self._write(key, doc, None)

    def _write(self, key, doc, generation_match: int | None) -> bool:
        from google.api_core.exceptions import PreconditionFailed

        blob = self._bucket().blob(self.prefix + key)
        blob.metadata = {WRITTEN_BY_KEY: WRITTEN_BY_VALUE}
        try:
            blob.upload_from_string(json.dumps(doc, sort_keys=True), content_type="application/json",
                                    if_generation_match=generation_match)
        except PreconditionFailed:
            return False
        return True

    def create(self, key, doc):
        return self._write(key, doc, 0)

    def replace(self, key, doc, token):
        return self._write(key, doc, token)

    def delete(self, key):
        from google.api_core.exceptions import NotFound

        try:
            self._bucket().blob(self.prefix + key).delete()
        except NotFound:
            pass

    def list(self, prefix):
        return sorted(self.versions(prefix))

    def versions(self, prefix):
        bucket = self._bucket()
        return {b.name[len(self.prefix):]: int(b.generation or 0)
                for b in bucket.client.list_blobs(bucket, prefix=self.prefix + prefix)}
