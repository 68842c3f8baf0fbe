"""What the submitter has decided and published, on top of a StateStore (typed records in records.py).

Keys:
  <record key>.json                 the verdict on one input, e.g. drops/<bucket>/<folder>/<generation>.json
  claims/<record key>.json          the lease of the invocation deciding that input now
  status/<bucket>/<folder>.json     the latest word on a drop, for the uploader (StatusDocument)
  jobs/<key>.json                   a job being followed: last published state, handle, origin (JobRecord)
  done/<key>.json                   a job whose terminal state was published
  lost/<key>.json                   a followed job the API stopped knowing (permanent errors)
  pending/<bucket>/<folder>.json    an incomplete drop (PendingDrop); swept after a while
  specs/<bucket>/<folder>.json      the last submitted job.yaml of a folder (SubmittedSpec)
  locks/reconciler.json             the lease of the one reconcile tick running now

A job gets a `jobs/` record only after its SUBMITTED message is published, so the reconciler can never
publish a state before SUBMITTED.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .model import Origin, PublishedState
from .records import JobRecord, PendingDrop, StatusDocument, SubmittedSpec, VerdictRecord
from .state_store import StateStore

TICK_LOCK_KEY = "locks/reconciler.json"


def claim_key(origin: Origin) -> str:
    """The lease key of the invocation deciding `origin`."""
    return f"claims/{origin.record_key}.json"


class Ledger:
    """Domain operations over a StateStore (see the module docstring for the layout)."""

    def __init__(self, store: StateStore):
        self.store = store
        # Followed-job documents by key with their generation: a warm reconciler downloads only changed ones.
        self._records: dict[str, tuple[int, JobRecord]] = {}

    # -- verdicts ---------------------------------------------------------------------------------
    def verdict(self, origin: Origin) -> VerdictRecord | None:
        """The recorded verdict on this input, or None if it was never decided."""
        found = self.store.get(f"{origin.record_key}.json")
        return VerdictRecord.from_doc(found[0]) if found else None

    def record_verdict(self, origin: Origin, verdict: VerdictRecord) -> bool:
        """Record the verdict once; False if one was already recorded."""
        return self.store.create(f"{origin.record_key}.json", verdict.to_doc()) is not None

    # -- status documents -------------------------------------------------------------------------
    def write_status(self, origin: Origin, status: StatusDocument) -> None:
        """Record the latest word on an input where the uploader can read it (outside the drop folders)."""
        if origin.status_key:
            self.store.put(origin.status_key, status.to_doc())

    def status(self, status_key: str) -> StatusDocument | None:
        """The status document at `status_key`, or None."""
        found = self.store.get(status_key)
        return StatusDocument.from_doc(found[0]) if found else None

    def add_status_note(self, origin: Origin, note: str) -> None:
        """Append a note to an input's status document (e.g. a package that arrived after submission)."""
        if not origin.status_key:
            return
        current = self.status(origin.status_key)
        if current is not None and note not in current.notes:
            self.write_status(origin, dataclasses.replace(current, notes=current.notes + (note,)))

    # -- incomplete drops ---------------------------------------------------------------------------
    def note_pending(self, pending: PendingDrop) -> PendingDrop:
        """Remember an incomplete drop and what it lacks now; the first sighting's time is kept.

        Returns:
            The record as stored (with the original `since`).
        """
        key = f"pending/{pending.bucket}/{pending.folder}.json"
        if self.store.create(key, pending.to_doc()) is not None:
            return pending
        found = self.store.get(key)
        if found is None:
            return pending
        stored = PendingDrop.from_doc(found[0])
        if stored.missing != pending.missing:
            stored = dataclasses.replace(pending, since=stored.since)
            self.store.replace(key, stored.to_doc(), found[1])
        return stored

    def pending(self) -> list[PendingDrop]:
        """Every incomplete drop noted so far."""
        out = []
        for key in sorted(self.store.versions("pending/")):
            found = self.store.get(key)
            if found:
                out.append(PendingDrop.from_doc(found[0]))
        return out

    def clear_pending(self, bucket: str, folder: str) -> None:
        """Forget an incomplete drop (it completed or was swept)."""
        self.store.delete(f"pending/{bucket}/{folder}.json")

    # -- byte-identical re-uploads ----------------------------------------------------------------
    def last_spec(self, bucket: str, folder: str) -> SubmittedSpec | None:
        """The last submitted job.yaml of a folder, or None."""
        found = self.store.get(f"specs/{bucket}/{folder}.json")
        return SubmittedSpec.from_doc(found[0]) if found else None

    def remember_spec(self, bucket: str, folder: str, spec: SubmittedSpec) -> None:
        """Record the submitted job.yaml's checksum so an identical re-upload is recognised."""
        self.store.put(f"specs/{bucket}/{folder}.json", spec.to_doc())

    # -- followed jobs ----------------------------------------------------------------------------
    def follow(self, record: JobRecord) -> bool:
        """Start following a job whose SUBMITTED was published; False if already followed or done."""
        if self.store.get(f"done/{record.key}.json") is not None:
            return False
        return self.store.create(f"jobs/{record.key}.json", record.to_doc()) is not None

    def is_known(self, key: str) -> bool:
        """True when SUBMITTED was published for `key` (followed or done)."""
        return any(self.store.get(f"{p}/{key}.json") is not None for p in ("jobs", "done"))

    def followed(self) -> list[JobRecord]:
        """Every job still being followed, with its generation token.

        One listing per call; a record is downloaded only when its generation changed since this Ledger
        last read it.
        """
        versions = self.store.versions("jobs/")
        out = []
        for key, token in sorted(versions.items()):
            cached = self._records.get(key)
            if cached is None or cached[0] != token:
                found = self.store.get(key)
                if not found:
                    continue
                cached = (found[1], JobRecord.from_doc(found[0], token=found[1]))
                self._records[key] = cached
            out.append(cached[1])
        for key in set(self._records) - set(versions):
            del self._records[key]
        return out

    def missed(self, record: JobRecord) -> bool:
        """Count one more permanent API error for a followed job; False if another writer moved it first."""
        updated = dataclasses.replace(record, misses=record.misses + 1)
        return self.store.replace(f"jobs/{record.key}.json", updated.to_doc(), record.token) is not None

    def lose(self, record: JobRecord) -> None:
        """Stop following a job the API no longer knows (kept under `lost/` for inspection)."""
        self.store.create(f"lost/{record.key}.json", record.to_doc())
        self.store.delete(f"jobs/{record.key}.json")

    def advance(self, record: JobRecord, state: PublishedState) -> bool:
        """Record that `state` was published for the job; False if another writer moved it first.

        A terminal state moves the record to `done/` (the job is then forgotten).
        """
        updated = dataclasses.replace(record, state=state, misses=0)
        if state.is_terminal:
            self.store.create(f"done/{record.key}.json", updated.to_doc())
            self.store.delete(f"jobs/{record.key}.json")
            return True
        return self.store.replace(f"jobs/{record.key}.json", updated.to_doc(), record.token) is not None


def pending_age(pending: PendingDrop, now: dt.datetime) -> float:
    """Seconds since the drop's first object was seen."""
    return (now - pending.since).total_seconds()
