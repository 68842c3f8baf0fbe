"""The job spec: parse job.yaml, complete it from the drop and the deployment, check it (pure).

The spec is the AI Platform Training `Job` resource (`GoogleCloudMlV1__Job` in
the ml v1 discovery document): `jobId`, `labels`, `trainingInput`
(`GoogleCloudMlV1__TrainingInput`), the same shape as
`gcloud ai-platform jobs submit training --config`. This module holds the
essential checks; every violation is collected, each with its field path,
the offending value and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable

import yaml

from . import naming

# Fields of GoogleCloudMlV1__TrainingInput (ml.v1.json), used to recognise a
# spec written without the `trainingInput:` line (some copies of the docs lost it).
TRAINING_INPUT_FIELDS = frozenset({
    "args", "enableWebAccess", "encryptionConfig", "evaluatorConfig", "evaluatorCount",
    "evaluatorType", "hyperparameters", "jobDir", "masterConfig", "masterType", "network",
    "packageUris", "parameterServerConfig", "parameterServerCount", "parameterServerType",
    "pythonModule", "pythonVersion", "region", "runtimeVersion", "scaleTier", "scheduling",
    "serviceAccount", "useChiefInTfConfig", "workerConfig", "workerCount", "workerType",
})
JOB_FIELDS = frozenset({"jobId", "labels", "trainingInput", "etag", "predictionInput"})

DOTTED_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# GCP label rules: https://cloud.google.com/resource-manager/docs/creating-managing-labels
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}")
TEMPLATE_RE = re.compile(r"\{\{.*?\}\}|\{[A-Za-z_][A-Za-z0-9_]*\}|<[A-Za-z_][A-Za-z0-9_ -]*>")


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases.

    A job spec has no use for anchors, and aliases let a 1 KB file expand to gigabytes
    ("billion laughs"), so an alias is a parse error here.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in job.yaml; write the "
                                              "value out", event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str):
    """`yaml.load` with SpecLoader (safe, no aliases)."""
    return yaml.load(text, Loader=SpecLoader)  # noqa: S506 - SpecLoader is a SafeLoader subclass


class Reason:
    """Machine-readable reasons carried by REJECTED and SUBMIT_FAILED events."""

    YAML_INVALID = "YAML_INVALID"
    SPEC_INVALID = "SPEC_INVALID"
    INVALID_JOB_ID = "INVALID_JOB_ID"
    INVALID_LABELS = "INVALID_LABELS"
    TEMPLATE_UNRENDERED = "TEMPLATE_UNRENDERED"
    PACKAGE_INVALID = "PACKAGE_INVALID"
    MODULE_NOT_IN_PACKAGE = "MODULE_NOT_IN_PACKAGE"
    SPEC_TOO_LARGE = "SPEC_TOO_LARGE"


@dataclasses.dataclass(frozen=True)
class Violation:
    """One problem in a spec or package.

    Attributes:
        field: dotted path in the Job resource, e.g. "trainingInput.args[1]", or a file name.
        message: what is wrong and how to fix it.
        reason: one of `Reason`.
        value: the offending value, as written (None when absent).
    """

    field: str
    message: str
    reason: str = Reason.SPEC_INVALID
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form used in events and status objects."""
        out = {"field": self.field, "message": self.message, "reason": self.reason}
        if self.value is not None:
            value = self.value if isinstance(self.value, (int, float, bool)) else (
                self.value if isinstance(self.value, str) else repr(self.value))
            out["value"] = value[:200] + "…" if isinstance(value, str) and len(value) > 200 else value
        return out


class SpecRejected(Exception):
    """The spec or package cannot be submitted.

    Attributes:
        violations: every problem found (at least one).
        reason: the reason of the first violation, used as the event's `reason`.
    """

    def __init__(self, violations: Iterable[Violation]):
        self.violations = list(violations)
        if not self.violations:
            raise ValueError("SpecRejected needs at least one violation")
        self.reason = self.violations[0].reason
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in self.violations))


@dataclasses.dataclass
class ParsedSpec:
    """A job.yaml turned into a Job-shaped dict.

    Attributes:
        job: {"jobId"?, "labels"?, "trainingInput": {...}} exactly as written.
        warnings: human-readable notes that do not block submission.
    """

    job: dict[str, Any]
    warnings: list[str]
    raw_scalars: dict[str, str] = dataclasses.field(default_factory=dict)


