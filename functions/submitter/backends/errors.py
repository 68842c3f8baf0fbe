"""Training-API errors and their retry classification (pure).

One table decides transient vs permanent (the README repeats it):

| answer                                            | class     | why |
|---------------------------------------------------|-----------|-----|
| 409 ALREADY_EXISTS                                | AlreadyExists | the job may be ours from an earlier delivery: compare, adopt |
| 429 RESOURCE_EXHAUSTED with a QuotaFailure detail | permanent | a quota of 0 does not change by retrying (QUOTA_EXCEEDED) |
| 429 otherwise                                     | transient | rate limiting |
| 500, 502, 503, 504, connection errors, timeouts   | transient | the service or network hiccupped |
| 400, 401, 403, 404, other 4xx                     | permanent | the request itself is wrong |

Error bodies follow https://cloud.google.com/apis/design/errors
(`{"error": {"code", "message", "status", "details": [...]}}`).
"""

from __future__ import annotations

import json
from typing import Any

QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"
TRANSIENT_HTTP = frozenset({500, 502, 503, 504})


class BackendError(Exception):
    """A training-API call failed.

    Attributes:
        code: HTTP status (0 for a transport error).
        status: Google status string, e.g. "INVALID_ARGUMENT".
        message: the API's message (quota violation descriptions appended).
        transient: True when a bounded retry may succeed.
        reason: the submitter's SUBMIT_FAILED reason for permanent errors.
    """

    def __init__(self, code: int, status: str, message: str, *, transient: bool, reason: str = "API_ERROR",
                 details: list[Any] | None = None):
        self.code, self.status, self.message = code, status, message
        self.transient, self.reason, self.details = transient, reason, details or []
        super().__init__(f"{code} {status}: {message}")


class AlreadyExists(BackendError):
    """409 ALREADY_EXISTS: a job with this id exists."""


def classify_http_error(code: int, body: bytes | str | None) -> BackendError:
    """Map an HTTP error answer to a BackendError of the right class.

    Args:
        code: HTTP status code.
        body: the response body (Google JSON error format, or anything).
    """
    error: dict[str, Any] = {}
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
    except (ValueError, TypeError):
        pass
    status = str(error.get("status") or "")
    message = str(error.get("message") or (body.decode("utf-8", "replace") if isinstance(body, bytes) else body) or "")
    details = error.get("details") if isinstance(error.get("details"), list) else []
    if code == 409 and status in ("ALREADY_EXISTS", ""):
        return AlreadyExists(code, status or "ALREADY_EXISTS", message, transient=False, reason="JOB_ID_CONFLICT",
                             details=details)
    if code == 429:
        quota = [v.get("description", "") for d in details if isinstance(d, dict) and d.get("@type") == QUOTA_FAILURE_TYPE
                 for v in d.get("violations", []) if isinstance(v, dict)]
        if quota:
            return BackendError(code, status or "RESOURCE_EXHAUSTED", "; ".join([message, *quota]), transient=False,
                                reason="QUOTA_EXCEEDED", details=details)
        return BackendError(code, status or "RESOURCE_EXHAUSTED", message, transient=True, reason="RATE_LIMITED",
                            details=details)
    if code in TRANSIENT_HTTP:
        return BackendError(code, status or "UNAVAILABLE", message, transient=True, reason="API_UNAVAILABLE",
                            details=details)
    reason = {400: "INVALID_ARGUMENT", 401: "PERMISSION_DENIED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND"}.get(code, "API_ERROR")
    return BackendError(code, status or reason, message, transient=False, reason=reason, details=details)


def transport_error(exc: BaseException) -> BackendError:
    """A connection failure or timeout talking to the API: transient."""
    return BackendError(0, "UNAVAILABLE", f"{type(exc).__name__}: {exc}", transient=True, reason="API_UNAVAILABLE")
