"""The neutral job model every part of the submitter speaks (pure).

Backends translate their API's resources to and from these types; the reconciler, the ledger, the
message envelope and the CLI never see an API's own state names or resource shapes.

- `JobState`: a training job's state as published (the names consumers know from AI Platform Training:
  QUEUED, PREPARING, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED).
- `Verdict`: the submitter's own decision about an input (SUBMITTED, REJECTED, SUBMIT_FAILED). Kept apart
  from job states: a verdict is never reported by a training API.
- `JobHandle`: which job, in which backend: the backend's resource name and the submitter's job key.
- `JobStatus`: what a backend reports about a job, translated.
- `Study` / `Trial` / `Measurement`: a hyperparameter tuning job's trials, translated (ml v1
  `trainingOutput.trials[]`, Vertex `HyperparameterTuningJob.trials[]`), with the best trial by the goal.
- `JobRequest` / `Submission`: what the core asks a backend to run, and what it got.

Ranks order a job's life: SUBMITTED 0 < QUEUED 1 < PREPARING 2 < RUNNING 3 < CANCELLING 4 < every final
state 5. A job never moves to a lower rank, and the rank is the message's `seq`, so it increases even
when two publishers race. Only SUCCEEDED is success; terminal and successful are kept apart.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeAlias

FINAL_RANK = 5


class JobState(enum.StrEnum):
    """A training job's state, as published."""

    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def rank(self) -> int:
        """QUEUED 1, PREPARING 2, RUNNING 3, CANCELLING 4, SUCCEEDED/FAILED/CANCELLED 5."""
        return _JOB_RANK[self]

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED (CANCELLING is not terminal)."""
        return self.rank == FINAL_RANK

    @property
    def is_success(self) -> bool:
        """True only for SUCCEEDED."""
        return self is JobState.SUCCEEDED


_JOB_RANK = {JobState.QUEUED: 1, JobState.PREPARING: 2, JobState.RUNNING: 3, JobState.CANCELLING: 4,
             JobState.SUCCEEDED: FINAL_RANK, JobState.FAILED: FINAL_RANK, JobState.CANCELLED: FINAL_RANK}
ACTIVE_STATES = (JobState.QUEUED, JobState.PREPARING, JobState.RUNNING, JobState.CANCELLING)


class Verdict(enum.StrEnum):
    """The submitter's decision about one input (a job.yaml generation, a data batch)."""

    SUBMITTED = "SUBMITTED"
    REJECTED = "REJECTED"
    SUBMIT_FAILED = "SUBMIT_FAILED"

    @property
    def rank(self) -> int:
        """SUBMITTED 0 (the job's life starts), REJECTED and SUBMIT_FAILED 5 (nothing follows)."""
        return 0 if self is Verdict.SUBMITTED else FINAL_RANK

    @property
    def is_terminal(self) -> bool:
        """True for REJECTED and SUBMIT_FAILED."""
        return self is not Verdict.SUBMITTED

    @property
    def is_success(self) -> bool:
        """Never: a verdict is not a finished job."""
        return False


PublishedState: TypeAlias = JobState | Verdict


def published_state(text: str | None) -> PublishedState | None:
    """The published state named `text` ("RUNNING", "REJECTED", ...), or None for anything else."""
    if text in _BY_NAME:
        return _BY_NAME[text]
    return None


_BY_NAME: dict[str | None, PublishedState] = {s.value: s for s in [*JobState, *Verdict]}


class DropStatus(enum.StrEnum):
    """What a drop's status document says, for the uploader (`submitter drop-status`)."""

    SUBMITTED = "SUBMITTED"
    REJECTED = "REJECTED"
    SUBMIT_FAILED = "SUBMIT_FAILED"
    DUPLICATE = "DUPLICATE"  # a byte-identical re-upload of a submitted job.yaml: a normal outcome
    WAITING = "WAITING"  # incomplete: the status names what the drop waits for

    @property
    def exit_code(self) -> int:
        """`submitter drop-status` exit code: 0 submitted or duplicate, 1 refused, 3 no verdict yet."""
        return {DropStatus.SUBMITTED: 0, DropStatus.DUPLICATE: 0, DropStatus.WAITING: 3}.get(self, 1)


