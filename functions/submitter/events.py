"""Storage CloudEvents and the drop protocol's first decision (pure).

An Eventarc `google.cloud.storage.object.v1.finalized` event carries the
object resource as `data`; `generation`, `metageneration` and `size` arrive as
JSON strings. `data.name` is the raw object name: it is never URL-decoded.
`classify` decides, before any I/O, whether an object can be part of a drop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any, Mapping

FINALIZED = "google.cloud.storage.object.v1.finalized"
JOB_SPEC_NAME = "job.yaml"
PACKAGE_SUFFIX = ".tar.gz"
# Custom metadata stamped on every object the submitter writes, so that a
# deployment that points its state or staging into the drop bucket cannot loop.
WRITTEN_BY_KEY = "written-by"
WRITTEN_BY_VALUE = "submitter"
MAX_OBJECT_NAME_BYTES = 1024  # GCS object-name limit


class EventError(ValueError):
    """The CloudEvent is not a well-formed storage object event; redelivery cannot fix it."""


@dataclasses.dataclass(frozen=True)
class StorageObjectEvent:
    """The fields of a storage finalize CloudEvent that the submitter uses.

    Attributes:
        event_id / event_type / time: CloudEvent `id`, `type`, `time` (aware datetime or None).
        bucket / name: the object's bucket and raw name.
        generation / metageneration / size: integers parsed from the JSON strings.
        crc32c / md5_hash: base64 checksums as GCS reports them ("" when absent;
            composite objects have no md5).
        metadata: the object's custom metadata.
    """

    event_id: str
    event_type: str
    time: dt.datetime | None
    bucket: str
    name: str
    generation: int
    metageneration: int
    size: int
    crc32c: str = ""
    md5_hash: str = ""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _int_field(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    raw = data.get(key)
    if raw is None or raw == "":
        if default is not None:
            return default
        raise EventError(f"storage event data has no {key!r}")
    try:
        return int(str(raw))
    except ValueError:
        raise EventError(f"storage event data.{key}={raw!r} is not an integer") from None


def parse_timestamp(raw: str | None) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp ("2024-06-10T12:00:00Z", fractions allowed); None if absent."""
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"CloudEvent time {raw!r} is not an RFC 3339 timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def parse_event(attributes: Mapping[str, Any], data: Any) -> StorageObjectEvent:
    """Turn CloudEvent attributes + data into a StorageObjectEvent.

    Args:
        attributes: CloudEvent context attributes (`id`, `type`, `time`, ...).
        data: the decoded JSON object resource (`bucket`, `name`, `generation`, ...).
    Raises:
        EventError: required fields are missing or malformed.
    """
    if not isinstance(data, Mapping):
        raise EventError(f"storage event data must be a JSON object, got {type(data).__name__}")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not bucket:
        raise EventError("storage event data has no bucket")
    if not isinstance(name, str) or not name:
        raise EventError("storage event data has no object name")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    return StorageObjectEvent(
        event_id=str(attributes.get("id", "")),
        event_type=str(attributes.get("type", "")),
        time=parse_timestamp(attributes.get("time")),
        bucket=bucket,
        name=name,
        generation=_int_field(data, "generation"),
        metageneration=_int_field(data, "metageneration", default=1),
        size=_int_field(data, "size"),
        crc32c=str(data.get("crc32c") or ""),
        md5_hash=str(data.get("md5Hash") or ""),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


class ObjectRole(str, enum.Enum):
    """What an object is to the drop protocol."""

    JOB_SPEC = "job_spec"
    PACKAGE = "package"


@dataclasses.dataclass(frozen=True)
class DropObject:
    """An object that belongs to a drop.

    Attributes:
        folder: the drop folder, the object's parent with no trailing slash
            (e.g. "incoming/run-001").
        drop_name: the folder relative to the drop prefix (e.g. "run-001").
        filename: the last path component.
        role: JOB_SPEC or PACKAGE.
    """

    folder: str
    drop_name: str
    filename: str
    role: ObjectRole


@dataclasses.dataclass(frozen=True)
class Ignored:
    """An event that must not start anything; `why` is logged at INFO."""

    why: str


def classify(event: StorageObjectEvent, *, drop_bucket: str, drop_prefix: str,
             reserved_prefixes: tuple[str, ...] = ()) -> DropObject | Ignored:
    """Decide whether an object event can concern a drop (pure, no I/O).

    A drop is the set of objects directly inside one folder `<drop_prefix><name>/`:
    a `job.yaml` and one or more `*.tar.gz` packages. Anything else is ignored:
    other event types, other buckets, objects the submitter wrote, folder
    placeholders, objects at the prefix root or in a subfolder of a drop, other
    file names, and zero-byte objects (the first half of a two-step upload; the
    real content arrives as a new generation with its own event).

    Args:
        event: the parsed event.
        drop_bucket: the watched bucket.
        drop_prefix: "" or a prefix ending in "/".
        reserved_prefixes: object-name prefixes the submitter writes to in this bucket.
    """
    name = event.name
    if event.event_type and event.event_type != FINALIZED:
        return Ignored(f"event type {event.event_type} is not {FINALIZED}")
    if event.metadata.get(WRITTEN_BY_KEY) == WRITTEN_BY_VALUE:
        return Ignored("object was written by the submitter")
    if any(name.startswith(p) for p in reserved_prefixes if p):
        return Ignored("object is under a prefix the submitter writes to")
    if event.bucket != drop_bucket:
        return Ignored(f"bucket {event.bucket} is not the drop bucket {drop_bucket}")
    if len(name.encode("utf-8")) > MAX_OBJECT_NAME_BYTES or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return Ignored("object name has control characters or is too long")
    if name.endswith("/"):
        return Ignored("folder placeholder")
    if not name.startswith(drop_prefix):
        return Ignored(f"object is outside the drop prefix {drop_prefix!r}")
    parts = name[len(drop_prefix):].split("/")
    if len(parts) != 2 or not parts[0]:
        where = "at the drop prefix root" if len(parts) < 2 else "in a subfolder of a drop"
        return Ignored(f"object is {where}; drops are files directly inside <prefix><name>/")
    drop_name, filename = parts
    if filename == JOB_SPEC_NAME:
        role = ObjectRole.JOB_SPEC
    elif filename.endswith(PACKAGE_SUFFIX) and len(filename) > len(PACKAGE_SUFFIX):
        role = ObjectRole.PACKAGE
    else:
        return Ignored(f"{filename!r} is neither {JOB_SPEC_NAME} nor a *{PACKAGE_SUFFIX} package")
    if event.size == 0:
        return Ignored("zero-byte object (the content arrives as a later generation)")
    return DropObject(folder=drop_prefix + drop_name, drop_name=drop_name, filename=filename, role=role)


def event_age_seconds(event: StorageObjectEvent, now: dt.datetime) -> float | None:
    """Seconds between the event's `time` and `now`, or None when the event has no time."""
    if event.time is None:
        return None
    return (now - event.time).total_seconds()


def missing_packages(job: Mapping[str, Any], bucket: str, folder: str, present: list[str]) -> list[str]:
    """What a drop still lacks, given its parsed job.yaml (pure; the drop protocol's completeness rule).

    Complete when every package the spec names inside this drop folder
    (`trainingInput.packageUris` entries `gs://<bucket>/<folder>/<file>`) is present, or, when it
    names no package at all, when at least one `*.tar.gz` is present. Packages named elsewhere are
    not waited for (the training service checks them when the job is created).

    Args:
        job: the parsed Job (trainingInput may be malformed: then nothing is waited for).
        present: file names of the non-empty packages in the folder.
    Returns:
        Missing file names, or ["a *.tar.gz package"], or [] when complete.
    """
    ti = job.get("trainingInput")
    uris = ti.get("packageUris") if isinstance(ti, Mapping) else None
    if isinstance(uris, list) and uris:
        prefix = f"gs://{bucket}/{folder}/"
        named = [u[len(prefix):] for u in uris if isinstance(u, str) and u.startswith(prefix)]
        return [n for n in named if n not in present]
    return [] if present else [f"a *{PACKAGE_SUFFIX} package"]
