"""What the submitter has decided and published, on top of a StateStore (typed records in records.py).

Keys:
  <record key>.json                 one input's decision, e.g. drops/<bucket>/<folder>/<generation>.json: first
                                    the claim of the invocation deciding it ({owner, time, expires}: a lease,
                                    created only if absent), then its verdict ({state, jobId, ...}), written by
                                    replacing that claim's generation, so only the holder can record it
  status/<bucket>/<folder>.json     the latest word on a drop, for the uploader (StatusDocument); while it is
                                    WAITING it is also the incomplete-drop record the sweep reads (what is
                                    missing, since when), and a verdict's status replaces it; every one carries
                                    the folder's last submitted job.yaml (jobYaml, lastSubmitted), so the same
                                    read recognises a byte-identical re-upload
  jobs/<key>.json                   a job being followed: last published state, handle, origin (JobRecord)
  done/<key>.json                   a job whose terminal state was published
  lost/<key>.json                   a followed job the API stopped knowing (permanent errors)
  due/<epoch s>/<bucket>/<folder>   index of incomplete drops by first sighting, so a sweep reads only what is due
  triggers/batches/<rule>/<batch>.json   the claim, then the verdict, on one data batch (as for drops)
  status/triggers/<rule>/<batch>.json    the latest word on a data batch (StatusDocument)
  triggers/folders/<rule>/<hash>.json    what a rule batched in one folder: open window, closing, recent batches
  triggers/overlap/<rule>.json           a skip/queue rule's active batch and queued batches
  triggers/status/<rule>.json            a trigger rule's status: VALID, or BROKEN with its violations
  quota/<backend>/<region>/<epoch ms>/<input id>   an input queued for the training API's create quota (quota.py;
                                    <input id> is a digest of its record key)
  quota-queued/<input id>.json      which queue entry holds an input
  quota/<backend>/<region>.gate.json   the region's creates are rate limited: new inputs queue behind
  locks/reconciler.json             the lease of the one reconcile tick running now
  locks/reconciler-backoff.json     after failed ticks: how many in a row, and no tick before `until`

A job's `jobs/` record is written just before jobs.create, unannounced, and marked announced once its SUBMITTED
message is published; for an unannounced record the reconciler publishes only SUBMITTED (after the claim lease,
when the job exists), so it never publishes a state before SUBMITTED.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from . import quota
from .clock import iso, parse_iso
from .drops import status_key
from .leases import Lease
from .model import DropStatus, Origin, PublishedState
from .reasons import Reason
from .records import JobRecord, PendingDrop, StatusDocument, VerdictRecord
from .state_store import Document, StateStore

TICK_LOCK_KEY = "locks/reconciler.json"
BACKOFF_KEY = "locks/reconciler-backoff.json"
DUE_PREFIX = "due/"


STATUS_WRITE_ATTEMPTS = 5  # generation-match rounds for a drop's status; each loss means another writer moved


def _drop_generation(fields: Any) -> int | None:
    """The job.yaml generation a drop's origin fields or status document speak for (`drop.generation`), or None."""
    drop = fields.get("drop") if isinstance(fields, dict) else None
    generation = drop.get("generation") if isinstance(drop, dict) else None
    try:
        return int(generation) if generation is not None else None
    except (TypeError, ValueError):
        return None


def claim_key(origin: Origin) -> str:
    """The lease key of the invocation deciding `origin`: its verdict's own key (one document per input)."""
    return f"{origin.record_key}.json"


def is_verdict(doc: Document) -> bool:
    """True when an input's document holds its verdict (not, or no longer, a claim)."""
    return "state" in doc


