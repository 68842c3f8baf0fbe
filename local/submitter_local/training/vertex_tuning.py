"""The Vertex AI `projects.locations.hyperparameterTuningJobs` subset of the local training service.

Routes (aiplatform v1 discovery document paths, served like customJobs by `vertex_api.VertexJobs`):

    POST /v1/projects/{p}/locations/{l}/hyperparameterTuningJobs             create: 200 with the job (numeric id
                                                                             in `name`, JOB_STATE_QUEUED)
    GET  /v1/projects/{p}/locations/{l}/hyperparameterTuningJobs/{id}        get
    GET  /v1/projects/{p}/locations/{l}/hyperparameterTuningJobs?filter=&pageSize=&pageToken=
                                                                             list: newest first, `{}` when none;
                                                                             the customJobs filter subset
    POST /v1/projects/{p}/locations/{l}/hyperparameterTuningJobs/{id}:cancel cancel: `{}`; 400 FAILED_PRECONDITION
                                                                             when already final

A job runs as a tuning job of the ml v1 API does (`trials.StudyRun`, the rules of `study.py`): JOB_STATE_QUEUED,
PENDING (the trial CustomJobSpec's packages downloaded and installed once), RUNNING (the trials), then SUCCEEDED,
FAILED or CANCELLED. Each trial is one run of `trialJobSpec`'s worker pools with the environment a CustomJob gets
(`vertex_run.VertexProfile`: CLUSTER_SPEC and TF_CONFIG with `task.trial`, AIP_MODEL_DIR etc. under
`<baseOutputDirectory>/<trial id>/`), its parameters appended to each pool's args as `--<parameterId>=<value>`, and
CLOUD_ML_TRIAL_ID / CLOUD_ML_HP_METRIC_FILE set, so cloudml-hypertune works unmodified. Records live in the job
store beside the location's CustomJobs (`vertex_api.store_project`) with runtime["api"] "vertex_tuning":
trainingInput holds the trialJobSpec, runtime["vertex"]["study"] studySpec and the trial counts.

What is honoured (aiplatform.v1.json `GoogleCloudAiplatformV1HyperparameterTuningJob`, `StudySpec`):
    studySpec.metrics[0] {metricId, goal}     the tag read from the metric file and the direction
    studySpec.parameters[] {parameterId, doubleValueSpec | integerValueSpec | categoricalValueSpec |
        discreteValueSpec, scaleType}         drawn as ml v1's DOUBLE / INTEGER / CATEGORICAL / DISCRETE (`study_spec`)
    studySpec.algorithm                       GRID_SEARCH, RANDOM_SEARCH; ALGORITHM_UNSPECIFIED (Vertex: Bayesian
                                              optimisation) gets the local stand-in (docs/local-training.md)
    studySpec.medianAutomatedStoppingSpec     the median rule on steps (`study.median_rule_stops`)
    studySpec.measurementSelectionType        LAST_MEASUREMENT (the default) only
    maxTrialCount, parallelTrialCount, maxFailedTrialCount (0: the local rule of `study.failure_verdict`)
    trialJobSpec                              checked and run as a CustomJob's jobSpec; scheduling.timeout limits
                                              each trial (a trial past it fails: INFEASIBLE)
What is refused with 501 UNIMPLEMENTED naming the field (`UNSUPPORTED`): conditionalParameterSpecs,
decayCurveStoppingSpec, convexAutomatedStoppingSpec, studyStoppingConfig, BEST_MEASUREMENT,
medianAutomatedStoppingSpec.useElapsedDuration, metrics[].safetyConfig. observationNoise is a 400 ("Not supported
by HyperparameterTuningJob").

The resource read back (`render`): the job's fields as created, `state` (JOB_STATE_*), createTime, startTime,
endTime, updateTime (the latest state change or trial start/end), `error` {code, message} when FAILED (3) or
CANCELLED (1), and `trials[]` in id order, each a `GoogleCloudAiplatformV1Trial`: `id`, `state` (ACTIVE while it
runs; SUCCEEDED with its final measurement; INFEASIBLE when it failed or reported no value of the metric, with
`infeasibleReason`: Vertex "will set a Trial to INFEASIBLE when it's done but missing the final_measurement";
STOPPING when the job's cancel stopped it), `parameters[{parameterId, value}]` (a number for INTEGER, DOUBLE and
DISCRETE, a string for CATEGORICAL: TrialParameter.value), `finalMeasurement {stepCount, metrics[{metricId,
value}]}`, `measurements[]` (every reported value, oldest first), `startTime`, `endTime` (SUCCEEDED or INFEASIBLE).
An early-stopped trial is SUCCEEDED with its last measurement. Trials carry no `customJob` (no CustomJob is
created per trial here) and no `name`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Any

from . import errors, schema
from .model import CANCELLED, CANCELLING, FAILED, rfc3339
from .runner import USER_CANCEL_MESSAGE
from .store import JobRecord
from .study import DEFAULT_METRIC_TAG, StudyError, StudySpec
from .vertex_api import (
    DOCUMENT,
    STATES,
    VertexJobs,
    display_name_violations,
    job_spec_violations,
    label_violations,
)

if TYPE_CHECKING:
    from flask import Flask

    from .service import TrainingService

SCHEMA = "GoogleCloudAiplatformV1HyperparameterTuningJob"
ROOT = "hyperparameter_tuning_job"
#: Output-only HyperparameterTuningJob fields (aiplatform.v1.json: "Output only."): ignored in a create body.
OUTPUT_ONLY = ("name", "state", "createTime", "startTime", "endTime", "updateTime", "error", "trials",
               "satisfiesPzi", "satisfiesPzs")
#: The fields kept in runtime["vertex"]["study"] (the rest of the body but trialJobSpec goes to "fields").
STUDY_FIELDS = ("studySpec", "maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")
CANCEL_MESSAGE = "HyperparameterTuningJob cancelled by the user (hyperparameterTuningJobs.cancel)."
#: Value spec field -> ml v1 ParameterSpec type (the same value drawing as ml v1 tuning).
VALUE_SPECS = {"doubleValueSpec": "DOUBLE", "integerValueSpec": "INTEGER", "categoricalValueSpec": "CATEGORICAL",
               "discreteValueSpec": "DISCRETE"}
SCALES = ("UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
MIN_DISCRETE_GAP = 1e-10  # DiscreteValueSpec.values: "in increasing order and at least 1e-10 apart"
MAX_DISCRETE_VALUES = 1000  # "This list should not contain more than 1,000 values"
#: Local trial state (study.TrialRecord) -> Trial.state of aiplatform v1.
TRIAL_STATES = {"RUNNING": "ACTIVE", "SUCCEEDED": "SUCCEEDED", "FAILED": "INFEASIBLE", "CANCELLED": "STOPPING"}
_WHITESPACE = re.compile(r"\s")


# -- create: checks ------------------------------------------------------------------------------------------------
def validate_create(body: Any) -> dict[str, Any]:
    """A create body checked as customJobs.create checks a CustomJob (schema of the bundled aiplatform.v1.json,
    then semantics), plus the study's rules; returns the normalized job without output-only fields.

    Raises:
        ApiError: 400 INVALID_ARGUMENT with a google.rpc.BadRequest naming every violated field
            (`hyperparameter_tuning_job.study_spec.parameters[0].integer_value_spec.min_value`); 501 UNIMPLEMENTED
            for a field this service does not honour (`UNSUPPORTED`).
    """
    if not isinstance(body, dict):
        raise errors.invalid_argument([(ROOT, "The request body must be a JSON object (a HyperparameterTuningJob).")])
    body = {k: v for k, v in body.items() if k not in OUTPUT_ONLY}
    job, violations = schema.decode(SCHEMA, body, ROOT, document=DOCUMENT)
    if violations:
        raise errors.invalid_argument(violations, message=violations[0][1])
    v = display_name_violations(job, f"{ROOT}.display_name")
    spec = job.get("trialJobSpec")
    if not isinstance(spec, dict):
        v.append((f"{ROOT}.trial_job_spec", "trial_job_spec is required: the CustomJobSpec every trial runs."))
        spec = {}
    v += job_spec_violations(spec, f"{ROOT}.trial_job_spec")
    v += study_violations(job)
    v += label_violations(job.get("labels", {}), f"{ROOT}.labels")
    if v:
        raise errors.invalid_argument(v)
    refused = unsupported(job.get("studySpec") or {})
    if refused:
        field, why = refused[0]
        raise errors.unimplemented(f"{field}: {why}")
    try:
        study_spec({k: job[k] for k in STUDY_FIELDS if k in job})
    except StudyError as exc:  # a backstop: study_violations names these first
        raise errors.invalid_argument([(f"{ROOT}.study_spec", str(exc))]) from None
    return job


def study_violations(job: dict[str, Any]) -> list[tuple[str, str]]:
    """The study's rules (aiplatform.v1.json field descriptions) broken by a decoded HyperparameterTuningJob, as
    (proto path, message) pairs."""
    v: list[tuple[str, str]] = []
    study = job.get("studySpec")
    base = f"{ROOT}.study_spec"
    if not isinstance(study, dict):
        v.append((base, "study_spec is required: its metrics and the parameters to tune."))
        study = {}
    metrics = study.get("metrics") or []
    if len(metrics) != 1:
        v.append((f"{base}.metrics", f"Exactly one metric is required (the one trials report with "
                                     f"cloudml-hypertune); got {len(metrics)}."))
    for i, metric in enumerate(metrics):
        metric_id = metric.get("metricId", "")
        if not metric_id or _WHITESPACE.search(metric_id):
            v.append((f"{base}.metrics[{i}].metric_id", f"metric_id {metric_id!r} is required and must not contain "
                                                        "whitespace (the tag trials report it under)."))
        if metric.get("goal") not in ("MAXIMIZE", "MINIMIZE"):
            v.append((f"{base}.metrics[{i}].goal", f"goal must be MAXIMIZE or MINIMIZE; got "
                                                   f"{metric.get('goal', 'GOAL_TYPE_UNSPECIFIED')!r}."))
    parameters = study.get("parameters") or []
    if not parameters:
        v.append((f"{base}.parameters", "At least one parameter to tune is required."))
    seen: set[str] = set()
    for i, parameter in enumerate(parameters):
        v += _parameter_violations(parameter, f"{base}.parameters[{i}]", study.get("algorithm"), seen)
    if "observationNoise" in study:
        v.append((f"{base}.observation_noise", "observation_noise is \"Not supported by HyperparameterTuningJob\" "
                                               "(StudySpec.observationNoise): remove it."))
    for field, path in (("maxTrialCount", "max_trial_count"), ("parallelTrialCount", "parallel_trial_count")):
        value = job.get(field, 0)
        if value < 1:
            v.append((f"{ROOT}.{path}", f"{path} is required and must be at least 1; got {value}."))
    if job.get("maxFailedTrialCount", 0) < 0:
        v.append((f"{ROOT}.max_failed_trial_count", f"max_failed_trial_count must not be negative (0: the service "
                                                    f"decides); got {job['maxFailedTrialCount']}."))
    return v


def _parameter_violations(p: dict[str, Any], path: str, algorithm: Any, seen: set[str]) -> list[tuple[str, str]]:
    v: list[tuple[str, str]] = []
    pid = p.get("parameterId", "")
    if not pid or _WHITESPACE.search(pid):
        v.append((f"{path}.parameter_id", f"parameter_id {pid!r} is required and must not contain whitespace (the "
                                          "trainer receives it as --<parameter_id>=<value>)."))
    elif pid in seen:
        v.append((f"{path}.parameter_id", f"parameter_id {pid!r} is used twice; parameter ids must be unique."))
    seen.add(pid)
    kinds = [k for k in VALUE_SPECS if k in p]
    if len(kinds) != 1:
        v.append((path, "A parameter needs exactly one of double_value_spec, integer_value_spec, "
                        f"categorical_value_spec, discrete_value_spec; it has {', '.join(kinds) or 'none'}."))
        return v
    kind = kinds[0]
    spec = p[kind]
    where = f"{path}.{_snake(kind)}"
    scale = p.get("scaleType", "SCALE_TYPE_UNSPECIFIED")
    log = scale in ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
    if kind in ("doubleValueSpec", "integerValueSpec"):
        # proto3: an unset bound is 0, the default the decoder leaves out (0 cannot be told from unset)
        low, high = float(spec.get("minValue", 0)), float(spec.get("maxValue", 0))
        if low > high:
            v.append((f"{where}.min_value", f"min_value {low:g} is greater than max_value {high:g}."))
        elif log and low <= 0:
            v.append((f"{where}.min_value", f"{scale} needs a strictly positive range (\"The entire feasible space "
                                            f"must be strictly positive\"); min_value is {low:g}."))
        if kind == "doubleValueSpec" and algorithm == "GRID_SEARCH":
            v.append((where, "GRID_SEARCH works only with integer, categorical and discrete parameters "
                             "(StudySpec.algorithm); use RANDOM_SEARCH or a discrete_value_spec."))
    elif kind == "categoricalValueSpec":
        values = spec.get("values", [])
        if not values or not all(values):
            v.append((f"{where}.values", "At least one category is required, each a non-empty string."))
        elif len(set(values)) != len(values):
            v.append((f"{where}.values", f"A category appears twice in {values}."))
        if "scaleType" in p:
            v.append((f"{path}.scale_type", "Leave scale_type unset for a categorical parameter."))
    else:
        values = spec.get("values", [])
        if not values:
            v.append((f"{where}.values", "At least one value is required."))
        elif len(values) > MAX_DISCRETE_VALUES:
            v.append((f"{where}.values", f"At most {MAX_DISCRETE_VALUES} values; got {len(values)}."))
        elif any(not math.isfinite(x) for x in values) or any(b - a < MIN_DISCRETE_GAP
                                                              for a, b in zip(values, values[1:])):
            v.append((f"{where}.values", f"The values must be finite, increasing and at least 1e-10 apart; got "
                                         f"{values}."))
        elif log and values[0] <= 0:
            v.append((f"{where}.values", f"{scale} needs strictly positive values; got {values}."))
    return v


#: StudySpec fields (and values) this service does not honour: path -> why, and what to do instead.
UNSUPPORTED: dict[str, str] = {
    "conditionalParameterSpecs": "conditional parameters are not implemented by the local training service; tune "
                                 "the parameters unconditionally.",
    "decayCurveStoppingSpec": "the local training service implements only the median stopping rule; use "
                              "medianAutomatedStoppingSpec, or no early stopping.",
    "convexAutomatedStoppingSpec": "the local training service implements only the median stopping rule; use "
                                   "medianAutomatedStoppingSpec, or no early stopping.",
    "studyStoppingConfig": "study stopping conditions are not implemented by the local training service; the study "
                           "ends after maxTrialCount trials.",
    "measurementSelectionType": "the local training service uses each trial's last measurement "
                                "(LAST_MEASUREMENT) only.",
    "medianAutomatedStoppingSpec.useElapsedDuration": "the local training service's median rule compares "
                                                      "measurements by step (stepCount); leave useElapsedDuration "
                                                      "false.",
    "metrics.safetyConfig": "safety metrics are not implemented by the local training service.",
}


def unsupported(study: dict[str, Any]) -> list[tuple[str, str]]:
    """The fields of a decoded StudySpec this service would not honour, as (path, why and what to do)."""
    found: list[tuple[str, str]] = [(f"studySpec.{k}", k) for k in (
        "decayCurveStoppingSpec", "convexAutomatedStoppingSpec", "studyStoppingConfig") if k in study]
    if study.get("measurementSelectionType", "LAST_MEASUREMENT") not in ("LAST_MEASUREMENT",
                                                                         "MEASUREMENT_SELECTION_TYPE_UNSPECIFIED"):
        found.append(("studySpec.measurementSelectionType", "measurementSelectionType"))
    if (study.get("medianAutomatedStoppingSpec") or {}).get("useElapsedDuration"):
        found.append(("studySpec.medianAutomatedStoppingSpec.useElapsedDuration",
                      "medianAutomatedStoppingSpec.useElapsedDuration"))
    found += [(f"studySpec.metrics[{i}].safetyConfig", "metrics.safetyConfig")
              for i, m in enumerate(study.get("metrics") or []) if "safetyConfig" in m]
    found += [(f"studySpec.parameters[{i}].conditionalParameterSpecs", "conditionalParameterSpecs")
              for i, p in enumerate(study.get("parameters") or []) if "conditionalParameterSpecs" in p]
    return [(path, UNSUPPORTED[key]) for path, key in found]


# -- the study -----------------------------------------------------------------------------------------------------
def study_spec(study: dict[str, Any]) -> StudySpec:
    """The local study of a HyperparameterTuningJob's `studySpec`, `maxTrialCount`, `parallelTrialCount` and
    `maxFailedTrialCount` ({field: value} as decoded): the same `study.StudySpec` an ml v1 tuning job gets, so values
    are drawn the same way. Vertex -> ml v1: metrics[0] {metricId, goal} -> hyperparameterMetricTag, goal;
    parameters[] {parameterId, <kind>ValueSpec, scaleType} -> params[] {parameterName, type, minValue / maxValue /
    categoricalValues / discreteValues, scaleType}; algorithm as is; medianAutomatedStoppingSpec ->
    enableTrialEarlyStopping; the counts -> maxTrials, maxParallelTrials, maxFailedTrials.

    Raises:
        StudyError: what the study cannot run (`validate_create` reports it first, by field).
    """
    spec = study.get("studySpec") or {}
    metrics = spec.get("metrics") or [{}]
    params = []
    for p in spec.get("parameters") or []:
        kind = next((k for k in VALUE_SPECS if k in p), None)
        values = p.get(kind) or {} if kind else {}
        out: dict[str, Any] = {"parameterName": p.get("parameterId"), "type": VALUE_SPECS.get(kind or "")}
        if kind in ("doubleValueSpec", "integerValueSpec"):
            convert = int if kind == "integerValueSpec" else float
            out.update({k: convert(values.get(k, 0)) for k in ("minValue", "maxValue")})  # proto3 default 0
        elif kind == "categoricalValueSpec":
            out["categoricalValues"] = list(values.get("values") or [])
        elif kind == "discreteValueSpec":
            out["discreteValues"] = list(values.get("values") or [])
        if p.get("scaleType") in SCALES:
            out["scaleType"] = p["scaleType"]
        params.append(out)
    hp = {"goal": metrics[0].get("goal"), "hyperparameterMetricTag": metrics[0].get("metricId") or DEFAULT_METRIC_TAG,
          "params": params, "maxTrials": study.get("maxTrialCount"),
          "maxParallelTrials": study.get("parallelTrialCount"), "maxFailedTrials": study.get("maxFailedTrialCount", 0),
          "algorithm": spec.get("algorithm"),
          "enableTrialEarlyStopping": "medianAutomatedStoppingSpec" in spec}
    return dataclasses.replace(StudySpec.from_training_input({"hyperparameters": hp}),
                               max_failed_field="maxFailedTrialCount", metric_field="studySpec.metrics[0].metricId")


# -- the resource --------------------------------------------------------------------------------------------------
def render(rec: JobRecord) -> dict[str, Any]:
    """The HyperparameterTuningJob resource of a stored record (module docstring)."""
    meta = rec.runtime.get("vertex", {})
    study = meta.get("study", {})
    job: dict[str, Any] = {"name": meta.get("name"), "displayName": meta.get("displayName"), **study,
                           "trialJobSpec": rec.job["trainingInput"]}
    if rec.job.get("labels"):
        job["labels"] = rec.job["labels"]
    job.update(meta.get("fields", {}))
    output = rec.job.get("trainingOutput") or {}
    trials = render_trials(study, output.get("trials") or [], rec.runtime.get("trial_messages") or {})
    if trials:
        job["trials"] = trials
    job["state"] = STATES.get(rec.state, "JOB_STATE_UNSPECIFIED")
    job["createTime"] = rec.job["createTime"]
    for field in ("startTime", "endTime"):
        if rec.job.get(field):
            job[field] = rec.job[field]
    times = [rfc3339(rec.state_since), *(t[k] for t in trials for k in ("startTime", "endTime") if k in t)]
    job["updateTime"] = max(times)  # RFC 3339 UTC with "Z": text order is time order
    message = rec.job.get("errorMessage")
    if rec.state in (FAILED, CANCELLED, CANCELLING) and message:
        if message == USER_CANCEL_MESSAGE:
            message = CANCEL_MESSAGE
        job["error"] = {"code": 1 if rec.state != FAILED else 3, "message": message}
    return job


def render_trials(study: dict[str, Any], trials: list[dict[str, Any]], messages: dict[str, str]
                  ) -> list[dict[str, Any]]:
    """`trials[]` (GoogleCloudAiplatformV1Trial) in id order, from the study's trainingOutput trials (ml v1
    HyperparameterOutput shape, `study.TrialRecord.output`) and the failed trials' messages."""
    spec = study.get("studySpec") or {}
    metric_id = ((spec.get("metrics") or [{}])[0]).get("metricId") or DEFAULT_METRIC_TAG
    kinds = {p.get("parameterId"): next((VALUE_SPECS[k] for k in VALUE_SPECS if k in p), None)
             for p in spec.get("parameters") or []}
    out = [trial_resource(t, kinds, metric_id, messages.get(str(t.get("trialId"))))
           for t in trials if isinstance(t, dict) and t.get("trialId")]
    return sorted(out, key=lambda t: int(t["id"]) if t["id"].isdigit() else 1 << 62)


