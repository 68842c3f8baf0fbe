"""The data-trigger origin: storage events of data buckets -> trigger rules (triggers.py) -> the one submission path.

`TriggerHandler.handle` runs for every finalize event of a data bucket: it finds the rules the object matters to
(pure: `Rule.role`), then, per rule, does what the batching mode needs and hands each closed batch to the same
`Submitter.submit` a drop goes to, with a `SpecInput` built from the rule's template (`triggers.instantiate`) and
the batch's `Origin` (`Batch.origin`):

- per_object: the object (its live generation) is a batch.
- marker: the marker closes its folder's batch: the folder is listed once, the listing is kept in the folder's
  record (`triggers/folders/...`), and the batch is submitted; later events of data objects are matched against
  that listing (a redelivery, or a late object reported on the batch's status and never started).
- quiet: the object joins its folder's open window (compare-and-set on the folder record); `sweep` (the scheduled
  tick) closes windows quiet for the rule's period and submits them.

Overlap (skip and queue rules) goes through a per-rule record (`triggers/overlap/<rule>.json`, compare-and-set):
the active batch and the queue; the rule's previous job counts as active until the reconciler published its
terminal state (`Ledger.following`), so the reconciler knows nothing of triggers. `sweep` also starts queued
batches and resumes an active batch whose invocation died before its verdict.

Rules are checked once per instance, when first used (`check_rules`: each template instantiated with placeholder
values through the same planner as every job); a rule that cannot fire is reported once per version of the rule,
as an ERROR log and a status document `triggers/status/<rule>.json`, and never matches anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from . import logs
from .clock import Clock, iso
from .errors import ObjectGone, TransientError
from .events import FINALIZED, WRITTEN_BY_KEY, WRITTEN_BY_VALUE, StorageObjectEvent, event_age_seconds
from .leases import LeaseLost
from .ledger import Ledger
from .model import DropStatus, Origin, Verdict
from .objects import ObjectStore
from .planning import Planner, SpecInput, spec_defaults
from .reasons import Reason, Violation
from .records import StatusDocument
from .settings import Settings
from .spec import SpecDefaults
from .submission import Action, Outcome, Submitter
from .triggers import (
    MAX_LISTED_OBJECTS,
    MAX_QUEUE,
    TRIGGER_LABEL,
    AwaitingMarker,
    Batch,
    BatchMode,
    FolderRecord,
    Gate,
    Joined,
    Late,
    ListedBatch,
    ObjectRole,
    Overlap,
    Rule,
    RuleState,
    Seen,
    TemplateError,
    folder_key,
    gate,
    instantiate,
    join_window,
    marker_batch,
    marker_data,
    next_queued,
    object_batch,
    placeholder_batch,
    rule_state_key,
    rule_status_key,
    split_name,
    window_batch,
    window_due,
)

log = logs.get("triggers")
CAS_ATTEMPTS = 50  # compare-and-set retries on one record before the event is left to redelivery
CAS_BACKOFF_S = 0.05
RECENT_MARGIN_S = 3600.0  # closed batches are remembered this long past the oldest event still accepted
_PRIORITY = [Action.SUBMITTED, Action.ADOPTED, Action.REJECTED, Action.SUBMIT_FAILED, Action.QUEUED, Action.LATE,
             Action.WAITING, Action.DUPLICATE, Action.IGNORED]


def batch_defaults(settings: Settings, rule: Rule, batch: Batch) -> SpecDefaults:
    """What a rule's batch implies for its job: the rule's packages (when the template names no packageUris), a
    jobDir `gs://<outputs>/triggers/<rule>/<batch_id>`, the deployment defaults, the submitter's label plus
    `submitter-trigger: <rule>`, and the rule's own watched area as a protected prefix (outputs written there would
    start the rule again)."""
    base = spec_defaults(settings, f"triggers/{rule.name}", batch.batch_id, rule.packages)
    return dataclasses.replace(base, labels={**base.labels, TRIGGER_LABEL: rule.name},
                               protected_prefixes=(*base.protected_prefixes,
                                                   f"gs://{rule.bucket}/{rule.literal_prefix}"))


def check_rule(rule: Rule, settings: Settings, planner: Planner) -> list[Violation]:
    """Every reason `rule` cannot fire, found without I/O: its template instantiated with placeholder values
    (`triggers.placeholder_batch`) through the planner every job goes through (schema, rules, policy, the
    backend's own check; packages named by gs:// URI are read only when a batch is submitted). Violation fields
    name the rule (`triggers.yaml: rules[0].job.trainingInput.scaleTier`)."""
    batch = placeholder_batch(rule)
    try:
        parsed = instantiate(rule, batch)
    except TemplateError as exc:
        return [Violation(f"{rule.source}.job", str(exc), Reason.RULE_INVALID)]
    plan = planner.plan(SpecInput(parsed=parsed, defaults=batch_defaults(settings, rule, batch)), batch.batch_id,
                        inspect_unlisted=False)
    out = [dataclasses.replace(v, field=f"{rule.source}.job.{v.field}") for v in plan.violations]
    ti = plan.job.get("trainingInput")
    if isinstance(ti, dict) and not ti.get("packageUris") and not (ti.get("masterConfig") or {}).get("imageUri"):
        out.append(Violation(f"{rule.source}.packages", "the job installs no package: list the trainer's gs:// "
                             "packages (packages, or trainingInput.packageUris), or run a custom container "
                             "(trainingInput.masterConfig.imageUri)", Reason.RULE_INVALID))
    return out


def check_rules(settings: Settings, planner: Planner) -> tuple[list[Rule], dict[str, tuple[str, list[Violation]]]]:
    """(the rules that can fire, name -> (digest, violations) of those that cannot): the loaded set's broken rules
    plus every rule whose template `check_rule` refuses."""
    ok: list[Rule] = []
    broken = {name: (digest, list(v)) for name, (digest, v) in settings.trigger_rules.broken.items()}
    for rule in settings.trigger_rules.rules:
        problems = check_rule(rule, settings, planner)
        if problems:
            broken[rule.name] = (rule.digest, problems)
        else:
            ok.append(rule)
    return ok, broken


class TriggerHandler:
    """Handles storage events of the data buckets, and the scheduled sweep of windows and queues.

    Args:
        settings: deployment settings (with the loaded trigger rules).
        storage: reads the data buckets.
        submitter: the one submission path.
        ledger: the submitter's records.
        clock: time.
    """

    def __init__(self, settings: Settings, storage: ObjectStore, submitter: Submitter, ledger: Ledger, clock: Clock):
        self.settings, self.storage, self.submitter = settings, storage, submitter
        self.ledger, self.clock = ledger, clock
        self.store = ledger.store
        self._folders: dict[str, tuple[int, FolderRecord]] = {}  # folder records by key, with their token

    @functools.cached_property
    def checked(self) -> tuple[list[Rule], dict[str, tuple[str, list[Violation]]]]:
        """The rules that can fire, and the broken ones (checked once per instance, then reported)."""
        rules, broken = check_rules(self.settings, self.submitter.planner)
        self._report_rules(rules, broken)
        return rules, broken

    @property
    def rules(self) -> list[Rule]:
        """The rules that can fire."""
        return self.checked[0]

    def handles(self, bucket: str) -> bool:
        """True for a data bucket of this deployment (never the drop bucket)."""
        return self.settings.is_data_bucket(bucket)

    def _report_rules(self, rules: list[Rule], broken: dict[str, tuple[str, list[Violation]]]) -> None:
        """Write each rule's status document when its version or verdict changed; a broken rule is logged at ERROR
        then, so each version of a broken rule is reported once, however many instances start."""
        for name, (digest, violations) in broken.items():
            found = self.store.get(rule_status_key(name))
            if found is not None and found[0].get("digest") == digest and found[0].get("state") == "BROKEN":
                continue
            as_dicts = [v.as_dict() for v in violations]
            self.store.put(rule_status_key(name), {"rule": name, "state": "BROKEN", "digest": digest,
                                                   "time": iso(self.clock.now()), "violations": as_dicts})
            log.error(f"trigger rule {name} is invalid and never fires: " + "; ".join(
                f"{v.field}: {v.message}" for v in violations[:20]), extra={"ctx": {"rule": name,
                                                                                   "reason": Reason.RULE_INVALID}})
        for rule in rules:
            found = self.store.get(rule_status_key(rule.name))
            if found is not None and found[0].get("digest") == rule.digest and found[0].get("state") == "VALID":
                continue
            self.store.put(rule_status_key(rule.name), {"rule": rule.name, "state": "VALID", "digest": rule.digest,
                                                        "time": iso(self.clock.now()), "violations": []})

    # -- events -----------------------------------------------------------------------------------
    def _ignored(self, event: StorageObjectEvent) -> str | None:
        name = event.name
        if event.event_type and event.event_type != FINALIZED:
            return f"event type {event.event_type!r} is not {FINALIZED}"
        if event.metadata.get(WRITTEN_BY_KEY) == WRITTEN_BY_VALUE:
            return "object was written by the submitter"
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            return "object name is not valid UTF-8"
        if size > 1024 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
            return "object name has control characters or is too long"
        if name.endswith("/"):
            return "folder placeholder"
        age = event_age_seconds(event, self.clock.now())
        if age is not None and age > self.settings.max_event_age_s:
            return f"event older than {self.settings.max_event_age_s:.0f}s (age {age:.0f}s)"
        return None

    def matching(self, bucket: str, name: str, size: int = 1) -> list[tuple[Rule, ObjectRole]]:
        """The rules object `name` of `bucket` matters to, with what it is to each. A zero-byte object is never data
        (the first half of a two-step upload, or an empty file); a marker may be empty (Hadoop's `_SUCCESS` is)."""
        out = []
        for rule in self.rules:
            role = rule.role(name) if rule.bucket == bucket else None
            if role is ObjectRole.MARKER or (role is ObjectRole.DATA and size > 0):
                out.append((rule, role))
        return out

    def handle(self, event: StorageObjectEvent) -> Outcome:
        """Process one finalize event of a data bucket, for every rule the object matters to.

        Raises only TransientErrors (the event is then redelivered; every step is idempotent per rule).
        """
        why = self._ignored(event)
        if why is not None:
            return Outcome(Action.IGNORED, why)
        matches = self.matching(event.bucket, event.name, event.size)
        if not matches:
            return Outcome(Action.IGNORED, f"no trigger rule matches gs://{event.bucket}/{event.name}")
        created = event.time or self.clock.now()
        outcomes = []
        for rule, role in matches:
            try:
                outcomes.append(self._handle(rule, role, event, created))
            except ObjectGone as exc:
                outcomes.append(Outcome(Action.IGNORED, f"rule {rule.name}: stale event: {exc}"))
        return combine(outcomes)

    def _handle(self, rule: Rule, role: ObjectRole, event: StorageObjectEvent, created: dt.datetime) -> Outcome:
        if rule.mode is BatchMode.PER_OBJECT:
            return self._per_object(rule, event, created)
        if rule.mode is BatchMode.MARKER:
            if role is ObjectRole.MARKER:
                return self._marker(rule, event, created)
            return self._marker_data(rule, event)
        return self._join(rule, event, created)

    def _per_object(self, rule: Rule, event: StorageObjectEvent, created: dt.datetime) -> Outcome:
        batch = object_batch(rule, event.name, event.generation, created)
        if self.ledger.verdict(batch.origin()) is not None:
            return Outcome(Action.DUPLICATE, f"{batch.origin().name} was already handled", batch.batch_id)
        self._check_live(event)
        return self.start(rule, batch)

    def _check_live(self, event: StorageObjectEvent) -> None:
        """Raise ObjectGone unless the event's generation is the object's live one (a deleted or replaced
        object starts nothing: its new generation has an event of its own)."""
        live = self.submitter.retry(lambda: self.storage.stat(event.bucket, event.name))
        if live.generation != event.generation:
            raise ObjectGone(f"generation {event.generation} of {event.name} was replaced by {live.generation}")

    def _marker(self, rule: Rule, event: StorageObjectEvent, created: dt.datetime) -> Outcome:
        """A marker closes its folder's batch: list the folder once (the listing is kept), then start the batch."""
        folder, _ = split_name(event.name)
        unlisted = marker_batch(rule, event.name, event.generation, created, ListedBatch("", created, 0, ()))
        if self.ledger.verdict(unlisted.origin()) is not None:
            return Outcome(Action.DUPLICATE, f"{unlisted.origin().name} (marker generation {event.generation}) was "
                           "already handled", unlisted.batch_id)
        self._check_live(event)
        key = folder_key(rule.name, event.bucket, folder)

        def listed(record: FolderRecord) -> FolderRecord | None:
            if record.batch(unlisted.batch_id) is not None:
                return None  # listed by an earlier delivery: its listing is the batch
            objects = self.submitter.retry(lambda: self.storage.list_folder(event.bucket, folder))
            data = sorted((o for o in objects if o.size > 0 and rule.role(o.name) is ObjectRole.DATA),
                          key=lambda o: o.name)
            entry = ListedBatch(unlisted.batch_id, self.clock.now(), len(data),
                                tuple((o.name, o.generation) for o in data[:MAX_LISTED_OBJECTS]))
            return record.with_listed(entry, self._keep_after())

        record = self._update_folder(key, FolderRecord(rule.name, event.bucket, folder), listed)
        entry = record.batch(unlisted.batch_id)
        assert entry is not None
        batch = marker_batch(rule, event.name, event.generation, created, entry)
        if entry.count == 0:
            return self._refuse(batch, Reason.EMPTY_BATCH, f"{batch.origin().name}: the marker {event.name} closed a "
                                f"folder holding no data object of rule {rule.name} ({rule.pattern}); nothing to "
                                "train on")
        return self.start(rule, batch)

    def _marker_data(self, rule: Rule, event: StorageObjectEvent) -> Outcome:
        key = folder_key(rule.name, event.bucket, split_name(event.name)[0])
        found = self.store.get(key)
        record = FolderRecord.from_doc(found[0]) if found else None
        decision = marker_data(record, (event.name, event.generation))
        if isinstance(decision, AwaitingMarker):
            return Outcome(Action.IGNORED, f"rule {rule.name}: {event.name} waits for its folder's marker "
                           f"{rule.marker}")
        if isinstance(decision, Seen):
            return Outcome(Action.DUPLICATE, f"rule {rule.name}: {event.name} is part of batch {decision.batch_id}",
                           decision.batch_id)
        return self._late(rule, event, decision.batch_id)

    def _late(self, rule: Rule, event: StorageObjectEvent, batch_id: str) -> Outcome:
        """An object that arrived after its batch closed: noted on that batch's status, never started."""
        then = ("it is part of the folder's next batch only if the marker is written again" if rule.mode is
                BatchMode.MARKER else "it was created before the batch closed, so it starts no batch of its own")
        note = (f"gs://{event.bucket}/{event.name} (generation {event.generation}) arrived after batch {batch_id} "
                f"closed and is not part of it; {then} (rule {rule.name})")
        status = Origin(record_key=f"triggers/batches/{rule.name}/{batch_id}", fields={},
                        status_key=f"status/triggers/{rule.name}/{batch_id}.json", name=batch_id)
        self.ledger.add_status_note(status, note)
        log.warning(note, extra={"ctx": {"jobId": batch_id, "rule": rule.name, "object": event.name}})
        return Outcome(Action.LATE, note, batch_id)

    def _join(self, rule: Rule, event: StorageObjectEvent, created: dt.datetime) -> Outcome:
        """A quiet rule's object joins its folder's open window (or is a redelivery, or late)."""
        folder, _ = split_name(event.name)
        key = folder_key(rule.name, event.bucket, folder)
        decision: list[Seen | Late | Joined] = []

        def joined(record: FolderRecord) -> FolderRecord | None:
            decision[:] = [join_window(rule, record, (event.name, event.generation), created)]
            return decision[0].record if isinstance(decision[0], Joined) else None

        record = self._update_folder(key, FolderRecord(rule.name, event.bucket, folder), joined)
        result = decision[0]
        if isinstance(result, Seen):
            return Outcome(Action.DUPLICATE, f"rule {rule.name}: {event.name} was already counted", result.batch_id)
        if isinstance(result, Late):
            return self._late(rule, event, result.batch_id)
        window = record.open
        assert window is not None
        batch_id = window_batch(rule, event.bucket, folder, window).batch_id
        return Outcome(Action.WAITING, f"rule {rule.name}: {event.name} joined the window of gs://{event.bucket}/"
                       f"{folder}/ ({window.count} object{'s' if window.count != 1 else ''}; it closes after "
                       f"{rule.quiet_s:.0f}s without a new object)", batch_id)

    def _keep_after(self) -> dt.datetime:
        return self.clock.now() - dt.timedelta(seconds=self.settings.max_event_age_s + RECENT_MARGIN_S)

    def _update_folder(self, key: str, empty: FolderRecord,
                       change: Callable[[FolderRecord], FolderRecord | None]) -> FolderRecord:
        """Apply `change` to the folder record with compare-and-set, retrying on concurrent writes.

        Returns:
            The record as stored (unchanged when `change` returns None).
        Raises:
            TransientError: CAS_ATTEMPTS writers in a row got there first (the event is redelivered).
        """
        for attempt in range(CAS_ATTEMPTS):
            found = self.store.get(key)
            record = FolderRecord.from_doc(found[0]) if found else empty
            updated = change(record)
            if updated is None:
                return record
            token = (self.store.create(key, updated.to_doc()) if found is None
                     else self.store.replace(key, updated.to_doc(), found[1]))
            if token is not None:
                return updated
            self.clock.sleep(CAS_BACKOFF_S * (attempt + 1))
        raise TransientError(f"{key}: too many concurrent updates; retrying later")

    # -- starting a batch -------------------------------------------------------------------------
    def start(self, rule: Rule, batch: Batch) -> Outcome:
        """Start `batch` under the rule's overlap setting: submit it now, skip it (REJECTED, OVERLAP_SKIPPED) or
        queue it (its status says behind which job; `sweep` starts it when that job is final)."""
        if self.ledger.verdict(batch.origin()) is not None:
            return Outcome(Action.DUPLICATE, f"{batch.origin().name}: already decided", batch.batch_id)
        if rule.overlap is not Overlap.PARALLEL:
            decision, state = self._gate(rule, batch)
            if decision is Gate.SKIP:
                active = state.active.batch_id if state.active else "(none)"
                why = ("is still active (overlap: skip)" if rule.overlap is Overlap.SKIP
                       else f"is still active and {MAX_QUEUE} batches are queued already (overlap: queue)")
                return self._refuse(batch, Reason.OVERLAP_SKIPPED, f"{batch.origin().name}: skipped: the rule's "
                                    f"previous job {active} {why}; batch {batch.batch_id} ({batch.count} objects in "
                                    f"gs://{batch.bucket}/{batch.folder}/) was not trained on")
            if decision in (Gate.QUEUE, Gate.QUEUED):
                return self._queued(batch, state)
        return self._submit(rule, batch)

    def _gate(self, rule: Rule, batch: Batch) -> tuple[Gate, RuleState]:
        key = rule_state_key(rule.name)
        for attempt in range(CAS_ATTEMPTS):
            found = self.store.get(key)
            state = RuleState.from_doc(found[0]) if found else RuleState()
            running = state.active is not None and state.active.batch_id != batch.batch_id and self._running(state)
            decision, updated = gate(state, batch, rule.overlap, running, self.clock.now())
            if updated == state:
                return decision, state
            token = (self.store.create(key, updated.to_doc()) if found is None
                     else self.store.replace(key, updated.to_doc(), found[1]))
            if token is not None:
                return decision, updated
            self.clock.sleep(CAS_BACKOFF_S * (attempt + 1))
        raise TransientError(f"{key}: too many concurrent updates; retrying later")

    def _running(self, state: RuleState) -> bool:
        """Whether the rule's active batch still counts as running: being decided (no verdict yet; the sweep
        resumes it after the claim lease), or submitted and its terminal state not yet published."""
        active = state.active
        if active is None:
            return False
        verdict = self.ledger.verdict(active.origin())
        if verdict is None:
            since = state.active_since
            return since is None or (self.clock.now() - since).total_seconds() < self.settings.max_event_age_s
        return verdict.state is Verdict.SUBMITTED and self.ledger.following(verdict.key)

    def _queued(self, batch: Batch, state: RuleState) -> Outcome:
        position = next((i for i, b in enumerate(state.queue, 1) if b.batch_id == batch.batch_id), len(state.queue))
        behind = state.active.batch_id if state.active else "(none)"
        message = (f"{batch.origin().name}: queued (overlap: queue, position {position}) behind job {behind}; it "
                   "starts when that job is final")
        origin = batch.origin()
        self.ledger.write_waiting(origin, StatusDocument(state=DropStatus.WAITING, key=batch.batch_id,
                                                         time=self.clock.now(), origin=origin.fields,
                                                         message=message), self.clock.now())
        return Outcome(Action.QUEUED, message, batch.batch_id)

    def _refuse(self, batch: Batch, reason: Reason, message: str) -> Outcome:
        """REJECTED for a batch outside the submission path (skipped, empty), under the batch's claim so that
        concurrent deliveries publish it once."""
        origin = batch.origin()
        lease = self.submitter.claim_once(origin)
        if lease is None:
            return Outcome(Action.DUPLICATE, f"{origin.name}: decided by a concurrent invocation", batch.batch_id)
        return self.submitter.refuse(origin, batch.batch_id, Verdict.REJECTED,
                                     [Violation(f"gs://{batch.bucket}/{batch.where}", message, reason)],
                                     reason=reason, message=message, lease=lease)

    def _submit(self, rule: Rule, batch: Batch, queued: str | None = None) -> Outcome:
        """The one submission path, with the rule's template instantiated for the batch (`queued`: the quota-queue
        entry the tick is serving)."""
        errors: tuple[Violation, ...] = ()
        try:
            parsed = instantiate(rule, batch)
        except TemplateError as exc:
            parsed, errors = None, (Violation(f"{rule.source}.job", str(exc), Reason.SPEC_INVALID),)
        spec = SpecInput(parsed=parsed, errors=errors, defaults=batch_defaults(self.settings, rule, batch))
        return self.submitter.submit(spec, batch.origin(), batch.batch_id,
                                     resume={"kind": "trigger", "batch": batch.to_doc()}, queued=queued)

    def serve_queued(self, origin: Origin, entry: str, resume: dict[str, Any]) -> Outcome:
        """Decide a batch whose turn in the quota queue has come, through the same path (its rule as loaded now; a
        rule removed or broken since drops the batch, logged)."""
        batch = Batch.from_doc(resume["batch"])
        rule = next((r for r in self.rules if r.name == batch.rule), None)
        if rule is None:
            log.warning(f"{origin.name}: rule {batch.rule} no longer fires; batch {batch.batch_id} is dropped from the "
                        "quota queue", extra={"ctx": {"jobId": batch.batch_id, "rule": batch.rule}})
            return Outcome(Action.IGNORED, f"rule {batch.rule} no longer fires", batch.batch_id)
        if self.ledger.verdict(batch.origin()) is not None:
            return Outcome(Action.DUPLICATE, f"{origin.name}: already decided", batch.batch_id)
        return self._submit(rule, batch, queued=entry)

    # -- the scheduled sweep ----------------------------------------------------------------------
    def sweep(self) -> list[Outcome]:
        """Close quiet windows and submit them, start queued batches whose rule's previous job is final, and resume
        active batches whose invocation died before a verdict. A batch that cannot be decided now (a transient
        fault, a claim held by a live invocation) is left for the next tick."""
        out: list[Outcome] = []
        for rule in self.rules:
            if rule.mode is BatchMode.QUIET:
                out += self._sweep_windows(rule)
        for rule in self.rules:  # parallel rules too: batches queued before the rule was switched to parallel
            out += self._drain(rule)
        return out

    def _attempt(self, what: str, fn: Callable[[], Outcome]) -> Outcome | None:
        try:
            return fn()
        except (TransientError, ObjectGone, LeaseLost) as exc:
            log.warning(f"{what}: {exc}; retried on the next tick", extra={"ctx": {"outcome": "retry"}})
            return None

    def _sweep_windows(self, rule: Rule) -> list[Outcome]:
        out = []
        now = self.clock.now()
        versions = self.store.versions(f"triggers/folders/{rule.name}/")
        for key in set(self._folders) - set(versions):
            if key.startswith(f"triggers/folders/{rule.name}/"):
                del self._folders[key]
        for key, token in sorted(versions.items()):
            cached = self._folders.get(key)
            if cached is None or cached[0] != token:
                found = self.store.get(key)
                if found is None:
                    continue
                cached = (found[1], FolderRecord.from_doc(found[0]))
                self._folders[key] = cached
            record = cached[1]
            if record.closing is not None or (record.open is not None and window_due(record.open, now, rule.quiet_s)):
                outcome = self._attempt(f"closing a window of rule {rule.name}", functools.partial(
                    self._close_window, rule, key))
                if outcome is not None:
                    out.append(outcome)
            elif record.open is None and all(b.closed_at < self._keep_after() for b in record.recent):
                self.store.delete(key, token=token)  # nothing left that an event could still refer to
        return out

    def _close_window(self, rule: Rule, key: str) -> Outcome:
        """Close the folder's quiet window (open -> closing), start its batch, then remember it (closing -> recent).
        A window left closing by a dead tick is finished here too: starting its batch again is idempotent."""
        now = self.clock.now()

        def close(record: FolderRecord) -> FolderRecord | None:
            if record.closing is not None or record.open is None or not window_due(record.open, now, rule.quiet_s):
                return None
            return dataclasses.replace(record, open=None, closing=dataclasses.replace(record.open, closed_at=now))

        record = self._update_folder(key, FolderRecord(rule.name, "", ""), close)
        window = record.closing
        if window is None:
            return Outcome(Action.IGNORED, f"rule {rule.name}: the window is no longer quiet")
        batch = window_batch(rule, record.bucket, record.folder, window)
        outcome = self.start(rule, batch)
        closed_at = window.closed_at or now

        def remember(current: FolderRecord) -> FolderRecord | None:
            if current.closing is None or window_batch(rule, current.bucket, current.folder,
                                                       current.closing).batch_id != batch.batch_id:
                return None
            listed = ListedBatch(batch.batch_id, closed_at, window.count, window.objects)
            return dataclasses.replace(current, closing=None).with_listed(listed, self._keep_after())

        self._update_folder(key, record, remember)
        return outcome

    def _drain(self, rule: Rule) -> list[Outcome]:
        """A skip or queue rule: resume its active batch if its invocation died before a verdict; once its job is
        final, start the queued batches in order until one is running (a rule switched to parallel since: all)."""
        out: list[Outcome] = []
        key = rule_state_key(rule.name)
        for _ in range(MAX_QUEUE + 2):
            found = self.store.get(key)
            if found is None:
                return out
            state, token = RuleState.from_doc(found[0]), found[1]
            active = state.active
            if active is not None and self.ledger.verdict(active.origin()) is None:
                since = state.active_since or self.clock.now()
                if (self.clock.now() - since).total_seconds() >= self.settings.claim_lease_s:
                    outcome = self._attempt(f"resuming batch {active.batch_id}",
                                            functools.partial(self._submit, rule, active))
                    if outcome is not None:
                        out.append(outcome)
                        if outcome.action is Action.QUEUED:
                            return out  # waits in the quota queue: the tick serves it in turn
                        continue
                return out  # being decided by a live invocation (or retried on the next tick)
            if rule.overlap is not Overlap.PARALLEL and self._running(state):
                return out
            popped = next_queued(state, self.clock.now())
            if popped is None:
                return out
            head, updated = popped
            if self.store.replace(key, updated.to_doc(), token) is None:
                continue  # a concurrent writer: read again
            outcome = self._attempt(f"starting queued batch {head.batch_id}",
                                    functools.partial(self._submit, rule, head))
            if outcome is None:
                return out  # the head is the active batch now: resumed on a later tick
            out.append(outcome)
        return out

    # -- bugs -------------------------------------------------------------------------------------
    def report_bug(self, event: StorageObjectEvent, exc: BaseException) -> Outcome:
        """Report an unexpected failure once, as SUBMIT_FAILED INTERNAL_ERROR of the batch the event would have
        started (per_object: the object's; marker: the marker's), so it is acknowledged instead of redelivered for
        a day. An event that starts no batch by itself (a quiet window's object, a marker rule's data) is only
        logged."""
        for rule, role in self.matching(event.bucket, event.name, event.size):
            created = event.time or self.clock.now()
            if rule.mode is BatchMode.PER_OBJECT:
                batch = object_batch(rule, event.name, event.generation, created)
            elif role is ObjectRole.MARKER:
                batch = marker_batch(rule, event.name, event.generation, created, ListedBatch("", created, 0, ()))
            else:
                continue
            return self.submitter.report_bug(batch.origin(), batch.batch_id, exc)
        return Outcome(Action.IGNORED, f"bug on a data object that starts no batch by itself: {type(exc).__name__}")


def combine(outcomes: list[Outcome]) -> Outcome:
    """One outcome for an event that mattered to several rules: the most significant action (a submission before
    a duplicate before an ignore), every rule's detail."""
    if len(outcomes) == 1:
        return outcomes[0]
    first = min(outcomes, key=lambda o: _PRIORITY.index(o.action))
    return Outcome(first.action, "; ".join(o.detail for o in outcomes), first.key)


__all__ = ["TriggerHandler", "check_rules", "check_rule", "batch_defaults", "combine"]
