"""Hyperparameter tuning on the local training service: the study's rules, as pure functions.

`trials.py` runs the trials; everything it decides comes from here, so each rule is tested on its own
(`tests/test_study.py`). A Vertex HyperparameterTuningJob's studySpec is mapped onto the same `StudySpec`
(`vertex_tuning.study_spec`), so both APIs draw values and apply limits alike. Sources: the field and enum
descriptions of `GoogleCloudMlV1__HyperparameterSpec`, `__ParameterSpec` and `__HyperparameterOutput` in ml.v1.json
(bundled with google-api-python-client), the cloudml-hypertune package (its `hypertune.py`: the metric file format),
and for early stopping the median rule as aiplatform.v1.json describes `StudySpecMedianAutomatedStoppingSpec`.

What a study is here (`StudySpec.from_training_input`):

- `goal` MAXIMIZE or MINIMIZE; `hyperparameterMetricTag` (default "training/hptuning/metric"); `maxTrials` and
  `maxParallelTrials` ("Defaults to one" each); `maxFailedTrials` (0: "the service decides"); `algorithm`;
  `enableTrialEarlyStopping`; `resumePreviousJobId`.
- Values (`Suggester`):
  - GRID_SEARCH ("all parameters must be INTEGER, CATEGORICAL, or DISCRETE"): every combination in order, the first
    parameter varying slowest (`itertools.product` over each parameter's feasible values: INTEGER min..max,
    DISCRETE and CATEGORICAL in the order written). A grid smaller than maxTrials ends the study when it is used
    up; points a resumed study already tried are skipped.
  - RANDOM_SEARCH: each parameter drawn independently on its scale (`Param.from_unit` of a uniform number):
    UNIT_LINEAR_SCALE (and NONE / unset) uniform; UNIT_LOG_SCALE uniform in log space; UNIT_REVERSE_LOG_SCALE
    mirrored log ("values close to the top of the feasible space are spread out more than points near the
    bottom"): min + max - exp(uniform(log min, log max)); INTEGER on [min, max + 1) then floored; CATEGORICAL
    and DISCRETE uniformly among their values. A point already tried is redrawn (up to 20 times).
  - ALGORITHM_UNSPECIFIED (AI Platform: "a Bayesian optimization algorithm"): NOT Bayesian optimisation here. The
    stand-in: random search until `max(2, maxParallelTrials)` trials have a metric, then every other suggestion
    is a perturbation of the best trial so far (each parameter moved by a Gaussian step of 0.15 in its unit
    space, a categorical one kept with probability 0.7) and the others random. It exploits what finished trials
    found, as Bayesian optimisation does, without modelling the objective; results will differ from Google's.
  - Draws are deterministic per (jobId, trial number): the same job on the same service repeats its values.
- Trial arguments: `--<parameterName>=<value>` after the job's args (before `--job-dir`), values formatted as
  `Param.format` gives them: INTEGER `12`, DOUBLE `repr` of the float (`0.0316...`), DISCRETE as written in the
  spec (`4` for a YAML integer, `0.5`), CATEGORICAL the category.
- Metrics (`read_metric_file`): cloudml-hypertune rewrites its file with up to 100 JSON lines
  `{"timestamp", "trial", "<tag>": "<value as str>", "global_step": "<int as str>", "checkpoint_path"}`; a
  trial's measurements are the lines holding the job's tag (other tags are noted in the trial's log), a value
  that is not a finite number is skipped. The final metric is the last line ("The final objective metric seen
  for this trial").
- Early stopping (`median_rule_stops`, with enableTrialEarlyStopping): the median rule of Vertex AI
  (aiplatform.v1.json `StudySpecMedianAutomatedStoppingSpec`): a running trial is stopped when its best value so
  far is strictly worse than the median, over the completed trials with a measurement at or before the running
  trial's last step, of their running averages up to that step. At least one completed trial is needed. AI
  Platform did not document its own rule; this is the one Vertex documents, and the Vertex translation asks for
  it (`medianAutomatedStoppingSpec`). A stopped trial ends SUCCEEDED with `isTrialStoppedEarly` and its last
  measurement as final metric.
- Failed trials (`failure_verdict`): with maxFailedTrials N > 0 the job fails once N trials failed (running
  trials are stopped); with 0 ("the service decides") the local rule is: the job fails once min(3, maxTrials)
  trials failed while none has succeeded. At the end the job SUCCEEDED only if a trial SUCCEEDED with the metric;
  otherwise it fails and says why (no metric: the tag and the file it was read from).
- trainingOutput (`training_output`): `isHyperparameterTuningJob` true, `completedTrialCount` (SUCCEEDED trials,
  int64 as a string), `hyperparameterMetricTag`, `consumedMLUnits`, and `trials[]` best first by goal (trials
  without a final metric after, by trial id), each with `trialId`, `hyperparameters`, `finalMetric`
  {`trainingStep`, `objectiveValue`}, `allMetrics` (at most 100, as cloudml-hypertune keeps), `startTime`,
  `endTime`, `state`, `isTrialStoppedEarly` (true only; false is left out like every proto3 default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
import statistics
from collections.abc import Iterator
from typing import Any

DEFAULT_METRIC_TAG = "training/hptuning/metric"
DEFAULT_FAILED_LIMIT = 3  # maxFailedTrials 0: fail after this many failures (fewer when maxTrials is smaller) ...
# ... while no trial has succeeded; a local rule, documented in docs/local-training.md
MAX_METRICS_KEPT = 100  # cloudml-hypertune keeps the last 100 lines; allMetrics keeps as many
STAND_IN_STEP = 0.15
STAND_IN_KEEP_CATEGORY = 0.7
REDRAWS = 20

SUCCEEDED, FAILED, CANCELLED, RUNNING = "SUCCEEDED", "FAILED", "CANCELLED", "RUNNING"


class StudyError(ValueError):
    """A hyperparameter spec the local service cannot run (the message says which field and why)."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter to tune (ml.v1.json `ParameterSpec`).

    name: parameterName; type: DOUBLE, INTEGER, CATEGORICAL or DISCRETE; low / high: minValue / maxValue
    (numeric types); values: categoricalValues or discreteValues, as written; scale: scaleType
    (UNIT_LINEAR_SCALE, UNIT_LOG_SCALE, UNIT_REVERSE_LOG_SCALE; NONE or unset: linear).
    """

    name: str
    type: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()
    scale: str = "NONE"

    @classmethod
    def from_spec(cls, raw: dict[str, Any]) -> Param:
        """A Param from a ParameterSpec dict. Raises StudyError for what cannot be sampled."""
        name, kind = raw.get("parameterName"), raw.get("type")
        if not isinstance(name, str) or not name:
            raise StudyError("every parameter needs a parameterName")
        scale = str(raw.get("scaleType") or "NONE")
        if kind in ("DOUBLE", "INTEGER"):
            low, high = raw.get("minValue"), raw.get("maxValue")
            if not _number(low) or not _number(high) or float(low) > float(high):
                raise StudyError(f"parameter {name!r}: {kind} needs minValue <= maxValue")
            if kind == "INTEGER" and (float(low) != int(low) or float(high) != int(high)):
                raise StudyError(f"parameter {name!r}: INTEGER needs whole-number bounds")
            if scale in ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE") and float(low) <= 0:
                raise StudyError(f"parameter {name!r}: {scale} needs a strictly positive range")
            return cls(name, kind, float(low), float(high), (), scale)
        if kind == "CATEGORICAL":
            values = raw.get("categoricalValues")
            if not isinstance(values, list) or not values:
                raise StudyError(f"parameter {name!r}: CATEGORICAL needs categoricalValues")
            return cls(name, kind, values=tuple(str(v) for v in values))
        if kind == "DISCRETE":
            values = raw.get("discreteValues")
            if not isinstance(values, list) or not values or not all(_number(v) for v in values):
                raise StudyError(f"parameter {name!r}: DISCRETE needs numeric discreteValues")
            return cls(name, kind, values=tuple(values), scale=scale)
        raise StudyError(f"parameter {name!r}: unknown type {kind!r}")

    # -- values ------------------------------------------------------------------------------------------
    def grid(self) -> list[Any]:
        """Every feasible value, in order (INTEGER, CATEGORICAL, DISCRETE only). Raises StudyError for DOUBLE."""
        if self.type == "INTEGER":
            return list(range(int(self.low), int(self.high) + 1))
        if self.type in ("CATEGORICAL", "DISCRETE"):
            return list(self.values)
        raise StudyError(f"parameter {self.name!r}: GRID_SEARCH works only with INTEGER, CATEGORICAL and DISCRETE "
                         "parameters (ml.v1.json HyperparameterSpec.algorithm)")

    def from_unit(self, u: float) -> Any:
        """The value at `u` in [0, 1] of the parameter's scaled space; a uniform `u` gives the scale's sampling."""
        u = min(max(u, 0.0), 1.0)
        if self.type in ("CATEGORICAL", "DISCRETE"):
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        low, high = self.low, self.high + (1.0 if self.type == "INTEGER" else 0.0)
        if self.scale == "UNIT_LOG_SCALE":
            x = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        elif self.scale == "UNIT_REVERSE_LOG_SCALE":
            x = low + high - math.exp(math.log(low) + (1.0 - u) * (math.log(high) - math.log(low)))
        else:
            x = low + u * (high - low)
        if self.type == "INTEGER":
            return int(min(max(math.floor(x), self.low), self.high))
        return min(max(x, self.low), self.high)

    def to_unit(self, value: Any) -> float:
        """The inverse of `from_unit` (the middle of an integer's or a category's cell)."""
        if self.type in ("CATEGORICAL", "DISCRETE"):
            index = next((i for i, v in enumerate(self.values) if str(v) == str(value)), 0)
            return (index + 0.5) / len(self.values)
        x = float(value) + (0.5 if self.type == "INTEGER" else 0.0)
        low, high = self.low, self.high + (1.0 if self.type == "INTEGER" else 0.0)
        if high == low:
            return 0.5
        if self.scale == "UNIT_LOG_SCALE":
            return (math.log(x) - math.log(low)) / (math.log(high) - math.log(low))
        if self.scale == "UNIT_REVERSE_LOG_SCALE":
            return 1.0 - (math.log(max(low + high - x, low)) - math.log(low)) / (math.log(high) - math.log(low))
        return (x - low) / (high - low)

    def format(self, value: Any) -> str:
        """The value as the trainer receives it in `--<name>=<value>` (and as trainingOutput reports it)."""
        if self.type == "INTEGER":
            return str(int(value))
        if self.type == "DOUBLE":
            return repr(float(value))
        return str(value)


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What a tuning job asks for (see the module docstring for each field's meaning and default).

    max_failed_field / metric_field: how the job's API names maxFailedTrials and the metric tag, for messages
    (ml v1's by default; a Vertex HyperparameterTuningJob's are maxFailedTrialCount and
    studySpec.metrics[0].metricId).
    """

    goal: str
    metric_tag: str
    params: tuple[Param, ...]
    max_trials: int = 1
    max_parallel: int = 1
    max_failed: int = 0
    algorithm: str = "ALGORITHM_UNSPECIFIED"
    early_stopping: bool = False
    resume_from: str | None = None
    max_failed_field: str = "hyperparameters.maxFailedTrials"
    metric_field: str = "hyperparameterMetricTag"

    @classmethod
    def from_training_input(cls, ti: dict[str, Any]) -> StudySpec:
        """The study of a TrainingInput with `hyperparameters`. Raises StudyError for a spec it cannot run."""
        hp = ti.get("hyperparameters")
        if not isinstance(hp, dict):
            raise StudyError("trainingInput.hyperparameters must be a HyperparameterSpec")
        goal = hp.get("goal") or "MAXIMIZE"  # "Defaults to MAXIMIZE"
        if goal not in ("MAXIMIZE", "MINIMIZE"):
            raise StudyError(f"goal must be MAXIMIZE or MINIMIZE, got {goal!r}")
        raw = hp.get("params")
        if not isinstance(raw, list) or not raw:
            raise StudyError("hyperparameters.params needs at least one parameter")
        params = tuple(Param.from_spec(p if isinstance(p, dict) else {}) for p in raw)
        if len({p.name for p in params}) != len(params):
            raise StudyError("parameterName must be unique amongst the params")
        algorithm = str(hp.get("algorithm") or "ALGORITHM_UNSPECIFIED")
        if algorithm == "GRID_SEARCH":
            for p in params:
                p.grid()
        spec = cls(goal=goal, metric_tag=str(hp.get("hyperparameterMetricTag") or DEFAULT_METRIC_TAG),
                   params=params, max_trials=_positive(hp.get("maxTrials"), 1),
                   max_parallel=_positive(hp.get("maxParallelTrials"), 1), max_failed=_count(hp.get("maxFailedTrials")),
                   algorithm=algorithm, early_stopping=bool(hp.get("enableTrialEarlyStopping")),
                   resume_from=str(hp["resumePreviousJobId"]) if hp.get("resumePreviousJobId") else None)
        return spec

    def better(self, a: float, b: float) -> bool:
        """True when objective value `a` is strictly better than `b` for the goal."""
        return a > b if self.goal == "MAXIMIZE" else a < b

    def args(self, values: dict[str, str]) -> list[str]:
        """The trial's extra arguments: `--<parameterName>=<value>` in the params' order."""
        return [f"--{p.name}={values[p.name]}" for p in self.params if p.name in values]


