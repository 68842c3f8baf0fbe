"""Cloud Storage adapter for drops: list a drop folder, read objects pinned to a generation.

Reads are always pinned to the generation named by the event or the listing,
so a late event never sees newer content. (The gcp-storage-emulator ignores
`generation` on reads; the metadata check below still catches an overwrite
there. Real GCS answers 404 for an overwritten generation.)
"""

from __future__ import annotations

import dataclasses
import io
import threading

class ObjectMissing(Exception):
    """The object, or the requested generation of it, no longer exists."""


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one object: name, generation, size (bytes), crc32c/md5 (base64), custom metadata."""

    bucket: str
    name: str
    generation: int
    size: int
    crc32c: str = ""
    md5_hash: str = ""
    updated: str = ""

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


class DropStorage:
    """GCS reads for the submitter (google-cloud-storage; honours STORAGE_EMULATOR_HOST).

    Args:
        project: project for the client.
        client: an existing `google.cloud.storage.Client` (tests); built lazily otherwise.
    """

    def __init__(self, project: str, client=None):
        self.project = project
        self._client = client
        self._lock = threading.Lock()
        self._locations: dict[str, str | None] = {}

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client(project=self.project)
            return self._client

    def list_folder(self, bucket: str, folder: str) -> list[ObjectInfo]:
        """Objects directly inside `folder` (not its subfolders).

        Args:
            folder: folder name without trailing slash.
        """
        blobs = self.client.list_blobs(bucket, prefix=folder + "/", delimiter="/")
        return [ObjectInfo(bucket=bucket, name=b.name, generation=int(b.generation or 0), size=int(b.size or 0),
                           crc32c=b.crc32c or "", md5_hash=b.md5_hash or "",
                           updated=b.updated.isoformat() if b.updated else "")
                for b in blobs]

    def read(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> bytes:
        """The bytes of `name` at exactly `generation`.

        Raises:
            ObjectMissing: that generation no longer exists (overwritten or deleted).
            ValueError: the object is larger than `max_bytes`.
        """
        blob = self._pinned_blob(bucket, name, generation)
        if (blob.size or 0) > max_bytes:
            raise ValueError(f"gs://{bucket}/{name} is {blob.size} bytes; the limit is {max_bytes}")
        from google.api_core.exceptions import NotFound

        try:
            return blob.download_as_bytes()  # the blob is pinned to `generation`
        except NotFound:
            raise ObjectMissing(f"gs://{bucket}/{name}#{generation}") from None

    def open(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> io.BufferedIOBase:
        """A streaming reader of `name` at `generation` (for package inspection; memory stays flat).

        Raises:
            ObjectMissing, ValueError: as for `read`.
        """
        blob = self._pinned_blob(bucket, name, generation)
        if (blob.size or 0) > max_bytes:
            raise ValueError(f"gs://{bucket}/{name} is {blob.size} bytes; the limit is {max_bytes}")
        return blob.open("rb", chunk_size=1024 * 1024)

    def bucket_location(self, bucket: str) -> str | None:
        """The bucket's location in lowercase ("us-central1", "us"), cached per instance; None if unreadable."""
        if bucket not in self._locations:
            try:
                location = self.client.get_bucket(bucket).location
            except Exception:  # a missing permission must not block submission: the check is advisory
                location = None
            self._locations[bucket] = location.lower() if location else None
        return self._locations[bucket]

    def _pinned_blob(self, bucket: str, name: str, generation: int):
        from google.api_core.exceptions import NotFound

        blob = self.client.bucket(bucket).blob(name, generation=generation)
        try:
            blob.reload()
        except NotFound:
            raise ObjectMissing(f"gs://{bucket}/{name}#{generation}") from None
        if int(blob.generation or 0) != generation:
            raise ObjectMissing(f"gs://{bucket}/{name}#{generation} was overwritten by generation {blob.generation}")
        return blob
