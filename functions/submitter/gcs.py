"""Cloud Storage adapter (google-cloud-storage; honours STORAGE_EMULATOR_HOST).

Implements `objects.ObjectStore`. Every library failure is translated into the error tree
(`errors.py`): 404 -> ObjectGone, 5xx/429/connection errors -> StorageUnavailable, other 4xx ->
StorageRefused. The client is built lazily on first use, never at import.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from .errors import ObjectGone, StorageRefused, StorageUnavailable
from .events import WRITTEN_BY_KEY, WRITTEN_BY_VALUE
from .objects import ObjectInfo, TooLarge


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate google-cloud-storage / google-api-core / requests failures inside the block.

    Args:
        what: the operation, for messages ("read gs://b/o#12").
    Raises:
        ObjectGone, StorageUnavailable, StorageRefused.
    """
    from google.api_core import exceptions as core

    try:
        yield
    except core.NotFound:
        raise ObjectGone(f"{what}: not found") from None
    except (core.TooManyRequests, core.ServerError, core.RetryError) as exc:
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except core.GoogleAPICallError as exc:
        raise StorageRefused(f"{what}: {exc.code} {exc.message}") from exc
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        # requests' and urllib3's own exception types (ConnectionError, Timeout, ChunkedEncodingError)
        if type(exc).__module__.split(".")[0] in ("requests", "urllib3", "google"):
            raise StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        raise


class GcsObjectStore:
    """Reads on Cloud Storage for the submitter.

    Args:
        project: project for the client.
        client: an existing `google.cloud.storage.Client`; built lazily otherwise.
        http_env: whether the environment sets a proxy or CA bundle (`Settings.http_env`). When it does not, the
            built client's session skips requests' per-request re-reading of the proxy variables (a scan of the
            whole environment) and ~/.netrc, which can only come back empty: 12 % of the function's CPU in a
            burst of drops.
    """

    def __init__(self, project: str, client: Any = None, http_env: bool = True):
        self.project, self.http_env = project, http_env
        self._client = client
        self._lock = threading.Lock()
        self._locations: dict[str, str | None] = {}

    @property
    def client(self) -> Any:
        """The google.cloud.storage.Client (built on first use)."""
        with self._lock:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client(project=self.project)
                session = getattr(self._client, "_http", None)  # the requests.Session the client sends with
                if not self.http_env and session is not None and hasattr(session, "trust_env"):
                    session.trust_env = False
            return self._client

    def list_folder(self, bucket: str, folder: str) -> list[ObjectInfo]:
        with storage_errors(f"list gs://{bucket}/{folder}/"):
            blobs = list(self.client.list_blobs(bucket, prefix=folder + "/", delimiter="/"))
        return [_info(bucket, b) for b in blobs]

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        with storage_errors(f"stat gs://{bucket}/{name}"):
            blob = self.client.bucket(bucket).get_blob(name)
        if blob is None:
            raise ObjectGone(f"gs://{bucket}/{name}: not found")
        return _info(bucket, blob)

    def read(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> bytes:
        blob = self._pinned_blob(bucket, name, generation, max_bytes)
        with storage_errors(f"read gs://{bucket}/{name}#{generation}"):
            return cast(bytes, blob.download_as_bytes())

    def open(self, bucket: str, name: str, generation: int, *, max_bytes: int) -> BinaryIO:
        blob = self._pinned_blob(bucket, name, generation, max_bytes)
        with storage_errors(f"open gs://{bucket}/{name}#{generation}"):
            return cast(BinaryIO, blob.open("rb", chunk_size=1024 * 1024))

    def bucket_location(self, bucket: str) -> str | None:
        if bucket not in self._locations:
            try:
                with storage_errors(f"get bucket {bucket}"):
                    location = self.client.get_bucket(bucket).location
            except (StorageRefused, StorageUnavailable, ObjectGone):
                location = None  # advisory only: a missing permission must not block submission
            self._locations[bucket] = location.lower() if location else None
        return self._locations[bucket]

    def stamp(self, bucket: str, name: str, when: dt.datetime) -> None:
        blob = self.client.bucket(bucket).blob(name)
        blob.custom_time = when
        with storage_errors(f"stamp gs://{bucket}/{name}"):
            blob.patch()

    def copy(self, source: ObjectInfo, bucket: str, name: str) -> ObjectInfo:
        from google.api_core.exceptions import PreconditionFailed

        src = self.client.bucket(source.bucket).blob(source.name, generation=source.generation)
        dst = self.client.bucket(bucket).blob(name)
        dst.metadata = {WRITTEN_BY_KEY: WRITTEN_BY_VALUE}
        with storage_errors(f"copy {source.uri}#{source.generation} to gs://{bucket}/{name}"):
            try:
                token, _, _ = dst.rewrite(src, if_generation_match=0, if_source_generation_match=source.generation)
                while token is not None:  # large or cross-location copies take several calls
                    token, _, _ = dst.rewrite(src, token=token, if_generation_match=0,
                                              if_source_generation_match=source.generation)
            except PreconditionFailed:
                if self._live_generation(source) != source.generation:
                    raise ObjectGone(f"{source.uri}#{source.generation} was replaced") from None
                return self.stat(bucket, name)  # already staged: same name, same bytes
        return _info(bucket, dst)

    def _live_generation(self, source: ObjectInfo) -> int:
        try:
            return self.stat(source.bucket, source.name).generation
        except ObjectGone:
            return 0

    def _pinned_blob(self, bucket: str, name: str, generation: int, max_bytes: int) -> Any:
        blob = self.client.bucket(bucket).blob(name, generation=generation)
        with storage_errors(f"stat gs://{bucket}/{name}#{generation}"):
            blob.reload()
        if int(blob.generation or 0) != generation:
            raise ObjectGone(f"gs://{bucket}/{name}#{generation} was overwritten by generation {blob.generation}")
        if (blob.size or 0) > max_bytes:
            raise TooLarge(f"gs://{bucket}/{name}", int(blob.size), max_bytes)
        return blob


def _info(bucket: str, blob: Any) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, name=blob.name, generation=int(blob.generation or 0), size=int(blob.size or 0),
                      crc32c=blob.crc32c or "", md5_hash=blob.md5_hash or "",
                      updated=blob.updated.isoformat() if blob.updated else "")
