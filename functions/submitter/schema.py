"""Schema checks of a Job, derived at runtime from the ml v1 discovery document (pure).

Source of truth: `googleapiclient/discovery_cache/documents/ml.v1.json`, bundled with
google-api-python-client (a runtime dependency, so it ships with the function). It is read
once, lazily, on first use; nothing here copies its field lists or enums.

The same walker checks other documents bundled with the client: a `Document` names the file, the root
schema and the schema-name prefix. `ML_V1` (the default of every function here) is the ml v1 Job;
`AIPLATFORM_V1` is Vertex AI's `GoogleCloudAiplatformV1CustomJob` in `aiplatform.v1.json`, which the
Vertex backend checks its translated CustomJob against (`check_custom_job`).

`check_job(job)` walks a Job dict against `GoogleCloudMlV1__Job`, following `$ref`s
(TrainingInput, ReplicaConfig, AcceleratorConfig, DiskConfig, Scheduling,
HyperparameterSpec, ParameterSpec, EncryptionConfig, PredictionInput, ...), and reports:

  - unknown field names, with a suggestion: the camelCase name for a snake_case (or
    otherwise re-cased) spelling, the place where the field belongs when it exists one or
    two levels down (e.g. `maxWaitTime` written directly in trainingInput belongs under
    `trainingInput.scheduling`), else the closest names (difflib);
  - values of the wrong type, per the document's `type` / `format`;
  - enum values not in the document's `enum`;
  - output-only fields set by the user.

Required-ness is not enforced here: "Required" only appears in descriptions and the service
does not honour it literally (a missing `scaleTier` means BASIC); the semantic layer
(`spec`) decides what must be present.

Decisions (each also stated where it is applied):

  - snake_case field names are rejected, with the camelCase name as the fix. The real
    service parses proto JSON, which also accepts `python_module`, but the rest of this
    project reads camelCase keys only, so a snake_case key would be silently ignored by our
    own checks and defaults.
  - YAML null (`masterType:` with nothing after it) is rejected: the service would treat
    it as unset, which is rarely what the author meant; write a value or remove the line.
  - int64 (`type: string, format: int64`, e.g. `workerCount`, `acceleratorConfig.count`):
    an int, or a decimal-integer string such as "2" (the service itself echoes int64 as
    strings); never a bool, a float (even 2.0) or any other string. Range: int64.
  - int32 (`type: integer`, e.g. `maxTrials`, `scheduling.priority`): an int only (not a
    bool, not a string: the service echoes these as JSON numbers). Range: int32.
  - double (`type: number`, e.g. `minValue`): an int or a finite float only (YAML
    numbers); strings are rejected with the fix, including PyYAML's `1e-5`, which YAML 1.1
    reads as a *string* (write `1.0e-5`).
  - google-duration (`scheduling.maxWaitTime`, `maxRunningTime`): a string of decimal
    seconds with an `s` suffix and at most nine fractional digits (`"1800s"`, `"3.5s"`); a
    number or `"30m"` is rejected with the converted value as the fix.
  - byte (`etag`): base64 text.
  - enum placeholders: a value ending in `_UNSPECIFIED` (the API design guide's zero
    value, AIP-126) is rejected, with the document's description of it ("Default to no
    GPU", ...) and the real values; placeholders are never suggested.
  - output only: a field whose description says "Output only" or that is `readOnly`, or
    whose referenced schema's description says "Output only" (Job.trainingOutput). The
    document does not mark `Job.predictionOutput` output-only, so it is not reported here.
  - `etag` and `predictionInput` are fields of Job and pass the schema check; whether a
    training submission may carry them is a semantic question.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import functools
import importlib.resources
import json
import math
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from .reasons import Reason, Violation
from .rules import TEMPLATE_RE as _TEMPLATE_RE

DOCUMENT_PACKAGE = "googleapiclient"
DOCUMENT_PATH = "discovery_cache/documents/ml.v1.json"
JOB_SCHEMA = "GoogleCloudMlV1__Job"
SCHEMA_PREFIX = "GoogleCloudMlV1__"


@dataclasses.dataclass(frozen=True)
class Document:
    """A discovery document bundled with google-api-python-client, and the schema a check starts from.

    Attributes:
        path: the document inside the `googleapiclient` package ("discovery_cache/documents/ml.v1.json").
        root: the schema `check` walks from ("GoogleCloudMlV1__Job").
        prefix: the schema-name prefix short names omit ("GoogleCloudMlV1__": "TrainingInput" is accepted
            for "GoogleCloudMlV1__TrainingInput", and messages say "TrainingInput").
        label: how messages name the document ("ml v1").
    """

    path: str
    root: str
    prefix: str
    label: str

    def load(self) -> dict[str, Any]:
        """The parsed document (parsed once per path and cached; treat it as read-only)."""
        return _load_document(self.path)


ML_V1 = Document(DOCUMENT_PATH, JOB_SCHEMA, SCHEMA_PREFIX, "ml v1")
AIPLATFORM_V1 = Document("discovery_cache/documents/aiplatform.v1.json", "GoogleCloudAiplatformV1CustomJob",
                         "GoogleCloudAiplatformV1", "aiplatform v1")

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration limit (10,000 years)
_DURATION_RE = re.compile(r"(\d+)(?:\.(\d+))?s")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
                   "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600,
                   "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_DURATION_PART_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)")
_DECIMAL_INT_RE = re.compile(r"[+-]?\d+")
_YAML11_EXP_RE = re.compile(r"([+-]?\d+)([eE][+-]?\d+)")
_DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_PLACEHOLDER_SUFFIX = "_UNSPECIFIED"
MAX_REPORTS = 1000  # violations listed for one spec; the walk stops there


# -- the document ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _load_document(path: str) -> dict[str, Any]:
    ref = importlib.resources.files(DOCUMENT_PACKAGE).joinpath(path)
    doc: dict[str, Any] = json.loads(ref.read_text(encoding="utf-8"))
    return doc


def document(doc: Document = ML_V1) -> dict[str, Any]:
    """The ml v1 discovery document, parsed once and cached (treat it as read-only).

    Returns:
        The JSON object of `googleapiclient/discovery_cache/documents/ml.v1.json`:
        {"name": "ml", "version": "v1", "revision": ..., "schemas": {name: schema}, ...}.
        A schema is {"id", "type": "object", "description", "properties": {field: property}};
        a property has "type" ("string", "integer", "number", "boolean", "array", "object",
        "any") and optional "format", "enum", "enumDescriptions", "items",
        "additionalProperties", "readOnly", "description", or just "$ref" (a schema name).
        With `doc`, that document instead (e.g. `AIPLATFORM_V1`).
    """
    return doc.load()


def _schemas(doc: Document = ML_V1) -> dict[str, Any]:
    schemas: dict[str, Any] = doc.load()["schemas"]
    return schemas


def _schema_name(name: str, doc: Document = ML_V1) -> str:
    """Full schema name; "TrainingInput" is accepted for "GoogleCloudMlV1__TrainingInput"."""
    schemas = _schemas(doc)
    if name in schemas:
        return name
    if doc.prefix + name in schemas:
        return doc.prefix + name
    raise KeyError(f"no schema {name!r} in the {doc.label} discovery document")


def _short(schema_name: str, doc: Document = ML_V1) -> str:
    return re.sub(rf"^{re.escape(doc.prefix.rstrip('_'))}_*", "", schema_name)


def _properties(schema_name: str, doc: Document = ML_V1) -> dict[str, Any]:
    props: dict[str, Any] = _schemas(doc)[_schema_name(schema_name, doc)].get("properties", {})
    return props


def _property(schema_name: str, field: str, doc: Document = ML_V1) -> dict[str, Any]:
    full = _schema_name(schema_name, doc)
    props = _properties(full, doc)
    if field not in props:
        raise KeyError(f"{_short(full, doc)} has no field {field!r}")
    prop: dict[str, Any] = props[field]
    return prop


def field_names(schema_name: str, *, doc: Document = ML_V1) -> list[str]:
    """Field names of a schema, in document order.

    Args:
        schema_name: e.g. "GoogleCloudMlV1__TrainingInput" (or the short "TrainingInput").
    Raises:
        KeyError: unknown schema.
    """
    return list(_properties(schema_name, doc))


def enum_values(schema_name: str, field: str, *, include_placeholders: bool = True,
                doc: Document = ML_V1) -> list[str]:
    """The enum values of a field, in document order.

    Args:
        schema_name: e.g. "GoogleCloudMlV1__TrainingInput" (or "TrainingInput").
        field: e.g. "scaleTier" -> ["BASIC", "STANDARD_1", "PREMIUM_1", "BASIC_GPU", "BASIC_TPU", "CUSTOM"].
            For an array field the enum of its items is returned.
        include_placeholders: False drops the `*_UNSPECIFIED` zero values
            (e.g. Job.state without "STATE_UNSPECIFIED").
    Returns:
        The values; [] when the field is not an enum.
    Raises:
        KeyError: unknown schema or field.
    """
    prop = _property(schema_name, field, doc)
    values = prop.get("enum") or prop.get("items", {}).get("enum") or []
    return [v for v in values if include_placeholders or not is_placeholder(v)]


def is_placeholder(value: Any) -> bool:
    """True for an enum's unspecified zero value (`STATE_UNSPECIFIED`, `ACCELERATOR_TYPE_UNSPECIFIED`, ...)."""
    return isinstance(value, str) and value.endswith(_PLACEHOLDER_SUFFIX)


