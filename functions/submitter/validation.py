"""One pipeline from job.yaml text to a checked Job: parse, merge, complete, check (pure).

The Cloud Function and `submitter validate` / `submitter submit` run exactly
this code, so a spec that validates offline is the spec the function submits.

Precedence, highest first: explicit flags (CLI only), the file, what the drop
implies (packageUris, default jobDir), deployment defaults (region,
runtimeVersion, pythonVersion), then the policy's maxRunningTime cap. Nothing
the user wrote is dropped silently: a flag that replaces a value from the file
produces a note saying so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import rules, schema
from .policy import Policy
from .spec import DropContext, ParsedSpec, SpecRejected, Violation, check_essentials, complete, parse_job_yaml


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
             ("python_version", "pythonVersion"), ("scale_tier", "scaleTier"), ("job_dir", "jobDir"))


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
    pairs = list(_TI_FLAGS) + [("args", "args"), ("package_uris", "packageUris")]
    for attr, field in pairs:
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


def check(parsed: ParsedSpec, ctx: DropContext, derived_job_id: str, policy: Policy,
          flags: Overrides | None = None) -> Checked:
    """Merge, complete and check a parsed spec.

    Args:
        parsed: the parsed job.yaml.
        ctx: what the drop and the deployment imply.
        derived_job_id: the jobId to use when neither flags nor file name one.
        policy: the deployment policy.
        flags: CLI overrides, if any.
    Returns:
        Checked; `violations` lists every problem (schema, essentials, semantic rules, policy),
        one per field path.
    """
    job, notes = apply_overrides(parsed.job, flags or Overrides())
    job = complete(job, ctx, derived_job_id)
    warnings = list(parsed.warnings)
    ti = job.get("trainingInput")
    if isinstance(ti, dict):
        runtime = ti.get("runtimeVersion")
        if isinstance(runtime, str) and "pythonVersion" not in ti and rules.python_versions_for(runtime):
            ti["pythonVersion"] = rules.python_versions_for(runtime)[0]
            notes.append(f"pythonVersion {ti['pythonVersion']} filled from runtimeVersion {runtime}")
        policy.fill(ti)
    # The schema and the essential checks overlap (types of args, versions, labels): one message per field.
    violations = _one_per_field(check_essentials(job, parsed.raw_scalars)
                                + schema.check_job(job, raw_scalars=parsed.raw_scalars))
    if isinstance(ti, dict):
        job_dir = ti.get("jobDir")
        if isinstance(job_dir, str):
            violations += _protected_job_dir(job_dir, ctx.protected_prefixes)
        findings = rules.check_training_input(ti)
        taken = {(v.field, v.reason) for v in violations}
        # Semantic rules and policy say different things about the same field (an A100 on n1 *and* A100 not
        # allowed): keep both, so one pass lists everything to fix.
        violations += [v for v in findings.violations + policy.check(ti) if (v.field, v.reason) not in taken]
        warnings += findings.warnings
    return Checked(job=job, violations=violations, warnings=warnings, notes=notes)


def _protected_job_dir(job_dir: str, protected: tuple[str, ...]) -> list[Violation]:
    path = job_dir.rstrip("/") + "/"
    for prefix in protected:
        if path.startswith(prefix):
            return [Violation("trainingInput.jobDir", f"{job_dir} is inside {prefix}, where training outputs would "
                              "look like new drops or overwrite the submitter's records; use the outputs bucket "
                              "(or leave jobDir out to get the default)", value=job_dir)]
    return []


def check_text(text: bytes | str, filename: str, ctx: DropContext, derived_job_id: str, policy: Policy,
               flags: Overrides | None = None) -> Checked:
    """`parse_job_yaml` then `check`; a parse failure becomes a Checked with its violations."""
    try:
        parsed = parse_job_yaml(text, filename)
    except SpecRejected as exc:
        return Checked(job={}, violations=exc.violations, warnings=[], notes=[])
    return check(parsed, ctx, derived_job_id, policy, flags)


def _one_per_field(violations: list[Violation]) -> list[Violation]:
    """Keep the first violation for each field path (earlier layers give the more precise message)."""
    seen: set[str] = set()
    out = []
    for v in violations:
        if v.field in seen:
            continue
        seen.add(v.field)
        out.append(v)
    return out
