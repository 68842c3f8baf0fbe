"""Google API error answers -> the error tree, with the remedy the error details name (pure).

One table decides transient vs permanent (the README repeats it):

| answer                                            | class              | reason |
|---------------------------------------------------|--------------------|--------|
| 429 RESOURCE_EXHAUSTED with a QuotaFailure detail | BackendRefused     | QUOTA_EXCEEDED (retrying will not help) |
| 429 otherwise                                     | BackendUnavailable | RATE_LIMITED |
| 500, 502, 503, 504, connection errors, timeouts   | BackendUnavailable | API_UNAVAILABLE |
| 400                                               | BackendRefused     | INVALID_ARGUMENT |
| 401, 403                                          | BackendRefused     | PERMISSION_DENIED |
| 404                                               | BackendRefused     | NOT_FOUND |
| 409 and other 4xx                                 | BackendRefused     | API_ERROR (adapters handle 409 themselves) |

Error bodies follow https://cloud.google.com/apis/design/errors (`{"error": {"code", "message", "status",
"details": [...]}}`); the details' types are google.rpc's ErrorInfo (reason, domain, metadata),
QuotaFailure, BadRequest and Help. The message a user sees says what to do: enable which API, grant
which permission to whom on what, which quota.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..errors import BackendError, BackendRefused, BackendUnavailable
from ..reasons import Reason
from ..text import safe_text

TYPE_PREFIX = "type.googleapis.com/google.rpc."
TRANSIENT_HTTP = frozenset({500, 502, 503, 504})
MAX_API_MESSAGE_CHARS = 4000


@dataclasses.dataclass(frozen=True)
class CallContext:
    """Who called what, for remedies: the project, the region (if any) and the identity in use."""

    project: str
    region: str | None = None
    identity: str | None = None
    api: str = ""


def classify(code: int, body: bytes | str | None, ctx: CallContext | None = None) -> BackendError:
    """Map an HTTP error answer to BackendRefused or BackendUnavailable with reason and remedy.

    Args:
        code: HTTP status code.
        body: the response body (Google JSON error format, or anything).
        ctx: the call's project, region and identity, named in remedies.
    """
    error: dict[str, Any] = {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        parsed = json.loads(text) if text else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
    except ValueError:
        pass
    status = str(error.get("status") or "")
    message = safe_text(str(error.get("message") or text), MAX_API_MESSAGE_CHARS)
    details = [d for d in error.get("details") or [] if isinstance(d, dict)] if isinstance(
        error.get("details"), list) else []
    remedy = remedy_for(code, details, ctx)
    full = f"{message} {remedy}".strip() if remedy else message
    if code == 429:
        if _of_type(details, "QuotaFailure"):
            return BackendRefused(code, status or "RESOURCE_EXHAUSTED", full, reason=Reason.QUOTA_EXCEEDED,
                                  details=details)
        return BackendUnavailable(code, status or "RESOURCE_EXHAUSTED", full, reason=Reason.RATE_LIMITED,
                                  details=details)
    if code in TRANSIENT_HTTP:
        return BackendUnavailable(code, status or "UNAVAILABLE", full, reason=Reason.API_UNAVAILABLE, details=details)
    reason = {400: Reason.INVALID_ARGUMENT, 401: Reason.PERMISSION_DENIED, 403: Reason.PERMISSION_DENIED,
              404: Reason.NOT_FOUND}.get(code, Reason.API_ERROR)
    return BackendRefused(code, status or reason.value, full, reason=reason, details=details)


def transport_error(exc: BaseException) -> BackendUnavailable:
    """A connection failure or timeout talking to the API: transient."""
    return BackendUnavailable(0, "UNAVAILABLE", f"{type(exc).__name__}: {safe_text(str(exc), 500)}",
                              reason=Reason.API_UNAVAILABLE)


def remedy_for(code: int, details: list[dict[str, Any]], ctx: CallContext | None) -> str:
    """What to do about an error, from its structured details ("" when they name nothing)."""
    ctx = ctx or CallContext(project="")
    who = ctx.identity or "the function's service account"
    parts: list[str] = []
    for info in _of_type(details, "ErrorInfo"):
        reason, meta = str(info.get("reason") or ""), info.get("metadata") or {}
        if reason in ("SERVICE_DISABLED", "ACCESS_NOT_CONFIGURED"):
            service = meta.get("service") or ctx.api or "the API"
            project = str(meta.get("consumer") or "").removeprefix("projects/") or ctx.project
            parts.append(f"Enable {service} in project {project}: gcloud services enable {service} --project "
                         f"{project}" + (f" (or {meta['activationUrl']})" if meta.get("activationUrl") else "") + ".")
        elif reason in ("IAM_PERMISSION_DENIED", "PERMISSION_DENIED"):
            permission = meta.get("permission")
            resource = meta.get("resource") or f"projects/{ctx.project}"
            if permission:
                parts.append(f"Grant {who} a role that holds {permission} on {resource} (for Vertex AI: "
                             "roles/aiplatform.user; see infra/README.md).")
        elif reason == "RATE_LIMIT_EXCEEDED" or reason.endswith("QUOTA_EXCEEDED"):
            quota = meta.get("quota_metric") or meta.get("quota_limit") or reason
            parts.append(f"Quota {quota} is exhausted in project {ctx.project}"
                         + (f", region {ctx.region}" if ctx.region else "") + ": wait, or request more quota.")
    for failure in _of_type(details, "QuotaFailure"):
        for v in failure.get("violations") or []:
            if isinstance(v, dict) and (v.get("description") or v.get("subject")):
                parts.append(f"Quota: {v.get('description') or v.get('subject')}.")
    for bad in _of_type(details, "BadRequest"):
        for v in bad.get("fieldViolations") or []:
            if isinstance(v, dict):
                parts.append(f"Field {v.get('field')}: {v.get('description')}.")
    if not parts and code in (401, 403):
        parts.append(f"The call ran as {who} in project {ctx.project}; grant it the role the operation needs "
                     "(see infra/README.md), or check that the project id is right.")
    if not parts and code == 404 and ctx.project:
        parts.append(f"Check that project {ctx.project}" + (f" and region {ctx.region}" if ctx.region else "")
                     + " exist and that the API is enabled there.")
    for help_ in _of_type(details, "Help"):
        for link in help_.get("links") or []:
            if isinstance(link, dict) and link.get("url"):
                parts.append(f"See {link['url']}.")
    return safe_text(" ".join(dict.fromkeys(parts)), 2000)


def _of_type(details: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in details if d.get("@type") == TYPE_PREFIX + name]
