"""Job states, timestamps and etags of the ml v1 `Job` resource.

Source: `GoogleCloudMlV1__Job` in googleapiclient's bundled `ml.v1.json`
(state enum: STATE_UNSPECIFIED, QUEUED, PREPARING, RUNNING, SUCCEEDED, FAILED,
CANCELLING, CANCELLED).
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import re

QUEUED = "QUEUED"
PREPARING = "PREPARING"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLING = "CANCELLING"
CANCELLED = "CANCELLED"

#: States after which nothing changes any more (CANCELLING is not one of them).
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
#: States in which the service owns processes or files for the job.
ACTIVE_STATES = frozenset({PREPARING, RUNNING, CANCELLING})

#: jobId rule from the API docs: letters, digits, underscores, starts with a letter, <= 128 chars.
JOB_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


def rfc3339(ts: float) -> str:
    """Format epoch seconds as the API does: RFC 3339, UTC, `Z`, whole seconds."""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_etag() -> str:
    """A fresh etag: the API types it `bytes`, so on the wire it is base64 of 8 random bytes."""
    return base64.b64encode(os.urandom(8)).decode("ascii")


def job_name(project: str, job_id: str) -> str:
    """The resource name `projects/{project}/jobs/{jobId}`."""
    return f"projects/{project}/jobs/{job_id}"


def parse_duration(text: str) -> float:
    """Parse a google-duration (`"1800s"`, `"0.5s"`) into seconds; ValueError if malformed."""
    m = re.fullmatch(r"(-?\d+(?:\.\d{1,9})?)s", text or "")
    if not m:
        raise ValueError(f"invalid duration {text!r}")
    return float(m.group(1))
