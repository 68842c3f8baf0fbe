"""Trial events of hyperparameter tuning jobs: one message per finished trial (pure).

A tuning job stays RUNNING while its trials run; a finished trial is news that no job state carries, so it is
published as its own CloudEvent, `dev.drop-submitter.job.v1.trialCompleted`, with JSON data described by
`schemas/job-trial-event.v1.schema.json` and attributes by `schemas/job-trial-event.v1.attributes.schema.json`.

- `ce-id` is `<jobId>/trial/<trialId>`: deterministic per (job, trial), so a trial published twice (a redelivery, a
  tick that lost its ledger write) is dropped by consumers deduplicating on (`ce-source`, `ce-id`).
- The ordering key is the jobId, as for the job's state events, and the reconciler publishes a job's newly finished
  trials before the job's own state event of the same tick: a trial event never follows its job's terminal event.
- Attributes for subscription filters: `jobId`, `trialId`, `trialState` and `terminal` ("false": the job goes on).
  There is no `state` attribute, so a filter on the job's states (`attributes.state = "SUCCEEDED"`) never matches a
  trial event.
- The data carries the trial (ml v1 `HyperparameterOutput` names: `trialId`, `state`, `hyperparameters`,
  `finalMetric` {`trainingStep`, `objectiveValue`}, `isTrialStoppedEarly`, `startTime`, `endTime`), the job's trial
  summary after it (`tuning`, as in the state events), the job's last published state (`jobState`) and the
  context a consumer needs without another call (drop, labels, jobDir, backend, resourceName).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from .clock import rfc3339
from .envelope import DATA_SCHEMA_VERSION, MAX_MESSAGE_BYTES, SPEC_VERSION, MessageTooLarge, OutgoingMessage
from .envelope import clean_attributes as _clean_attributes
from .model import PublishedState, Study, Trial
from .text import safe_text

TRIAL_EVENT_TYPE = "dev.drop-submitter.job.v1.trialCompleted"
MAX_TRIAL_TEXT_CHARS = 8000


@dataclasses.dataclass(frozen=True)
class TrialEvent:
    """One finished trial of a tuning job, before encoding.

    Attributes:
        key: the job key (published as `jobId`).
        trial: the finished trial.
        study: the job's study as this trial was seen (for the `tuning` summary).
        job_state: the job's last published state (RUNNING, usually).
        origin: where the job came from ({"drop": {...}}), as the state events carry it.
        time: when the submitter observed the trial's end.
        labels / job_dir / backend / resource_name: the job's context.
    """

    key: str
    trial: Trial
    study: Study
    job_state: PublishedState
    origin: dict[str, Any]
    time: dt.datetime
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    job_dir: str | None = None
    backend: str = ""
    resource_name: str | None = None


def trial_ce_id(key: str, trial_id: str) -> str:
    """Deterministic CloudEvent id for (job key, trial id): `<jobId>/trial/<trialId>`."""
    return f"{key}/trial/{trial_id}"


def encode_trial(event: TrialEvent, *, source: str) -> OutgoingMessage:
    """Encode a TrialEvent as a Pub/Sub message (attributes <= 1024 bytes each; data well under 10 MB).

    Args:
        event: the event.
        source: the CloudEvent `source`, the same as the state events' ("//drop-submitter/projects/P/buckets/B").
    Raises:
        MessageTooLarge: the data exceeds MAX_MESSAGE_BYTES (a bug: a trial is a few kilobytes).
    """
    trial = event.trial.as_dict()
    trial["hyperparameters"] = {safe_text(str(k), 256): safe_text(str(v), 1024)
                                for k, v in trial["hyperparameters"].items()}
    if trial.get("errorMessage") is not None:
        trial["errorMessage"] = safe_text(trial["errorMessage"], MAX_TRIAL_TEXT_CHARS)
    data: dict[str, Any] = {
        "schemaVersion": DATA_SCHEMA_VERSION,
        "jobId": event.key,
        "trialId": event.trial.trial_id,
        "trial": trial,
        "tuning": event.study.summary(),
        "jobState": event.job_state.value,
        "time": rfc3339(event.time),
        **event.origin,
        "labels": {safe_text(str(k), 256): safe_text(str(v), 256) for k, v in event.labels.items()},
        "jobDir": event.job_dir,
        "backend": event.backend,
    }
    if event.resource_name:
        data["resourceName"] = event.resource_name
    attributes = {
        "ce-specversion": SPEC_VERSION,
        "ce-type": TRIAL_EVENT_TYPE,
        "ce-source": source,
        "ce-id": trial_ce_id(event.key, event.trial.trial_id),
        "ce-subject": f"jobs/{event.key}/trials/{event.trial.trial_id}",
        "ce-time": rfc3339(event.time),
        "content-type": "application/json",
        "jobId": event.key,
        "trialId": event.trial.trial_id,
        "trialState": event.trial.state.value if event.trial.state else "STATE_UNSPECIFIED",
        "terminal": "false",
    }
    body = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
    if len(body) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"the trial {event.trial.trial_id} message for {event.key} is {len(body)} bytes")
    return OutgoingMessage(data=body, attributes=_clean_attributes(attributes), ordering_key=event.key)


__all__ = ["TRIAL_EVENT_TYPE", "TrialEvent", "trial_ce_id", "encode_trial"]
