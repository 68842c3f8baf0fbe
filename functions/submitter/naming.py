"""Deterministic job ids (pure).

Rule (ml v1 `GoogleCloudMlV1__Job.jobId`, and
https://cloud.google.com/ai-platform/training/docs/managing-models-jobs):
letters, digits and underscores; starts with a letter; at most 128 characters.
"""

from __future__ import annotations

import hashlib
import re

JOB_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
JOB_ID_RULE = "letters, digits and underscores only, starting with a letter, at most 128 characters"
MAX_JOB_ID = 128
_HASH_LEN = 8


def is_valid_job_id(value: object) -> bool:
    """True when `value` is a string the training API accepts as a jobId."""
    return isinstance(value, str) and JOB_ID_RE.fullmatch(value) is not None


def derive_job_id(drop_name: str, generation: int) -> str:
    """The jobId for a drop whose job.yaml does not name one.

    Identical on every redelivery of the same job.yaml generation, different for a
    new generation (a re-upload is a new submission). Characters outside
    [A-Za-z0-9_] (dashes, dots, non-ASCII) become "_", a leading non-letter gets a
    "j_" prefix, and an id longer than 128 characters is cut and given a short
    hash of the full input so that cut ids stay distinct.

    Args:
        drop_name: the drop folder relative to the drop prefix, e.g. "run-001".
        generation: the job.yaml object generation.
    Returns:
        e.g. "run_001_1718000000000001".
    """
    base = re.sub(r"[^A-Za-z0-9_]", "_", drop_name) or "drop"
    if not base[0].isalpha():
        base = "j_" + base
    candidate = f"{base}_{generation}"
    if len(candidate) <= MAX_JOB_ID:
        return candidate
    digest = hashlib.sha256(f"{drop_name}\0{generation}".encode()).hexdigest()[:_HASH_LEN]
    tail = f"_{generation}_{digest}"
    return base[: MAX_JOB_ID - len(tail)] + tail


def is_valid_drop_name(name: str) -> bool:
    """True for a drop folder name the CLI creates: letters, digits, '-', '_', '.'; not '.'/'..'; <= 200 chars."""
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name)) and name not in (".", "..")
