"""Reason codes and violations: the vocabulary of every verdict (pure).

Every machine-readable reason the submitter publishes is a member of `Reason`; nothing else in the
package spells a reason as a bare string. A `Violation` is one problem with a field path, the offending
value and the fix.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .text import safe_text

MAX_VALUE_CHARS = 200
MAX_MESSAGE_CHARS = 2000
MAX_FIELD_CHARS = 300


class Reason(enum.StrEnum):
    """Why a drop was rejected, a submission failed, or a job ended badly."""

    # REJECTED: the spec, the packages or the drop
    YAML_INVALID = "YAML_INVALID"
    SPEC_INVALID = "SPEC_INVALID"
    SPEC_TOO_LARGE = "SPEC_TOO_LARGE"
    INVALID_JOB_ID = "INVALID_JOB_ID"
    INVALID_LABELS = "INVALID_LABELS"
    TEMPLATE_UNRENDERED = "TEMPLATE_UNRENDERED"
    INVALID_MACHINE_CONFIG = "INVALID_MACHINE_CONFIG"
    UNSUPPORTED_RUNTIME = "UNSUPPORTED_RUNTIME"
    POLICY_VIOLATION = "POLICY_VIOLATION"
    PACKAGE_INVALID = "PACKAGE_INVALID"
    MODULE_NOT_IN_PACKAGE = "MODULE_NOT_IN_PACKAGE"
    INCOMPLETE_DROP = "INCOMPLETE_DROP"
    RULE_INVALID = "RULE_INVALID"  # a trigger rule that cannot fire (reported on its status, never published)
    OVERLAP_SKIPPED = "OVERLAP_SKIPPED"  # a data batch skipped: its rule's previous job is still active
    EMPTY_BATCH = "EMPTY_BATCH"  # a marker closed a folder that holds no data object of the rule
    # SUBMIT_FAILED: the training API or storage refused, or the submitter failed
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    JOB_ID_CONFLICT = "JOB_ID_CONFLICT"
    API_ERROR = "API_ERROR"
    STORAGE_REFUSED = "STORAGE_REFUSED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # transient (logged, never published as a verdict)
    RATE_LIMITED = "RATE_LIMITED"
    API_UNAVAILABLE = "API_UNAVAILABLE"
    EVENT_INVALID = "EVENT_INVALID"
    # job states
    JOB_FAILED = "JOB_FAILED"


@dataclasses.dataclass(frozen=True)
class Violation:
    """One problem in a spec, a package or a drop.

    Attributes:
        field: dotted path in the Job resource, e.g. "trainingInput.args[1]", or a file name.
        message: what is wrong and how to fix it.
        reason: why, as a Reason.
        value: the offending value, as written (None when absent).
    """

    field: str
    message: str
    reason: Reason = Reason.SPEC_INVALID
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form used in events and status objects: every string safe (valid UTF-8, control characters
        escaped) and capped (field 300, message 2000, value 200 characters), so a hostile input cannot
        make a verdict unpublishable."""
        out: dict[str, Any] = {"field": safe_text(self.field, MAX_FIELD_CHARS),
                               "message": safe_text(self.message, MAX_MESSAGE_CHARS), "reason": self.reason.value}
        if self.value is not None:
            if isinstance(self.value, bool) or (isinstance(self.value, (int, float)) and abs(self.value) < 2**53):
                out["value"] = self.value
            else:
                text = self.value if isinstance(self.value, str) else repr(self.value)
                out["value"] = safe_text(text, MAX_VALUE_CHARS)
        return out


def unique_violations(violations: list[Violation]) -> list[Violation]:
    """The violations without repeats: the same problem reported twice for one field is shown once, while
    different problems of one field (a rule and the policy, two policy caps) are all kept, so one pass lists
    everything to fix."""
    seen: set[tuple[str, Reason, str]] = set()
    out = []
    for v in violations:
        if (v.field, v.reason, v.message) not in seen:
            seen.add((v.field, v.reason, v.message))
            out.append(v)
    return out
