"""Local files seen through the core's ObjectStore interface, so `validate` and `submit` run the function's
own planner on packages that are still on the user's disk."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from submitter.errors import ObjectGone
from submitter.objects import ObjectInfo, TooLarge


class LocalPackages:
    """Local .tar.gz files standing in for the objects they will become once dropped.

    Args:
        files: {gs:// URI the file will have: local path}.
    """

    def __init__(self, files: dict[str, Path]):
        self.files = files

    def info(self, uri: str) -> ObjectInfo:
        """The ObjectInfo a file will have (generation 1)."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        return ObjectInfo(bucket=bucket, name=name, generation=1, size=self.files[uri].stat().st_size)

    def _path(self, bucket: str, name: str) -> Path:
        path = self.files.get(f"gs://{bucket}/{name}")
        if path is None or not path.is_file():
            raise ObjectGone(f"gs://{bucket}/{name} is not a local file here")
        return path

    def list_folder(self, bucket: str, folder: str) -> list[ObjectInfo]:
        prefix = f"gs://{bucket}/{folder}/"
        return [self.info(u) for u in sorted(self.files) if u.startswith(prefix) and "/" not in u[len(prefix):]]

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        self._path(bucket, name)
        return self.info(f"gs://{bucket}/{name}")

    def read(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> bytes:
        with self.open(bucket, name, generation, max_bytes=max_bytes) as stream:
            return stream.read()

    def open(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> BinaryIO:
        path = self._path(bucket, name)
        if path.stat().st_size > max_bytes:
            raise TooLarge(str(path), path.stat().st_size, max_bytes)
        return path.open("rb")

    def bucket_location(self, bucket: str) -> str | None:
        return None
