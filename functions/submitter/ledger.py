"""What the submitter has decided and published, on top of a StateStore.

Keys:
  drops/<bucket>/<folder>/<generation>.json   verdict for one job.yaml generation
                                               ({"state": SUBMITTED|REJECTED|SUBMIT_FAILED, "jobId"})
  jobs/<jobId>.json                           a job being followed: last published state, drop, labels
  done/<jobId>.json                           a job whose terminal state was published
  status/<bucket>/<folder>.json               the latest verdict on a drop, for the uploader to read
                                               (state, jobId, reason, message, violations, generation)

A job gets a `jobs/` record only after its SUBMITTED message is published, so
the reconciler can never publish a state before SUBMITTED.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .envelope import DropRef
from .state_store import StateStore
from .states import State


@dataclasses.dataclass
class JobRecord:
    """A followed job: its id, last published state and the context its events carry."""

    job_id: str
    state: State
    drop: DropRef
    labels: dict[str, str]
    job_dir: str | None
    backend: str
    token: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "state": self.state.value, "drop": self.drop.as_dict(),
                "labels": self.labels, "jobDir": self.job_dir, "backend": self.backend}

    @classmethod
    def from_dict(cls, d: dict[str, Any], token: int = 0) -> "JobRecord":
        return cls(job_id=d["jobId"], state=State(d["state"]), drop=DropRef.from_dict(d["drop"]),
                   labels=dict(d.get("labels") or {}), job_dir=d.get("jobDir"), backend=d.get("backend", "ml_v1"),
                   token=token)


class Ledger:
    """Domain operations over a StateStore (see module docstring for the layout)."""

    def __init__(self, store: StateStore):
        self.store = store

    @staticmethod
    def _drop_key(drop: DropRef) -> str:
        return f"drops/{drop.bucket}/{drop.folder}/{drop.generation}.json"

    def verdict(self, drop: DropRef) -> dict[str, Any] | None:
        """The recorded verdict for this job.yaml generation, or None if it was never decided."""
        found = self.store.get(self._drop_key(drop))
        return found[0] if found else None

    def record_verdict(self, drop: DropRef, state: State, job_id: str) -> bool:
        """Record the verdict once; False if one was already recorded."""
        return self.store.create(self._drop_key(drop), {"state": state.value, "jobId": job_id})

    def write_status(self, drop: DropRef, status: dict[str, Any]) -> None:
        """Record the latest verdict on a drop where the uploader can read it (outside the drop folders)."""
        self.store.put(self.status_key(drop.bucket, drop.folder), {**status, "drop": drop.as_dict()})

    @staticmethod
    def status_key(bucket: str, folder: str) -> str:
        """Key of a drop's status document."""
        return f"status/{bucket}/{folder}.json"

    def status(self, bucket: str, folder: str) -> dict[str, Any] | None:
        """The latest verdict on a drop, or None."""
        found = self.store.get(self.status_key(bucket, folder))
        return found[0] if found else None

    def follow(self, record: JobRecord) -> bool:
        """Start following a job whose SUBMITTED was published; False if already followed or done."""
        if self.store.get(f"done/{record.job_id}.json") is not None:
            return False
        return self.store.create(f"jobs/{record.job_id}.json", record.as_dict())

    def is_known(self, job_id: str) -> bool:
        """True when SUBMITTED was published for `job_id` (followed or done)."""
        return any(self.store.get(f"{p}/{job_id}.json") is not None for p in ("jobs", "done"))

    def followed(self) -> list[JobRecord]:
        """Every job still being followed, with its generation token."""
        out = []
        for key in self.store.list("jobs/"):
            found = self.store.get(key)
            if found:
                out.append(JobRecord.from_dict(found[0], token=found[1]))
        return out

    def advance(self, record: JobRecord, state: State) -> bool:
        """Record that `state` was published for the job; False if another writer moved it first.

        A terminal state moves the record to `done/` (the job is then forgotten).
        """
        updated = dataclasses.replace(record, state=state)
        if state.is_terminal:
            self.store.create(f"done/{record.job_id}.json", updated.as_dict())
            self.store.delete(f"jobs/{record.job_id}.json")
            return True
        ok = self.store.replace(f"jobs/{record.job_id}.json", updated.as_dict(), record.token)
        return ok
