"""What the submitter has decided and published, on top of a StateStore.

Keys:
  drops/<bucket>/<folder>/<generation>.json   verdict for one job.yaml generation
                                               ({"state": SUBMITTED|REJECTED|SUBMIT_FAILED, "jobId"})
  jobs/<jobId>.json                           a job being followed: last published state, drop, labels
  done/<jobId>.json                           a job whose terminal state was published
  status/<bucket>/<folder>.json               the latest verdict on a drop, for the uploader to read
                                               (state, jobId, reason, message, violations, generation)
  claims/<bucket>/<folder>/<generation>.json  who is deciding this job.yaml generation now ({owner, time});
                                               create-only, taken over only after the lease expires
  pending/<bucket>/<folder>.json              an incomplete drop ({since, missing}); swept after a while
  specs/<bucket>/<folder>.json                the last submitted job.yaml of a folder ({generation, crc32c,
                                               size, jobId, time}), to recognise byte-identical re-uploads

A job gets a `jobs/` record only after its SUBMITTED message is published, so
the reconciler can never publish a state before SUBMITTED.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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

    # -- claims: one decider per job.yaml generation -----------------------------------------------
    def claim(self, drop: DropRef, owner: str, now: dt.datetime, lease_s: float) -> bool:
        """Become the one invocation that decides `drop`; True when claimed (or taken over after the lease).

        A claim older than `lease_s` belongs to an invocation that died (the function timeout is shorter than
        the lease), so it is taken over with a generation-match write: of two racing takers, one wins.
        """
        key = f"claims/{drop.bucket}/{drop.folder}/{drop.generation}.json"
        doc = {"owner": owner, "time": now.isoformat()}
        if self.store.create(key, doc):
            return True
        found = self.store.get(key)
        if found is None:
            return self.store.create(key, doc)
        held, token = found
        if held.get("owner") == owner:
            return True
        age = (now - dt.datetime.fromisoformat(held["time"])).total_seconds()
        return age > lease_s and self.store.replace(key, doc, token)

    def release(self, drop: DropRef, owner: str) -> None:
        """Give up a claim this invocation holds (it failed with an error and the event will be redelivered)."""
        key = f"claims/{drop.bucket}/{drop.folder}/{drop.generation}.json"
        found = self.store.get(key)
        if found and found[0].get("owner") == owner:
            self.store.delete(key)

    # -- incomplete drops ------------------------------------------------------------------------
    def note_pending(self, bucket: str, folder: str, missing: list[str], now: dt.datetime) -> None:
        """Remember an incomplete drop (the first sighting's time is kept)."""
        self.store.create(f"pending/{bucket}/{folder}.json",
                          {"bucket": bucket, "folder": folder, "missing": missing, "since": now.isoformat()})

    def pending(self) -> list[dict[str, Any]]:
        """Every incomplete drop noted so far."""
        out = []
        for key in self.store.list("pending/"):
            found = self.store.get(key)
            if found:
                out.append(found[0])
        return out

    def clear_pending(self, bucket: str, folder: str) -> None:
        """Forget an incomplete drop (it completed or was swept)."""
        self.store.delete(f"pending/{bucket}/{folder}.json")

    # -- byte-identical re-uploads ---------------------------------------------------------------
    def last_spec(self, bucket: str, folder: str) -> dict[str, Any] | None:
        """The last submitted job.yaml of a folder, or None."""
        found = self.store.get(f"specs/{bucket}/{folder}.json")
        return found[0] if found else None

    def remember_spec(self, drop: DropRef, crc32c: str, size: int, job_id: str, now: dt.datetime) -> None:
        """Record the submitted job.yaml's checksum so an identical re-upload is recognised."""
        self.store.put(f"specs/{drop.bucket}/{drop.folder}.json",
                       {"generation": str(drop.generation), "crc32c": crc32c, "size": size, "jobId": job_id,
                        "time": now.isoformat()})

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