def field_description(schema_name: str, field: str, *, doc: Document = ML_V1) -> str:
    """The document's description of a field ("" when it has none).

    Example: ("GoogleCloudMlV1__Job", "state") -> "Output only. The detailed state of a job."
    Raises:
        KeyError: unknown schema or field.
    """
    return str(_property(schema_name, field, doc).get("description", ""))


def is_output_only(schema_name: str, field: str, *, doc: Document = ML_V1) -> bool:
    """True when the service sets the field and a request must not.

    From the document: the field is `readOnly`, or its description says "Output only", or
    the schema it refers to says so (Job.trainingOutput -> TrainingOutput, "Output only.").
    Examples (Job): state, createTime, startTime, endTime, errorMessage, jobPosition,
    trainingOutput -> True; jobId, labels, etag, trainingInput -> False.
    Raises:
        KeyError: unknown schema or field.
    """
    return _prop_output_only(_property(schema_name, field, doc), doc)


def _prop_output_only(prop: Mapping[str, Any], doc: Document = ML_V1) -> bool:
    if prop.get("readOnly"):
        return True
    if re.search(r"\bOutput only\b", prop.get("description", "")):
        return True
    ref = prop.get("$ref")
    return bool(ref and re.search(r"\bOutput only\b", _schemas(doc).get(ref, {}).get("description", "")))


