"""Google-style API errors (`google.rpc.Status` in its JSON mapping).

Wire shape (https://cloud.google.com/apis/design/errors):
    {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [...]}}
Every 400 carries a `google.rpc.BadRequest` detail with `fieldViolations` [{field, description}].
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
RESOURCE_INFO_TYPE = "type.googleapis.com/google.rpc.ResourceInfo"
PRECONDITION_FAILURE_TYPE = "type.googleapis.com/google.rpc.PreconditionFailure"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
HELP_TYPE = "type.googleapis.com/google.rpc.Help"

JOB_RESOURCE_TYPE = "ml.googleapis.com/Job"


class ApiError(Exception):
    """An error the HTTP layer renders as a Google JSON error.

    `code` is the HTTP status, `status` the canonical gRPC code name, `details` a list of
    `google.rpc.*` detail dicts, each with an `@type`.
    """

    def __init__(self, code: int, status: str, message: str, details: Iterable[dict] = ()):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = list(details)

    def to_json(self) -> dict[str, Any]:
        """The response body: `{"error": {code, message, status, details}}`."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "status": self.status,
                "details": self.details,
            }
        }


def bad_request_detail(violations: Iterable[tuple[str, str]]) -> dict:
    """A `google.rpc.BadRequest` detail from (field, description) pairs."""
    return {
        "@type": BAD_REQUEST_TYPE,
        "fieldViolations": [{"field": f, "description": d} for f, d in violations],
    }


def invalid_argument(violations: list[tuple[str, str]], message: str | None = None) -> ApiError:
    """400 INVALID_ARGUMENT; the message defaults to the first violation, `Field: f Error: d`."""
    if message is None:
        field, desc = violations[0]
        message = f"Field: {field} Error: {desc}" if field else desc
        if len(violations) > 1:
            message += f" (and {len(violations) - 1} more field violation(s))"
    return ApiError(400, "INVALID_ARGUMENT", message, [bad_request_detail(violations)])


def failed_precondition(field: str, description: str, subject: str) -> ApiError:
    """400 FAILED_PRECONDITION with a BadRequest and a PreconditionFailure (type STATE) detail."""
    return ApiError(
        400,
        "FAILED_PRECONDITION",
        description,
        [
            bad_request_detail([(field, description)]),
            {
                "@type": PRECONDITION_FAILURE_TYPE,
                "violations": [{"type": "STATE", "subject": subject, "description": description}],
            },
        ],
    )


def _resource_info(name: str, description: str) -> dict:
    return {
        "@type": RESOURCE_INFO_TYPE,
        "resourceType": JOB_RESOURCE_TYPE,
        "resourceName": name,
        "description": description,
    }


def not_found(name: str) -> ApiError:
    """404 NOT_FOUND for a job resource name."""
    msg = f"Job {name} not found."
    return ApiError(404, "NOT_FOUND", msg, [_resource_info(name, msg)])


def already_exists(name: str) -> ApiError:
    """409 ALREADY_EXISTS: a jobs.create with a jobId already used in the project."""
    msg = f"Field: job_id Error: A job with this id already exists: {name}."
    return ApiError(409, "ALREADY_EXISTS", msg, [_resource_info(name, msg)])


def aborted_etag(name: str) -> ApiError:
    """409 ABORTED: the etag sent does not match the stored one (AIP-154: ABORTED)."""
    msg = (
        f"The etag of job {name} does not match: the job changed since it was read. "
        "Read it again and retry the update."
    )
    return ApiError(
        409,
        "ABORTED",
        msg,
        [{"@type": ERROR_INFO_TYPE, "reason": "ETAG_MISMATCH", "domain": "ml.googleapis.com"}],
    )


#: What a per-minute create quota is called, per service: (quota_metric, quota_limit, the metric's display name).
#: ml v1: the figures of bench/simulation.py's `quota_error`; Vertex AI: its "Job or LRO submission requests per
#: minute per region" quota, which customJobs.create and hyperparameterTuningJobs.create share.
CREATE_QUOTAS = {
    "ml.googleapis.com": ("ml.googleapis.com/job_create_requests", "CreateRequestsPerMinutePerRegion",
                          "Create requests"),
    "aiplatform.googleapis.com": ("aiplatform.googleapis.com/job_or_lro_submission_requests",
                                  "JobOrLroSubmissionRequestsPerMinutePerProjectPerRegion",
                                  "Job or LRO submission requests"),
}


def rate_limited(service: str, project: str, region: str, limit: int, window_s: float = 60.0) -> ApiError:
    """429 RESOURCE_EXHAUSTED for a create beyond a per-minute rate quota, in Google's shape: an ErrorInfo with
    reason RATE_LIMIT_EXCEEDED, domain googleapis.com and the quota in its metadata, a Help link, and no
    QuotaFailure (Google sends one only for an allocation quota; clients read a 429 without it as "wait").

    service: a key of CREATE_QUOTAS; limit: creates a window admits; window_s: the window (60 unless a test
    shortened it, which the message then says)."""
    metric, limit_name, title = CREATE_QUOTAS[service]
    window = "per minute" if window_s == 60 else f"per {window_s:g} s: a local test window instead of a minute"
    message = (f"Quota exceeded for quota metric '{title}' and limit '{title} per minute per region' of service "
               f"'{service}' for consumer 'projects/{project}' (region {region}, {limit} {window}).")
    return ApiError(429, "RESOURCE_EXHAUSTED", message, [
        {"@type": ERROR_INFO_TYPE, "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
         "metadata": {"quota_metric": metric, "quota_limit": limit_name, "quota_limit_value": str(limit),
                      "quota_location": region, "quota_unit": "1/min/{project}/{region}", "service": service,
                      "consumer": f"projects/{project}"}},
        {"@type": HELP_TYPE, "links": [{"description": "Request a higher quota limit.",
                                        "url": "https://cloud.google.com/docs/quotas/help/request_increase"}]},
    ])


def unimplemented(message: str) -> ApiError:
    """501 UNIMPLEMENTED: real API surface this local service does not provide."""
    return ApiError(501, "UNIMPLEMENTED", message, [])


def internal(message: str) -> ApiError:
    """500 INTERNAL."""
    return ApiError(500, "INTERNAL", message, [])
