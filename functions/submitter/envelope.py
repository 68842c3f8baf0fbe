"""The message envelope for job and drop state events (pure).

Every message is a CloudEvent 1.0 in the Pub/Sub protocol binding's `ce-`
attribute convention, with JSON data. Plain attributes `jobId`, `state`,
`terminal` (and `reason` for verdicts) let subscriptions filter. The ordering
key is the jobId. `ce-id` is deterministic per (jobId, state), so consumers can
drop duplicates of at-least-once delivery by (`ce-source`, `ce-id`).

Pub/Sub limits (https://cloud.google.com/pubsub/quotas#resource_limits):
attribute values <= 1024 bytes, keys <= 256 bytes, <= 100 attributes, message
<= 10 MB. Attributes are cut on a character boundary; the full text is in the data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from .states import State

SPEC_VERSION = "1.0"
EVENT_TYPE = "dev.drop-submitter.job.v1.stateChanged"
DATA_SCHEMA_VERSION = "1"
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ERROR_MESSAGE_CHARS = 64 * 1024  # the data keeps far below Pub/Sub's 10 MB
TRUNCATED = "…[truncated]"


@dataclasses.dataclass(frozen=True)
class DropRef:
    """Where a job came from: the drop bucket, folder, job.yaml object and its generation."""

    bucket: str
    folder: str
    object: str
    generation: int

    def as_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "folder": self.folder, "object": self.object,
                "generation": str(self.generation)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DropRef":
        return cls(bucket=d["bucket"], folder=d["folder"], object=d["object"], generation=int(d["generation"]))


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """One state change of a job or verdict on a drop, before encoding.

    Attributes:
        job_id: the training job's id (for REJECTED drops, the id it would have had).
        state: the new state.
        previous_state: the state published before this one, if any.
        drop: the drop the job came from.
        time: when the submitter observed the change (aware datetime).
        reason / message / violations: for REJECTED and SUBMIT_FAILED.
        warnings: notes that did not block submission (retired runtime, region far from the data).
        error_message: the job's `errorMessage` (FAILED, CANCELLED).
        labels / job_dir / backend: context consumers need without another lookup.
        job: selected fields of the API's job resource (createTime, startTime,
            endTime, trainingOutput) when known.
    """

    job_id: str
    state: State
    drop: DropRef
    time: dt.datetime
    previous_state: State | None = None
    reason: str | None = None
    message: str | None = None
    violations: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    error_message: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    job_dir: str | None = None
    backend: str = "ml_v1"
    job: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OutgoingMessage:
    """A Pub/Sub message ready to publish: bytes data, str attributes, ordering key."""

    data: bytes
    attributes: dict[str, str]
    ordering_key: str


def ce_id(job_id: str, state: State) -> str:
    """Deterministic CloudEvent id for (jobId, state): a redelivered publish has the same id."""
    return f"{job_id}/{state.value}"


def encode(event: JobEvent, *, source: str) -> OutgoingMessage:
    """Encode a JobEvent as a Pub/Sub message.

    Args:
        event: the event.
        source: the CloudEvent `source`, e.g. "//drop-submitter/projects/P/buckets/B".
    Returns:
        OutgoingMessage whose attributes are all str, each <= 1024 bytes.
    """
    data: dict[str, Any] = {
        "schemaVersion": DATA_SCHEMA_VERSION,
        "jobId": event.job_id,
        "state": event.state.value,
        "previousState": event.previous_state.value if event.previous_state else None,
        "seq": event.state.rank,
        "terminal": event.state.is_terminal,
        "time": _rfc3339(event.time),
        "drop": event.drop.as_dict(),
        "labels": dict(event.labels),
        "jobDir": event.job_dir,
        "backend": event.backend,
        "errorMessage": _cap(event.error_message, MAX_ERROR_MESSAGE_CHARS),
        "reason": event.reason,
        "message": _cap(event.message, MAX_ERROR_MESSAGE_CHARS),
        "violations": list(event.violations),
        "warnings": list(event.warnings),
    }
    for key in ("createTime", "startTime", "endTime", "trainingOutput"):
        if event.job.get(key) is not None:
            data[key] = event.job[key]
    attributes = {
        "ce-specversion": SPEC_VERSION,
        "ce-type": EVENT_TYPE,
        "ce-source": source,
        "ce-id": ce_id(event.job_id, event.state),
        "ce-subject": f"jobs/{event.job_id}",
        "ce-time": _rfc3339(event.time),
        "content-type": "application/json",
        "jobId": event.job_id,
        "state": event.state.value,
        "terminal": "true" if event.state.is_terminal else "false",
    }
    if event.reason:
        attributes["reason"] = event.reason
    return OutgoingMessage(
        data=json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8"),
        attributes=clean_attributes(attributes),
        ordering_key=event.job_id,
    )


def clean_attributes(attributes: dict[str, Any]) -> dict[str, str]:
    """Make attributes safe for Pub/Sub: str values, None dropped, values cut to 1024 bytes.

    Booleans become "true"/"false" (never "True"), numbers their decimal form.
    Keys longer than 256 bytes and attributes past the 100th are dropped.
    """
    out: dict[str, str] = {}
    for key, value in attributes.items():
        if value is None or len(out) >= 100 or len(str(key).encode("utf-8")) > 256:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, bytes):
            text = value.decode("utf-8", errors="replace")
        else:
            text = str(value)
        out[str(key)] = truncate_utf8(text, MAX_ATTRIBUTE_VALUE_BYTES)
    return out


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut `text` to at most `max_bytes` UTF-8 bytes on a character boundary, marking the cut."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    budget = max_bytes - len(TRUNCATED.encode("utf-8"))
    return raw[:budget].decode("utf-8", errors="ignore") + TRUNCATED


def _cap(text: str | None, max_chars: int) -> str | None:
    if text is None or len(text) <= max_chars:
        return text
    return text[: max_chars - len(TRUNCATED)] + TRUNCATED


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode(data: bytes, attributes: dict[str, str]) -> dict[str, Any]:
    """Decode a received message into {"attributes": ..., "data": ...}; used by the CLI and tests."""
    return {"attributes": dict(attributes), "data": json.loads(data.decode("utf-8"))}