# -- the walk --------------------------------------------------------------------------------------
def check_job(job: Any, *, raw_scalars: Mapping[str, str] | None = None) -> list[Violation]:
    """Check a Job dict against `GoogleCloudMlV1__Job`; returns every violation (empty = fine).

    Args:
        job: the Job resource as parsed from job.yaml, e.g.
            {"jobId": "run_1", "labels": {"team": "vision"},
             "trainingInput": {"scaleTier": "CUSTOM", "masterType": "n1-standard-8",
                               "masterConfig": {"acceleratorConfig": {"type": "NVIDIA_TESLA_T4", "count": 1}},
                               "scheduling": {"maxWaitTime": "3600s"}, ...}}.
        raw_scalars: optional source text of unquoted YAML scalars by dotted field path
            (`spec.ParsedSpec.raw_scalars`), used to show what a number was written as
            (`runtimeVersion: 2.10` reads as 2.1).
    Returns:
        list of `Violation` (reason SPEC_INVALID; INVALID_LABELS under labels, INVALID_JOB_ID for jobId), each
        with the field path
        ("trainingInput.scheduling.maxWaitTime", "trainingInput.hyperparameters.params[0].type",
        "labels.team"), a message holding the offending value and the fix, and the value.
        Required fields are not checked here.
    """
    return check_document(job, ML_V1, raw_scalars=raw_scalars)


