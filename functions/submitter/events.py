"""Storage CloudEvents (pure).

An Eventarc `google.cloud.storage.object.v1.finalized` event carries the object resource as `data`;
`generation`, `metageneration` and `size` arrive as JSON strings. `data.name` is the raw object name: it
is never URL-decoded. What an object means to the drop protocol is `drops.py`'s business.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from .errors import EventInvalid
from .text import safe_text

FINALIZED = "google.cloud.storage.object.v1.finalized"
# Custom metadata stamped on every object the submitter writes, so that a
# deployment that points its state or staging into the drop bucket cannot loop.
WRITTEN_BY_KEY = "written-by"
WRITTEN_BY_VALUE = "submitter"

EventError = EventInvalid  # the name the tests know

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
        raise EventInvalid(f"storage event data has no {key!r}")
    try:
        return int(str(raw))
    except ValueError:
        raise EventInvalid(f"storage event data.{key}={safe_text(str(raw), 100)!r} is not an integer") from None


def parse_timestamp(raw: Any) -> dt.datetime | None:
    """Parse an RFC 3339 timestamp ("2024-06-10T12:00:00Z", fractions allowed); None if absent."""
    if not raw:
        return None
    if not isinstance(raw, str):
        raise EventInvalid(f"CloudEvent time must be a string, got {type(raw).__name__}")
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise EventInvalid(f"CloudEvent time {safe_text(str(raw), 100)!r} is not an RFC 3339 timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_event(attributes: Mapping[str, Any], data: Any) -> StorageObjectEvent:
    """Turn CloudEvent attributes + data into a StorageObjectEvent.

    Args:
        attributes: CloudEvent context attributes (`id`, `type`, `time`, ...).
        data: the decoded JSON object resource (`bucket`, `name`, `generation`, ...).
    Raises:
        EventInvalid: required fields are missing or malformed.
    """
    if not isinstance(data, Mapping):
        raise EventInvalid(f"storage event data must be a JSON object, got {type(data).__name__}")
    bucket, name = data.get("bucket"), data.get("name")
    if not isinstance(bucket, str) or not bucket:
        raise EventInvalid("storage event data has no bucket")
    if not isinstance(name, str) or not name:
        raise EventInvalid("storage event data has no object name")
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


def event_age_seconds(event: StorageObjectEvent, now: dt.datetime) -> float | None:
    """Seconds between the event's `time` and `now`, or None when the event has no time."""
    if event.time is None:
        return None
    return (now - event.time).total_seconds()
