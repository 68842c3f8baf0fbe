"""The drop origin: storage events of the drop bucket -> decisions (drops.py) -> the one submission path.

`DropHandler.handle` runs for every finalize event: the pure `drops.classify` decides with no I/O whether
the object can belong to a drop; one snapshot (the folder listing and the submitter's records) feeds the
pure `drops.decide`; this module then does what the decision says: note what an incomplete drop waits
for, note a package that arrived late, recognise a byte-identical re-upload, or read job.yaml (pinned to
its generation) and hand it to `Submitter.submit`. `sweep` is the scheduled pass over drops that stayed
incomplete. Every write the drop protocol needs beyond the submission path (pending drops, last
submitted spec) happens here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from . import drops, logs, naming
from .clock import Clock, iso
from .drops import AlreadyDecided, DropObject, DropRef, Evaluate, Identical, Ignored, Snapshot, Wait
from .errors import ObjectGone, SpecRejected, TransientError
from .events import StorageObjectEvent, event_age_seconds
from .ledger import Ledger, pending_age
from .model import DropStatus, Origin, Verdict
from .objects import ObjectInfo, ObjectStore
from .planning import SpecInput, spec_defaults
from .reasons import Reason, Violation
from .records import PendingDrop, StatusDocument, SubmittedSpec, VerdictRecord
from .settings import Settings
from .spec import ParsedSpec, parse_job_yaml
from .submission import Action, Outcome, Submitter

log = logs.get("drops")


class DropHandler:
    """Handles storage events for one deployment's drop bucket.

    Args:
        settings: deployment settings.
        storage: reads the drop bucket.
        submitter: the one submission path.
        ledger: the submitter's records.
        clock: time.
    """

    def __init__(self, settings: Settings, storage: ObjectStore, submitter: Submitter, ledger: Ledger, clock: Clock):
        self.settings, self.storage, self.submitter = settings, storage, submitter
        self.ledger, self.clock = ledger, clock
        self.rules = drops.DropRules(settings.drop_prefix, settings.max_spec_bytes, settings.duplicate_window_s)

    def classify(self, event: StorageObjectEvent) -> DropObject | Ignored:
        """What the object of `event` is to the drop protocol (pure)."""
        s = self.settings
        reserved = (s.state_prefix,) if s.state_bucket == s.drop_bucket else ()
        return drops.classify(event, drop_bucket=s.drop_bucket, drop_prefix=s.drop_prefix,
                              reserved_prefixes=reserved)

    # -- events -----------------------------------------------------------------------------------
    def handle(self, event: StorageObjectEvent) -> Outcome:
        """Process one finalize event. Raises only TransientErrors (the event is then redelivered)."""
        where = self.classify(event)
        if isinstance(where, Ignored):
            return Outcome(Action.IGNORED, where.why)
        age = event_age_seconds(event, self.clock.now())
        if age is not None and age > self.settings.max_event_age_s:
            return Outcome(Action.IGNORED, f"event older than {self.settings.max_event_age_s:.0f}s (age {age:.0f}s)")
        try:
            return self._decide(event.bucket, where, event.generation)
        except ObjectGone as exc:
            return Outcome(Action.IGNORED, f"stale event: {exc}")

    def _snapshot(self, bucket: str, folder: str, read_verdict: bool = True) -> Snapshot:
        """The folder listing and the submitter's records on it. Without `read_verdict` (a job.yaml event) the
        verdict is not read: the claim, created at the verdict's key, finds a decided generation instead.
        Its time is taken before the listing: a verdict's status written after it is newer than what was listed."""
        now = self.clock.now()
        listing = self.submitter.retry(lambda: self.storage.list_folder(bucket, folder))
        by_name = {o.filename: o for o in listing}
        spec = by_name.get(drops.JOB_SPEC_NAME)
        verdict = last = None
        if spec is not None and spec.size > 0:
            if read_verdict:
                verdict = self.ledger.verdict(drops.drop_ref(bucket, folder, spec).origin())
            if verdict is None:  # the folder's status carries its last submitted job.yaml
                status = self.ledger.status(drops.status_key(bucket, folder))
                last = status.submitted_spec() if status is not None else None
        return Snapshot(listing=by_name, verdict=verdict, last_spec=last, now=now)

    def _decide(self, bucket: str, where: DropObject, generation: int, queued: str | None = None) -> Outcome:
        # A package event needs the verdict (a late or replaced package is noted on it); a job.yaml event does not.
        snapshot = self._snapshot(bucket, where.folder, read_verdict=where.role is not drops.ObjectRole.JOB_SPEC)
        decision = drops.decide(bucket, where, generation, snapshot, self.rules)
        if isinstance(decision, Ignored):
            return Outcome(Action.IGNORED, decision.why)
        if isinstance(decision, Wait):
            spec = snapshot.spec if snapshot.spec is not None and snapshot.spec.size > 0 else None
            key = naming.derive_job_id(where.drop_name, spec.generation) if spec is not None else None
            return self._wait(drops.drop_ref(bucket, where.folder, spec), key, decision.missing, snapshot.now)
        if isinstance(decision, AlreadyDecided):
            if decision.late_package:
                self._note_late_package(decision)
            if decision.replaced_package:
                self._note_replaced_package(decision)
            return Outcome(Action.DUPLICATE, f"{decision.drop.object}#{decision.drop.generation} was already handled",
                           decision.key)
        if isinstance(decision, Identical):
            return self._identical(decision)
        return self._evaluate(decision, snapshot.now, snapshot.last_spec, queued)

    def _wait(self, drop: DropRef, key: str | None, missing: tuple[str, ...], seen_at: dt.datetime) -> Outcome:
        """Note what an incomplete drop lacks on its status (WAITING: what is missing, since when, and when the
        sweep rejects it), so the uploader is not left guessing; that document is also what the sweep reads.
        Written only when what is missing changed. Publishes nothing."""
        origin, now = drop.origin(), self.clock.now()

        def describe(since: dt.datetime) -> StatusDocument:
            deadline = since + dt.timedelta(seconds=self.settings.incomplete_drop_s)
            message = (f"drop {drop.folder}/ is waiting for {', '.join(missing)} (incomplete since {iso(since)}); "
                       f"it is rejected as INCOMPLETE_DROP if still incomplete at {iso(deadline)}")
            return StatusDocument(state=DropStatus.WAITING, key=key, time=now, origin=origin.fields, message=message,
                                  missing=missing, waiting_since=since, reject_after=deadline)

        status, _ = self.ledger.note_waiting(origin, drop.bucket, drop.folder, missing, describe, now, seen_at)
        return Outcome(Action.WAITING, status.message or "", key)

    def _note_late_package(self, decision: AlreadyDecided) -> None:
        """A package that arrives after its drop was submitted is not part of the job: say so on the status."""
        note = (f"{decision.late_package} arrived after job {decision.verdict.key} was submitted and is not part of "
                "it (a drop without packageUris is submitted with the packages present when it completes). Upload "
                "packages before job.yaml, or list them in trainingInput.packageUris, then upload job.yaml again.")
        self.ledger.add_status_note(decision.drop.origin(), note)
        log.warning(note, extra={"ctx": {"jobId": decision.verdict.key, "drop": decision.drop.folder}})

    def _note_replaced_package(self, decision: AlreadyDecided) -> None:
        """A package uploaded again after its job was submitted changes nothing: the job runs a staged copy."""
        note = (f"{decision.replaced_package} was uploaded again after job {decision.verdict.key} was submitted; the "
                "job runs the bytes it was submitted with (a copy staged at submission). To run the new package, "
                "upload job.yaml again.")
        self.ledger.add_status_note(decision.drop.origin(), note)
        log.info(note, extra={"ctx": {"jobId": decision.verdict.key, "drop": decision.drop.folder}})

    def _identical(self, decision: Identical) -> Outcome:
        """Not a new submission: record it once as the earlier job's, tell the uploader, publish nothing."""
        drop, previous = decision.drop, decision.previous
        note = (f"generation {drop.generation} is byte-identical to generation {previous.generation}, submitted as "
                f"{previous.key} {decision.age_s:.0f}s ago; not resubmitted. To rerun on purpose, change anything in "
                "job.yaml (for example a label).")
        origin = drop.origin(drops.status_extra(None, previous))  # the submitted one stays the folder's last
        lease = self.submitter.claim_once(origin)
        if lease is not None and self.ledger.record_verdict(origin, VerdictRecord(Verdict.SUBMITTED, previous.key),
                                                            lease):
            self.ledger.write_status(origin, StatusDocument(state=DropStatus.DUPLICATE, key=previous.key,
                                                            time=self.clock.now(), origin=origin.fields, message=note))
        return Outcome(Action.DUPLICATE, note, previous.key)

    def _evaluate(self, decision: Evaluate, seen_at: dt.datetime, last: SubmittedSpec | None,
                  queued: str | None = None) -> Outcome:
        """Read job.yaml; wait for packages it names that the listing (taken at `seen_at`) lacks, else submit.
        `last` (the folder's last submitted job.yaml) is carried on the status documents written; `queued`: the
        quota-queue entry the tick is serving."""
        drop, spec_obj = decision.drop, decision.spec
        parsed, errors = self._read_spec(decision)
        if parsed is not None:
            present = [o.filename for o in decision.packages]
            missing = drops.missing_packages(parsed.job, drop.bucket, drop.folder, present)
            if missing:
                if self.ledger.verdict(drop.origin()) is not None:  # a late copy of a decided job.yaml's event
                    return Outcome(Action.DUPLICATE, f"{drop.object}#{drop.generation} was already handled",
                                   decision.key)
                return self._wait(drop, decision.key, tuple(missing), seen_at)
        named = parsed.job.get("jobId") if parsed is not None else None
        job_id = named if naming.is_valid_job_id(named) else decision.key
        defaults = spec_defaults(self.settings, drop.folder, str(job_id), tuple(o.uri for o in decision.packages))
        spec = SpecInput(parsed=parsed, errors=errors, defaults=defaults,
                         packages={o.uri: o for o in decision.packages})
        # Its status replaces any WAITING one, and carries what recognises the next byte-identical re-upload.
        return self.submitter.submit(spec, drop.origin(drops.status_extra(spec_obj, last)), decision.key,
                                     resume={"kind": "drop"}, queued=queued)

    def _read_spec(self, decision: Evaluate) -> tuple[ParsedSpec | None, tuple[Violation, ...]]:
        drop, spec_obj = decision.drop, decision.spec
        limit = self.settings.max_spec_bytes
        if decision.too_large:  # never read it: the size is in the listing
            return None, (Violation(drop.object, f"is {spec_obj.size} bytes; a job.yaml may be at most {limit} bytes "
                                    "(SUBMITTER_MAX_SPEC_BYTES)", Reason.SPEC_TOO_LARGE, spec_obj.size),)
        text = self.submitter.retry(lambda: self.storage.read(drop.bucket, drop.object, drop.generation,
                                                              max_bytes=limit))
        try:
            return parse_job_yaml(text, filename=drop.object), ()
        except SpecRejected as exc:
            return None, tuple(exc.violations)

    # -- the scheduled sweep ------------------------------------------------------------------------
    def sweep(self) -> list[Outcome]:
        """Decide, once each, drops still incomplete `incomplete_drop_s` after their first object.

        Each is re-read from its current listing (never from a stale record): a drop that completed and was
        never decided (its invocation died) is submitted now; one still incomplete is REJECTED with reason
        INCOMPLETE_DROP naming what is missing now; one decided meanwhile is forgotten.
        """
        out = []
        now = self.clock.now()
        for pending in self.ledger.pending_due(now, self.settings.incomplete_drop_s):
            outcome = self._sweep_one(pending, pending_age(pending, now))
            if outcome is not None:
                out.append(outcome)
            self.ledger.clear_pending(pending.bucket, pending.folder, since=pending.since)
        return out

    def _sweep_one(self, pending: PendingDrop, age: float) -> Outcome | None:
        bucket, folder = pending.bucket, pending.folder
        snapshot = self._snapshot(bucket, folder)
        drop = drops.drop_ref(bucket, folder, snapshot.spec)
        origin = drop.origin(drops.status_extra(snapshot.spec, snapshot.last_spec))
        if snapshot.verdict is not None:
            return None
        key = naming.derive_job_id(folder[len(self.settings.drop_prefix):], drop.generation)
        missing: tuple[str, ...]
        absent = drops.spec_absence(snapshot.spec)
        if absent is not None or snapshot.spec is None:
            missing = (absent or drops.JOB_SPEC_NAME,)
        else:
            evaluate = Evaluate(drop, key, snapshot.spec, tuple(snapshot.packages),
                                too_large=snapshot.spec.size > self.settings.max_spec_bytes)
            parsed, _ = self._read_spec(evaluate)
            present = [o.filename for o in snapshot.packages]
            missing = tuple(drops.missing_packages(parsed.job, bucket, folder, present)) if parsed else ()
            if not missing:
                return self._evaluate(evaluate, snapshot.now, snapshot.last_spec)  # complete, never decided
        message = (f"drop {folder}/ is still incomplete after {age:.0f}s: missing {', '.join(missing)}. Upload the "
                   "missing files, then job.yaml again (a new generation) to submit.")
        lease = self.submitter.claim_once(origin, "sweep")
        if lease is None:
            return None
        return self.submitter.refuse(origin, key, Verdict.REJECTED,
                                     [Violation(f"{folder}/", message, Reason.INCOMPLETE_DROP)],
                                     reason=Reason.INCOMPLETE_DROP, message=message, lease=lease)

    # -- the create-quota queue ----------------------------------------------------------------------
    def serve_queued(self, origin: Origin, entry: str) -> Outcome:
        """Decide a drop whose turn in the quota queue has come exactly as an event for its job.yaml is decided, from
        the folder's current listing: submitted through the one path, or REJECTED, a byte-identical re-upload of a
        job.yaml submitted meanwhile, waiting for a package deleted meanwhile; a job.yaml generation no longer live
        is dropped (its successor has an event of its own), and one deleted meanwhile leaves the drop WAITING for
        job.yaml."""
        drop = DropRef.from_dict(origin.fields["drop"])
        where = DropObject(folder=drop.folder, drop_name=drop.folder[len(self.settings.drop_prefix):],
                           filename=drops.JOB_SPEC_NAME, role=drops.ObjectRole.JOB_SPEC)
        outcome = self._decide(drop.bucket, where, drop.generation, queued=entry)
        if outcome.action is Action.IGNORED:
            # Its job.yaml was deleted (or emptied) while queued: the drop is incomplete again and its status says so
            # (WAITING for job.yaml, swept as INCOMPLETE_DROP if it stays so), not "in the quota queue" forever.
            listing = {o.filename: o for o in self.submitter.retry(
                lambda: self.storage.list_folder(drop.bucket, drop.folder))}
            absent = drops.spec_absence(listing.get(drops.JOB_SPEC_NAME))
            if absent is not None:
                return self._wait(drop, None, (absent or drops.JOB_SPEC_NAME,), self.clock.now())
        return outcome

    # -- bugs -------------------------------------------------------------------------------------
    def report_bug(self, event: StorageObjectEvent, exc: BaseException) -> Outcome:
        """Report an unexpected failure on `event`'s drop once (SUBMIT_FAILED INTERNAL_ERROR), so the event is
        acknowledged instead of redelivered for 24 h. An event that concerns no drop is only logged."""
        where = self.classify(event)
        if isinstance(where, Ignored):
            return Outcome(Action.IGNORED, f"bug while ignoring an event: {type(exc).__name__}")
        listing: Mapping[str, ObjectInfo] = {o.filename: o for o in self.submitter.retry(
            lambda: self.storage.list_folder(event.bucket, where.folder))}
        spec = listing.get(drops.JOB_SPEC_NAME)
        if spec is None or spec.size == 0:
            return Outcome(Action.IGNORED, f"bug on an incomplete drop: {type(exc).__name__}")
        drop: DropRef = drops.drop_ref(event.bucket, where.folder, spec)
        key = naming.derive_job_id(where.drop_name, drop.generation)
        # The report replaces the folder's status: it carries the folder's last submitted job.yaml on, so that
        # job.yaml's byte-identical re-upload is still recognised after the bug (not submitted a second time).
        try:
            current = self.ledger.status(drops.status_key(event.bucket, where.folder))
        except TransientError:
            raise
        except Exception:  # a status document we cannot read must not stop the one report the drop gets
            log.exception(f"{where.folder}: unreadable status document; the bug report starts a fresh one")
            current = None
        last = current.submitted_spec() if current is not None else None
        return self.submitter.report_bug(drop.origin(drops.status_extra(spec, last)), key, exc)
