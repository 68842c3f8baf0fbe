"""Object storage as the core sees it: object metadata and the read interface (no I/O here).

`gcs.GcsObjectStore` implements `ObjectStore` on Cloud Storage; tests use an in-memory double.
Reads are always pinned to a generation, so a late event never sees newer content.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import BinaryIO, Protocol


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one object generation.

    Attributes:
        bucket / name: where it is (the raw object name).
        generation: the object generation (int64).
        size: bytes.
        crc32c / md5_hash: base64 checksums as GCS reports them ("" when absent).
        updated: RFC 3339 time of the generation, "" when unknown.
    """

    bucket: str
    name: str
    generation: int
    size: int
    crc32c: str = ""
    md5_hash: str = ""
    updated: str = ""

    @property
    def uri(self) -> str:
        """gs://bucket/name"""
        return f"gs://{self.bucket}/{self.name}"

    @property
    def filename(self) -> str:
        """The last path component of the name."""
        return self.name.rsplit("/", 1)[-1]


class ObjectStore(Protocol):
    """Reads the submitter makes on Cloud Storage.

    Every method raises `errors.ObjectGone` when the object or generation no longer exists,
    `errors.StorageUnavailable` for faults a retry may fix, `errors.StorageRefused` otherwise.
    """

    def list_folder(self, bucket: str, folder: str) -> list[ObjectInfo]:
        """Objects directly inside `folder` (no trailing slash), not in its subfolders."""
        ...

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        """The live generation's metadata."""
        ...

    def read(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> bytes:
        """The bytes of `name` at exactly `generation`; raises `TooLarge` above `max_bytes` (without reading)."""
        ...

    def open(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> BinaryIO:
        """A streaming reader of `name` at `generation` (memory stays flat); raises `TooLarge` above max_bytes."""
        ...

    def bucket_location(self, bucket: str) -> str | None:
        """The bucket's location in lowercase ("us-central1", "us"); None when it cannot be read."""
        ...

    def stamp(self, bucket: str, name: str, when: dt.datetime) -> None:
        """Set the object's customTime (a lifecycle rule deletes it a retention period later)."""
        ...

    def copy(self, source: ObjectInfo, bucket: str, name: str) -> ObjectInfo:
        """Copy exactly `source`'s generation to `bucket/name`, server-side, unless that name exists already.

        For content-addressed names an existing object holds the same bytes, so it is returned as is.
        Raises:
            ObjectGone: the source generation no longer exists.
        """
        ...


class TooLarge(Exception):
    """An object is larger than the caller's cap; the message names the object, its size and the cap."""

    def __init__(self, uri: str, size: int, limit: int):
        super().__init__(f"{uri} is {size} bytes; the limit is {limit}")
        self.uri, self.size, self.limit = uri, size, limit
