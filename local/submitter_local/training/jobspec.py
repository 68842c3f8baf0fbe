"""Validation of `jobs.create` and `jobs.patch` bodies (the checks the real API answers 400 on).

Sources: field descriptions in `ml.v1.json` (`GoogleCloudMlV1__Job`, `__TrainingInput`,
`__Scheduling`), the AI Platform Training "Running a training job" and "Labels" pages.
Field paths in violations are proto paths relative to the Job (`training_input.region`),
as the real service reports them.

Checked: unknown fields, JSON types and enum values (via `schema.decode`); jobId present and
`^[A-Za-z][A-Za-z0-9_]{0,127}$`; trainingInput present (prediction jobs are not offered);
region present; pythonModule a dotted module name unless `masterConfig.imageUri`;
packageUris 1..100 `gs://bucket/object` URIs unless `masterConfig.imageUri`; jobDir a gs://
path; runtimeVersion and masterConfig.imageUri mutually exclusive; CUSTOM tier needs
masterType; a worker/ps/evaluator count > 0 needs its type and the CUSTOM tier;
scheduling.priority in [0, 1000]; scheduling.maxWaitTime >= 1800s; labels per the Cloud
labels rules (<= 64, keys start with a lowercase letter, keys/values <= 63 chars of
lowercase letters, digits, `_` and `-`).
Not checked (the real service did): machine type names, region names, accelerator
compatibility, pythonVersion/runtimeVersion pairs, hyperparameter spec details.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import errors, schema
from .errors import ApiError
from .model import JOB_ID_RE, parse_duration

JOB_SCHEMA = "GoogleCloudMlV1__Job"

#: Output-only Job fields: ignored when a client sends them (AIP-203).
OUTPUT_ONLY = ("createTime", "startTime", "endTime", "state", "errorMessage", "trainingOutput",
               "predictionOutput", "jobPosition", "etag")

_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_GCS_OBJECT_RE = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/.+$")
_GCS_PATH_RE = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_LABEL_KEY_RE = re.compile(r"^[\w-]{1,63}$", re.UNICODE)
_LABEL_VALUE_RE = re.compile(r"^[\w-]{0,63}$", re.UNICODE)


@dataclass(frozen=True)
class CreateRequest:
    """A validated jobs.create body: the jobId, labels and normalized trainingInput."""

    job_id: str
    labels: dict[str, str]
    training_input: dict[str, Any]

    @property
    def priority(self) -> int:
        """`scheduling.priority` (0..1000, default 0): higher runs first."""
        return int(self.training_input.get("scheduling", {}).get("priority", 0))


def validate_labels(labels: dict[str, str], field: str = "labels") -> list[tuple[str, str]]:
    """Cloud label rules; returns violations (empty when valid)."""
    out: list[tuple[str, str]] = []
    if len(labels) > 64:
        out.append((field, f"At most 64 labels are allowed, got {len(labels)}."))
    for key, value in labels.items():
        if not (_LABEL_KEY_RE.match(key) and key[0].isalpha() and key[0].islower() and key == key.lower()):
            out.append((f"{field}[{key!r}]", "Label keys must start with a lowercase letter and contain "
                                              "only lowercase letters, digits, '_' and '-', at most 63 characters."))
        if not (_LABEL_VALUE_RE.match(value) and value == value.lower()):
            out.append((f"{field}[{key!r}]", "Label values may contain only lowercase letters, digits, '_' "
                                              "and '-', at most 63 characters."))
    return out


def _count(ti: dict, name: str) -> int:
    return int(ti.get(name, "0"))


def _training_input_violations(ti: dict) -> list[tuple[str, str]]:
    v: list[tuple[str, str]] = []
    p = "training_input"
    image_uri = ti.get("masterConfig", {}).get("imageUri")
    if not ti.get("region"):
        v.append((f"{p}.region", "The region is required."))
    if not image_uri:
        module = ti.get("pythonModule")
        if not module:
            v.append((f"{p}.python_module", "A python module is required when no custom container "
                                            "(master_config.image_uri) is given."))
        elif not _MODULE_RE.match(module):
            v.append((f"{p}.python_module", f"{module!r} is not a dotted Python module name."))
        uris = ti.get("packageUris", [])
        if not uris:
            v.append((f"{p}.package_uris", "At least one package URI is required when no custom "
                                           "container (master_config.image_uri) is given."))
    uris = ti.get("packageUris", [])
    if len(uris) > 100:
        v.append((f"{p}.package_uris", f"At most 100 package URIs are allowed, got {len(uris)}."))
    for i, uri in enumerate(uris):
        if not _GCS_OBJECT_RE.match(uri):
            v.append((f"{p}.package_uris[{i}]", f"{uri!r} is not a Cloud Storage object URI (gs://bucket/object)."))
    job_dir = ti.get("jobDir")
    if job_dir and not _GCS_PATH_RE.match(job_dir):
        v.append((f"{p}.job_dir", f"{job_dir!r} is not a Cloud Storage path (gs://bucket/path)."))
    if image_uri and ti.get("runtimeVersion"):
        v.append((f"{p}.runtime_version", "runtime_version and master_config.image_uri are mutually exclusive."))

    tier = ti.get("scaleTier", "BASIC")
    if tier == "CUSTOM" and not ti.get("masterType"):
        v.append((f"{p}.master_type", "master_type is required when scale_tier is CUSTOM."))
    for role in ("worker", "parameterServer", "evaluator"):
        count_field = f"{role}Count"
        n = _count(ti, count_field)
        snake = schema.snake_case(count_field)
        if n < 0:
            v.append((f"{p}.{snake}", "The count must not be negative."))
        if n > 0 and tier != "CUSTOM":
            v.append((f"{p}.{snake}", f"{snake} can only be set when scale_tier is CUSTOM."))
        if n > 0 and not ti.get(f"{role}Type"):
            v.append((f"{p}.{schema.snake_case(role)}_type", f"{schema.snake_case(role)}_type is required "
                                                               f"when {snake} is greater than zero."))
    sched = ti.get("scheduling", {})
    prio = sched.get("priority", 0)
    if not 0 <= prio <= 1000:
        v.append((f"{p}.scheduling.priority", f"The priority must be in [0, 1000], got {prio}."))
    for name, minimum in (("maxWaitTime", 1800.0), ("maxRunningTime", 0.0)):
        if name in sched:
            seconds = parse_duration(sched[name])  # format already checked by schema.decode
            if seconds < minimum or seconds <= 0:
                v.append((f"{p}.scheduling.{schema.snake_case(name)}",
                          f"{sched[name]} is too short: the minimum is {minimum or 1:g}s."))
    return v


def validate_create(body: Any) -> CreateRequest:
    """Validate a jobs.create body (a `GoogleCloudMlV1__Job` dict).

    Returns the normalized request; raises `ApiError` 400 INVALID_ARGUMENT (with BadRequest
    field violations) or 501 UNIMPLEMENTED (prediction jobs).
    """
    if not isinstance(body, dict):
        raise errors.invalid_argument([("job", "The request body must be a JSON object (a Job).")])
    job, violations = schema.decode(JOB_SCHEMA, body, "job")
    if violations:  # JSON-level errors come first, as the front end rejects before the service sees it
        raise errors.invalid_argument(violations, message=violations[0][1])
    for name in OUTPUT_ONLY:
        job.pop(name, None)
    if "predictionInput" in job:
        raise errors.unimplemented("Batch prediction jobs are not supported by the local training service.")

    v: list[tuple[str, str]] = []
    job_id = job.get("jobId", "")
    if not job_id:
        v.append(("job_id", "The job id is required."))
    elif not JOB_ID_RE.match(job_id):
        v.append(("job_id", "A name should start with a letter and contain only letters, numbers and "
                            "underscores, at most 128 characters."))
    if "trainingInput" not in job:
        v.append(("training_input", "training_input is required."))
    else:
        v.extend(_training_input_violations(job["trainingInput"]))
    labels = job.get("labels", {})
    v.extend(validate_labels(labels))
    if v:
        raise errors.invalid_argument(v)
    return CreateRequest(job_id=job_id, labels=labels, training_input=job["trainingInput"])


def validate_patch(body: Any, update_mask: str | None) -> tuple[dict[str, str], str | None]:
    """Validate a jobs.patch request; returns (new labels, etag or None).

    Only the `labels` and `etag` update-mask paths exist (ml.v1.json, jobs.patch.updateMask).
    Raises ApiError 400 INVALID_ARGUMENT.
    """
    if not update_mask:
        raise errors.invalid_argument([("update_mask", "update_mask is required; the supported paths are "
                                                       "'labels' and 'etag'.")])
    paths = [p.strip() for p in update_mask.split(",") if p.strip()]
    bad = [p for p in paths if p not in ("labels", "etag")]
    if bad or "labels" not in paths:
        raise errors.invalid_argument([("update_mask", f"Unsupported update mask {update_mask!r}: only "
                                                       "'labels' (optionally with 'etag') can be updated.")])
    if not isinstance(body, dict):
        raise errors.invalid_argument([("job", "The request body must be a JSON object (a Job).")])
    job, violations = schema.decode(JOB_SCHEMA, body, "job")
    if violations:
        raise errors.invalid_argument(violations, message=violations[0][1])
    labels = job.get("labels", {})
    lv = validate_labels(labels)
    if lv:
        raise errors.invalid_argument(lv)
    return labels, job.get("etag") or None


__all__ = ["CreateRequest", "validate_create", "validate_patch", "validate_labels", "ApiError"]