def parse_job_yaml(text: bytes | str, filename: str = "job.yaml") -> ParsedSpec:
    """Parse job.yaml (YAML through a safe loader without aliases; JSON is YAML too).

    Args:
        text: the file content (UTF-8).
        filename: used in messages.
    Returns:
        ParsedSpec with the Job resource; TrainingInput fields written at the top
        level are moved under `trainingInput` with a warning.
    Raises:
        SpecRejected: YAML_INVALID (with line and column), or SPEC_INVALID when the
            document is not a mapping.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecRejected([Violation(filename, f"is not UTF-8 text (byte {exc.start})", Reason.YAML_INVALID)])
    try:
        doc = load_yaml(text)
    except RecursionError:
        raise SpecRejected([Violation(filename, "is not valid YAML: nested too deeply", Reason.YAML_INVALID)])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        hint = " (unrendered template placeholder?)" if "{{" in text else ""
        raise SpecRejected([Violation(filename, f"is not valid YAML: {where}{detail}{hint}", Reason.YAML_INVALID)])
    if doc is None:
        raise SpecRejected([Violation(filename, "is empty; write a Job resource with a trainingInput mapping",
                                      Reason.SPEC_INVALID)])
    if not isinstance(doc, dict):
        raise SpecRejected([Violation(filename, f"must be a mapping (the Job resource), got {_kind(doc)}",
                                      Reason.SPEC_INVALID, doc)])
    warnings: list[str] = []
    top_level_input = {k: v for k, v in doc.items() if k in TRAINING_INPUT_FIELDS}
    if top_level_input:
        if "trainingInput" in doc:
            fields = ", ".join(sorted(top_level_input))
            raise SpecRejected([Violation(fields, "are TrainingInput fields written at the top level next to "
                                          "trainingInput; move them under trainingInput", Reason.SPEC_INVALID)])
        job = {k: v for k, v in doc.items() if k not in TRAINING_INPUT_FIELDS}
        job["trainingInput"] = top_level_input
        warnings.append("TrainingInput fields were written at the top level ("
                        + ", ".join(sorted(top_level_input))
                        + "); treated as trainingInput. gcloud would have ignored them: nest them under trainingInput.")
    else:
        job = dict(doc)
    return ParsedSpec(job=job, warnings=warnings, raw_scalars=_raw_numeric_scalars(text, bool(top_level_input)))


def _raw_numeric_scalars(text: str, top_level_input: bool) -> dict[str, str]:
    """Source text of plain (unquoted) scalars under trainingInput, by field path.

    YAML 1.1 turns `2.10` into the float 2.1; the source text is what the user
    meant, so messages can show the quoted form they should write.
    """
    out: dict[str, str] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    walk(value, f"{path}.{key.value}" if path else key.value)
        elif isinstance(node, yaml.ScalarNode) and node.style is None:
            out[path] = node.value

    root = yaml.compose(text, Loader=SpecLoader)
    if root is not None:
        walk(root, "trainingInput" if top_level_input else "")
    return out


@dataclasses.dataclass(frozen=True)
class DropContext:
    """What the drop and the deployment imply for a spec.

    Attributes:
        package_uris: gs:// URIs of the packages in the drop, sorted.
        default_job_dir: jobDir to use when the spec sets none (in the outputs bucket).
        region / runtime_version / python_version: deployment defaults.
        labels: labels the submitter adds (its own marker); user labels win on clashes
            except for the marker key, which is reserved.
        protected_prefixes: gs:// prefixes a jobDir must not point into (the drop area, the state
            bucket): training outputs there would look like new drops or overwrite the submitter's records.
    """

    package_uris: tuple[str, ...]
    default_job_dir: str
    region: str
    runtime_version: str
    python_version: str
    labels: dict[str, str]
    protected_prefixes: tuple[str, ...] = ()


def complete(job: dict[str, Any], ctx: DropContext, job_id: str) -> dict[str, Any]:
    """Fill what the drop and the deployment imply, without replacing anything the user wrote.

    Precedence: the file, then the drop (packageUris, jobDir), then deployment
    defaults (region, runtimeVersion, pythonVersion). `pythonVersion` and
    `runtimeVersion` are only defaulted together with a missing runtime and no
    custom container, so an explicit pair is never mixed with a default.

    Args:
        job: the parsed Job dict (not modified).
        ctx: drop context.
        job_id: the jobId to use when the spec names none.
    Returns:
        A new Job dict ready for checking and `jobs.create`.
    """
    out = dict(job)
    ti = dict(out.get("trainingInput") or {}) if isinstance(out.get("trainingInput"), dict) else out.get("trainingInput")
    out.setdefault("jobId", job_id)
    labels = out.get("labels")
    if labels is None or isinstance(labels, dict):
        merged = dict(labels or {})
        merged.update(ctx.labels)
        out["labels"] = merged
    if isinstance(ti, dict):
        if "packageUris" not in ti and ctx.package_uris:
            ti["packageUris"] = list(ctx.package_uris)
        ti.setdefault("jobDir", ctx.default_job_dir)
        ti.setdefault("region", ctx.region)
        master = ti.get("masterConfig") if isinstance(ti.get("masterConfig"), dict) else {}
        if "runtimeVersion" not in ti and not master.get("imageUri"):
            ti["runtimeVersion"] = ctx.runtime_version
            ti.setdefault("pythonVersion", ctx.python_version)
        ti.setdefault("scaleTier", "BASIC")
        out["trainingInput"] = ti
    return out


def check_essentials(job: dict[str, Any], raw_scalars: dict[str, str] | None = None) -> list[Violation]:
    """Essential checks on a completed Job; returns every violation (empty = fine).

    Rules and sources (ml v1 discovery document field descriptions):
      - jobId: letters, digits, underscores, starts with a letter, <= 128 chars.
      - trainingInput: required mapping; pythonModule required, a dotted module name
        run as `python -m`; runtimeVersion/pythonVersion strings (YAML numbers lose digits).
      - args: a list of strings; `--` is gcloud CLI syntax, not an argument.
      - packageUris: gs:// URIs, at most 100.
      - jobDir: gs://bucket/path.
      - labels: GCP label syntax (lowercase keys starting with a letter, <= 63 chars, <= 64 labels).
      - no unrendered template placeholders in strings.

    Args:
        job: the completed Job dict.
        raw_scalars: source text of unquoted scalars by field path (from `parse_job_yaml`),
            used to show what a number was written as.
    """
    raw_scalars = raw_scalars or {}
    v: list[Violation] = []
    job_id = job.get("jobId")
    if not naming.is_valid_job_id(job_id):
        v.append(Violation("jobId", f"{job_id!r} is not a valid jobId: {naming.JOB_ID_RULE}. Rename it, or "
                           "remove jobId to let the submitter derive one from the drop", Reason.INVALID_JOB_ID, job_id))
    ti = job.get("trainingInput")
    if not isinstance(ti, dict):
        v.append(Violation("trainingInput", f"must be a mapping of TrainingInput fields, got {_kind(ti)}",
                           Reason.SPEC_INVALID, ti))
        return v + _check_labels(job.get("labels"))
    v += _check_templates(ti, "trainingInput")
    module = ti.get("pythonModule")
    if module is None:
        if not _image_uri(ti):
            v.append(Violation("trainingInput.pythonModule", "is required: the dotted module to run with "
                               "`python -m`, e.g. trainer.task"))
    elif not isinstance(module, str) or not DOTTED_MODULE_RE.fullmatch(module):
        hint = ""
        if isinstance(module, str) and (module.endswith(".py") or "/" in module):
            hint = f" (write {module.removesuffix('.py').replace('/', '.')!r})"
        v.append(Violation("trainingInput.pythonModule", f"must be a dotted module name, got {module!r}{hint}",
                           Reason.SPEC_INVALID, module))
    for field in ("runtimeVersion", "pythonVersion"):
        value = ti.get(field)
        if value is not None and not isinstance(value, str):
            quoted = '"%s"' % raw_scalars.get(f"trainingInput.{field}", value)
            v.append(Violation(f"trainingInput.{field}", f"must be a quoted string; YAML read {_kind(value)} "
                               f"{value!r} (write {field}: {quoted}; an unquoted 2.10 is read as 2.1)",
                               Reason.SPEC_INVALID, value))
    if ti.get("runtimeVersion") is not None and _image_uri(ti):
        v.append(Violation("trainingInput.runtimeVersion", "runtimeVersion and masterConfig.imageUri are "
                           "mutually exclusive; keep one"))
    v += _check_args(ti.get("args"))
    if ti.get("jobDir") and isinstance(ti.get("args"), list):
        for i, item in enumerate(ti["args"]):
            if isinstance(item, str) and (item == "--job-dir" or item.startswith("--job-dir=")):
                v.append(Violation(f"trainingInput.args[{i}]", "passes --job-dir, but the service passes jobDir to "
                                   "the trainer as --job-dir itself (it would arrive twice and the last one wins); "
                                   "remove it from args and set trainingInput.jobDir", Reason.SPEC_INVALID, item))
    uris = ti.get("packageUris")
    if uris is not None:
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            v.append(Violation("trainingInput.packageUris", "must be a list of gs:// URIs", value=uris))
        else:
            if len(uris) > 100:
                v.append(Violation("trainingInput.packageUris", f"has {len(uris)} entries; at most 100 are allowed"))
            for i, uri in enumerate(uris):
                if not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]/.+", uri):
                    v.append(Violation(f"trainingInput.packageUris[{i}]", f"{uri!r} is not a gs://bucket/object URI",
                                       value=uri))
    job_dir = ti.get("jobDir")
    if job_dir is not None and (not isinstance(job_dir, str)
                                or not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?", job_dir)):
        v.append(Violation("trainingInput.jobDir", f"must be gs://<bucket>/<path> with a valid bucket name, "
                           f"got {job_dir!r}", Reason.SPEC_INVALID, job_dir))
    region = ti.get("region")
    if region is not None and (not isinstance(region, str) or not re.fullmatch(r"[a-z]+-[a-z]+\d+", region)):
        v.append(Violation("trainingInput.region", f"must be a region name like us-central1, got {region!r}",
                           value=region))
    return v + _check_labels(job.get("labels"))


def _image_uri(ti: dict[str, Any]) -> Any:
    master = ti.get("masterConfig")
    return master.get("imageUri") if isinstance(master, dict) else None


def _check_args(args: Any) -> list[Violation]:
    if args is None:
        return []
    if not isinstance(args, list):
        return [Violation("trainingInput.args", f"must be a list of strings, got {_kind(args)} {args!r}; write "
                          "args: [\"--epochs\", \"3\"]", Reason.SPEC_INVALID, args)]
    out = []
    for i, item in enumerate(args):
        field = f"trainingInput.args[{i}]"
        if not isinstance(item, str):
            out.append(Violation(field, f"must be a string (got {_kind(item)} {item!r}); quote it",
                                 Reason.SPEC_INVALID, item))
        elif item == "--":
            out.append(Violation(field, "'--' is gcloud CLI syntax; remove it from args"))
        elif item.strip() == "\\":
            out.append(Violation(field, "is a bare backslash (a shell line continuation); remove it"))
    return out


def _check_templates(value: Any, path: str) -> list[Violation]:
    """Strings that still hold `{{...}}`, `{name}` or `<placeholder>` after a skipped templating step."""
    if isinstance(value, str):
        if TEMPLATE_RE.search(value):
            return [Violation(path, f"holds an unrendered template placeholder: {value!r}; render the "
                              "template before dropping", Reason.TEMPLATE_UNRENDERED, value)]
        return []
    if isinstance(value, dict):
        return [x for k, item in value.items() for x in _check_templates(item, f"{path}.{k}")]
    if isinstance(value, list):
        return [x for i, item in enumerate(value) for x in _check_templates(item, f"{path}[{i}]")]
    return []


def _check_labels(labels: Any) -> list[Violation]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [Violation("labels", f"must be a mapping of strings, got {_kind(labels)}", Reason.INVALID_LABELS,
                          labels)]
    out = []
    if len(labels) > 64:
        out.append(Violation("labels", f"has {len(labels)} labels; at most 64", Reason.INVALID_LABELS))
    for key, value in labels.items():
        field = f"labels.{key}"
        if not isinstance(key, str) or not LABEL_KEY_RE.fullmatch(key):
            out.append(Violation(field, "label keys are lowercase letters, digits, '_' and '-', start with a "
                                 "letter, at most 63 characters", Reason.INVALID_LABELS, key))
        if not isinstance(value, str):
            out.append(Violation(field, f"must be a string, YAML read {_kind(value)} {value!r} (quote it: "
                                 "NO, on and yes are booleans in YAML)", Reason.INVALID_LABELS, value))
        elif not LABEL_VALUE_RE.fullmatch(value):
            out.append(Violation(field, f"value {value!r} may only hold lowercase letters, digits, '_' and '-' "
                                 "(at most 63 characters)", Reason.INVALID_LABELS, value))
    return out


def _kind(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
            type(None): "nothing"}.get(type(value), type(value).__name__)


def normalize_training_input(ti: dict[str, Any]) -> dict[str, Any]:
    """A comparable form of a TrainingInput, as the server echoes it.

    The service drops empty fields (`args: []`), echoes int64 fields as strings,
    treats a missing scaleTier as BASIC, and adds output-only or defaulted fields
    that a spec never sets. Used to decide whether an existing job with our jobId
    is the one we meant to create (409 handling).
    """
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items() if not _empty(v)}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return str(value) if float(value) != int(value) else str(int(value))
        return value

    out = norm(ti if isinstance(ti, dict) else {})
    out.setdefault("scaleTier", "BASIC")
    return out


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""