def check_custom_job(custom_job: Any) -> list[Violation]:
    """Check a Vertex AI CustomJob dict against `GoogleCloudAiplatformV1CustomJob` (aiplatform.v1.json).

    The same walk as `check_job` (names, types, int32/int64 ranges, enums, durations, output-only fields), over
    the Vertex document. Field paths are the CustomJob's ("jobSpec.workerPoolSpecs[0].machineSpec.machineType");
    the Vertex backend maps them back to the AI Platform fields the user wrote.
    """
    return check_document(custom_job, AIPLATFORM_V1)


def check_document(value: Any, doc: Document, *, raw_scalars: Mapping[str, str] | None = None) -> list[Violation]:
    """Check `value` against `doc.root` in `doc`; every violation, at most MAX_REPORTS (+1 saying so)."""
    out: list[Violation] = []
    try:
        _Walker(out, raw_scalars or {}, doc).object(value, doc.root, "")
    except _Full:
        pass
    return out


# Reasons by the field a violation is under: label and jobId problems keep their own reason codes.
_REASON_BY_ROOT = {"labels": Reason.INVALID_LABELS, "jobId": Reason.INVALID_JOB_ID}


class _Full(Exception):
    """The walk found MAX_REPORTS violations: a spec that broken gets no more detail (and no more CPU)."""


