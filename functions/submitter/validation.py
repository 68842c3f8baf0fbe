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

from . import rules, schema, vertex_spec
from .errors import SpecRejected
from .policy import Policy
from .reasons import Reason, Violation, unique_violations
from .spec import ParsedSpec, SpecDefaults, complete, parse_job_yaml


@dataclasses.dataclass(frozen=True)
class Overrides:
    """The flags of `gcloud ai-platform jobs submit training`, parsed; None means "not given".

    Each sets one field of the Job (`_FLAG_FIELDS`), as gcloud's BuildTrainingJob does, except where gcloud
    loses data: `labels` are merged key by key over the file's labels (gcloud's `--labels` replaces them all);
    `args` replaces the file's args only when non-empty (gcloud wipes them on an empty `--`); `package_uris`
    replaces packageUris only when given (gcloud wipes config-only packageUris); `enable_web_access` None
    keeps the file's value (gcloud writes false over it). Accelerators are {"type", "count"} mappings.
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
    master_type: str | None = None
    master_accelerator: dict[str, Any] | None = None
    master_image_uri: str | None = None
    worker_type: str | None = None
    worker_count: int | None = None
    worker_accelerator: dict[str, Any] | None = None
    worker_image_uri: str | None = None
    parameter_server_type: str | None = None
    parameter_server_count: int | None = None
    parameter_server_accelerator: dict[str, Any] | None = None
    parameter_server_image_uri: str | None = None
    use_chief_in_tf_config: bool | None = None
    service_account: str | None = None
    kms_key_name: str | None = None
    enable_web_access: bool | None = None


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


# (Overrides attribute, gcloud flag, path under trainingInput). Source: BuildTrainingJob's additional_fields and
# TrainingCustomInputServerConfig.GetFieldMap in the Cloud SDK (api_lib/ml_engine/jobs.py, command_lib/ml_engine).
_FLAG_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("module_name", "--module-name", ("pythonModule",)),
    ("args", "--", ("args",)),
    ("package_uris", "--packages", ("packageUris",)),
    ("region", "--region", ("region",)),
    ("job_dir", "--job-dir", ("jobDir",)),
    ("scale_tier", "--scale-tier", ("scaleTier",)),
    ("runtime_version", "--runtime-version", ("runtimeVersion",)),
    ("python_version", "--python-version", ("pythonVersion",)),
    ("service_account", "--service-account", ("serviceAccount",)),
    ("enable_web_access", "--enable-web-access", ("enableWebAccess",)),
    ("kms_key_name", "--kms-key", ("encryptionConfig", "kmsKeyName")),
    ("master_type", "--master-machine-type", ("masterType",)),
    ("master_image_uri", "--master-image-uri", ("masterConfig", "imageUri")),
    ("master_accelerator", "--master-accelerator", ("masterConfig", "acceleratorConfig")),
    ("worker_type", "--worker-machine-type", ("workerType",)),
    ("worker_count", "--worker-count", ("workerCount",)),
    ("worker_image_uri", "--worker-image-uri", ("workerConfig", "imageUri")),
    ("worker_accelerator", "--worker-accelerator", ("workerConfig", "acceleratorConfig")),
    ("parameter_server_type", "--parameter-server-machine-type", ("parameterServerType",)),
    ("parameter_server_count", "--parameter-server-count", ("parameterServerCount",)),
    ("parameter_server_image_uri", "--parameter-server-image-uri", ("parameterServerConfig", "imageUri")),
    ("parameter_server_accelerator", "--parameter-server-accelerator", ("parameterServerConfig", "acceleratorConfig")),
    ("use_chief_in_tf_config", "--use-chief-in-tf-config", ("useChiefInTfConfig",)),
)


def apply_overrides(job: dict[str, Any], flags: Overrides) -> tuple[dict[str, Any], list[str]]:
    """Apply flags over a parsed Job; returns (new job, notes about replaced values). The input is not modified.

    A flag sets its field and nothing else: `--master-image-uri` replaces masterConfig.imageUri and keeps the
    file's masterConfig.acceleratorConfig; an accelerator flag sets acceleratorConfig's type and count (gcloud
    sets both, keeping nothing else of it). A malformed container on the path (trainingInput or a replica config
    that is not a mapping) is left for the checks to report.
    """
    out = dict(job)
    notes: list[str] = []
    ti = out.get("trainingInput")
    if not isinstance(ti, dict):
        if ti is not None:
            return out, notes  # a malformed trainingInput is reported by the checks, not papered over
        ti = {}
    ti = dict(ti)
    for attr, flag, path in _FLAG_FIELDS:
        value = getattr(flags, attr)
        if value is None or (attr == "args" and not value):
            continue
        parent = ti
        for key in path[:-1]:
            child = parent.get(key)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                break
            parent[key] = child = dict(child)
            parent = child
        else:
            field = path[-1]
            if field in parent and parent[field] != value:
                notes.append(f"{flag} replaced trainingInput.{'.'.join(path)} from the file ({parent[field]!r})")
            parent[field] = dict(value) if isinstance(value, dict) else value
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
    if vertex_spec.is_vertex(parsed.job):
        return _check_vertex(parsed, defaults, derived_job_id, policy, flags)
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


def _check_vertex(parsed: ParsedSpec, defaults: SpecDefaults, derived_job_id: str, policy: Policy,
                  flags: Overrides | None) -> Checked:
    """`check` for a Vertex-shaped spec (`vertex_spec.py`): used as written, with the submitter's additions.

    Of the flags only `--job-id` and `--labels` apply; any other (a gcloud ai-platform flag sets a TrainingInput
    field, which a CustomJobSpec does not have) is a violation saying so.
    """
    job = dict(parsed.job)
    notes = [f"job.yaml is a Vertex AI {parsed.shape} (recognised by its {parsed.shape_key} key): it is checked "
             "against aiplatform v1 and runs as written on the Vertex AI backend (the ml v1 backend refuses it)"]
    violations: list[Violation] = []
    for field in dataclasses.fields(Overrides):
        value = getattr(flags, field.name) if flags is not None else None
        if value is None or value == [] or field.name in ("job_id", "labels"):
            continue
        flag = next((f for attr, f, _ in _FLAG_FIELDS if attr == field.name), field.name)
        violations.append(Violation(flag, f"{flag} sets a TrainingInput field, which a Vertex AI {parsed.shape} does "
                                    "not have: write the setting in job.yaml (the CustomJob's own field)",
                                    Reason.SPEC_INVALID, value))
    if flags is not None and flags.job_id is not None:
        job["jobId"] = flags.job_id
    if flags is not None and flags.labels:
        job["labels"] = {**(job.get("labels") or {}), **flags.labels} if isinstance(job.get("labels") or {}, dict) \
            else job.get("labels")
    violations += _reserved_labels(job, defaults.labels)
    job, filled = vertex_spec.complete(job, job_id=derived_job_id, labels=defaults.labels,
                                       default_output_dir=defaults.default_job_dir,
                                       drop_packages=defaults.package_uris)
    spec = job["customJob"].get("jobSpec")
    if isinstance(spec, dict):
        policy.fill_vertex(spec)
        violations += policy.check_vertex(spec, region=defaults.region)
    violations = vertex_spec.check(job, defaults.protected_prefixes) + violations
    return Checked(job=job, violations=unique_violations(violations), warnings=list(parsed.warnings),
                   notes=notes + filled)


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
