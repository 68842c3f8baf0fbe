"""An AI Platform tuning Job -> a Vertex AI HyperparameterTuningJob, its checks, and its trials read back (pure).

Vertex runs tuning as its own resource, `projects.locations.hyperparameterTuningJobs` (aiplatform.v1.json
`GoogleCloudAiplatformV1HyperparameterTuningJob`: a StudySpec, a trial CustomJobSpec, trial counts), not inside a
CustomJob. `translate(job, key=..., display_name=...)` builds it from the completed AI Platform Job; every field is
from aiplatform.v1.json and ml.v1.json (field and enum descriptions quoted where they decide something):

AI Platform (`trainingInput.hyperparameters`) -> Vertex AI HyperparameterTuningJob:

- `goal` + `hyperparameterMetricTag` (default "training/hptuning/metric", the tag cloudml-hypertune writes when a
  trainer gives none) -> `studySpec.metrics[0]` {`metricId`, `goal`};
- `params[].parameterName` -> `studySpec.parameters[].parameterId` (Vertex passes each value to the trials as
  `--<parameterId>=<value>`, as AI Platform did);
- `type` DOUBLE / INTEGER + `minValue`, `maxValue` -> `doubleValueSpec` / `integerValueSpec` {minValue, maxValue}
  (int64: decimal strings); CATEGORICAL + `categoricalValues` / DISCRETE + `discreteValues` ->
  `categoricalValueSpec.values` / `discreteValueSpec.values`;
- `scaleType` UNIT_LINEAR_SCALE, UNIT_LOG_SCALE, UNIT_REVERSE_LOG_SCALE -> the same names; `NONE` / unset -> unset
  (Vertex: SCALE_TYPE_UNSPECIFIED "By default, no scaling is applied", ml v1's NONE);
- `algorithm` GRID_SEARCH / RANDOM_SEARCH -> the same; unset -> unset (both APIs' default algorithm; ml v1 says
  "a Bayesian optimization algorithm");
- a trial's result is its final metric ("the final objective metric seen") -> `studySpec.measurementSelectionType`
  LAST_MEASUREMENT (Vertex's default too, "Will be treated as LAST_MEASUREMENT"; written so the intent is explicit);
- `enableTrialEarlyStopping: true` -> `studySpec.medianAutomatedStoppingSpec` {useElapsedDuration: false}, warned:
  AI Platform never documented its rule; the median rule is the one aiplatform.v1.json documents, and the local
  service applies the same;
- `maxTrials` (default 1) / `maxParallelTrials` (default 1) -> `maxTrialCount` / `parallelTrialCount` (both
  "Required": the defaults are written); `maxFailedTrials` -> `maxFailedTrialCount` (0 on both: the service decides);
- `resumePreviousJobId` -> nothing, warned: a HyperparameterTuningJob cannot resume a study; the job runs a new one;
- everything else of the job -> `trialJobSpec` = the CustomJob translation's `jobSpec` (vertex_translate.py);
  `displayName`, `labels` (with the submitter's key labels) and `encryptionSpec` likewise.

Checks (`validate`): the body against `GoogleCloudAiplatformV1HyperparameterTuningJob` of the bundled
aiplatform.v1.json (the same schema walker as the CustomJob's; `trialJobSpec` is checked as the CustomJob's jobSpec
with all its rules, by `vertex_translate.validate`), then what the schema cannot say: one metric with a metricId
without whitespace; at least one parameter, ids unique and without whitespace, exactly the value spec of its kind;
bounds in order (integers whole); log scales on strictly positive ranges ("The entire feasible space must be
strictly positive"); no scaleType on a categorical parameter ("Leave unset for CATEGORICAL parameters"); discrete
values increasing and at least 1e-10 apart, at most 1,000; categorical values non-empty and unique; GRID_SEARCH
only with INTEGER, CATEGORICAL and DISCRETE parameters; maxTrialCount and parallelTrialCount at least 1,
maxFailedTrialCount not negative. Every violation names the AI Platform field (`trainingInput.hyperparameters.
params[1].minValue`) and the Vertex field in its message.

Reading back (`study_of`): `trials[]` of the resource become the neutral `model.Study`: `id`, `state`
(REQUESTED -> QUEUED, ACTIVE -> RUNNING, STOPPING -> CANCELLING, SUCCEEDED -> SUCCEEDED, INFEASIBLE -> FAILED:
"done but missing the final_measurement"), `parameters[]` {parameterId, value} (numbers formatted as a trainer
receives them: 12 for a whole number, Python's repr otherwise), `finalMeasurement` {stepCount, metrics[]} (the
study's metricId), `measurements[]`, `startTime`, `endTime`, `infeasibleReason`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..model import DEFAULT_METRIC_TAG, JobState, Measurement, Study, Trial
from ..reasons import Reason, Violation
from ..schema import AIPLATFORM_V1, Document, check_document
from . import vertex_translate as vt

COLLECTION = "hyperparameterTuningJobs"
TUNING_JOB = Document(AIPLATFORM_V1.path, "GoogleCloudAiplatformV1HyperparameterTuningJob", AIPLATFORM_V1.prefix,
                      AIPLATFORM_V1.label)
HP = "trainingInput.hyperparameters"
MAX_DISCRETE_VALUES = 1000  # DiscreteValueSpec.values: "This list should not contain more than 1,000 values"
MIN_DISCRETE_GAP = 1e-10  # "in increasing order and at least 1e-10 apart"
_KINDS = {"DOUBLE": "doubleValueSpec", "INTEGER": "integerValueSpec", "CATEGORICAL": "categoricalValueSpec",
          "DISCRETE": "discreteValueSpec"}
_SCALES = ("UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
_TRIAL_STATES: dict[str, JobState | None] = {
    "REQUESTED": JobState.QUEUED, "ACTIVE": JobState.RUNNING, "STOPPING": JobState.CANCELLING,
    "SUCCEEDED": JobState.SUCCEEDED, "INFEASIBLE": JobState.FAILED, "STATE_UNSPECIFIED": None}


def translate(job: dict[str, Any], *, key: str, display_name: str, options: vt.Options = vt.Options()
              ) -> vt.Translation:
    """Translate a completed AI Platform tuning Job into a HyperparameterTuningJob and check it (`validate`).

    Args:
        job: the completed Job with `trainingInput.hyperparameters` (malformed parts are skipped, never raised on;
            the ml v1 checks report them).
        key / display_name / options: as for `vertex_translate.translate`.
    Returns:
        A Translation whose `custom_job` is the HyperparameterTuningJob body, `collection`
        "hyperparameterTuningJobs".
    """
    ti = _dict(job.get("trainingInput"))
    hp = _dict(ti.get("hyperparameters"))
    trial = vt.translate_custom_job({**job, "trainingInput": {k: v for k, v in ti.items() if k != "hyperparameters"}},
                                    key=key, display_name=display_name, options=options)
    warnings = list(trial.warnings)
    origins = {**{f"trialJobSpec{k[len('jobSpec'):]}": v for k, v in trial.origins.items() if k.startswith("jobSpec")},
               **{k: v for k, v in trial.origins.items() if not k.startswith("jobSpec")}}
    study: dict[str, Any] = {
        "metrics": [{"metricId": str(hp.get("hyperparameterMetricTag") or DEFAULT_METRIC_TAG),
                     "goal": hp.get("goal") or "MAXIMIZE"}],
        "parameters": [_parameter(p, i, origins) for i, p in enumerate(hp.get("params") or [])],
        "measurementSelectionType": "LAST_MEASUREMENT",
    }
    origins.update({"studySpec.metrics[0].metricId": f"{HP}.hyperparameterMetricTag",
                    "studySpec.metrics[0].goal": f"{HP}.goal", "studySpec.metrics": f"{HP}.goal",
                    "studySpec.parameters": f"{HP}.params", "studySpec": HP})
    algorithm = hp.get("algorithm")
    if algorithm is not None and algorithm != "ALGORITHM_UNSPECIFIED":
        study["algorithm"] = algorithm
        origins["studySpec.algorithm"] = f"{HP}.algorithm"
    if hp.get("enableTrialEarlyStopping") is True:
        study["medianAutomatedStoppingSpec"] = {"useElapsedDuration": False}
        origins["studySpec.medianAutomatedStoppingSpec"] = f"{HP}.enableTrialEarlyStopping"
        warnings.append(f"{HP}.enableTrialEarlyStopping asks Vertex for its median automated stopping rule "
                        "(studySpec.medianAutomatedStoppingSpec): AI Platform did not document the rule it applied, "
                        "so trials may be stopped at other points than on AI Platform")
    if hp.get("resumePreviousJobId") is not None:
        warnings.append(f"{HP}.resumePreviousJobId has no Vertex equivalent (a HyperparameterTuningJob cannot resume "
                        f"a study): the job runs a new study, without the trials of {hp['resumePreviousJobId']}")
    body: dict[str, Any] = {"displayName": trial.custom_job.get("displayName"),
                            "labels": trial.custom_job.get("labels"), "studySpec": study,
                            "maxTrialCount": _count(hp.get("maxTrials"), 1),
                            "parallelTrialCount": _count(hp.get("maxParallelTrials"), 1)}
    origins.update({"maxTrialCount": f"{HP}.maxTrials", "parallelTrialCount": f"{HP}.maxParallelTrials",
                    "maxFailedTrialCount": f"{HP}.maxFailedTrials"})
    if hp.get("maxFailedTrials") is not None:
        body["maxFailedTrialCount"] = hp["maxFailedTrials"]
    body["trialJobSpec"] = trial.custom_job.get("jobSpec")
    if "encryptionSpec" in trial.custom_job:
        body["encryptionSpec"] = trial.custom_job["encryptionSpec"]
    found_again = vt.validate(trial.custom_job, trial.origins)  # `validate` finds these again, in trialJobSpec
    refusals = [v for v in trial.violations if v not in found_again]
    violations = refusals + validate(body, origins)
    return vt.Translation(body, trial.region, warnings, _unique(violations), origins, collection=COLLECTION)


def _parameter(raw: Any, index: int, origins: dict[str, str]) -> dict[str, Any]:
    """One ParameterSpec -> StudySpec.ParameterSpec (module docstring); unknown types keep an empty value spec so
    `validate` reports them."""
    p = _dict(raw)
    path, source = f"studySpec.parameters[{index}]", f"{HP}.params[{index}]"
    origins.update({path: source, f"{path}.parameterId": f"{source}.parameterName",
                    f"{path}.scaleType": f"{source}.scaleType"})
    out: dict[str, Any] = {"parameterId": p.get("parameterName")}
    kind = p.get("type")
    spec_name = _KINDS.get(str(kind))
    if kind in ("DOUBLE", "INTEGER"):
        convert = _int_string if kind == "INTEGER" else (lambda v: v)
        out[str(spec_name)] = {k: convert(p[k]) for k in ("minValue", "maxValue") if p.get(k) is not None}
        for k in ("minValue", "maxValue"):
            origins[f"{path}.{spec_name}.{k}"] = f"{source}.{k}"
    elif kind == "CATEGORICAL":
        out[str(spec_name)] = {"values": p.get("categoricalValues")}
        origins[f"{path}.{spec_name}"] = f"{source}.categoricalValues"
    elif kind == "DISCRETE":
        out[str(spec_name)] = {"values": p.get("discreteValues")}
        origins[f"{path}.{spec_name}"] = f"{source}.discreteValues"
    else:
        origins[path] = f"{source}.type"
    scale = p.get("scaleType")
    if scale in _SCALES:
        out["scaleType"] = scale
    return out


# -- checks ----------------------------------------------------------------------------------------------------------
def validate(body: dict[str, Any], origins: dict[str, str] | None = None) -> list[Violation]:
    """Check a HyperparameterTuningJob before any call (module docstring).

    Args:
        body: the HyperparameterTuningJob.
        origins: Vertex path -> AI Platform field (Translation.origins); None for a body checked on its own.
    Returns:
        Violations naming the AI Platform field (the Vertex path when there is no origin) and the Vertex field.
    """
    origins = origins or {}
    trial_spec = body.get("trialJobSpec")
    rest = {k: v for k, v in body.items() if k != "trialJobSpec"}
    found: list[tuple[str, str, Any]] = [(v.field, v.message, v.value) for v in check_document(rest, TUNING_JOB)]

    def bad(path: str, message: str, value: Any = None) -> None:
        found.append((path, message, value))

    if not isinstance(trial_spec, dict):
        bad("trialJobSpec", "is required: the spec of the CustomJob each trial runs")
    study = _dict(body.get("studySpec"))
    if not study:
        bad("studySpec", "is required")
    metrics = study.get("metrics")
    if not isinstance(metrics, list) or len(metrics) != 1:
        bad("studySpec.metrics", "needs exactly one metric: the one the trials report")
    else:
        metric = _dict(metrics[0])
        metric_id = metric.get("metricId")
        if not isinstance(metric_id, str) or not metric_id or re.search(r"\s", metric_id):
            bad("studySpec.metrics[0].metricId", "is required and \"must not contain whitespaces\"", metric_id)
        if metric.get("goal") not in ("MAXIMIZE", "MINIMIZE"):
            bad("studySpec.metrics[0].goal", "must be MAXIMIZE or MINIMIZE", metric.get("goal"))
    parameters = study.get("parameters")
    if not isinstance(parameters, list) or not parameters:
        bad("studySpec.parameters", "needs at least one parameter to tune")
        parameters = []
    seen: set[str] = set()
    for i, raw in enumerate(parameters):
        _check_parameter(_dict(raw), f"studySpec.parameters[{i}]", study.get("algorithm"), seen, bad)
    for field in ("maxTrialCount", "parallelTrialCount"):
        value = body.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            bad(field, "is required and must be at least 1", value)
    failed = body.get("maxFailedTrialCount")
    if isinstance(failed, int) and not isinstance(failed, bool) and failed < 0:
        bad("maxFailedTrialCount", "must not be negative (0: Vertex decides)", failed)
    out = []
    for path, message, value in found:
        field = vt._ai_field(path, origins)
        shown = message if field == path else f"{message} (Vertex field {path})"
        out.append(Violation(field, shown, Reason.INVALID_LABELS if field.startswith("labels") else
                             Reason.SPEC_INVALID, value))
    if isinstance(trial_spec, dict):
        trial_origins = {(f"jobSpec{k[len('trialJobSpec'):]}" if k.startswith("trialJobSpec") else k): v
                         for k, v in origins.items()} or None
        wrapped = {"displayName": body.get("displayName"), "labels": body.get("labels"), "jobSpec": trial_spec}
        for v in vt.validate(wrapped, trial_origins):
            message = v.message.replace("(Vertex field jobSpec", "(Vertex field trialJobSpec")
            field = "trialJobSpec" + v.field[len("jobSpec"):] if v.field.startswith("jobSpec") else v.field
            out.append(Violation(field, message, v.reason, v.value))
    return _unique(out)


def _check_parameter(p: dict[str, Any], path: str, algorithm: Any, seen: set[str], bad: Any) -> None:
    pid = p.get("parameterId")
    if not isinstance(pid, str) or not pid or re.search(r"\s", pid):
        bad(f"{path}.parameterId", "is required and \"must not contain whitespaces\"", pid)
    elif pid in seen:
        bad(f"{path}.parameterId", f"{pid!r} is used twice; parameter ids \"must be unique\"", pid)
    else:
        seen.add(pid)
    specs = [k for k in _KINDS.values() if k in p]
    if len(specs) != 1:
        bad(path, "needs exactly one of doubleValueSpec, integerValueSpec, categoricalValueSpec, discreteValueSpec; "
            f"it has {', '.join(specs) or 'none'}")
        return
    kind = specs[0]
    spec = _dict(p[kind])
    scale = p.get("scaleType")
    log = scale in ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
    where = f"{path}.{kind}"
    if kind in ("doubleValueSpec", "integerValueSpec"):
        low, high = _number(spec.get("minValue"), kind), _number(spec.get("maxValue"), kind)
        if low is None or high is None:
            bad(where, "needs minValue and maxValue" + (" (whole numbers)" if kind == "integerValueSpec" else ""))
        elif low > high:
            bad(f"{where}.minValue", f"minValue {spec.get('minValue')} is greater than maxValue {spec.get('maxValue')}",
                spec.get("minValue"))
        elif log and low <= 0:
            bad(f"{where}.minValue", f"{scale} needs a strictly positive range (\"The entire feasible space must be "
                f"strictly positive\"); minValue is {spec.get('minValue')}", spec.get("minValue"))
        if kind == "doubleValueSpec" and algorithm == "GRID_SEARCH":
            bad(f"{path}.doubleValueSpec", "GRID_SEARCH works only with INTEGER, CATEGORICAL and DISCRETE parameters "
                "(StudySpec.algorithm)")
    elif kind == "categoricalValueSpec":
        values = spec.get("values")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            bad(f"{where}.values", "needs at least one category, each a non-empty string", values)
        elif len(set(values)) != len(values):
            bad(f"{where}.values", "holds a category twice", values)
        if scale is not None:
            bad(f"{path}.scaleType", "must be unset for a CATEGORICAL parameter (\"Leave unset for CATEGORICAL "
                "parameters\")", scale)
    else:
        values = spec.get("values")
        nums = [v for v in values if _finite(v)] if isinstance(values, list) else []
        if not isinstance(values, list) or not values or len(nums) != len(values):
            bad(f"{where}.values", "needs at least one number", values)
        elif any(b - a < MIN_DISCRETE_GAP for a, b in zip(nums, nums[1:])):
            bad(f"{where}.values", "must be increasing and at least 1e-10 apart", values)
        elif len(nums) > MAX_DISCRETE_VALUES:
            bad(f"{where}.values", f"has {len(nums)} values; at most {MAX_DISCRETE_VALUES}", len(nums))
        elif log and nums[0] <= 0:
            bad(f"{where}.values", f"{scale} needs strictly positive values", values)


# -- reading back ----------------------------------------------------------------------------------------------------
def study_of(job: dict[str, Any]) -> Study | None:
    """The neutral Study of a HyperparameterTuningJob resource, or None for another resource (module docstring)."""
    study = job.get("studySpec")
    if not isinstance(study, dict):
        return None
    metrics = study.get("metrics") if isinstance(study.get("metrics"), list) else []
    metric = _dict(metrics[0]) if metrics else {}
    metric_id = str(metric.get("metricId") or DEFAULT_METRIC_TAG)
    goal = str(metric.get("goal")) if metric.get("goal") in ("MAXIMIZE", "MINIMIZE") else "MAXIMIZE"
    trials = []
    for raw in job.get("trials") or []:
        if not isinstance(raw, dict) or not raw.get("id"):
            continue
        final = _measurement(raw.get("finalMeasurement"), metric_id)
        measured = tuple(m for m in (_measurement(x, metric_id) for x in raw.get("measurements") or [])
                         if m is not None)
        params = {str(p.get("parameterId")): _format(p.get("value")) for p in raw.get("parameters") or []
                  if isinstance(p, dict) and p.get("parameterId")}
        trials.append(Trial(trial_id=str(raw["id"]), state=_TRIAL_STATES.get(str(raw.get("state"))),
                            hyperparameters=params, final=final, measurements=measured,
                            start_time=raw.get("startTime"), end_time=raw.get("endTime"),
                            error_message=raw.get("infeasibleReason") or None))
    count = job.get("maxTrialCount")
    return Study(goal=goal, metric_tag=metric_id, trials=tuple(trials),
                 max_trials=count if isinstance(count, int) and not isinstance(count, bool) else None)


def _measurement(raw: Any, metric_id: str) -> Measurement | None:
    m = _dict(raw)
    for metric in m.get("metrics") or []:
        if isinstance(metric, dict) and metric.get("metricId") == metric_id and _finite(metric.get("value")):
            try:
                step = int(m.get("stepCount") or 0)
            except (TypeError, ValueError):
                step = 0
            return Measurement(step=step, value=float(metric["value"]))
    return None


def _format(value: Any) -> str:
    """A parameter value as a trainer receives it: 12 for a whole number, repr for other numbers, strings as they
    are (TrialParameter.value: "number_value" for INTEGER, DOUBLE, DISCRETE; "string_value" for CATEGORICAL)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# -- helpers ---------------------------------------------------------------------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, kind: str) -> float | None:
    if kind == "integerValueSpec":
        return float(value) if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value) else None
    return float(value) if _finite(value) else None


def _int_string(value: Any) -> Any:
    """int64 fields are decimal strings on the wire; a whole number written as a float (3.0) becomes "3"; anything
    else is kept so the schema reports it."""
    if _finite(value) and float(value).is_integer():
        return str(int(value))
    return value


def _count(value: Any, default: int) -> Any:
    return default if value is None else value


def _unique(violations: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, str]] = set()
    out = []
    for v in violations:
        if (v.field, v.message) not in seen:
            seen.add((v.field, v.message))
            out.append(v)
    return out


__all__ = ["COLLECTION", "translate", "validate", "study_of"]
