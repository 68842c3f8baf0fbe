"""Discovery-driven decoding of request bodies, the way Google's JSON front end does it.

Source of truth: `googleapiclient/discovery_cache/documents/ml.v1.json` (bundled with
google-api-python-client). The real front end parses JSON into protobuf messages, so:

* unknown field names are rejected: `Invalid JSON payload received. Unknown name "x" at
  'job.training_input': Cannot find field.`;
* both the JSON name (`trainingInput`) and the proto name (`training_input`) are accepted;
* enum values must be in the enum; scalars must have the right JSON type (int64 fields
  accept numbers or decimal strings);
* on output, int64 fields are strings, default values (`""`, `0`, `false`, empty lists and
  maps, `null`) are omitted, messages that were set are kept even when empty.

`decode(schema_name, value, path)` returns the normalized value and a list of
(field path, description) violations; it never raises for bad input.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

_INT_RE = re.compile(r"^-?\d+$")
_DURATION_RE = re.compile(r"^-?\d+(\.\d{1,9})?s$")

#: Marker for "field absent / default value": dropped from the output.
_UNSET = object()


@functools.lru_cache(maxsize=4)
def discovery_document(name: str = "ml.v1.json") -> dict:
    """A discovery document bundled with google-api-python-client (parsed JSON): `ml.v1.json` (the
    default) or `aiplatform.v1.json` (Vertex AI)."""
    path = resources.files("googleapiclient") / "discovery_cache" / "documents" / name
    return json.loads(path.read_text(encoding="utf-8"))


def snake_case(name: str) -> str:
    """`trainingInput` -> `training_input` (proto field names, used in error paths)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _Decoder:
    def __init__(self, doc: dict):
        self.schemas: dict[str, dict] = doc["schemas"]
        self.violations: list[tuple[str, str]] = []

    def fail(self, path: str, description: str) -> Any:
        self.violations.append((path, description))
        return _UNSET

    def message(self, schema_name: str, value: Any, path: str) -> Any:
        if value is None:
            return _UNSET
        if not isinstance(value, dict):
            return self.fail(path, f"Invalid value at '{path}' (type.googleapis.com/{schema_name}), "
                                   f"{json.dumps(value)}: expected an object.")
        props: dict[str, dict] = self.schemas[schema_name].get("properties", {})
        by_proto_name = {snake_case(k): k for k in props}
        out: dict[str, Any] = {}
        for key, sub in value.items():
            name = key if key in props else by_proto_name.get(key)
            if name is None:
                self.fail(path, f"Invalid JSON payload received. Unknown name {json.dumps(key)} "
                                f"at '{path}': Cannot find field.")
                continue
            decoded = self.field(props[name], sub, f"{path}.{snake_case(name)}")
            if decoded is not _UNSET:
                out[name] = decoded
        return out  # a set message is kept even when empty, as proto3 JSON does

    def field(self, prop: dict, value: Any, path: str) -> Any:
        if value is None:
            return _UNSET
        if "$ref" in prop:
            return self.message(prop["$ref"], value, path)
        kind = prop.get("type")
        if kind == "array":
            if not isinstance(value, list):
                return self.fail(path, f"Invalid value at '{path}': expected a list, got {json.dumps(value)}.")
            items = [self.field(prop["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
            items = [v for v in items if v is not _UNSET]
            return items or _UNSET
        if kind == "object":
            if not isinstance(value, dict):
                return self.fail(path, f"Invalid value at '{path}': expected an object, got {json.dumps(value)}.")
            inner = prop.get("additionalProperties")
            if inner is None:  # free-form object
                return value or _UNSET
            out = {}
            for k, v in value.items():
                d = self.field(inner, v, f"{path}[{json.dumps(k)}]")
                # a map keeps entries whose value is the default, unlike a message
                out[k] = "" if d is _UNSET and inner.get("type") == "string" else d
            return {k: v for k, v in out.items() if v is not _UNSET} or _UNSET
        if kind == "string":
            return self.string(prop, value, path)
        if kind == "integer":
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and _INT_RE.match(value))
            ):
                return self.fail(path, f"Invalid value at '{path}' (TYPE_INT32), {json.dumps(value)}")
            n = int(value)
            if not -(2**31) <= n < 2**31:
                return self.fail(path, f"Invalid value at '{path}' (TYPE_INT32), {json.dumps(value)}: out of range")
            return n or _UNSET
        if kind == "number":
            if isinstance(value, bool):
                return self.fail(path, f"Invalid value at '{path}' (TYPE_DOUBLE), {json.dumps(value)}")
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    return self.fail(path, f"Invalid value at '{path}' (TYPE_DOUBLE), {json.dumps(value)}")
            if not isinstance(value, (int, float)):
                return self.fail(path, f"Invalid value at '{path}' (TYPE_DOUBLE), {json.dumps(value)}")
            return value or _UNSET
        if kind == "boolean":
            if not isinstance(value, bool):
                return self.fail(path, f"Invalid value at '{path}' (TYPE_BOOL), {json.dumps(value)}")
            return value or _UNSET
        if kind == "any":
            return value
        return value  # unknown schema kind: pass through rather than reject

    def string(self, prop: dict, value: Any, path: str) -> Any:
        fmt = prop.get("format")
        if fmt in ("int64", "uint64"):
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and _INT_RE.match(value))
            ):
                return self.fail(path, f"Invalid value at '{path}' (TYPE_INT64), {json.dumps(value)}")
            n = int(value)
            if fmt == "uint64" and n < 0:
                return self.fail(path, f"Invalid value at '{path}' (TYPE_UINT64), {json.dumps(value)}")
            return str(n) if n else _UNSET  # int64 goes out as a decimal string
        if not isinstance(value, str):
            return self.fail(path, f"Invalid value at '{path}' (TYPE_STRING), {json.dumps(value)}")
        if "enum" in prop and value not in prop["enum"]:
            return self.fail(path, f"Invalid value at '{path}' (TYPE_ENUM), {json.dumps(value)}: "
                                   f"expected one of {', '.join(prop['enum'])}.")
        if fmt == "google-duration" and value and not _DURATION_RE.match(value):
            return self.fail(path, f"Invalid value at '{path}' (type.googleapis.com/google.protobuf.Duration), "
                                   f"{json.dumps(value)}")
        return value or _UNSET


def decode(schema_name: str, value: Any, path: str, document: str = "ml.v1.json") -> tuple[dict, list[tuple[str, str]]]:
    """Decode `value` as message `schema_name` (e.g. `GoogleCloudMlV1__Job`) of discovery `document`.

    Returns (normalized dict, violations). `path` is the proto path used in messages,
    e.g. `job`. The normalized dict uses JSON (camelCase) names only.
    """
    dec = _Decoder(discovery_document(document))
    out = dec.message(schema_name, value, path)
    return ({} if out is _UNSET else out), dec.violations