@dataclasses.dataclass(frozen=True)
class JobHandle:
    """Which job, where.

    Attributes:
        backend: the backend's name ("ml_v1", "vertex", ...).
        name: the backend's resource name ("projects/p/jobs/run_1",
            "projects/p/locations/us-central1/customJobs/123").
        key: the submitter's job key (the jobId consumers key on), deterministic per input.
    """

    backend: str
    name: str
    key: str

    def as_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "name": self.name, "key": self.key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobHandle:
        return cls(backend=str(d["backend"]), name=str(d["name"]), key=str(d["key"]))


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A backend's report on one job, translated.

    Attributes:
        handle: the job.
        state: the published state, or None when the API says nothing usable (STATE_UNSPECIFIED, a state
            this submitter does not know): a poller then keeps waiting instead of guessing.
        api_state: the API's own state text, for display ("JOB_STATE_RUNNING", "STATE_UNSPECIFIED").
        create_time / start_time / end_time: RFC 3339 timestamps, when the API reports them.
        error_message: the API's error message (FAILED, CANCELLED), if any.
        labels: the job's labels.
        output_dir: where the job writes its outputs (jobDir, baseOutputDirectory), if known.
        detail: backend-specific fields consumers may want, keyed by the API's own names
            (e.g. {"trainingOutput": {...}} for ml v1).
        study: for a hyperparameter tuning job, its trials so far and how to rank them; None otherwise.
    """

    handle: JobHandle
    state: JobState | None
    api_state: str = ""
    create_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    error_message: str | None = None
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    output_dir: str | None = None
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    study: Study | None = None


DEFAULT_METRIC_TAG = "training/hptuning/metric"  # ml.v1.json HyperparameterSpec.hyperparameterMetricTag default
GOALS = ("MAXIMIZE", "MINIMIZE")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One reported value of the tuning metric: at `step` (the trainer's global step, 0 when it gave none), `value`."""

    step: int
    value: float


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial of a hyperparameter tuning job, in neutral form.

    Attributes:
        trial_id: the API's trial id ("1", "2", ...; ml v1 `trialId`, Vertex `Trial.id`).
        state: the trial's state in the job states' names: QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED
            (ml v1 trial states are job states; Vertex REQUESTED -> QUEUED, ACTIVE -> RUNNING, STOPPING -> CANCELLING,
            SUCCEEDED -> SUCCEEDED, INFEASIBLE -> FAILED); None when the API says nothing usable.
        hyperparameters: parameter name -> value as the trainer received it on its command line
            (`--<name>=<value>`), always a string ({"learning-rate": "0.0316", "criterion": "gini"}).
        final: the final measurement of the tuning metric (ml v1 `finalMetric`, Vertex `finalMeasurement`), if any.
        measurements: every reported measurement, oldest first (ml v1 `allMetrics`, Vertex `measurements`).
        start_time / end_time: RFC 3339 timestamps, when reported.
        stopped_early: the service stopped the trial early (ml v1 `isTrialStoppedEarly`).
        error_message: why it failed, when the API says (Vertex `infeasibleReason`).
    """

    trial_id: str
    state: JobState | None
    hyperparameters: dict[str, str] = dataclasses.field(default_factory=dict)
    final: Measurement | None = None
    measurements: tuple[Measurement, ...] = ()
    start_time: str | None = None
    end_time: str | None = None
    stopped_early: bool = False
    error_message: str | None = None

    @property
    def finished(self) -> bool:
        """True once the trial reached SUCCEEDED, FAILED or CANCELLED: its result no longer changes."""
        return self.state is not None and self.state.is_terminal

    def as_dict(self) -> dict[str, Any]:
        """The trial as messages carry it (names as in ml v1 `HyperparameterOutput`; integers as JSON numbers):
        {"trialId", "state", "hyperparameters", "finalMetric": {"trainingStep", "objectiveValue"} | None,
        "isTrialStoppedEarly", "startTime"?, "endTime"?, "errorMessage"?}."""
        out: dict[str, Any] = {
            "trialId": self.trial_id, "state": self.state.value if self.state else None,
            "hyperparameters": dict(self.hyperparameters),
            "finalMetric": ({"trainingStep": self.final.step, "objectiveValue": self.final.value}
                            if self.final is not None else None),
            "isTrialStoppedEarly": self.stopped_early}
        for key, value in (("startTime", self.start_time), ("endTime", self.end_time),
                           ("errorMessage", self.error_message)):
            if value is not None:
                out[key] = value
        return out


@dataclasses.dataclass(frozen=True)
class Study:
    """A hyperparameter tuning job's trials and how they rank.

    Attributes:
        goal: MAXIMIZE or MINIMIZE (the objective's direction).
        metric_tag: the metric trials report (ml v1 `hyperparameterMetricTag`, Vertex `metrics[0].metricId`).
        trials: every trial the API reports, in the API's order.
        max_trials: how many trials the job may run (maxTrials / maxTrialCount), if known.
    """

    goal: str
    metric_tag: str
    trials: tuple[Trial, ...] = ()
    max_trials: int | None = None

    def ranked(self) -> list[Trial]:
        """Every trial, best first: SUCCEEDED trials with a final metric by objective value in the goal's direction
        (ties: lower trial id first), then the rest by trial id."""
        sign = -1.0 if self.goal == "MAXIMIZE" else 1.0
        scored = sorted((t for t in self.trials if _scored(t)),
                        key=lambda t: (sign * t.final.value, _id_order(t.trial_id)))  # type: ignore[union-attr]
        rest = sorted((t for t in self.trials if not _scored(t)), key=lambda t: _id_order(t.trial_id))
        return scored + rest

    def best(self) -> Trial | None:
        """The best SUCCEEDED trial with a final metric, or None while there is none."""
        ranked = self.ranked()
        return ranked[0] if ranked and _scored(ranked[0]) else None

    @property
    def completed_count(self) -> int:
        """Trials that SUCCEEDED (ml v1 `completedTrialCount`: "trials that completed successfully")."""
        return sum(1 for t in self.trials if t.state is JobState.SUCCEEDED)

    def summary(self) -> dict[str, Any]:
        """What every state event of a tuning job carries (`tuning` in schemas/job-event.v1.schema.json):
        {"goal", "hyperparameterMetricTag", "maxTrials", "trialCount", "completedTrialCount", "failedTrialCount",
        "bestTrial": {"trialId", "hyperparameters", "objectiveValue", "trainingStep"} | None}."""
        best = self.best()
        return {
            "goal": self.goal, "hyperparameterMetricTag": self.metric_tag, "maxTrials": self.max_trials,
            "trialCount": len(self.trials), "completedTrialCount": self.completed_count,
            "failedTrialCount": sum(1 for t in self.trials if t.state is JobState.FAILED),
            "bestTrial": None if best is None or best.final is None else {
                "trialId": best.trial_id, "hyperparameters": dict(best.hyperparameters),
                "objectiveValue": best.final.value, "trainingStep": best.final.step},
        }


def _scored(trial: Trial) -> bool:
    return trial.state is JobState.SUCCEEDED and trial.final is not None


def _id_order(trial_id: str) -> tuple[int, str]:
    """Numeric ids in numeric order ("2" before "10"), other ids after them in text order."""
    return (int(trial_id), "") if trial_id.isdigit() else (1 << 62, trial_id)


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """What the core asks a backend to run.

    Attributes:
        key: the submitter's job key (for ml v1 also the jobId).
        job: the completed, validated Job resource in the AI Platform Training shape
            ({"jobId", "labels", "trainingInput": {...}}); each backend translates it.
        display_name: a human name for backends that want one (the drop folder).
    """

    key: str
    job: dict[str, Any]
    display_name: str = ""


@dataclasses.dataclass(frozen=True)
class Submission:
    """The outcome of a successful `TrainingBackend.submit`: the job's status, and whether an existing job
    created by an earlier attempt for the same key was adopted instead of creating a new one."""

    status: JobStatus
    adopted: bool = False


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a job came from, as the core needs it, whatever the kind of input (a drop, a data batch).

    Attributes:
        record_key: where the input's claim and verdict live in the state store, unique per input
            ("drops/<bucket>/<folder>/<generation>").
        fields: what the input contributes to every event and status document ({"drop": {...}}).
        status_key: the status document the uploader reads, or None.
        name: a human name for the input (the drop folder), used as a job's display name.
        bucket: the bucket the input lives in (to advise on the job's region), if any.
        status_extra: fields every status document of the input carries besides the core's (never published):
            a drop's job.yaml checksum and its folder's last submitted job.yaml, so one read of the status
            recognises a byte-identical re-upload.
    """

    record_key: str
    fields: dict[str, Any]
    status_key: str | None
    name: str
    bucket: str | None = None
    status_extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        out = {"recordKey": self.record_key, "fields": self.fields, "statusKey": self.status_key, "name": self.name,
               "bucket": self.bucket}
        if self.status_extra:
            out["statusExtra"] = self.status_extra
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Origin:
        return cls(record_key=str(d["recordKey"]), fields=dict(d.get("fields") or {}), status_key=d.get("statusKey"),
                   name=str(d.get("name", "")), bucket=d.get("bucket"), status_extra=dict(d.get("statusExtra") or {}))