class Ledger:
    """Domain operations over a StateStore (see the module docstring for the layout)."""

    def __init__(self, store: StateStore):
        self.store = store
        # Followed-job documents by key with their generation: a warm reconciler downloads only changed ones.
        self._records: dict[str, tuple[int, JobRecord]] = {}

    # -- verdicts ---------------------------------------------------------------------------------
    def verdict(self, origin: Origin) -> VerdictRecord | None:
        """The recorded verdict on this input, or None if it was never decided (no document, or a claim)."""
        found = self.store.get(claim_key(origin))
        return VerdictRecord.from_doc(found[0]) if found and is_verdict(found[0]) else None

    def record_verdict(self, origin: Origin, verdict: VerdictRecord, lease: Lease | None = None) -> bool:
        """Record the verdict once; False if one was already recorded (or, with `lease`, the claim was lost).

        Args:
            lease: the claim this writer holds on the input; the verdict replaces exactly that generation of
                the document, so an invocation whose claim was taken over cannot record it. Without one (the
                reconciler finishing a dead invocation's job, a bug report), an undecided document (whatever
                claim it holds) is replaced, a decided one is kept.
        """
        key, doc = claim_key(origin), verdict.to_doc()
        if lease is not None:
            return self.store.replace(key, doc, lease.token) is not None
        for _ in range(3):  # the document can move between the two requests: a claim renewed, taken over
            if self.store.create(key, doc) is not None:
                return True
            found = self.store.get(key)
            if found is None:
                continue
            if is_verdict(found[0]):
                return False
            if self.store.replace(key, doc, found[1]) is not None:
                return True
        return False

    # -- status documents -------------------------------------------------------------------------
    def write_status(self, origin: Origin, status: StatusDocument) -> None:
        """Record the latest word on an input where the uploader can read it (outside the drop folders), with
        the input's `status_extra` (a drop's job.yaml checksum and its folder's last submitted job.yaml).

        A drop's status is one document per folder that every job.yaml generation of the folder writes: it is
        written with generation-match and never over the word of a newer job.yaml generation (two generations
        decided at once: the older one finishing last would otherwise show its job, and lose the newer one's
        record of the folder's last submitted job.yaml, so the newer one's byte-identical re-upload would start a
        second job). Costs one read per verdict. Other inputs' statuses (one document each) are put as they are.
        """
        if not origin.status_key:
            return
        doc = {**status.to_doc(), **origin.status_extra}
        mine = _drop_generation(origin.fields)
        if not mine:  # not a drop, or a word on a folder with no job.yaml (the sweep's): nothing it could be older than
            self.store.put(origin.status_key, doc)
            return
        for _ in range(STATUS_WRITE_ATTEMPTS):
            found = self.store.get(origin.status_key)
            if found is None:
                if self.store.create(origin.status_key, doc) is not None:
                    return
                continue
            theirs = _drop_generation(found[0])  # a status document carries its origin's fields at the top
            if theirs is not None and theirs > mine:
                return  # a newer job.yaml of the folder has its word there: it stands
            if self.store.replace(origin.status_key, doc, found[1]) is not None:
                return

    def status(self, status_key: str) -> StatusDocument | None:
        """The status document at `status_key`, or None."""
        found = self.store.get(status_key)
        return StatusDocument.from_doc(found[0]) if found else None

    def add_status_note(self, origin: Origin, note: str) -> None:
        """Append a note to an input's status document (e.g. a package that arrived after submission).

        Written with generation-match, so a newer status written meanwhile (the folder's next job.yaml decided, which
        also carries its last submitted job.yaml) is never replaced by this older one; a status that now speaks for
        another input (another job.yaml generation) gets no note."""
        if not origin.status_key:
            return
        for _ in range(3):
            found = self.store.get(origin.status_key)
            if found is None:
                return
            current = StatusDocument.from_doc(found[0])
            if note in current.notes or (origin.fields and current.origin != origin.fields):
                return
            noted = dataclasses.replace(current, notes=current.notes + (note,))
            if self.store.replace(origin.status_key, {**noted.to_doc(), **origin.status_extra}, found[1]) is not None:
                return

    # -- incomplete drops ---------------------------------------------------------------------------
    def note_waiting(self, origin: Origin, bucket: str, folder: str, missing: tuple[str, ...],
                     describe: Callable[[dt.datetime], StatusDocument], now: dt.datetime,
                     seen_at: dt.datetime) -> tuple[StatusDocument, bool]:
        """Remember an incomplete drop in its WAITING status document: what it lacks, since its first sighting.

        One document serves the uploader and the sweep. A first sighting creates it (one request) and an index
        entry `due/<since, epoch seconds>/<bucket>/<folder>`, so the sweep lists which drops are due without
        reading any record that is not. A drop already WAITING keeps its `since`, and its document is rewritten
        (generation-match) only when what is missing changed. A verdict's status written after `seen_at` (the
        listing that found the drop incomplete) means a concurrent event completed the drop: its word stands.

        Args:
            origin: the drop (its status key).
            describe: the WAITING status for a given first-sighting time.
            now: this sighting's time.
        Returns:
            (the WAITING status as stored or as it would read, True when this call wrote it).
        """
        key = origin.status_key
        if not key:
            return describe(now), False
        fresh = describe(now)
        if self.store.create(key, fresh.to_doc()) is not None:
            self._index_due(now, bucket, folder)
            return fresh, True
        found = self.store.get(key)
        if found is None:  # removed in between (aged out): a first sighting again
            written = self.store.create(key, fresh.to_doc()) is not None
            if written:
                self._index_due(now, bucket, folder)
            return fresh, written
        current = StatusDocument.from_doc(found[0])
        carried = current.submitted_spec()  # the folder's last submitted job.yaml outlives the wait
        # A WAITING status of the quota queue (reason RATE_LIMITED: a complete drop) is no incomplete-drop record:
        # this is a first sighting, indexed below, so the sweep rejects the drop if it stays incomplete.
        queued = current.reason == Reason.RATE_LIMITED.value
        if current.state is DropStatus.WAITING and current.waiting_since is not None and not queued:
            # its index entry again (create-only, same key): an invocation killed between the status and the index
            # left none, and its redelivery lands here; without it the sweep would never reject the drop
            self._index_due(current.waiting_since, bucket, folder)
            if current.missing == missing:
                return current, False
            updated = dataclasses.replace(describe(current.waiting_since), last_submitted=carried)
            return updated, self.store.replace(key, updated.to_doc(), found[1]) is not None
        if current.time > seen_at:
            return fresh, False
        fresh = dataclasses.replace(fresh, last_submitted=carried)
        if self.store.replace(key, fresh.to_doc(), found[1]) is None:
            return fresh, False
        self._index_due(now, bucket, folder)
        return fresh, True

    def _index_due(self, since: dt.datetime, bucket: str, folder: str) -> None:
        self.store.create(f"{DUE_PREFIX}{int(since.timestamp()):012d}/{bucket}/{folder}", {})

    def write_waiting(self, origin: Origin, status: StatusDocument, seen_at: dt.datetime) -> bool:
        """Write a WAITING status unless a verdict written after `seen_at` (the listing that found the drop
        incomplete) is there: a concurrent event completed the drop meanwhile, and its word stands.

        Returns:
            True when written.
        """
        if not origin.status_key:
            return False
        found = self.store.get(origin.status_key)
        if found is None:
            return self.store.create(origin.status_key, status.to_doc()) is not None
        current = StatusDocument.from_doc(found[0])
        if current.state is not DropStatus.WAITING and current.time > seen_at:
            return False
        return self.store.replace(origin.status_key, status.to_doc(), found[1]) is not None

    def pending_due(self, now: dt.datetime, age_s: float) -> list[PendingDrop]:
        """Incomplete drops first seen at least `age_s` seconds before `now`: one listing of the index, and a
        read only of the status documents that are due. Index entries of drops that completed meanwhile (their
        status is no longer WAITING, or WAITING since another first sighting) are removed."""
        out = []
        for key in sorted(self.store.versions(DUE_PREFIX)):
            stamp, _, rest = key[len(DUE_PREFIX):].partition("/")
            if not stamp.isdigit() or int(stamp) + age_s > now.timestamp():
                continue
            bucket, _, folder = rest.partition("/")
            status = self.status(status_key(bucket, folder))
            since = status.waiting_since if status is not None and status.state is DropStatus.WAITING else None
            if since is None or int(since.timestamp()) != int(stamp):
                self.store.delete(key)  # the drop completed (or waits since a later sighting, indexed apart)
                continue
            out.append(PendingDrop(bucket, folder, status.missing if status else (), since))
        return out

    def clear_pending(self, bucket: str, folder: str, since: dt.datetime) -> None:
        """Forget an incomplete drop's index entry (it was swept); its status now holds the verdict's word."""
        self.store.delete(f"{DUE_PREFIX}{int(since.timestamp()):012d}/{bucket}/{folder}")

    # -- followed jobs ----------------------------------------------------------------------------
    def intend(self, record: JobRecord) -> JobRecord:
        """Note, before creating it, the job an input is about to become (an unannounced record).

        The intent is created first: on the happy path nothing else is read. Only when `jobs/<key>` exists
        already, or vanished in between (it was finished or withdrawn), is the stored record returned instead.
        A job whose key is in `done/` but not in `jobs/` (finished, then its key reused) gets a fresh intent
        here; `settle_adopted` drops it once the backend says the job already existed, so a finished job is
        never followed again.

        Returns:
            The record as stored: an earlier attempt's record for the same key is kept (it may be announced
            already, or done).
        """
        if record.announced:
            raise ValueError("intend() takes an unannounced record")
        key = f"jobs/{record.key}.json"
        token = self.store.create(key, record.to_doc())
        if token is not None:
            return dataclasses.replace(record, token=token)
        found = self.store.get(key)
        if found is not None:
            return JobRecord.from_doc(found[0], token=found[1])
        return self.finished(record.key) or record

    def finished(self, key: str) -> JobRecord | None:
        """The record of job `key` if its terminal state was published (`done/`), else None."""
        found = self.store.get(f"done/{key}.json")
        return JobRecord.from_doc(found[0]) if found is not None else None

    def settle_adopted(self, record: JobRecord) -> JobRecord:
        """After the backend adopted an existing job for our fresh intent: if that job was already finished and
        published, withdraw the intent and return the `done/` record (a finished job is never followed again);
        otherwise `record` unchanged."""
        if record.announced or not record.token:
            return record
        done = self.finished(record.key)
        if done is None:
            return record
        self.withdraw(record)
        return done

    def announce(self, record: JobRecord) -> bool:
        """Mark an intended job announced (SUBMITTED published), with the handle the backend gave it.

        Returns False when it was announced already or another writer moved it first.
        """
        if record.announced:
            return False
        updated = dataclasses.replace(record, announced=True, misses=0)
        return self.store.replace(f"jobs/{record.key}.json", updated.to_doc(), record.token) is not None

    def withdraw(self, record: JobRecord) -> None:
        """Remove an intended job that was never created (only this writer's unannounced version)."""
        if not record.announced and record.token:
            self.store.delete(f"jobs/{record.key}.json", token=record.token)

    def following(self, key: str) -> bool:
        """True while job `key` is followed: noted or submitted, and its terminal state not yet published."""
        return self.store.get(f"jobs/{key}.json") is not None

    def follow(self, record: JobRecord) -> bool:
        """Start following a job whose SUBMITTED was published; False if already followed or done."""
        if self.store.get(f"done/{record.key}.json") is not None:
            return False
        return self.store.create(f"jobs/{record.key}.json", record.to_doc()) is not None

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

    def note_trials(self, record: JobRecord, trial_ids: tuple[str, ...]) -> JobRecord | None:
        """Record that the trialCompleted events of `trial_ids` were published for a followed job.

        Returns:
            The record as now stored (its new token), or None when another writer moved it first (the next tick
            then publishes those trials again, under the same ce-ids).
        """
        updated = dataclasses.replace(record, published_trials=tuple(dict.fromkeys(record.published_trials
                                                                                   + trial_ids)))
        token = self.store.replace(f"jobs/{record.key}.json", updated.to_doc(), record.token)
        return None if token is None else dataclasses.replace(updated, token=token)

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


    # -- the create-quota queue (quota.py) ----------------------------------------------------------------------
    def gated(self, backend: str, region: str) -> bool:
        """True while the region's gate exists (a create was answered 429 and its queue has not emptied since)."""
        return self.store.get(quota.gate_key(backend, region)) is not None

    def close_gate(self, backend: str, region: str, now: dt.datetime) -> None:
        """Write the region's gate at a 429: new inputs of the region queue behind until the tick empties it."""
        self.store.put(quota.gate_key(backend, region), {"backend": backend, "region": region,
                                                          "rateLimitedAt": iso(now)})

    def open_gate(self, backend: str, region: str, token: int) -> None:
        """Remove the gate, only if nobody rewrote it since it was listed (a 429 meanwhile keeps it)."""
        self.store.delete(quota.gate_key(backend, region), token=token)

    def quota_queues(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], list[quota.Entry]]]:
        """(every gate with its generation token, every region's queue oldest first), from one listing."""
        versions = self.store.versions(quota.QUEUE_PREFIX)
        return quota.gates(versions), quota.queues(versions)

    def queue_of(self, backend: str, region: str) -> list[quota.Entry]:
        """One region's queue, oldest first (one listing)."""
        return quota.queues(self.store.versions(f"{quota.QUEUE_PREFIX}{backend}/{region}/")).get((backend, region), [])

    def queued_entry(self, origin: Origin) -> str | None:
        """The key of the queue entry holding `origin`, when it is queued (and the entry still exists)."""
        found = self.store.get(quota.queued_key(origin.record_key))
        if found is None:
            return None
        key = str(found[0].get("entry") or "")
        return key if key and self.store.get(key) is not None else None

    def enqueue(self, key: str, doc: dict[str, Any], origin: Origin) -> None:
        """Queue an input: its entry first, then the marker naming it (a crash in between leaves an entry without a
        marker, which a redelivery may queue once more; the tick then decides the input once and drops the other
        entry, its verdict being recorded)."""
        self.store.create(key, doc)
        self.store.put(quota.queued_key(origin.record_key), {"entry": key})

    def queue_entry(self, key: str) -> dict[str, Any] | None:
        """A queue entry's document, or None when it is gone."""
        found = self.store.get(key)
        return found[0] if found else None

    def dequeue(self, key: str, origin: Origin | None) -> None:
        """Remove a served (or stale) queue entry, and its input's marker when it names this entry."""
        self.store.delete(key)
        if origin is not None:
            found = self.store.get(quota.queued_key(origin.record_key))
            if found is not None and found[0].get("entry") == key:
                self.store.delete(quota.queued_key(origin.record_key), token=found[1])

    # -- reconciler backoff ------------------------------------------------------------------------
    def backoff(self) -> tuple[int, dt.datetime | None]:
        """(failed ticks in a row, no tick before this time) — (0, None) when ticks run normally."""
        found = self.store.get(BACKOFF_KEY)
        if found is None:
            return 0, None
        return int(found[0].get("failures", 0)), parse_iso(found[0]["until"])

    def set_backoff(self, failures: int, until: dt.datetime) -> None:
        """Persist the backoff so every instance (and every scheduler period) honours it."""
        self.store.put(BACKOFF_KEY, {"failures": failures, "until": iso(until)})

    def clear_backoff(self) -> None:
        """Ticks succeed again: back to the normal cadence."""
        self.store.delete(BACKOFF_KEY)


def pending_age(pending: PendingDrop, now: dt.datetime) -> float:
    """Seconds since the drop's first object was seen."""
    return (now - pending.since).total_seconds()
