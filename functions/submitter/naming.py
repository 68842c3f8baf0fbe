"""Google Cloud's naming rules, and deterministic job keys (pure). Every name rule lives here, once.

Sources:
- jobId: ml v1 `GoogleCloudMlV1__Job.jobId` and
  https://cloud.google.com/ai-platform/training/docs/managing-models-jobs — letters, digits and
  underscores; starts with a letter; at most 128 characters.
- labels: https://cloud.google.com/resource-manager/docs/labels-overview — keys and values hold lowercase
  letters (international ones too), digits, `_` and `-`; keys start with a lowercase letter; at most 63
  characters each; at most 64 labels.
- regions: https://cloud.google.com/about/locations (`us-central1`, `northamerica-northeast1`).
- bucket names: https://cloud.google.com/storage/docs/buckets#naming (3-63 characters without dots,
  lowercase letters, digits, `-`, `_`, `.`; start and end with a letter or digit).
- project ids: https://cloud.google.com/resource-manager/docs/creating-managing-projects (6-30
  characters: lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen).
"""

from __future__ import annotations

import hashlib
import re

JOB_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
JOB_ID_RULE = "letters, digits and underscores only, starting with a letter, at most 128 characters"
MAX_JOB_ID = 128
REGION_RE = re.compile(r"[a-z]+-[a-z]+\d+")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]")
PROJECT_ID_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
GCS_URI_RE = re.compile(r"gs://([a-z0-9][a-z0-9._-]{1,221}[a-z0-9])/(.+)", re.DOTALL)
GCS_DIR_RE = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?", re.DOTALL)
MAX_LABELS = 64
MAX_LABEL_CHARS = 63
LABEL_RULE = ("lowercase letters (international ones too), digits, '_' and '-'; keys start with a lowercase "
              "letter; at most 63 characters")
_HASH_LEN = 8


def is_valid_job_id(value: object) -> bool:
    """True when `value` is a string the training API accepts as a jobId."""
    return isinstance(value, str) and JOB_ID_RE.fullmatch(value) is not None


def _label_char(c: str) -> bool:
    return c in "_-" or c.isdigit() or (c.isalpha() and c == c.lower())


def is_valid_label_key(key: object) -> bool:
    """True for a label key: 1-63 characters of `_label_char`, the first a lowercase (or caseless) letter."""
    return (isinstance(key, str) and 0 < len(key) <= MAX_LABEL_CHARS and key[0].isalpha() and key[0] == key[0].lower()
            and all(_label_char(c) for c in key))


def is_valid_label_value(value: object) -> bool:
    """True for a label value: 0-63 characters of lowercase letters, digits, `_` and `-`."""
    return isinstance(value, str) and len(value) <= MAX_LABEL_CHARS and all(_label_char(c) for c in value)


def derive_job_id(drop_name: str, generation: int) -> str:
    """The job key (jobId) for a drop whose job.yaml does not name one.

    Identical on every redelivery of the same job.yaml generation, different for a new generation (a
    re-upload is a new submission). Characters outside [A-Za-z0-9_] (dashes, dots, non-ASCII) become "_",
    a leading non-letter gets a "j_" prefix, and an id longer than 128 characters is cut and given a short
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
    digest = hashlib.sha256(f"{drop_name}\0{generation}".encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    tail = f"_{generation}_{digest}"
    return base[: MAX_JOB_ID - len(tail)] + tail


def derive_batch_job_id(rule: str, where: str, number: int, identity: str) -> str:
    """The job key (jobId) of a trigger rule's data batch: readable, valid, and distinct per batch identity.

    `<rule>_<where>_<number>_<8 hex>`: characters outside [A-Za-z0-9_] become "_", a leading non-letter gets
    "j_", and the middle is cut to fit 128 characters. The hash (SHA-256 of `identity`) is always there, so two
    batches whose names only differ in punctuation (folders `a-b` and `a_b`) never share a jobId.

    Args:
        rule: the rule name, e.g. "nightly-csv".
        where: the batch's folder or object name, e.g. "incoming-data/2024-06-10".
        number: the generation that identifies the batch (the object's, the marker's, the window's first object's).
        identity: the batch identity in full (rule, bucket, object or folder, generation).
    Returns:
        e.g. "nightly_csv_incoming_data_2024_06_10_1718000000000001_3fa9c2d1".
    """
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    base = re.sub(r"[^A-Za-z0-9_]", "_", f"{rule}_{where}".strip("/")) or "batch"
    if not base[0].isalpha():
        base = "j_" + base
    tail = f"_{number}_{digest}"
    return base[: MAX_JOB_ID - len(tail)] + tail


def generations_in(job_id: str) -> set[int]:
    """The job.yaml generations a derived jobId may encode (`<name>_<generation>` or, when the name was cut
    to fit 128 characters, `<name>_<generation>_<8 hex>`); empty for an id that is not derived."""
    found = set()
    for pattern in (r"_(\d+)$", r"_(\d+)_[0-9a-f]{8}$"):
        match = re.search(pattern, job_id)
        if match:
            found.add(int(match.group(1)))
    return found


def is_valid_drop_name(name: str) -> bool:
    """True for a drop folder name the CLI creates: letters, digits, '-', '_', '.'; not '.'/'..'; <= 200 chars."""
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", name)) and name not in (".", "..")


def key_label_value(key: str) -> str:
    """A label value that identifies a job key where labels must be short and lowercase (Vertex): the first
    40 hex digits of the key's SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
