"""The job spec: parse job.yaml and complete it from what the input and the deployment imply (pure).

The spec is the AI Platform Training `Job` resource (`GoogleCloudMlV1__Job` in the ml v1 discovery
document): `jobId`, `labels`, `trainingInput` (`GoogleCloudMlV1__TrainingInput`), the shape of
`gcloud ai-platform jobs submit training --config`. It may also be a Vertex AI CustomJobSpec or
CustomJob, told apart by its keys (`vertex_spec.detect`; `ParsedSpec.shape` says which): those are
held as `{"labels"?, "customJob": {...}}` and completed and checked by `vertex_spec.py`. Checking is
`validation.py`'s job; this module only reads and completes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from . import vertex_spec
from .errors import SpecRejected
from .reasons import Reason, Violation
from .text import safe_text

# Fields of GoogleCloudMlV1__TrainingInput (ml.v1.json), used to recognise a spec written without the
# `trainingInput:` line (some copies of the docs lost it).
TRAINING_INPUT_FIELDS = frozenset({
    "args", "enableWebAccess", "encryptionConfig", "evaluatorConfig", "evaluatorCount",
    "evaluatorType", "hyperparameters", "jobDir", "masterConfig", "masterType", "network",
    "packageUris", "parameterServerConfig", "parameterServerCount", "parameterServerType",
    "pythonModule", "pythonVersion", "region", "runtimeVersion", "scaleTier", "scheduling",
    "serviceAccount", "useChiefInTfConfig", "workerConfig", "workerCount", "workerType",
})
MAX_NESTING = 64  # a job spec is a few levels deep; deeper documents are refused before construction
MAX_VALUES = 10_000  # scalars and collections in one job.yaml: real specs hold tens to hundreds


# libyaml's C parser when PyYAML was built with it (the wheels are): about ten times faster than the pure-Python
# one. Both are safe loaders: plain data only, no Python objects.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
# (values, depth) each event adds, by exact type: the first pass looks each event up once instead of testing it
# against several classes (that pass was the largest pure-Python cost of parsing a job.yaml). Aliases, and any
# event type not listed, take the isinstance path (`_step`).
_STEPS: dict[type, tuple[int, int]] = {
    yaml.ScalarEvent: (1, 0), yaml.MappingStartEvent: (1, 1), yaml.SequenceStartEvent: (1, 1),
    yaml.MappingEndEvent: (0, -1), yaml.SequenceEndEvent: (0, -1),
    yaml.StreamStartEvent: (0, 0), yaml.StreamEndEvent: (0, 0),
    yaml.DocumentStartEvent: (0, 0), yaml.DocumentEndEvent: (0, 0),
}


class _TreeProblem(Exception):
    pass


class _TooBig(_TreeProblem):
    pass


def _load(text: str) -> tuple[yaml.Node | None, Any]:
    """Compose and construct one YAML document safely: (root node, value).

    First pass over the events (streamed and iterative, so neither depth nor size can exhaust a stack or the
    memory): aliases are refused (a job spec has no use for anchors, and aliases let a 1 KB file expand to
    gigabytes, "billion laughs"), and so are nesting deeper than MAX_NESTING and more than MAX_VALUES values.
    Then the node tree is composed, checked for keys written twice (PyYAML keeps the last silently) and
    constructed.

    Raises:
        yaml.YAMLError: not YAML (with a mark).
        _TreeProblem: an alias, too deep, or a duplicate key.
    """
    depth = values = 0
    events = _LOADER(text)
    try:
        get_event = events.get_event  # None once the stream has ended
        while (event := get_event()) is not None:
            added, nested = _STEPS.get(type(event)) or _step(event)
            if added:
                values += 1
                if values > MAX_VALUES:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise _TooBig(f"holds more than {MAX_VALUES} values (line {line}); a job spec lists its settings, "
                                  "not data: pass data as files (gs:// paths in args)")
            if nested:
                depth += nested
                if depth > MAX_NESTING:
                    raise _TreeProblem(f"nested deeper than {MAX_NESTING} levels")
    finally:
        events.dispose()
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_duplicates(root)
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


def _step(event: yaml.Event) -> tuple[int, int]:
    """(values, depth) an event not in `_STEPS` adds; an alias is refused."""
    if isinstance(event, yaml.AliasEvent):
        line = event.start_mark.line + 1 if event.start_mark else "?"
        raise _TreeProblem(f"line {line}: aliases (*name) are not allowed in job.yaml; write the value out")
    if isinstance(event, _OPEN):
        return 1, 1
    if isinstance(event, yaml.ScalarEvent):
        return 1, 0
    return (0, -1) if isinstance(event, _CLOSE) else (0, 0)


def load_yaml(text: str) -> Any:
    """The value of a YAML document, loaded as `parse_job_yaml` loads it (safe, no aliases, bounded depth)."""
    return _load(text)[1]


def load_yaml_document(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """(root node, value) of a YAML document loaded as `parse_job_yaml` loads it, for files that embed job specs
    (the trigger rules file): `spec_from_document` then reads each embedded Job from its node.

    Raises:
        SpecRejected: YAML_INVALID (with line and column) or SPEC_TOO_LARGE, naming `filename`.
    """
    try:
        return _load(text)
    except _TooBig as exc:
        raise SpecRejected([Violation(filename, str(exc), Reason.SPEC_TOO_LARGE)]) from None
    except _TreeProblem as exc:
        raise SpecRejected([Violation(filename, f"is not valid YAML: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecRejected([Violation(filename, f"is not valid YAML: {_yaml_error_text(exc)}")]) from None


def _yaml_error_text(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return where + (f"{context}, {problem}" if context else problem)


@dataclasses.dataclass
class ParsedSpec:
    """A job.yaml turned into a Job-shaped dict.

    Attributes:
        job: {"jobId"?, "labels"?, "trainingInput": {...}} exactly as written.
        warnings: human-readable notes that do not block submission.
        raw_scalars: source text of plain (unquoted) scalars by dotted field path, so messages can show
            what a number was written as (`runtimeVersion: 2.10` reads as the float 2.1).
    """

    job: dict[str, Any]
    warnings: list[str]
    raw_scalars: dict[str, str] = dataclasses.field(default_factory=dict)
    shape: str = vertex_spec.SHAPE_JOB
    shape_key: str | None = None


def parse_job_yaml(text: bytes | str, filename: str = "job.yaml") -> ParsedSpec:
    """Parse job.yaml (YAML through a safe loader without aliases; JSON is YAML too).

    The document is composed once; raw scalars and duplicate keys are read off the node tree, which is
    then constructed into Python values.

    Args:
        text: the file content (UTF-8).
        filename: used in messages.
    Returns:
        ParsedSpec with the Job resource; TrainingInput fields written at the top level are moved under
        `trainingInput` with a warning. A Vertex-shaped document (a `jobSpec` or `workerPoolSpecs` key) is held
        in the Vertex form (`vertex_spec.to_job`) with its shape.
    Raises:
        SpecRejected: YAML_INVALID (with line and column; also a key written twice in one mapping, naming
            both lines), or SPEC_INVALID when the document is not a mapping.
    """
    def reject(message: str, reason: Reason = Reason.YAML_INVALID, value: Any = None) -> SpecRejected:
        return SpecRejected([Violation(filename, message, reason, value)])

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise reject(f"is not UTF-8 text (byte {exc.start})") from None
    try:
        root, doc = _load(text)
    except _TooBig as exc:
        raise reject(str(exc), Reason.SPEC_TOO_LARGE) from None
    except _TreeProblem as exc:
        raise reject(f"is not valid YAML: {exc}") from None
    except yaml.YAMLError as exc:
        hint = " (unrendered template placeholder?)" if "{{" in text else ""
        raise reject(f"is not valid YAML: {_yaml_error_text(exc)}{hint}") from None
    return spec_from_document(doc, root, filename)


def spec_from_document(doc: Any, root: yaml.Node | None, filename: str = "job.yaml") -> ParsedSpec:
    """A loaded Job document (and its node, for the raw text of plain scalars) as a ParsedSpec: the second half of
    `parse_job_yaml`, shared with job specs embedded in other files (trigger rule templates).

    Raises:
        SpecRejected: SPEC_INVALID when the document is not a mapping, or TrainingInput fields are written both
            at the top level and under trainingInput.
    """
    def reject(message: str, reason: Reason = Reason.YAML_INVALID, value: Any = None) -> SpecRejected:
        return SpecRejected([Violation(filename, message, reason, value)])

    if doc is None:
        raise reject("is empty; write a Job resource with a trainingInput mapping", Reason.SPEC_INVALID)
    if not isinstance(doc, dict):
        raise reject(f"must be a mapping (the Job resource), got {kind_of(doc)}", Reason.SPEC_INVALID, doc)
    shape, shape_key = vertex_spec.detect(doc)
    if shape != vertex_spec.SHAPE_JOB:  # a Vertex AI CustomJobSpec or CustomJob: used as written
        return ParsedSpec(job=vertex_spec.to_job(doc, shape), warnings=[], shape=shape, shape_key=shape_key)
    warnings: list[str] = []
    top_level_input = {k: v for k, v in doc.items() if k in TRAINING_INPUT_FIELDS}
    if top_level_input:
        if "trainingInput" in doc:
            raise SpecRejected([Violation(", ".join(sorted(top_level_input)), "are TrainingInput fields written "
                                          "at the top level next to trainingInput; move them under trainingInput")])
        job = {k: v for k, v in doc.items() if k not in TRAINING_INPUT_FIELDS}
        job["trainingInput"] = top_level_input
        warnings.append("TrainingInput fields were written at the top level (" + ", ".join(sorted(top_level_input))
                        + "); treated as trainingInput. gcloud would have ignored them: nest them under trainingInput.")
    else:
        job = dict(doc)
    prefix = "trainingInput" if top_level_input else ""
    return ParsedSpec(job=job, warnings=warnings, raw_scalars=_raw_scalars(root, prefix))


def _check_duplicates(root: yaml.Node) -> None:
    """Refuse a key written twice in one mapping, naming the key and both lines."""
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        name = safe_text(str(key.value), 100)
                        raise _TreeProblem(f"key {name!r} is written twice in one mapping (lines {seen[key.value]} "
                                           f"and {line}); YAML keeps only the last, so remove one")
                    seen[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _raw_scalars(root: yaml.Node | None, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    stack: list[tuple[yaml.Node, str]] = [(root, prefix)] if root is not None else []
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    stack.append((value, f"{path}.{key.value}" if path else str(key.value)))
        elif isinstance(node, yaml.ScalarNode) and not node.style:  # plain: None (Python parser) or "" (libyaml)
            out[path] = node.value
    return out


REPLICA_CONFIGS = ("masterConfig", "workerConfig", "parameterServerConfig", "evaluatorConfig")


def master_image(ti: Any) -> str | None:
    """The custom container the job runs (`trainingInput.masterConfig.imageUri`), or None.

    A job whose master names an image is a custom-container job: every other replica runs its own
    `imageUri` or, without one, the master's (ml.v1.json workerConfig/parameterServerConfig/evaluatorConfig:
    "If ...imageUri has not been set, AI Platform uses the value of masterConfig.imageUri"), so no replica
    installs a package or runs a pythonModule.
    """
    master = ti.get("masterConfig") if isinstance(ti, dict) else None
    image = master.get("imageUri") if isinstance(master, dict) else None
    return image if isinstance(image, str) and image else None


@dataclasses.dataclass(frozen=True)
class SpecDefaults:
    """What the input (a drop, a trigger batch) and the deployment imply for a spec.

    Attributes:
        package_uris: gs:// URIs of the packages that came with the input, sorted.
        default_job_dir: jobDir to use when the spec sets none (in the outputs bucket).
        region / runtime_version / python_version: deployment defaults.
        labels: labels the submitter adds (its own marker); the marker key is reserved.
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