def trial_resource(raw: dict[str, Any], kinds: dict[str, str | None], metric_id: str, message: str | None
                   ) -> dict[str, Any]:
    """One Trial from one HyperparameterOutput (module docstring: states, values, measurements).

    Args:
        raw: {"trialId", "state", "hyperparameters", "finalMetric"?, "allMetrics"?, "startTime"?, "endTime"?}.
        kinds: parameterId -> ml v1 type (DOUBLE, INTEGER, CATEGORICAL, DISCRETE) for the values' JSON types.
        metric_id: the study's metricId (each measurement's metric).
        message: why the trial failed, if it did.
    """
    state = TRIAL_STATES.get(str(raw.get("state")), "STATE_UNSPECIFIED")
    final = raw.get("finalMetric")
    reason = message
    if state == "SUCCEEDED" and not final:
        state = "INFEASIBLE"  # "done but missing the final_measurement"
        reason = (f"The trial reported no value of the metric {metric_id!r} (cloudml-hypertune, "
                  "CLOUD_ML_HP_METRIC_FILE).")
    trial: dict[str, Any] = {"id": str(raw["trialId"]), "state": state, "parameters": [
        {"parameterId": name, "value": _value(value, kinds.get(name))}
        for name, value in (raw.get("hyperparameters") or {}).items()]}
    if final:
        trial["finalMeasurement"] = _measurement(final, metric_id)
    if raw.get("allMetrics"):
        trial["measurements"] = [_measurement(m, metric_id) for m in raw["allMetrics"]]
    if raw.get("startTime"):
        trial["startTime"] = raw["startTime"]
    if raw.get("endTime") and state in ("SUCCEEDED", "INFEASIBLE"):
        trial["endTime"] = raw["endTime"]
    if state == "INFEASIBLE":
        trial["infeasibleReason"] = reason or "The trial failed."
    return trial


