"""Schema checks derived from the ml v1 discovery document (submitter.schema)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from submitter import schema
from submitter.reasons import Reason, Violation

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_CONFIGS = sorted((SHARED / "corpus" / "real-configs").glob("*.yaml"))
TI = "GoogleCloudMlV1__TrainingInput"


# -- helpers built from the document itself -----------------------------------------------------------
def _schemas() -> dict[str, Any]:
    return schema.document()["schemas"]


def _input_fields(schema_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for field, prop in _schemas()[schema_name]["properties"].items():
        if not schema.is_output_only(schema_name, field):
            yield field, prop


def _sample(prop: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """A valid value for a property, chosen from its document type/format/enum."""
    if "$ref" in prop:
        return _full_object(prop["$ref"], seen)
    if "enum" in prop:
        return next(v for v in prop["enum"] if not v.endswith("_UNSPECIFIED"))
    kind, fmt = prop.get("type"), prop.get("format")
    if kind == "string":
        return {"int64": 3, "google-duration": "1800s", "byte": "YWJj",
                "google-datetime": "2024-06-10T12:00:00Z"}.get(fmt, "x")
    if kind == "integer":
        return 3
    if kind == "number":
        return 0.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_sample(prop["items"], seen)]
    if kind == "object":
        return {"k": _sample(prop["additionalProperties"], seen)}
    raise AssertionError(f"unexpected property {prop}")


def _full_object(schema_name: str, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    assert schema_name not in seen, f"cycle through {schema_name}"
    return {f: _sample(p, seen | {schema_name}) for f, p in _input_fields(schema_name)}


def _enum_fields(schema_name: str = schema.JOB_SCHEMA,
                 parts: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    """(path parts, property) of every enum reachable from Job through input fields; "[]" marks a list item."""
    for field, prop in _input_fields(schema_name):
        here = parts + (field,)
        if "enum" in prop:
            yield here, prop
        ref = prop.get("$ref")
        if ref is None and prop.get("type") == "array" and "$ref" in prop.get("items", {}):
            ref, here = prop["items"]["$ref"], here + ("[]",)
        if ref:
            yield from _enum_fields(ref, here)


def _place(parts: tuple[str, ...], value: Any) -> dict[str, Any]:
    for part in reversed(parts):
        value = [value] if part == "[]" else {part: value}
    return value


def _path(parts: tuple[str, ...]) -> str:
    return ".".join(parts).replace(".[]", "[0]")


def _only(job: dict[str, Any]) -> Violation:
    got = schema.check_job(job)
    assert len(got) == 1, got
    expected = {"labels": Reason.INVALID_LABELS, "jobId": Reason.INVALID_JOB_ID}.get(
        got[0].field.split(".")[0].split("[")[0], Reason.SPEC_INVALID)
    assert got[0].reason == expected  # label and jobId problems keep their own reasons
    return got[0]


def _ti(**fields: Any) -> dict[str, Any]:
    return {"trainingInput": fields}


ENUMS = list(_enum_fields())


# -- the validator follows the document ---------------------------------------------------------------
def test_enum_walk_reaches_the_nested_enums():
    paths = {_path(p) for p, _ in ENUMS}
    assert {"trainingInput.scaleTier", "trainingInput.masterConfig.acceleratorConfig.type",
            "trainingInput.workerConfig.acceleratorConfig.type", "trainingInput.hyperparameters.goal",
            "trainingInput.hyperparameters.algorithm", "trainingInput.hyperparameters.params[0].type",
            "trainingInput.hyperparameters.params[0].scaleType"} <= paths
    assert "state" not in paths  # output only


@pytest.mark.parametrize("parts,prop", ENUMS, ids=[_path(p) for p, _ in ENUMS])
def test_every_document_enum_value_is_accepted_and_a_bogus_one_rejected(parts, prop):
    real = [v for v in prop["enum"] if not v.endswith("_UNSPECIFIED")]
    assert real
    for value in real:
        assert schema.check_job(_place(parts, value)) == [], value
    bad = _only(_place(parts, "NOT_A_REAL_VALUE"))
    assert bad.field == _path(parts) and bad.value == "NOT_A_REAL_VALUE"
    assert "'NOT_A_REAL_VALUE'" in bad.message and all(v in bad.message for v in real)
    for placeholder in (v for v in prop["enum"] if v.endswith("_UNSPECIFIED")):
        got = _only(_place(parts, placeholder))
        assert "unspecified placeholder" in got.message and got.field == _path(parts)
        assert placeholder not in got.message.split("set one of:")[1]  # never suggested


def test_a_job_with_every_input_field_set_from_the_document_is_accepted():
    job = _full_object(schema.JOB_SCHEMA)
    assert set(job["trainingInput"]) == set(schema.field_names(TI))
    assert schema.check_job(job) == []


@pytest.mark.parametrize("field", schema.field_names(TI))
def test_every_training_input_field_name_is_accepted_and_a_misspelling_suggests_it(field):
    prop = _schemas()[TI]["properties"][field]
    assert schema.check_job(_ti(**{field: _sample(prop)})) == []
    bad = _only(_ti(**{field[:-1]: _sample(prop)}))
    assert bad.field == f"trainingInput.{field[:-1]}"
    assert f"did you mean {field!r}" in bad.message


@pytest.mark.parametrize("field", [f for f in schema.field_names(TI) if f != f.lower()])
def test_snake_case_field_names_get_the_camel_case_name(field):
    snake = re.sub(r"([A-Z])", r"_\1", field).lower()
    bad = _only(_ti(**{snake: _sample(_schemas()[TI]["properties"][field])}))
    assert bad.field == f"trainingInput.{snake}"
    assert f"write {field!r}" in bad.message and "camelCase" in bad.message


def test_unknown_field_suggestions():
    assert "did you mean 'pythonModule'" in _only(_ti(pythonModul="trainer.task")).message
    assert "write 'trainingInput'" in _only({"traininginput": {}}).message
    misplaced = _only(_ti(maxWaitTime="3600s"))
    assert misplaced.field == "trainingInput.maxWaitTime"
    assert "move it under 'trainingInput.scheduling'" in misplaced.message
    top = schema.check_job({"pythonModule": "trainer.task", "scaleTier": "BASIC", "region": "us-central1"})
    assert [v.field for v in top] == ["pythonModule", "scaleTier", "region"]
    assert all("move it under 'trainingInput'" in v.message for v in top)  # not predictionInput
    nothing_close = _only(_ti(zzz=1))
    assert "pythonModule" in nothing_close.message and "its fields are" in nothing_close.message


def test_required_fields_are_not_enforced_here():
    assert schema.check_job({}) == []
    assert schema.check_job({"trainingInput": {}}) == []


# -- types ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [2, 0, "2", "123", "-1", 2**63 - 1])
def test_int64_accepts_ints_and_decimal_strings(value):
    assert schema.check_job(_ti(workerCount=value)) == []


@pytest.mark.parametrize("value,fix", [(True, "boolean"), (False, "boolean"), (1.5, "whole number"),
                                       (2.0, "write 2"), ("abc", "string 'abc'"), ("1.5", "string '1.5'"),
                                       (" 2", "string"), ([2], "list"), (2**63, "between"),
                                       ("{{worker_batches}}", "unrendered template")])
def test_int64_rejects_everything_else(value, fix):
    bad = _only(_ti(workerCount=value))
    assert bad.field == "trainingInput.workerCount" and bad.value == value
    assert "integer (int64)" in bad.message and fix in bad.message


def test_int32_is_a_yaml_integer():
    assert schema.check_job(_ti(scheduling={"priority": 1000}, hyperparameters={"maxTrials": 4})) == []
    assert "write it unquoted: 5" in _only(_ti(scheduling={"priority": "5"})).message
    assert "boolean" in _only(_ti(hyperparameters={"maxTrials": True})).message
    assert "between" in _only(_ti(hyperparameters={"maxTrials": 2**31})).message


@pytest.mark.parametrize("value", ["1800s", "0.5s", "3.5s", "604800s", "0s", "1.000000001s"])
def test_durations_accepted(value):
    assert schema.check_job(_ti(scheduling={"maxWaitTime": value, "maxRunningTime": value})) == []


@pytest.mark.parametrize("value,fix", [("30m", 'write "1800s"'), (1800, 'write "1800s"'), ("1800", 'write "1800s"'),
                                       ("1h30m", 'write "5400s"'), ("2 hours", 'write "7200s"'), (2.5, 'write "2.5s"'),
                                       ("1800S", 'write "1800s"'), ("soon", "such as"), (True, "such as"),
                                       ("1.0000000001s", "nine fractional digits"), ("-5s", "such as")])
def test_durations_rejected_with_the_fix(value, fix):
    bad = _only(_ti(scheduling={"maxWaitTime": value}))
    assert bad.field == "trainingInput.scheduling.maxWaitTime" and bad.value == value
    assert fix in bad.message and repr(value) in bad.message


def test_number_boolean_string_array_and_map_types():
    params = [{"parameterName": "lr", "type": "DOUBLE", "minValue": 1, "maxValue": 0.5, "discreteValues": [1, 2.5]}]
    assert schema.check_job(_ti(hyperparameters={"params": params})) == []
    got = _only(_ti(hyperparameters={"params": [{"minValue": "1e-5"}]}))
    assert got.field == "trainingInput.hyperparameters.params[0].minValue" and "write 1.0e-5" in got.message
    assert "boolean" in _only(_ti(hyperparameters={"params": [{"maxValue": True}]})).message
    assert "write it unquoted: true" in _only(_ti(enableWebAccess="true")).message
    assert _only(_ti(args=["--epochs", 3])).field == "trainingInput.args[1]"
    assert '["--epochs", "3"]' in _only(_ti(args="--epochs 3")).message
    version = _only(_ti(runtimeVersion=2.1))
    assert "2.10" in version.message and version.value == 2.1
    raw = schema.check_job(_ti(runtimeVersion=2.1), raw_scalars={"trainingInput.runtimeVersion": "2.10"})
    assert 'write runtimeVersion: "2.10"' in raw[0].message
    label = _only({"labels": {"team": False}})
    assert label.field == "labels.team" and "booleans" in label.message
    assert "mapping" in _only({"labels": ["a"]}).message
    assert "must be a list" in _only(_ti(packageUris="gs://b/p.tar.gz")).message
    assert "YAML null" in _only(_ti(masterType=None)).message
    assert "mapping of TrainingInput fields" in _only({"trainingInput": ["this", "is", "a", "list"]}).message
    assert "base64" in _only({"etag": "not base64!"}).message
    assert schema.check_job({"etag": "BwXhqX1L0RE="}) == []


# -- output only ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("state", "RUNNING"), ("trainingOutput", {"consumedMLUnits": 1.2}),
                                         ("createTime", "2024-06-10T12:00:00Z"), ("startTime", "2024-06-10T12:00:00Z"),
                                         ("endTime", "2024-06-10T12:00:00Z"), ("errorMessage", "boom"),
                                         ("jobPosition", "3")])
def test_output_only_fields_are_reported(field, value):
    bad = _only({field: value, "jobId": "run_1"})
    assert bad.field == field and "output only" in bad.message and "remove it" in bad.message
    assert bad.value == value


def test_helpers_read_the_document():
    assert schema.document() is schema.document()
    assert schema.enum_values(TI, "scaleTier") == ["BASIC", "STANDARD_1", "PREMIUM_1", "BASIC_GPU", "BASIC_TPU",
                                                   "CUSTOM"]
    assert schema.enum_values("Job", "state")[0] == "STATE_UNSPECIFIED"
    assert "STATE_UNSPECIFIED" not in schema.enum_values("Job", "state", include_placeholders=False)
    assert schema.enum_values(TI, "pythonModule") == []
    assert "1800s" in schema.field_description("GoogleCloudMlV1__Scheduling", "maxWaitTime")
    assert schema.is_output_only("GoogleCloudMlV1__Job", "state")
    assert schema.is_output_only("GoogleCloudMlV1__Job", "trainingOutput")  # via the TrainingOutput schema
    assert not schema.is_output_only("GoogleCloudMlV1__Job", "etag")
    assert not schema.is_output_only("GoogleCloudMlV1__Job", "labels")
    with pytest.raises(KeyError):
        schema.enum_values(TI, "scaleTeir")
    with pytest.raises(KeyError):
        schema.field_description("NoSuchSchema", "x")


# -- real configs and nested paths ------------------------------------------------------------------------
@pytest.mark.parametrize("path", REAL_CONFIGS, ids=[p.name for p in REAL_CONFIGS])
def test_real_configs_have_no_schema_violations(path):
    assert schema.check_job(yaml.safe_load(path.read_text())) == []


def test_real_config_corpus_is_present():
    assert len(REAL_CONFIGS) >= 20


def test_nested_paths_in_messages():
    job = _ti(masterConfig={"acceleratorConfig": {"type": "nvidia-tesla-t4", "count": "two"}},
              workerConfig={"diskConfig": {"bootDiskSizeGb": "100"}},
              hyperparameters={"params": [{"type": "DOUBLE"}, {"type": "DOUBEL", "scaleType": "linear"}]})
    got = {v.field: v for v in schema.check_job(job)}
    assert set(got) == {"trainingInput.masterConfig.acceleratorConfig.type",
                        "trainingInput.masterConfig.acceleratorConfig.count",
                        "trainingInput.workerConfig.diskConfig.bootDiskSizeGb",
                        "trainingInput.hyperparameters.params[1].type",
                        "trainingInput.hyperparameters.params[1].scaleType"}
    assert "did you mean 'NVIDIA_TESLA_T4'" in got["trainingInput.masterConfig.acceleratorConfig.type"].message
    assert "did you mean 'DOUBLE'" in got["trainingInput.hyperparameters.params[1].type"].message
    assert "did you mean 'UNIT_LINEAR_SCALE'" in got["trainingInput.hyperparameters.params[1].scaleType"].message
    assert "'two'" in got["trainingInput.masterConfig.acceleratorConfig.count"].message
