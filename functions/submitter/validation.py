"""One pipeline from job.yaml text to a checked Job: parse, merge, complete, check (pure).

The Cloud Function and `submitter validate` / `submitter submit` run exactly this code, so a spec that
validates offline is the spec the function submits.

Precedence, highest first: explicit flags (CLI only), the file, what the input implies (packageUris,
default jobDir), deployment defaults (region, runtimeVersion, pythonVersion), then the policy's
maxRunningTime cap. Nothing the user wrote is dropped silently: a flag that replaces a value from the
file produces a note saying so.

Who checks what (each rule has one owner): `schema.py` field names, types and enums (from the ml v1
discovery document); `rules.py` what values mean and how fields go together; `policy.py` the
deployment's caps; `package.py` the packages (run by the submission path, which reads them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import rules, schema
from .errors import SpecRejected
from .policy import Policy
from .reasons import Reason, Violation, unique_violations
from .spec import ParsedSpec, SpecDefaults, complete, parse_job_yaml


@dataclasses.dataclass(frozen=True)
class Overrides:
    """gcloud-style flags (`gcloud ai-platform jobs submit training`); None means "not given".

    `labels` are merged key by key over the file's labels (gcloud's `--labels` replaces them all);
    `args` replaces the file's args only when non-empty (gcloud wipes them on an empty `--`);
    `package_uris` replaces packageUris only when given (gcloud wipes config-only packageUris).
    """

    job_id: str | None = None
    module_name: str | None = None
    region: str | None = None
    runtime_version: str | None = None
    python_version: str | None = None
    scale_tier: str | None = None
    job_dir: str | None = None
    labels: dict[str, str] | None = None
    args: list[str] | None = None
    package_uris: list[str] | None = None


@dataclasses.dataclass
class Checked:
    """The outcome: the completed Job, every violation, warnings and notes (what was filled or overridden)."""

    job: dict[str, Any]
    violations: list[Violation]
    warnings: list[str]
    notes: list[str]

    @property
    def valid(self) -> bool:
        return not self.violations


_TI_FLAGS = (("module_name", "pythonModule"), ("region", "region"), ("runtime_version", "runtimeVersion"),
             ("python_version", "pythonVersion"), ("scale_tier", "scaleTier"), ("job_dir", "jobDir"),
             ("args", "args"), ("package_uris", "packageUris"))


def apply_overrides(job: dict[str, Any], flags: Overrides) -> tuple[dict[str, Any], list[str]]:
    """Apply flags over a parsed Job; returns (new job, notes about replaced values)."""
    out = dict(job)
    notes: list[str] = []
    ti = out.get("trainingInput")
    if not isinstance(ti, dict):
        if ti is not None:
            return out, notes  # a malformed trainingInput is reported by the checks, not papered over
        ti = {}
    ti = dict(ti)
    for attr, field in _TI_FLAGS:
        value = getattr(flags, attr)
        if value is None or (attr == "args" and not value):
            continue
        if field in ti and ti[field] != value:
            notes.append(f"--{attr.replace('_', '-')} replaced trainingInput.{field} from the file ({ti[field]!r})")
        ti[field] = value
    out["trainingInput"] = ti
    if flags.job_id is not None:
        out["jobId"] = flags.job_id
    if flags.labels:
        labels = dict(out.get("labels") or {}) if isinstance(out.get("labels"), dict) else {}
        notes += [f"--labels replaced labels.{k} from the file ({labels[k]!r})" for k, v in flags.labels.items()
                  if k in labels and labels[k] != v]
        labels.update(flags.labels)
        out["labels"] = labels
    return out, notes


def check(parsed: ParsedSpec, defaults: SpecDefaults, derived_job_id: str, policy: Policy,
          flags: Overrides | None = None) -> Checked:
    """Merge, complete and check a parsed spec.

    Args:
        parsed: the parsed job.yaml.
        defaults: what the input and the deployment imply.
        derived_job_id: the jobId to use when neither flags nor file name one.
        policy: the deployment policy.
        flags: CLI overrides, if any.
    Returns:
        Checked; `violations` lists every problem (schema, rules, policy), once per (field, reason).
    """
    job, notes = apply_overrides(parsed.job, flags or Overrides())
    violations = _reserved_labels(job, defaults.labels)
    job, filled = complete(job, defaults, derived_job_id)
    notes += filled
    warnings = list(parsed.warnings)
    ti = job.get("trainingInput")
    if isinstance(ti, dict):
        policy.fill(ti)
    violations += schema.check_job(job, raw_scalars=parsed.raw_scalars)
    findings = rules.check_job(job, defaults.protected_prefixes)
    violations += findings.violations
    warnings += findings.warnings
    if isinstance(ti, dict):
        violations += policy.check(ti)
    return Checked(job=job, violations=unique_violations(violations), warnings=warnings, notes=notes)


def _reserved_labels(job: dict[str, Any], marker: dict[str, str]) -> list[Violation]:
    """The submitter's own label marks its jobs; a spec may not set it to something else."""
    labels = job.get("labels")
    if not isinstance(labels, dict):
        return []
    return [Violation(f"labels.{key}", f"label {key!r} is reserved: the submitter sets it to {value!r} on every job "
                      "it creates (consumers and the reconciler rely on it); use another key", Reason.INVALID_LABELS,
                      labels[key])
            for key, value in marker.items() if key in labels and labels[key] != value]


def check_text(text: bytes | str, filename: str, defaults: SpecDefaults, derived_job_id: str, policy: Policy,
               flags: Overrides | None = None) -> Checked:
    """`parse_job_yaml` then `check`; a parse failure becomes a Checked with its violations."""
    try:
        parsed = parse_job_yaml(text, filename)
    except SpecRejected as exc:
        return Checked(job={}, violations=exc.violations, warnings=[], notes=[])
    return check(parsed, defaults, derived_job_id, policy, flags)
