"""The submitter's one exception tree: what each failure means for the event that caused it.

    SubmitterError
    ├── PermanentError            redelivery cannot help: reported once, the event is acknowledged
    │   ├── SpecRejected          the spec or a package is invalid            -> REJECTED
    │   ├── BackendRefused        the training API refused the job            -> SUBMIT_FAILED
    │   │   └── JobConflict       another job holds this job key             -> SUBMIT_FAILED JOB_ID_CONFLICT
    │   ├── StorageRefused        Cloud Storage refused a read (403, 400, ...) -> SUBMIT_FAILED
    │   └── EventInvalid          the CloudEvent itself is malformed          -> logged, acknowledged
    ├── TransientError            a retry may help: retried with bounds, then raised so the event comes back
    │   ├── BackendUnavailable    5xx, 429 without a QuotaFailure, connection errors
    │   ├── StorageUnavailable    5xx, 429, connection errors from Cloud Storage
    │   ├── PublishFailed         a Pub/Sub publish failed or timed out
    │   └── ClaimBusy             another live invocation is deciding the same input
    ├── ObjectGone                the object generation an event names no longer exists: the event is stale
    └── ConfigurationError        the deployment's settings are wrong (raised at start)

Anything that is not a SubmitterError is a bug: the entry point logs it at ERROR with its traceback and
reports it once as a verdict with reason INTERNAL_ERROR, instead of letting Eventarc redeliver it for 24 h.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .reasons import Reason, Violation


class SubmitterError(Exception):
    """Base of every error the submitter raises on purpose."""


class PermanentError(SubmitterError):
    """Redelivery cannot fix it: report it once and acknowledge the event.

    Attributes:
        reason: the machine-readable reason published with the verdict.
    """

    reason: Reason = Reason.API_ERROR


class TransientError(SubmitterError):
    """A retry may fix it: retried with bounds, then raised so the event is delivered again."""


class ObjectGone(SubmitterError):
    """The object, or the generation of it that an event names, no longer exists (the event is stale)."""


class ConfigurationError(SubmitterError, ValueError):
    """A setting is missing or malformed; the message names the variable, the value and the rule."""


class EventInvalid(PermanentError, ValueError):
    """The CloudEvent is not a well-formed storage object event; redelivery cannot fix it."""

    reason = Reason.EVENT_INVALID


class SpecRejected(PermanentError):
    """The spec or a package cannot be submitted.

    Attributes:
        violations: every problem found (at least one).
        reason: the first violation's reason, used as the event's `reason`.
    Raises:
        ValueError: constructed without violations.
    """

    def __init__(self, violations: Iterable[Violation]):
        self.violations = list(violations)
        if not self.violations:
            raise ValueError("SpecRejected needs at least one violation")
        self.reason = self.violations[0].reason
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in self.violations))


class BackendError(SubmitterError):
    """A training-API call failed (the base of BackendRefused and BackendUnavailable).

    Attributes:
        code: HTTP status (0 for a transport error).
        status: Google's status string, e.g. "PERMISSION_DENIED".
        message: the API's message, with the remedy the error details name when they name one.
        reason: the submitter's reason (PERMISSION_DENIED, QUOTA_EXCEEDED, ...).
        details: the error's `details` list as the API sent it (google.rpc types).
    """

    transient = False

    def __init__(self, code: int, status: str, message: str, *, reason: Reason = Reason.API_ERROR,
                 details: list[Any] | None = None):
        self.code, self.status, self.message = code, status, message
        self.reason, self.details = reason, list(details or [])
        super().__init__(f"{code} {status}: {message}")


class BackendRefused(BackendError, PermanentError):
    """The training API refused the request for good (400, 401, 403, 404, 429 with a QuotaFailure)."""


class JobConflict(BackendRefused):
    """A different job already exists under this job key; `differences` names the fields that differ."""

    def __init__(self, key: str, differences: list[str], message: str):
        super().__init__(409, "ALREADY_EXISTS", message, reason=Reason.JOB_ID_CONFLICT)
        self.key, self.differences = key, differences


class BackendUnavailable(BackendError, TransientError):
    """The training API or the network failed in a way a retry may fix (5xx, 429, connection errors)."""

    transient = True


class StorageRefused(PermanentError):
    """Cloud Storage refused a request for good (403 and other 4xx except 404/412)."""

    reason = Reason.STORAGE_REFUSED


class StorageUnavailable(TransientError):
    """Cloud Storage failed in a way a retry may fix (5xx, 429, connection errors, timeouts)."""


class PublishFailed(TransientError):
    """A Pub/Sub publish failed or did not complete in time; the message names the topic."""


class ClaimBusy(TransientError):
    """Another invocation holds the claim on the same input and has not finished."""


__all__ = ["SubmitterError", "PermanentError", "TransientError", "ObjectGone", "ConfigurationError",
           "EventInvalid", "SpecRejected", "BackendError", "BackendRefused", "JobConflict", "BackendUnavailable",
           "StorageRefused", "StorageUnavailable", "PublishFailed", "ClaimBusy"]