# -- suggestions -----------------------------------------------------------------------------------------------
class Suggester:
    """The values of the next trials, by the study's algorithm (module docstring).

    Args:
        spec: the study.
        seed: what makes the draws of this job its own (the jobId).
        tried: the values of trials already run (a resumed study's, then each suggestion as it is made).
    """

    def __init__(self, spec: StudySpec, seed: str, tried: list[dict[str, str]] | None = None):
        self.spec = spec
        self.seed = seed
        self.tried: list[dict[str, str]] = list(tried or [])
        self._grid: Iterator[tuple[Any, ...]] | None = None
        self.count = 0  # suggestions made by this Suggester

    def _rng(self) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}/{len(self.tried)}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def suggest(self, scored: list[tuple[dict[str, str], float]] | None = None) -> dict[str, str] | None:
        """The next trial's values ({parameterName: formatted value}), or None when a grid is used up.

        Args:
            scored: (values, final objective value) of every trial with a metric so far (the stand-in uses them).
        """
        if self.spec.algorithm == "GRID_SEARCH":
            values = self._next_grid()
        elif self.spec.algorithm == "RANDOM_SEARCH":
            values = self._random(self._rng())
        else:
            values = self._stand_in(self._rng(), list(scored or []))
        if values is not None:
            self.tried.append(values)
            self.count += 1
        return values

    def _next_grid(self) -> dict[str, str] | None:
        if self._grid is None:
            self._grid = itertools.product(*(p.grid() for p in self.spec.params))
        seen = {tuple(sorted(t.items())) for t in self.tried}
        for point in self._grid:
            values = {p.name: p.format(v) for p, v in zip(self.spec.params, point)}
            if tuple(sorted(values.items())) not in seen:
                return values
        return None

    def _draw(self, rng: random.Random) -> dict[str, str]:
        return {p.name: p.format(p.from_unit(rng.random())) for p in self.spec.params}

    def _random(self, rng: random.Random) -> dict[str, str]:
        seen = {tuple(sorted(t.items())) for t in self.tried}
        values = self._draw(rng)
        for _ in range(REDRAWS):
            if tuple(sorted(values.items())) not in seen:
                break
            values = self._draw(rng)
        return values

    def _stand_in(self, rng: random.Random, scored: list[tuple[dict[str, str], float]]) -> dict[str, str]:
        """Random until enough trials have a metric, then alternately a perturbation of the best one."""
        if len(scored) < max(2, self.spec.max_parallel) or self.count % 2 == 0:
            return self._random(rng)
        pick = max if self.spec.goal == "MAXIMIZE" else min
        best_values = pick(scored, key=lambda item: item[1])[0]
        out = {}
        for p in self.spec.params:
            current = best_values.get(p.name)
            if current is None:
                out[p.name] = p.format(p.from_unit(rng.random()))
            elif p.type == "CATEGORICAL":
                out[p.name] = current if rng.random() < STAND_IN_KEEP_CATEGORY else p.format(p.from_unit(rng.random()))
            else:
                out[p.name] = p.format(p.from_unit(p.to_unit(current) + rng.gauss(0.0, STAND_IN_STEP)))
        return out