class _Walker:
    def __init__(self, out: list[Violation], raw_scalars: Mapping[str, str], doc: Document = ML_V1):
        self.out = out
        self.raw = raw_scalars
        self.doc = doc

    def report(self, path: str, message: str, value: Any) -> None:
        root = re.split(r"[.\[]", path, maxsplit=1)[0]
        if len(self.out) >= MAX_REPORTS:
            self.out.append(Violation(path or "job", f"the check stopped after {MAX_REPORTS} problems; fix those and "
                                      "check again", _REASON_BY_ROOT.get(root, Reason.SPEC_INVALID)))
            raise _Full()
        self.out.append(Violation(path or "job", message, _REASON_BY_ROOT.get(root, Reason.SPEC_INVALID), value))

    # objects (schemas with properties)
    def object(self, value: Any, schema_name: str, path: str) -> None:
        short = _short(schema_name, self.doc)
        if not isinstance(value, dict):
            self.report(path, f"must be a mapping of {short} fields, got {_describe(value)}", value)
            return
        props = _properties(schema_name, self.doc)
        for key, item in value.items():
            if not isinstance(key, str):
                self.report(_join(path, str(key)), f"field names are strings; {_describe(key)} is not a field of "
                            f"{short} (YAML reads unquoted yes/no/on/off as booleans and digits as numbers)", key)
                continue
            field_path = _join(path, key)
            prop = props.get(key)
            if prop is None:
                self.report(field_path, _unknown_field_message(schema_name, key, value, path, self.doc), item)
            elif _prop_output_only(prop, self.doc):
                self.report(field_path, f"is output only (the service sets it); remove it, got {_describe(item)}", item)
            else:
                self.value(item, prop, field_path)

    def value(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        if value is None:
            self.report(path, "is empty (YAML null); write a value or remove the line", None)
            return
        ref = prop.get("$ref")
        if ref:
            self.object(value, ref, path)
            return
        kind, fmt = prop.get("type"), prop.get("format")
        if "enum" in prop:
            self.enum(value, prop, path)
        elif kind == "string":
            (self.integer if fmt in ("int64", "uint64") else self.string)(value, prop, path)
        elif kind == "integer":
            self.integer(value, prop, path)
        elif kind == "number":
            self.number(value, prop, path)
        elif kind == "boolean":
            self.boolean(value, prop, path)
        elif kind == "array":
            self.array(value, prop, path)
        elif kind == "object":
            self.mapping(value, prop, path)
        # "any" and untyped properties accept anything

    # scalars
    def string(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        fmt = prop.get("format")
        if fmt == "google-duration":
            self.duration(value, path)
            return
        if not isinstance(value, str):
            raw = self.raw.get(path)
            hint, fix = "", "write a string"
            if isinstance(value, bool):
                hint = " (YAML reads unquoted yes/no/on/off/true/false as booleans)"
            elif isinstance(value, float):
                hint = " (YAML reads an unquoted 2.10 as the number 2.1)"
            if raw is not None:
                key = path.rsplit(".", 1)[-1]
                fix = f'write {key}: "{raw}"' if re.fullmatch(r"[A-Za-z]\w*", key) else f'write "{raw}"'
            elif isinstance(value, bool):
                fix = "quote the word you wrote"
            elif isinstance(value, int):
                fix = f'write "{value}"'
            elif isinstance(value, float):
                fix = f'quote what you meant, e.g. "{value}"'
            self.report(path, f"must be a string, got {_describe(value)}{hint}; {fix}", value)
            return
        if fmt == "byte" and not _is_base64(value):
            self.report(path, f"must be base64 text (format byte), got {value!r}; copy it unchanged from the "
                        "service's answer, or remove it", value)
        elif fmt == "google-datetime" and not _DATETIME_RE.fullmatch(value):
            self.report(path, f"must be an RFC 3339 timestamp such as \"2024-06-10T12:00:00Z\", got {value!r}", value)

    def integer(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        fmt = prop.get("format") or "int64"
        as_string = prop.get("type") == "string"  # int64/uint64: the document types them as strings
        lo, hi = _INT_RANGES.get(fmt, _INT_RANGES["int64"])
        what = f"an integer ({fmt})"
        if isinstance(value, bool):
            self.report(path, f"must be {what}, got boolean {value} (YAML reads unquoted yes/no/on/off/true/false "
                        "as booleans); write a number", value)
            return
        number: int | None = None
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and _DECIMAL_INT_RE.fullmatch(value) and as_string:
            number = int(value)
        if number is None:
            self.report(path, f"must be {what}, got {_describe(value)}{_integer_fix(value, as_string)}", value)
        elif not lo <= number <= hi:
            self.report(path, f"must be {what} between {lo} and {hi}, got {value!r}", value)

    def number(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fix = ""
            if isinstance(value, str):
                m = _YAML11_EXP_RE.fullmatch(value.strip())
                if m:
                    fix = (f"; YAML 1.1 reads an exponent without a decimal point as a string: write "
                           f"{m.group(1)}.0{m.group(2)}")
                elif _is_float(value):
                    fix = f"; write it unquoted: {value.strip()}"
            elif isinstance(value, bool):
                fix = " (YAML reads unquoted yes/no/on/off/true/false as booleans); write a number"
            self.report(path, f"must be a number ({prop.get('format') or 'double'}), got {_describe(value)}"
                        f"{_template_hint(value)}{fix}", value)
        elif isinstance(value, float) and not math.isfinite(value):
            self.report(path, f"must be a finite number, got {value!r}", value)

    def boolean(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        if isinstance(value, bool):
            return
        fix = "write true or false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            fix = f"write it unquoted: {value.strip().lower()}"
        self.report(path, f"must be a boolean, got {_describe(value)}; {fix}", value)

    def duration(self, value: Any, path: str) -> None:
        if isinstance(value, str):
            m = _DURATION_RE.fullmatch(value)
            if m and len(m.group(2) or "") <= 9 and int(m.group(1)) <= _MAX_DURATION_SECONDS:
                return
            if m and len(m.group(2) or "") > 9:
                self.report(path, f"has more than nine fractional digits, got {value!r}; round it", value)
                return
            if m:
                self.report(path, f"is longer than {_MAX_DURATION_SECONDS}s, got {value!r}", value)
                return
        seconds = _duration_seconds(value)
        fix = f'; write "{_format_seconds(seconds)}"' if seconds is not None else ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            fix += " (a bare number is not a duration: add the s suffix)"
        self.report(path, f"must be a duration in seconds with an s suffix, such as \"1800s\" or \"3.5s\", got "
                    f"{_describe(value)}{_template_hint(value)}{fix}", value)

    def enum(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        allowed = prop["enum"]
        real = [v for v in allowed if not is_placeholder(v)]
        if isinstance(value, str) and value in real:
            return
        listing = ", ".join(real)
        if isinstance(value, str) and value in allowed:
            descriptions = prop.get("enumDescriptions") or []
            index = allowed.index(value)
            said = f" (the document: {descriptions[index]!r})" if index < len(descriptions) else ""
            self.report(path, f"{value!r} is the unspecified placeholder{said}; remove the field or set one of: "
                        f"{listing}", value)
            return
        if not isinstance(value, str):
            hint = " (YAML reads unquoted yes/no/on/off as booleans)" if isinstance(value, bool) else ""
            self.report(path, f"must be one of: {listing}; got {_describe(value)}{hint}", value)
            return
        guesses = _closest_enum(value, real)
        guess = f"; did you mean {_or(guesses)}?" if guesses else ""
        self.report(path, f"{value!r} is not one of: {listing}{guess}", value)

    # containers
    def array(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        items = prop.get("items", {})
        if not isinstance(value, list):
            fix = ""
            if isinstance(value, str) and items.get("type") == "string" and "$ref" not in items:
                fix = f"; write {json.dumps(_split(value))}"
            elif isinstance(value, dict) and "$ref" in items:
                fix = "; write it as a list item (prefix it with '- ')"
            self.report(path, f"must be a list, got {_describe(value)}{fix}", value)
            return
        for i, item in enumerate(value):
            self.value(item, items, f"{path}[{i}]")

    def mapping(self, value: Any, prop: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, dict):
            self.report(path, f"must be a mapping, got {_describe(value)}", value)
            return
        inner = prop.get("additionalProperties")
        if inner is None:
            if "properties" in prop:  # an inline object schema (none in ml v1 today)
                for key, item in value.items():
                    sub = prop["properties"].get(key)
                    if sub is None:
                        self.report(_join(path, str(key)), f"is not a known field; known: "
                                    f"{', '.join(prop['properties'])}", item)
                    else:
                        self.value(item, sub, _join(path, str(key)))
            return
        for key, item in value.items():
            if not isinstance(key, str):
                self.report(_join(path, str(key)), f"keys must be strings, got {_describe(key)}; quote it", key)
                continue
            self.value(item, inner, _join(path, key))


# -- suggestions -----------------------------------------------------------------------------------
def _unknown_field_message(schema_name: str, key: str, siblings: Mapping[Any, Any], path: str,
                           doc: Document = ML_V1) -> str:
    short = _short(schema_name, doc)
    fields = list(_properties(schema_name, doc))
    inputs = [f for f in fields if not _prop_output_only(_properties(schema_name, doc)[f], doc)]
    by_squash = {_squash(f): f for f in fields}
    recased = by_squash.get(_squash(key))
    if recased is not None:
        if "_" in key:
            return (f"unknown field {key!r} in {short}: field names are camelCase; write {recased!r} (the service "
                    "would also take snake_case, but this submitter reads camelCase names only)")
        return f"unknown field {key!r} in {short}: field names are case-sensitive; write {recased!r}"
    places = _locate(schema_name, key, [k for k in siblings if isinstance(k, str)], doc=doc)
    if places:
        written = places[0][1]
        camel = written != key
        name = f" (written {written!r})" if camel else ""
        where = _or([_join(path, rel) for rel, _, _ in places])
        return (f"unknown field {key!r} in {short}: it is a field of {places[0][2]}{name}; move it under {where}")
    close = difflib.get_close_matches(key, inputs, n=2, cutoff=0.6)
    if not close:
        close = [by_squash[s] for s in difflib.get_close_matches(_squash(key), list(by_squash), n=2, cutoff=0.6)
                 if by_squash[s] in inputs]
    if close:
        return f"unknown field {key!r} in {short}; did you mean {_or(close)}?"
    return f"unknown field {key!r} in {short}; its fields are: {', '.join(inputs)}"


def _locate(schema_name: str, key: str, siblings: list[str], depth: int = 2,
            doc: Document = ML_V1) -> list[tuple[str, str, str]]:
    """Where `key` (or its camelCase) is a field below `schema_name`, best first.

    Returns (relative path, field name, schema short name) tuples; candidates that hold more
    of the sibling keys come first (a top-level `pythonModule` next to `scaleTier` belongs in
    trainingInput, not predictionInput), then shallower ones.
    """
    target = _squash(key)
    found: list[tuple[int, int, str, str, str]] = []
    for rel, sub, level in _descend(schema_name, depth, doc=doc):
        props = _properties(sub, doc)
        match = next((f for f in props if _squash(f) == target and not _prop_output_only(props[f], doc)), None)
        if match is not None:
            squashed = {_squash(f) for f in props}
            score = sum(_squash(s) in squashed for s in siblings)
            found.append((-score, level, rel, match, _short(sub, doc)))
    found.sort(key=lambda t: (t[0], t[1]))
    best = [f for f in found if f[:2] == found[0][:2]] if found else []
    return [(rel, match, short) for _, _, rel, match, short in best]


def _descend(schema_name: str, depth: int, prefix: str = "", level: int = 1,
             doc: Document = ML_V1) -> Iterator[tuple[str, str, int]]:
    """(relative path, schema name, level) of the input sub-schemas reachable within `depth` steps."""
    if level > depth:
        return
    for field, prop in _properties(schema_name, doc).items():
        if _prop_output_only(prop, doc):
            continue
        ref, suffix = prop.get("$ref"), ""
        if ref is None and prop.get("type") == "array":
            ref, suffix = prop.get("items", {}).get("$ref"), "[]"
        if ref is None:
            continue
        rel = f"{prefix}{field}{suffix}"
        yield rel, ref, level
        yield from _descend(ref, depth, rel + ".", level + 1, doc)


def _closest_enum(value: str, allowed: list[str]) -> list[str]:
    norm = re.sub(r"[\s\-.]+", "_", value.strip()).upper()
    if norm in allowed:
        return [norm]
    squashed = {_squash(a).upper(): a for a in allowed}
    key = _squash(value).upper()
    if key in squashed:
        return [squashed[key]]
    if len(key) >= 2:
        contained = [a for s, a in squashed.items() if key in s or s in key]
        if contained:
            return sorted(contained, key=lambda a: -difflib.SequenceMatcher(None, norm, a).ratio())[:3]
    return difflib.get_close_matches(norm, allowed, n=2, cutoff=0.5)


def _squash(name: str) -> str:
    return re.sub(r"[_\-\s]", "", name).lower()


def _or(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# -- value helpers ---------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
            type(None): "nothing"}.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        text = repr(value)
        return f"{kind} {text if len(text) <= 80 else text[:77] + '...'}"
    return f"{kind} {value!r}" if value is not None else kind


def _template_hint(value: Any) -> str:
    return " (unrendered template?)" if isinstance(value, str) and _TEMPLATE_RE.search(value) else ""


def _integer_fix(value: Any, as_string: bool) -> str:
    if isinstance(value, str) and _TEMPLATE_RE.search(value):
        return " (unrendered template?)"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return f"; write {int(value)}"
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL_INT_RE.fullmatch(text):  # only reachable for int32: the service wants a JSON number
            return f"; write it unquoted: {int(text)}"
        if _is_float(text) and float(text).is_integer():
            return f"; write {int(float(text))}"
    if isinstance(value, (float, str)):
        return "; write a whole number" + (" (it may be quoted)" if as_string else "")
    return ""


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def _duration_seconds(value: Any) -> float | None:
    """Seconds meant by a number, "1800", "1800 s", "30m", "1h30m", "2 days"; None when unclear."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _is_float(text) and float(text) >= 0:
        return float(text)
    total, pos = 0.0, 0
    for m in _DURATION_PART_RE.finditer(text):
        if m.start() != pos or m.group(2).lower() not in _DURATION_UNITS:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    return total if pos and pos == len(text) else None


def _format_seconds(seconds: float) -> str:
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
