"""The submitter's own records, typed (pure): what `ledger.Ledger` stores as JSON documents.

Each record converts to and from the JSON document stored in the state bucket; the JSON keys are the
message contract's names (jobId, state, ...) so a person reading the bucket sees familiar fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from .clock import iso, parse_iso
from .model import DropStatus, JobHandle, JobState, Origin, PublishedState, Verdict, published_state


@dataclasses.dataclass(frozen=True)
class VerdictRecord:
    """The verdict on one input (a job.yaml generation): final, recorded once.

    Attributes:
        state: SUBMITTED, REJECTED or SUBMIT_FAILED.
        key: the job key.
        packages: for a submitted job, the packages it uses, by the URI the input named, with the generation
            staged (to explain a package that arrives or is replaced later); None when unknown.
    """

    state: Verdict
    key: str
    packages: dict[str, int] | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": self.state.value, "jobId": self.key}
        if self.packages is not None:
            doc["packageUris"] = sorted(self.packages)
            doc["packageGenerations"] = {uri: str(gen) for uri, gen in self.packages.items()}
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> VerdictRecord:
        packages: dict[str, int] | None = None
        if isinstance(doc.get("packageGenerations"), dict):
            packages = {str(u): int(g) for u, g in doc["packageGenerations"].items()}
        elif isinstance(doc.get("packageUris"), list):
            packages = {str(u): 0 for u in doc["packageUris"]}
        return cls(state=Verdict(doc["state"]), key=str(doc["jobId"]), packages=packages)


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """A followed job: which job, the last state published for it, and the context its events carry.

    A record is written just before the job is created, not yet `announced`; it becomes announced once
    SUBMITTED is published. An invocation that dies in between leaves an unannounced record, which the
    reconciler finishes (publishes SUBMITTED and the verdict) if the job exists, so no created job goes
    unfollowed even when the event is never redelivered.

    Attributes:
        handle: backend, resource name and job key (the name is "" until the backend assigned one).
        state: the last published state (SUBMITTED, then job states).
        origin: where the job came from (its fields are what events carry).
        labels / job_dir / warnings: context for consumers.
        staged: gs:// URIs of the package copies the job runs (their customTime is stamped when it ends).
        announced: SUBMITTED was published.
        since: when the record was written.
        token: the record's generation in the store (for compare-and-set).
        misses: consecutive ticks on which the API answered a permanent error for this job.
        published_trials: ids of the tuning trials whose trialCompleted event was published (each is published
            once; stored as `publishedTrials`, absent for jobs without any).
    """

    handle: JobHandle
    state: PublishedState
    origin: Origin
    labels: dict[str, str]
    job_dir: str | None
    announced: bool = True
    since: dt.datetime | None = None
    warnings: tuple[str, ...] = ()
    staged: tuple[str, ...] = ()
    token: int = 0
    misses: int = 0
    published_trials: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.handle.key

    def to_doc(self) -> dict[str, Any]:
        doc = {"jobId": self.handle.key, "state": self.state.value, "handle": self.handle.as_dict(),
               "origin": self.origin.as_dict(), "labels": self.labels, "jobDir": self.job_dir,
               "announced": self.announced, "since": iso(self.since) if self.since else None,
               "warnings": list(self.warnings), "staged": list(self.staged), "misses": self.misses}
        if self.published_trials:
            doc["publishedTrials"] = list(self.published_trials)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], token: int = 0) -> JobRecord:
        state = published_state(doc.get("state"))
        if state is None:
            raise ValueError(f"job record with unknown state {doc.get('state')!r}")
        return cls(handle=JobHandle.from_dict(doc["handle"]), state=state, origin=Origin.from_dict(doc["origin"]),
                   labels=dict(doc.get("labels") or {}), job_dir=doc.get("jobDir"),
                   announced=bool(doc.get("announced", True)),
                   since=parse_iso(doc["since"]) if doc.get("since") else None,
                   warnings=tuple(doc.get("warnings") or ()), staged=tuple(doc.get("staged") or ()), token=token,
                   misses=int(doc.get("misses", 0)),
                   published_trials=tuple(str(t) for t in doc.get("publishedTrials") or ()))


@dataclasses.dataclass(frozen=True)
class PendingDrop:
    """An incomplete drop: what it lacks and since when (swept after `incomplete_drop_s`). Stored as the drop's
    WAITING StatusDocument (missing, waitingSince)."""

    bucket: str
    folder: str
    missing: tuple[str, ...]
    since: dt.datetime


@dataclasses.dataclass(frozen=True)
class SubmittedSpec:
    """The last submitted job.yaml of a folder, to recognise a byte-identical re-upload (kept in the folder's
    status document: see StatusDocument.submitted_spec)."""

    generation: int
    crc32c: str
    size: int
    key: str
    time: dt.datetime

    def to_doc(self) -> dict[str, Any]:
        return {"generation": str(self.generation), "crc32c": self.crc32c, "size": self.size, "jobId": self.key,
                "time": iso(self.time)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SubmittedSpec:
        return cls(generation=int(doc["generation"]), crc32c=str(doc["crc32c"]), size=int(doc["size"]),
                   key=str(doc["jobId"]), time=parse_iso(doc["time"]))


@dataclasses.dataclass(frozen=True)
class StatusDocument:
    """The latest word on a drop, where the uploader reads it (`submitter drop-status`).

    Attributes:
        state: SUBMITTED, REJECTED, SUBMIT_FAILED, DUPLICATE or WAITING.
        key: the job key (or the one the job would have had).
        time: when it was written.
        origin: the origin fields (e.g. {"drop": {...}}).
        reason / message / violations / warnings / notes / job_dir / resource_name: as in the events.
        missing: what a WAITING drop waits for.
        (A WAITING input queued for the training API's create quota has reason RATE_LIMITED, its place in the
        message, and `waiting_since` the time it was queued: quota.py.)
        waiting_since / reject_after: a WAITING drop's first sighting, and when the scheduled sweep rejects it
            (INCOMPLETE_DROP) if it is still incomplete then.
        job_yaml: the drop's job.yaml as listed, {"crc32c": str, "size": int} (stored as `jobYaml`).
        last_submitted: the folder's last submitted job.yaml before this drop (stored as `lastSubmitted`).
    """

    state: DropStatus
    key: str | None
    time: dt.datetime
    origin: dict[str, Any]
    reason: str | None = None
    message: str | None = None
    violations: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    job_dir: str | None = None
    resource_name: str | None = None
    missing: tuple[str, ...] = ()
    waiting_since: dt.datetime | None = None
    reject_after: dt.datetime | None = None
    job_yaml: dict[str, Any] | None = None
    last_submitted: SubmittedSpec | None = None

    def submitted_spec(self) -> SubmittedSpec | None:
        """The folder's last submitted job.yaml as this document knows it: the drop's own job.yaml when it was
        submitted (SUBMITTED, with its checksum), else the one carried from before."""
        drop = self.origin.get("drop")
        if self.state is DropStatus.SUBMITTED and self.job_yaml and self.key and isinstance(drop, dict):
            try:
                return SubmittedSpec(int(drop["generation"]), str(self.job_yaml["crc32c"]),
                                     int(self.job_yaml["size"]), self.key, self.time)
            except (KeyError, TypeError, ValueError):
                pass
        return self.last_submitted

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": self.state.value, "jobId": self.key, "time": iso(self.time), **self.origin,
                               "reason": self.reason, "message": self.message, "violations": list(self.violations),
                               "warnings": list(self.warnings), "notes": list(self.notes), "jobDir": self.job_dir}
        if self.resource_name:
            doc["resourceName"] = self.resource_name
        if self.missing:
            doc["missing"] = list(self.missing)
        if self.waiting_since is not None:
            doc["waitingSince"] = iso(self.waiting_since)
        if self.reject_after is not None:
            doc["rejectAfter"] = iso(self.reject_after)
        if self.job_yaml is not None:
            doc["jobYaml"] = self.job_yaml
        if self.last_submitted is not None:
            doc["lastSubmitted"] = self.last_submitted.to_doc()
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StatusDocument:
        origin: dict[str, Any] = {k: doc[k] for k in ("drop", "trigger") if k in doc}
        return cls(state=DropStatus(doc["state"]), key=doc.get("jobId"), time=parse_iso(doc["time"]), origin=origin,
                   reason=doc.get("reason"), message=doc.get("message"),
                   violations=tuple(doc.get("violations") or ()), warnings=tuple(doc.get("warnings") or ()),
                   notes=tuple(doc.get("notes") or ()), job_dir=doc.get("jobDir"),
                   resource_name=doc.get("resourceName"), missing=tuple(doc.get("missing") or ()),
                   waiting_since=parse_iso(doc["waitingSince"]) if doc.get("waitingSince") else None,
                   reject_after=parse_iso(doc["rejectAfter"]) if doc.get("rejectAfter") else None,
                   job_yaml=dict(doc["jobYaml"]) if isinstance(doc.get("jobYaml"), dict) else None,
                   last_submitted=(SubmittedSpec.from_doc(doc["lastSubmitted"])
                                   if isinstance(doc.get("lastSubmitted"), dict) else None))


__all__ = ["VerdictRecord", "JobRecord", "PendingDrop", "SubmittedSpec", "StatusDocument", "JobState"]