def complete(job: dict[str, Any], defaults: SpecDefaults, job_id: str) -> tuple[dict[str, Any], list[str]]:
    """Fill what the input and the deployment imply, without replacing anything the user wrote.

    Precedence: the file, then the input (packageUris, jobDir), then deployment defaults (region,
    runtimeVersion, pythonVersion). A custom-container job (`master_image`) gets neither the input's
    packages nor a runtime: its image holds the program. `pythonVersion` and `runtimeVersion` are only
    defaulted together with a missing runtime and no custom container, so an explicit pair is never mixed
    with a default; a runtimeVersion without pythonVersion gets the runtime's newest Python (ml.v1.json
    pythonVersion).

    Args:
        job: the parsed Job dict (not modified).
        defaults: what the input and the deployment imply.
        job_id: the jobId to use when the spec names none.
    Returns:
        (a new Job dict ready for checking, notes saying what was filled).
    """
    from .rules import python_versions_for  # the runtime table is a rule; imported here to keep layers apart

    out = dict(job)
    notes: list[str] = []
    out.setdefault("jobId", job_id)
    labels = out.get("labels")
    if labels is None or isinstance(labels, dict):
        merged = dict(labels or {})
        merged.update(defaults.labels)
        out["labels"] = merged
    ti = out.get("trainingInput")
    if isinstance(ti, dict):
        ti = dict(ti)
        image = master_image(ti)
        if "packageUris" not in ti and defaults.package_uris and image is None:
            ti["packageUris"] = list(defaults.package_uris)
        ti.setdefault("jobDir", defaults.default_job_dir)
        ti.setdefault("region", defaults.region)
        if "runtimeVersion" not in ti and image is None:
            ti["runtimeVersion"] = defaults.runtime_version
            ti.setdefault("pythonVersion", defaults.python_version)
        runtime = ti.get("runtimeVersion")
        if isinstance(runtime, str) and "pythonVersion" not in ti and python_versions_for(runtime):
            ti["pythonVersion"] = python_versions_for(runtime)[0]
            notes.append(f"pythonVersion {ti['pythonVersion']} filled from runtimeVersion {runtime}")
        ti.setdefault("scaleTier", "BASIC")
        out["trainingInput"] = ti
    return out, notes


def kind_of(value: Any) -> str:
    """A YAML-reader's word for a value's type: boolean, integer, number, string, list, mapping, nothing."""
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
            type(None): "nothing"}.get(type(value), type(value).__name__)
