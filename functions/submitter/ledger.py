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
  lost/<jobId>.json                           a followed job the API stopped knowing (permanent errors)
  locks/reconciler.json                       the one reconcile tick running now ({owner, time}, leased)

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
    misses: int = 0  # consecutive ticks on which the API answered a permanent error for this job

    def as_dict(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "state": self.state.value, "drop": self.drop.as_dict(),
                "labels": self.labels, "jobDir": self.job_dir, "backend": self.backend, "misses": self.misses}

    @classmethod
    def from_dict(cls, d: dict[str, Any], token: int = 0) -> "JobRecord":
        return cls(job_id=d["jobId"], state=State(d["state"]), drop=DropRef.from_dict(d["drop"]),
                   labels=dict(d.get("labels") or {}), job_dir=d.get("jobDir"), backend=d.get("backend", "ml_v1"),
                   token=token, misses=int(d.get("misses", 0)))


class Ledger:
    """Domain operations over a StateStore (see module docstring for the layout)."""

    def __init__(self, store: StateStore):
        self.store = store
        # Followed-job documents by (key, generation): a warm reconciler downloads only changed records.
        self._records: dict[str, tuple[int, JobRecord]] = {}

    @staticmethod
    def _drop_key(drop: DropRef) -> str:
        return f"drops/{drop.bucket}/{drop.folder}/{drop.generation}.json"

    def verdict(self, drop: DropRef) -> dict[str, Any] | None:
        """The recorded verdict for this job.yaml generation, or None if it was never decided."""
        found = self.store.get(self._drop_key(drop))
        return found[0] if found else None

    def record_verdict(self, drop: DropRef, state: State, job_id: str, package_uris: list[str] | None = None) -> bool:
        """Record the verdict once (with the packages a submitted job uses); False if one was already recorded."""
        doc = {"state": state.value, "jobId": job_id}
        if package_uris is not None:
            doc["packageUris"] = package_uris
        return self.store.create(self._drop_key(drop), doc)

    def add_status_note(self, drop: DropRef, note: str) -> None:
        """Append a note to a drop's status document (e.g. a package that arrived after submission)."""
        current = self.status(drop.bucket, drop.folder) or {}
        notes = list(current.get("notes") or [])
        if note not in notes:
            self.store.put(self.status_key(drop.bucket, drop.folder),
                           {**current, "notes": notes + [note], "drop": drop.as_dict()})

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
        """Remember an incomplete drop and what it lacks now (the first sighting's time is kept)."""
        key = f"pending/{bucket}/{folder}.json"
        doc = {"bucket": bucket, "folder": folder, "missing": missing, "since": now.isoformat()}
        if self.store.create(key, doc):
            return
        found = self.store.get(key)
        if found and found[0].get("missing") != missing:
            self.store.replace(key, {**doc, "since": found[0]["since"]}, found[1])

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
        """Every job still being followed, with its generation token.

        One listing per call; a record is downloaded only when its generation changed since this
        Ledger last read it.
        """
        versions = self.store.versions("jobs/")
        out = []
        for key, token in sorted(versions.items()):
            cached = self._records.get(key)
            if cached is None or cached[0] != token:
                found = self.store.get(key)
                if not found:
                    continue
                cached = (found[1], JobRecord.from_dict(found[0], token=found[1]))
                self._records[key] = cached
            out.append(dataclasses.replace(cached[1]))
        for key in set(self._records) - set(versions):
            del self._records[key]
        return out

    def missed(self, record: JobRecord) -> bool:
        """Count one more permanent API error for a followed job; False if another writer moved it first."""
        return self.store.replace(f"jobs/{record.job_id}.json",
                                  dataclasses.replace(record, misses=record.misses + 1).as_dict(), record.token)

    def lose(self, record: JobRecord) -> None:
        """Stop following a job the API no longer knows (kept under `lost/` for inspection)."""
        self.store.create(f"lost/{record.job_id}.json", record.as_dict())
        self.store.delete(f"jobs/{record.job_id}.json")

    def lock_ticks(self, owner: str, now: dt.datetime, lease_s: float) -> bool:
        """Become the one running reconcile tick; a lock older than `lease_s` (a dead tick) is taken over."""
        doc = {"owner": owner, "time": now.isoformat()}
        if self.store.create("locks/reconciler.json", doc):
            return True
        found = self.store.get("locks/reconciler.json")
        if found is None:
            return self.store.create("locks/reconciler.json", doc)
        age = (now - dt.datetime.fromisoformat(found[0]["time"])).total_seconds()
        return age > lease_s and self.store.replace("locks/reconciler.json", doc, found[1])

    def unlock_ticks(self, owner: str) -> None:
        """Release the tick lock if this owner holds it."""
        found = self.store.get("locks/reconciler.json")
        if found and found[0].get("owner") == owner:
            self.store.delete("locks/reconciler.json")

    def advance(self, record: JobRecord, state: State) -> bool:
        """Record that `state` was published for the job; False if another writer moved it first.

        A terminal state moves the record to `done/` (the job is then forgotten).
        """
        updated = dataclasses.replace(record, state=state)
        if state.is_terminal:
            self.store.create(f"done/{record.job_id}.json", updated.as_dict())
            self.store.delete(f"jobs/{record.job_id}.json")
            return True
        updated.misses = 0
        return self.store.replace(f"jobs/{record.job_id}.json", updated.as_dict(), record.token)