def _measurement(metric: dict[str, Any], metric_id: str) -> dict[str, Any]:
    """ml v1 {trainingStep, objectiveValue} -> Measurement {stepCount (int64: a string), metrics[{metricId, value}]}."""
    return {"stepCount": str(metric.get("trainingStep") or "0"),
            "metrics": [{"metricId": metric_id, "value": metric.get("objectiveValue")}]}


def _value(value: str, kind: str | None) -> Any:
    """A trial's value as TrialParameter.value: a number for INTEGER, DOUBLE and DISCRETE ("number_value"), the
    string for CATEGORICAL ("string_value")."""
    try:
        if kind == "INTEGER":
            return int(value)
        if kind in ("DOUBLE", "DISCRETE"):
            number = float(value)
            return int(number) if kind == "DISCRETE" and number.is_integer() and "." not in value else number
    except ValueError:
        pass
    return value


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


class VertexTuningJobs(VertexJobs):
    """The hyperparameterTuningJobs methods (create, get, list, cancel) over a `TrainingService`, as
    `vertex_api.VertexJobs` serves customJobs; each raises ApiError."""

    COLLECTION = "hyperparameterTuningJobs"
    KIND = "HyperparameterTuningJob"
    API = "vertex_tuning"

    def render(self, rec: JobRecord) -> dict[str, Any]:
        """The HyperparameterTuningJob of a stored record (`render`)."""
        return render(rec)

    def validate(self, body: Any) -> dict[str, Any]:
        """`validate_create`."""
        return validate_create(body)

    def split(self, job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(trialJobSpec, {"study": studySpec and the trial counts})."""
        return job.pop("trialJobSpec"), {"study": {k: job.pop(k) for k in STUDY_FIELDS if k in job}}


def register(app: Flask, svc: TrainingService, to_json: Any, body: Any, int_arg: Any) -> VertexTuningJobs:
    """Add the hyperparameterTuningJobs routes to the service's Flask app (`vertex_api.add_routes`)."""
    from .vertex_api import add_routes  # late: vertex_api's register calls this function

    jobs = VertexTuningJobs(svc)
    add_routes(app, jobs, to_json, body, int_arg)
    return jobs


__all__ = ["VertexTuningJobs", "register", "render", "render_trials", "trial_resource", "validate_create",
           "study_violations", "study_spec", "unsupported", "UNSUPPORTED", "TRIAL_STATES"]
