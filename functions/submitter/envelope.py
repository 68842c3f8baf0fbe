"""The message envelope for job state events and verdicts (pure).

Every message is a CloudEvent 1.0 in the Pub/Sub protocol binding's `ce-` attribute convention, with
JSON data (`schemas/job-event.v1.schema.json`). Plain attributes `jobId`, `state`, `terminal` (and
`reason` for verdicts) let subscriptions filter. The ordering key is the job key. `ce-id` is
deterministic per (job key, state), so consumers can drop duplicates of at-least-once delivery by
(`ce-source`, `ce-id`).

Every message fits, whatever the input: Pub/Sub allows attribute values of 1024 bytes, 100 attributes
and 10 MB per message (https://cloud.google.com/pubsub/quotas#resource_limits). Attributes are cut on a
character boundary; texts in the data are made safe (valid UTF-8, control characters escaped) and
capped; violations are capped in count with a summary of the rest. A message that would still be too
large is a bug (`MessageTooLarge`), never a reason to redeliver an event forever.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from .clock import rfc3339
from .model import JobStatus, PublishedState
from .reasons import Reason, Violation
from .text import safe_text, truncate_utf8

SPEC_VERSION = "1.0"
EVENT_TYPE = "dev.drop-submitter.job.v1.stateChanged"
DATA_SCHEMA_VERSION = "1"
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ERROR_MESSAGE_CHARS = 64 * 1024
MAX_VIOLATIONS = 100
MAX_WARNINGS = 50
MAX_WARNING_CHARS = 2000
MAX_MESSAGE_BYTES = 9 * 1024 * 1024  # below Pub/Sub's 10 MB, leaving room for attributes


class MessageTooLarge(Exception):
    """An encoded message exceeds MAX_MESSAGE_BYTES despite the caps (a bug: reported, never redelivered)."""


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """One state change of a job, or one verdict, before encoding.

    Attributes:
        key: the job key (published as `jobId`; for REJECTED inputs, the key the job would have had).
        state: the new state (a JobState or a Verdict).
        origin: where the job came from, as the data carries it (e.g. {"drop": {"bucket", "folder",
            "object", "generation"}}).
        time: when the submitter observed the change (aware datetime).
        previous_state: the state published before this one, if any.
        reason / message / violations: for REJECTED and SUBMIT_FAILED (violations as `capped_violations` gives
            them: at most MAX_VIOLATIONS, JSON-ready).
        warnings: notes that did not block submission (retired runtime, region far from the data).
        error_message: the job's errorMessage (FAILED, CANCELLED).
        labels / job_dir / backend / resource_name: context consumers need without another lookup.
        create_time / start_time / end_time: the job's times, when known (RFC 3339).
        detail: backend fields consumers may want (e.g. {"trainingOutput": {...}}).
        tuning: for a hyperparameter tuning job, the trial summary (`Study.summary()`: counts and the best trial
            so far, with its hyperparameters and metric); None for other jobs and verdicts.
    """

    key: str
    state: PublishedState
    origin: dict[str, Any]
    time: dt.datetime
    previous_state: PublishedState | None = None
    reason: Reason | None = None
    message: str | None = None
    violations: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    error_message: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    job_dir: str | None = None
    backend: str = ""
    resource_name: str | None = None
    create_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    tuning: dict[str, Any] | None = None

    def with_status(self, status: JobStatus) -> JobEvent:
        """This event with the times, error message, detail and trial summary a backend reported."""
        return dataclasses.replace(self, error_message=status.error_message, create_time=status.create_time,
                                   start_time=status.start_time, end_time=status.end_time, detail=status.detail,
                                   resource_name=status.handle.name,
                                   tuning=status.study.summary() if status.study is not None else None)


@dataclasses.dataclass(frozen=True)
class OutgoingMessage:
    """A Pub/Sub message ready to publish: bytes data, str attributes, ordering key."""

    data: bytes
    attributes: dict[str, str]
    ordering_key: str


def ce_id(key: str, state: PublishedState) -> str:
    """Deterministic CloudEvent id for (job key, state): a redelivered publish has the same id."""
    return f"{key}/{state.value}"


def encode(event: JobEvent, *, source: str) -> OutgoingMessage:
    """Encode a JobEvent as a Pub/Sub message that fits Pub/Sub's limits.

    Args:
        event: the event.
        source: the CloudEvent `source`, e.g. "//drop-submitter/projects/P/buckets/B".
    Returns:
        OutgoingMessage whose attributes are all str, each <= 1024 bytes, data < 9 MiB.
    Raises:
        MessageTooLarge: the caps did not bring the data under MAX_MESSAGE_BYTES (a bug).
    """
    data: dict[str, Any] = {
        "schemaVersion": DATA_SCHEMA_VERSION,
        "jobId": event.key,
        "state": event.state.value,
        "previousState": event.previous_state.value if event.previous_state else None,
        "seq": event.state.rank,
        "terminal": event.state.is_terminal,
        "time": rfc3339(event.time),
        **event.origin,
        "labels": {safe_text(str(k), 256): safe_text(str(v), 256) for k, v in event.labels.items()},
        "jobDir": event.job_dir,
        "backend": event.backend,
        "errorMessage": _safe(event.error_message, MAX_ERROR_MESSAGE_CHARS),
        "reason": str(event.reason) if event.reason else None,
        "message": _safe(event.message, MAX_ERROR_MESSAGE_CHARS),
        "violations": list(event.violations[:MAX_VIOLATIONS]),
        "warnings": [safe_text(w, MAX_WARNING_CHARS) for w in event.warnings[:MAX_WARNINGS]],
    }
    if event.resource_name:
        data["resourceName"] = event.resource_name
    for field, value in (("createTime", event.create_time), ("startTime", event.start_time),
                         ("endTime", event.end_time)):
        if value is not None:
            data[field] = value
    data.update({k: v for k, v in event.detail.items() if v is not None})
    if event.tuning is not None:
        data["tuning"] = event.tuning
    attributes = {
        "ce-specversion": SPEC_VERSION,
        "ce-type": EVENT_TYPE,
        "ce-source": source,
        "ce-id": ce_id(event.key, event.state),
        "ce-subject": f"jobs/{event.key}",
        "ce-time": rfc3339(event.time),
        "content-type": "application/json",
        "jobId": event.key,
        "state": event.state.value,
        "terminal": "true" if event.state.is_terminal else "false",
    }
    if event.reason:
        attributes["reason"] = str(event.reason)
    body = _fitted(data)
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"the {event.state.value} message for {event.key} is {len(body)} bytes")
    return OutgoingMessage(data=body, attributes=clean_attributes(attributes), ordering_key=event.key)


def _fitted(data: dict[str, Any]) -> bytes:
    """The data as JSON; a tuning job's `trainingOutput.trials` that would not fit loses its `allMetrics`, then the
    trials themselves (the `tuning` summary, with the best trial, always stays; the training API has them all)."""
    body = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
    output = data.get("trainingOutput")
    if len(body) <= MAX_MESSAGE_BYTES or not isinstance(output, dict) or not isinstance(output.get("trials"), list):
        return body
    trials = [{k: v for k, v in t.items() if k != "allMetrics"} if isinstance(t, dict) else t
              for t in output["trials"]]
    body = json.dumps({**data, "trainingOutput": {**output, "trials": trials}}, ensure_ascii=False,
                      sort_keys=True).encode("utf-8")
    if len(body) <= MAX_MESSAGE_BYTES:
        return body
    lean = {k: v for k, v in output.items() if k != "trials"}
    return json.dumps({**data, "trainingOutput": lean}, ensure_ascii=False, sort_keys=True).encode("utf-8")


def capped_violations(violations: list[Violation]) -> list[dict[str, Any]]:
    """The violations as JSON, at most MAX_VIOLATIONS entries: the rest summarised in one last entry
    ("and 900 more"), so a spec with thousands of problems still gets a verdict that fits."""
    if len(violations) <= MAX_VIOLATIONS:
        return [v.as_dict() for v in violations]
    kept = [v.as_dict() for v in violations[: MAX_VIOLATIONS - 1]]
    rest = len(violations) - len(kept)
    return kept + [{"field": "(more)", "message": f"and {rest:,} more problems like the ones above; fix those and "
                    "validate again (submitter validate) to see the rest", "reason": kept[-1]["reason"]}]


def clean_attributes(attributes: dict[str, Any]) -> dict[str, str]:
    """Make attributes safe for Pub/Sub: str values, None dropped, values cut to 1024 bytes.

    Booleans become "true"/"false" (never "True"), numbers their decimal form. Keys longer than 256
    bytes and attributes past the 100th are dropped; texts are made safe (valid UTF-8, no controls).
    """
    out: dict[str, str] = {}
    for key, value in attributes.items():
        if value is None or len(out) >= 100 or len(str(key).encode("utf-8", "replace")) > 256:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, bytes):
            text = value.decode("utf-8", errors="replace")
        else:
            text = str(value)
        out[str(key)] = truncate_utf8(safe_text(text, keep_newlines=False), MAX_ATTRIBUTE_VALUE_BYTES)
    return out


def _safe(text: str | None, max_chars: int) -> str | None:
    return None if text is None else safe_text(text, max_chars)


def decode(data: bytes, attributes: dict[str, str]) -> dict[str, Any]:
    """Decode a received message into {"attributes": ..., "data": ...}; used by the CLI and tests."""
    return {"attributes": dict(attributes), "data": json.loads(data.decode("utf-8"))}