# -- metrics ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Reading:
    """What a trial's metric file holds: measurements of the job's tag as (step, value), oldest first, and the
    other tags it reported (to explain a trial that reported under another name)."""

    measurements: tuple[tuple[int, float], ...] = ()
    other_tags: tuple[str, ...] = ()


def read_metric_file(text: str, tag: str) -> Reading:
    """Parse cloudml-hypertune's metric file (JSON lines; see the module docstring). Unparsable lines (a file read
    while it is rewritten) and non-finite values are skipped; lines are ordered by their timestamp."""
    found: list[tuple[float, int, float]] = []
    others: set[str] = set()
    for i, line in enumerate(text.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if tag not in entry:
            others.update(k for k in entry if k not in ("timestamp", "trial", "global_step", "checkpoint_path"))
            continue
        try:
            value = float(entry[tag])
            step = int(float(entry.get("global_step") or 0))
            stamp = float(entry.get("timestamp", i))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            found.append((stamp, max(step, 0), value))
    found.sort(key=lambda t: t[0])
    return Reading(tuple((step, value) for _, step, value in found), tuple(sorted(others)))


# -- early stopping --------------------------------------------------------------------------------------------
def median_rule_stops(goal: str, running: list[tuple[int, float]], completed: list[list[tuple[int, float]]]) -> bool:
    """The median automated stopping rule (aiplatform.v1.json StudySpecMedianAutomatedStoppingSpec): stop a pending
    trial whose best objective value is strictly worse than the median of the completed trials' running averages
    of the values they reported up to the pending trial's last measurement (its step).

    Args:
        goal: MAXIMIZE or MINIMIZE.
        running: the pending trial's measurements (step, value), oldest first.
        completed: each completed trial's measurements.
    Returns:
        True to stop it; False without a measurement, or without a completed trial measured by that step.
    """
    if not running:
        return False
    step = running[-1][0]
    averages = []
    for measurements in completed:
        upto = [value for s, value in measurements if s <= step]
        if upto:
            averages.append(sum(upto) / len(upto))
    if not averages:
        return False
    median = statistics.median(averages)
    values = [value for _, value in running]
    best = max(values) if goal == "MAXIMIZE" else min(values)
    return best < median if goal == "MAXIMIZE" else best > median


# -- failures --------------------------------------------------------------------------------------------------
def failure_verdict(spec: StudySpec, failed: int, succeeded: int) -> str | None:
    """Why the job fails now because of failed trials, or None while it goes on (module docstring)."""
    if spec.max_failed > 0:
        if failed >= spec.max_failed:
            return f"{failed} trial(s) failed, which reaches {spec.max_failed_field} ({spec.max_failed})"
        return None
    limit = min(DEFAULT_FAILED_LIMIT, spec.max_trials)
    if failed >= limit and succeeded == 0:
        return (f"the first {failed} trial(s) failed and none succeeded ({spec.max_failed_field} is 0: the local "
                f"service fails a study after {limit} failed trial(s) without a success)")
    return None


# -- trainingOutput --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrialRecord:
    """The service's record of one trial (mutable: `trials.py` updates it as the trial runs).

    trial_id: "1", "2", ...; values: {parameterName: formatted value}; state: RUNNING, SUCCEEDED, FAILED or
    CANCELLED; start_time / end_time: RFC 3339; measurements: (step, value) oldest first; stopped_early: stopped
    by the median rule; message: why it failed (for the job's errorMessage and the trial's log); replica_seconds:
    replicas x seconds it ran (for consumedMLUnits).
    """

    trial_id: str
    values: dict[str, str]
    state: str = RUNNING
    start_time: str | None = None
    end_time: str | None = None
    measurements: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    message: str | None = None
    replica_seconds: float = 0.0

    @property
    def final(self) -> tuple[int, float] | None:
        """The final metric: the last measurement, if any."""
        return self.measurements[-1] if self.measurements else None

    def output(self) -> dict[str, Any]:
        """The trial as ml v1 `HyperparameterOutput` (int64 as strings; false and empty fields left out)."""
        out: dict[str, Any] = {"trialId": self.trial_id, "hyperparameters": dict(self.values), "state": self.state}
        if self.final is not None:
            out["finalMetric"] = {"trainingStep": str(self.final[0]), "objectiveValue": self.final[1]}
            out["allMetrics"] = [{"trainingStep": str(s), "objectiveValue": v}
                                 for s, v in self.measurements[-MAX_METRICS_KEPT:]]
        for key, value in (("startTime", self.start_time), ("endTime", self.end_time)):
            if value:
                out[key] = value
        if self.stopped_early:
            out["isTrialStoppedEarly"] = True
        return out

    @classmethod
    def from_output(cls, raw: dict[str, Any]) -> TrialRecord:
        """A trial of a previous job's trainingOutput (resumePreviousJobId)."""
        final = raw.get("finalMetric") or {}
        metrics = [(int(m.get("trainingStep") or 0), float(m["objectiveValue"]))
                   for m in raw.get("allMetrics") or [] if _number(m.get("objectiveValue"))]
        if not metrics and _number(final.get("objectiveValue")):
            metrics = [(int(final.get("trainingStep") or 0), float(final["objectiveValue"]))]
        return cls(trial_id=str(raw["trialId"]), values={str(k): str(v) for k, v in
                                                          (raw.get("hyperparameters") or {}).items()},
                   state=str(raw.get("state") or FAILED), start_time=raw.get("startTime"),
                   end_time=raw.get("endTime"), measurements=metrics,
                   stopped_early=bool(raw.get("isTrialStoppedEarly")))


def ranked(spec: StudySpec, trials: list[TrialRecord]) -> list[TrialRecord]:
    """Trials best first: SUCCEEDED ones with a final metric by objective in the goal's direction (ties: lower
    trial id), then the others by trial id."""
    sign = -1.0 if spec.goal == "MAXIMIZE" else 1.0
    scored = [t for t in trials if t.state == SUCCEEDED and t.final is not None]
    rest = [t for t in trials if t not in scored]
    return (sorted(scored, key=lambda t: (sign * t.final[1], int(t.trial_id)))  # type: ignore[index]
            + sorted(rest, key=lambda t: int(t.trial_id)))


def training_output(spec: StudySpec, trials: list[TrialRecord], consumed_ml_units: float) -> dict[str, Any]:
    """trainingOutput of a tuning job (module docstring), trials best first."""
    out: dict[str, Any] = {"isHyperparameterTuningJob": True,
                           "completedTrialCount": str(sum(1 for t in trials if t.state == SUCCEEDED)),
                           "hyperparameterMetricTag": spec.metric_tag,
                           "trials": [t.output() for t in ranked(spec, trials)]}
    if consumed_ml_units:
        out["consumedMLUnits"] = consumed_ml_units
    return out


def check_resumable(spec: StudySpec, previous: dict[str, Any] | None, previous_id: str) -> list[TrialRecord]:
    """The trials a study resumes from the finished job `previous` (resumePreviousJobId), checked.

    Raises:
        StudyError: the job does not exist, is not a finished tuning job, or tunes other parameters or goal.
    """
    if previous is None:
        raise StudyError(f"resumePreviousJobId: there is no job {previous_id!r} in this project")
    ti = previous.get("trainingInput") or {}
    if "hyperparameters" not in ti:
        raise StudyError(f"resumePreviousJobId: job {previous_id!r} is not a hyperparameter tuning job")
    if previous.get("state") not in (SUCCEEDED, FAILED, CANCELLED):
        raise StudyError(f"resumePreviousJobId: job {previous_id!r} is {previous.get('state')}; only a finished "
                         "study can be resumed")
    before = StudySpec.from_training_input(ti)
    if before.goal != spec.goal or [(p.name, p.type) for p in before.params] != [(p.name, p.type)
                                                                                   for p in spec.params]:
        raise StudyError(f"resumePreviousJobId: job {previous_id!r} tuned other parameters or another goal; a "
                         "resumed study must tune the same parameters (names and types) with the same goal")
    trials = (previous.get("trainingOutput") or {}).get("trials") or []
    return sorted((TrialRecord.from_output(t) for t in trials if isinstance(t, dict) and t.get("trialId")),
                  key=lambda t: int(t.trial_id))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


__all__ = ["StudySpec", "Param", "Suggester", "Reading", "read_metric_file", "median_rule_stops",
           "failure_verdict", "TrialRecord", "ranked", "training_output", "check_resumable", "StudyError",
           "DEFAULT_METRIC_TAG"]
