"""One submission path for every origin: validate, claim, create, publish, follow.

`Submitter.submit(spec, origin, key)` is where every input becomes at most one job, whatever brought it
(a drop today; a data batch next): exactly one invocation decides each input (a leased claim in the
state store), the spec is checked (schema, rules, policy) and every package the job will install is
inspected, wherever it lives; the backend creates the job or adopts the one an earlier attempt created;
one message is published (SUBMITTED, REJECTED or SUBMIT_FAILED) and a submitted job is followed.

Errors follow `errors.py`: a TransientError releases the claim and propagates (the event comes back);
a PermanentError becomes a verdict; anything else is a bug for the entry point to report.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from . import logs, quota, vertex_spec
from .backends import TrainingBackend, quota_region
from .clock import Clock, iso
from .envelope import JobEvent, capped_violations, encode
from .errors import BackendRefused, BackendUnavailable, ClaimBusy, ObjectGone, TransientError
from .leases import Lease, LeaseLost, Leases
from .ledger import Ledger, claim_key, is_verdict
from .model import DropStatus, JobHandle, JobRequest, JobStatus, Origin, Verdict
from .objects import ObjectStore
from .planning import PackageSource, Planner, SpecInput
from .publisher import Publisher
from .reasons import Reason, Violation
from .records import JobRecord, StatusDocument, VerdictRecord
from .retry import call_with_retries
from .settings import Settings
from .text import safe_text

log = logs.get("submission")
T = TypeVar("T")
CLAIM_POLL_S = 0.25
STAGING_PREFIX = "staging/"  # where immutable copies of packages live in the staging bucket


class Action(enum.StrEnum):
    """What one invocation did with an input."""

    IGNORED = "ignored"
    WAITING = "waiting"
    DUPLICATE = "duplicate"
    SUBMITTED = "submitted"
    ADOPTED = "adopted"
    REJECTED = "rejected"
    SUBMIT_FAILED = "submit_failed"
    QUEUED = "queued"  # waits: a data batch for its rule's previous job (overlap: queue), an input for the quota
    LATE = "late"  # a data object that arrived after its batch closed: reported on the batch, never started


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one invocation did: the action, the human explanation, and the job key when there is one."""

    action: Action
    detail: str
    key: str | None = None

    @property
    def job_id(self) -> str | None:
        """The job key (published as jobId)."""
        return self.key


class Submitter:
    """The submission core (see the module docstring).

    Args:
        settings: deployment settings (policy, caps, leases, label).
        storage: reads packages.
        backend: the training API.
        publisher: the events topic.
        ledger: the submitter's records.
        clock: time and sleeping (a FakeClock in tests).
    """

    def __init__(self, settings: Settings, storage: ObjectStore, backend: TrainingBackend, publisher: Publisher,
                 ledger: Ledger, clock: Clock):
        self.settings, self.storage, self.backend = settings, storage, backend
        self.publisher, self.ledger, self.clock = publisher, ledger, clock
        self.leases = Leases(ledger.store, clock)
        self.planner = Planner(settings, storage, clock, backend=backend)

    def retry(self, fn: Callable[[], T]) -> T:
        """`fn` with the deployment's bounded retries for transient faults, on this Submitter's clock."""
        return call_with_retries(fn, clock=self.clock)

    # -- the path ---------------------------------------------------------------------------------
    def submit(self, spec: SpecInput, origin: Origin, key: str, *, resume: dict[str, Any] | None = None,
               queued: str | None = None) -> Outcome:
        """Decide one input exactly once: REJECTED, SUBMIT_FAILED, or a job and its SUBMITTED message; or, while
        the training API's create quota is exhausted, queue it for the reconcile tick (quota.py).

        Args:
            spec: the spec and what came with it.
            origin: where it came from (claims, verdicts and events use it).
            key: the input's own job key; refusals are always published under it, while a submitted job uses
                the spec's explicit jobId when it names one (so a spec cannot speak for another input's job).
            resume: what the origin's handler needs to decide the input again if it is queued (kept in its entry).
            queued: the quota-queue entry the tick is serving (the input's turn has come: create it even while its
                region is gated).
        Returns:
            The Outcome (DUPLICATE when a concurrent invocation decided the input meanwhile; QUEUED when it waits
            for the create quota: nothing is published, its status says so, the event is acknowledged).
        Raises:
            ClaimBusy: another live invocation holds the claim and did not finish within claim_wait_s.
            TransientError, ObjectGone: after releasing the claim, so a redelivery can decide at once.
        """
        owner = uuid.uuid4().hex
        claiming = self.clock.monotonic()
        lease = self._claim(origin, owner)
        if lease is None:
            return Outcome(Action.DUPLICATE, f"{origin.name}: decided by a concurrent invocation", key)
        claim = _Claim(self.leases, lease, self.settings.claim_lease_s, claiming)
        try:
            return self._decide(spec, origin, key, claim, resume, queued)
        except (TransientError, ObjectGone, LeaseLost):
            claim.release()
            raise

    def _claim(self, origin: Origin, owner: str) -> Lease | None:
        """Claim the decision on `origin`, or wait (bounded) for the invocation that holds it.

        The claim is created at the input's verdict key: when the create succeeds no verdict existed, so the
        happy path reads nothing; a document already there is read once (decided, live claim, or expired).
        Returns None when the input is decided (before, or by the other invocation meanwhile).
        Raises:
            ClaimBusy: the holder did not finish within `claim_wait_s`; the event is redelivered and the
                claim is taken over once its lease expires (the holder may have died).
        """
        s = self.settings
        deadline = self.clock.monotonic() + s.claim_wait_s
        while True:
            lease, found = self.leases.take(claim_key(origin), owner, s.claim_lease_s, final=is_verdict)
            if lease is not None:
                return lease
            if found is not None and is_verdict(found):
                return None
            if self.clock.monotonic() >= deadline:
                raise ClaimBusy(f"{origin.name}: being decided by another invocation")
            self.clock.sleep(CLAIM_POLL_S)

    def claim_once(self, origin: Origin, owner: str = "") -> Lease | None:
        """The claim on `origin` for a decision taken outside `submit` (a sweep's or a rule's refusal, an
        identical re-upload); None, without waiting, when it is decided or a live invocation holds it."""
        return self.leases.take(claim_key(origin), owner or uuid.uuid4().hex, self.settings.claim_lease_s,
                                final=is_verdict)[0]

    def _decide(self, spec: SpecInput, origin: Origin, key: str, claim: _Claim, resume: dict[str, Any] | None,
                queued: str | None) -> Outcome:
        # No verdict read here: the claim lives at the verdict's key, and a verdict is never taken over.
        if spec.errors or spec.parsed is None or spec.defaults is None:
            return self.refuse(origin, key, Verdict.REJECTED, list(spec.errors), lease=claim.lease)
        plan = self.planner.plan(spec, key, origin_bucket=origin.bucket)
        if plan.violations:
            return self.refuse(origin, key, Verdict.REJECTED, plan.violations, lease=claim.lease)
        job, job_id, warnings = plan.job, plan.job_id, plan.warnings
        ti = job.get("trainingInput")
        for warning in warnings:
            log.warning(warning, extra={"ctx": {"jobId": job_id, "origin": origin.name}})
        region = quota_region(self.backend, job)
        gated = queued is None and self.ledger.gated(self.backend.name, region)
        held = self.ledger.queued_entry(origin) if gated else None
        route = quota.route(draining=queued is not None, gate=gated, queued=held is not None)
        if route is quota.Route.ALREADY_QUEUED:  # a redelivery: the input keeps its place
            claim.release()
            return Outcome(Action.QUEUED, f"{origin.name}: already queued for the create quota in {region}; it keeps "
                           "its place", job_id)
        if route is quota.Route.QUEUE:
            return self._queue(origin, key, job_id, region, resume, claim, why=quota.BEHIND_WHY)
        claim.renew()  # the slow part starts: keep the claim while creating the job
        job = self._stage(job, plan.packages)
        claim.renew()
        labels = dict(job.get("labels") or {})
        job_dir = ti.get("jobDir") if isinstance(ti, dict) else vertex_spec.output_dir(job)
        used = {uri: source.obj.generation for uri, source in plan.packages.items()}
        # Written before the job exists, so a job whose invocation dies right after creating it is still found
        # and followed by the reconciler, even if the event never comes back.
        staged = tuple(_package_uris(job)) if plan.packages else ()
        intended_at = self.clock.now()
        record = self.ledger.intend(JobRecord(
            handle=JobHandle(self.backend.name, "", job_id), state=Verdict.SUBMITTED, origin=origin, labels=labels,
            job_dir=job_dir, announced=False, since=intended_at, warnings=tuple(warnings), staged=staged))
        try:
            submission = call_with_retries(lambda: self.backend.submit(JobRequest(job_id, job, origin.name)),
                                           clock=self.clock, retry_if=quota.retried_in_invocation)
        except BackendRefused as exc:
            self.ledger.withdraw(record)  # no job of ours exists under this key: nothing to follow
            return self.refuse(origin, key, Verdict.SUBMIT_FAILED, [], reason=exc.reason,
                               message=f"the training API refused the job: {exc.code} {exc.status}: {exc.message}",
                               lease=claim.lease)
        except BackendUnavailable as exc:
            if not quota.is_rate_limited(exc):
                raise  # the event comes back (the intent record lets the reconciler find a job created meanwhile)
            if record.since == intended_at:  # ours: the create was refused, no job exists under this key (an
                self.ledger.withdraw(record)  # earlier attempt's record stays for the reconciler to finish)
            if queued is not None:  # the tick's turn for this input: it stays first in its queue
                self.ledger.close_gate(self.backend.name, region, self.clock.now())
                claim.release()
                return Outcome(Action.QUEUED, f"{origin.name}: still rate limited in {region} (429 RATE_LIMITED); "
                               "it stays first in the queue", job_id)
            return self._queue(origin, key, job_id, region, resume, claim, why=quota.RATE_LIMITED_WHY, gate=True)
        claim.renew()
        if submission.adopted:  # the job existed already: it may be one whose end was published (done/)
            record = self.ledger.settle_adopted(record)
        if not record.announced:
            self.announce(dataclasses.replace(record, handle=submission.status.handle), submission.status, used,
                          lease=claim.lease)
        else:
            self.record_submitted(origin, job_id, submission.status, record, used, lease=claim.lease)
        action = Action.ADOPTED if submission.adopted else Action.SUBMITTED
        return Outcome(action, f"job {job_id} {action.value}", job_id)

    def _queue(self, origin: Origin, key: str, job_id: str, region: str, resume: dict[str, Any] | None,
               claim: _Claim, *, why: str, gate: bool = False) -> Outcome:
        """Queue an input for the create quota: its entry (ordered by now), the region's gate when its create was
        just answered 429 (`gate`), its status (WAITING, reason RATE_LIMITED, with its place), then the claim is
        released so the tick can decide it. Publishes nothing."""
        now = self.clock.now()
        backend = self.backend.name
        entry = quota.entry_key(backend, region, now, origin.record_key)
        self.ledger.enqueue(entry, {"origin": origin.as_dict(), "key": key, "jobId": job_id, "queuedAt": iso(now),
                                    "backend": backend, "region": region, "resume": dict(resume or {})}, origin)
        if gate:
            # After the entry: a tick that lists the gate also lists the entry, so it never opens the gate over a
            # queue it saw empty while this input was between its 429 and its entry (the input's next event would
            # then call jobs.create again and queue it a second time).
            self.ledger.close_gate(backend, region, now)
        place = quota.position(self.ledger.queue_of(backend, region), entry)
        message = quota.queued_message(origin.name, region, now, place, why=why)
        self.ledger.write_status(origin, StatusDocument(
            state=DropStatus.WAITING, key=job_id, time=now, origin=origin.fields, reason=Reason.RATE_LIMITED.value,
            message=message, waiting_since=now))
        log.info(message, extra={"ctx": {"jobId": job_id, "origin": origin.name, "reason": Reason.RATE_LIMITED,
                                         "queue": entry}})
        claim.release()
        return Outcome(Action.QUEUED, message, job_id)

    def _stage(self, job: dict[str, Any], packages: dict[str, PackageSource]) -> dict[str, Any]:
        """The job with each package replaced by an immutable copy of exactly the bytes inspected.

        Each package is copied server-side, preconditioned on the generation that was inspected, to
        `gs://<staging bucket>/<STAGING_PREFIX><sha256>/<file name>`: content-addressed, so the same package
        is staged once however many jobs use it. A package re-uploaded or deleted after submission then
        changes nothing for the job (gcloud stages per job too).
        Raises:
            ObjectGone: a package was replaced since it was inspected (its new generation has an event).
        """
        ti = job.get("trainingInput")
        uris = _package_uris(job)
        if not uris or not packages:
            return job
        staged = []
        for uri in uris:
            source = packages.get(uri)
            if source is None:
                staged.append(uri)
                continue
            name = f"{STAGING_PREFIX}{source.sha256}/{source.obj.filename}"
            copy = self.retry(functools.partial(self.storage.copy, source.obj, self.settings.staging_bucket, name))
            staged.append(copy.uri)
        if vertex_spec.is_vertex(job):  # every pool's packageUris, through the same copies
            return vertex_spec.with_package_uris(job, dict(zip(uris, staged)))
        return {**job, "trainingInput": {**(ti if isinstance(ti, dict) else {}), "packageUris": staged}}

    def announce(self, record: JobRecord, status: JobStatus, packages: dict[str, int] | None,
                 lease: Lease | None = None) -> None:
        """Publish SUBMITTED for an intended job, mark it announced, record the verdict and the status.

        Used by the submission path (with its claim, `lease`), and by the reconciler for a job whose invocation
        died after creating it (no lease: the dead invocation's claim is replaced by the verdict).
        """
        event = JobEvent(key=record.key, state=Verdict.SUBMITTED, origin=record.origin.fields, time=self.clock.now(),
                         labels=record.labels, job_dir=record.job_dir, backend=record.handle.backend,
                         warnings=record.warnings).with_status(status)
        ids = self.publish(event)
        log.info("published SUBMITTED", extra={"ctx": {"jobId": record.key, "origin": record.origin.name,
                                                       "messageIds": ids}})
        self.ledger.announce(record)
        self.record_submitted(record.origin, record.key, status, record, packages, lease=lease)

    def record_submitted(self, origin: Origin, job_id: str, status: JobStatus, record: JobRecord,
                         packages: dict[str, int] | None, lease: Lease | None = None) -> None:
        """The SUBMITTED verdict on the input (through the claim `lease` when the caller holds it) and its status
        document."""
        self.ledger.record_verdict(origin, VerdictRecord(Verdict.SUBMITTED, job_id, packages), lease)
        notes = ((f"the job runs copies of its packages staged at submission ({', '.join(record.staged)}); "
                  "replacing or deleting the drop's packages does not change it",) if record.staged else ())
        self.ledger.write_status(origin, StatusDocument(
            state=DropStatus.SUBMITTED, key=job_id, time=self.clock.now(), origin=origin.fields,
            job_dir=record.job_dir, warnings=record.warnings, resource_name=status.handle.name, notes=notes))

    # -- verdicts ---------------------------------------------------------------------------------
    def refuse(self, origin: Origin, key: str, verdict: Verdict, violations: list[Violation], *,
               reason: Reason | None = None, message: str | None = None, lease: Lease | None = None) -> Outcome:
        """Publish REJECTED or SUBMIT_FAILED for `origin` under `key`, record it, write the status.

        Args:
            violations: every problem (REJECTED); the first one's reason is the event's reason.
            reason / message: for SUBMIT_FAILED (or to override the summary).
            lease: the caller's claim on `origin` (the verdict replaces it); None for a bug report, which
                replaces any undecided document.
        """
        reason = reason or (violations[0].reason if violations else Reason.SPEC_INVALID)
        if message is None:
            message = f"{origin.name}: " + "; ".join(f"{v.field}: {v.message}" for v in violations[:20])
            if len(violations) > 20:
                message += f"; and {len(violations) - 20:,} more"
        message = safe_text(message, 8000)
        as_dicts = tuple(capped_violations(violations))
        ids = self.publish(JobEvent(key=key, state=verdict, origin=origin.fields, time=self.clock.now(),
                                    reason=reason, message=message, violations=as_dicts,
                                    backend=self.backend.name))
        self.ledger.record_verdict(origin, VerdictRecord(verdict, key), lease)
        self.ledger.write_status(origin, StatusDocument(
            state=DropStatus(verdict.value), key=key, time=self.clock.now(), origin=origin.fields,
            reason=reason.value, message=message, violations=as_dicts))
        log.info(f"published {verdict.value}: {message}", extra={"ctx": {"jobId": key, "origin": origin.name,
                                                                         "reason": reason.value, "messageIds": ids}})
        action = Action.REJECTED if verdict is Verdict.REJECTED else Action.SUBMIT_FAILED
        return Outcome(action, message, key)

    def report_bug(self, origin: Origin, key: str, exc: BaseException) -> Outcome:
        """Report an unexpected failure on `origin` once, as SUBMIT_FAILED INTERNAL_ERROR (never redelivered).

        Raises:
            TransientError: the report itself could not be published or recorded (the event comes back).
        """
        if self.ledger.verdict(origin) is not None:
            return Outcome(Action.DUPLICATE, f"{origin.name}: already decided", key)
        what = safe_text(f"{type(exc).__name__}: {exc}", 300, keep_newlines=False)
        return self.refuse(origin, key, Verdict.SUBMIT_FAILED, [], reason=Reason.INTERNAL_ERROR,
                           message=f"the submitter failed on {origin.name} ({what}). This is a bug in the "
                                   "submitter, reported once; its logs hold the traceback. Upload job.yaml again "
                                   "to retry.")

    def publish(self, event: JobEvent) -> list[str]:
        """Encode and publish one event; returns the message ids. Raises PublishFailed."""
        return self.publisher.publish([encode(event, source=self.settings.event_source)])

# A claim taken or renewed less than this fraction of its lease ago is not renewed again: nobody can have taken it
# over (that needs it expired) and it still has most of its lease left. Each renewal is a state-store write (a GCS
# round trip), and a fast invocation reached three slow steps within a second of claiming.
RENEW_AFTER_FRACTION = 0.25


class _Claim:
    """The claim this invocation holds on an input: renewed at each slow step once a quarter of its lease has passed
    since it was taken or last renewed, released on transient failure."""

    def __init__(self, leases: Leases, lease: Lease, lease_s: float, held_since: float):
        self.leases, self.lease, self.lease_s = leases, lease, lease_s
        self._held_since = held_since  # monotonic time taken before the lease was written: errs on the old side

    def renew(self) -> None:
        """Extend the claim unless it is still fresh; raises LeaseLost when another invocation took it over
        meanwhile."""
        now = self.leases.clock.monotonic()
        if now - self._held_since < self.lease_s * RENEW_AFTER_FRACTION:
            return
        self.lease = self.leases.renew(self.lease, self.lease_s)
        self._held_since = now

    def release(self) -> None:
        self.leases.release(self.lease)


__all__ = ["Submitter", "SpecInput", "Outcome", "Action"]


def _package_uris(job: dict[str, Any]) -> list[str]:
    """The packages a job installs: trainingInput.packageUris, or every pool's of a Vertex-shaped job."""
    if vertex_spec.is_vertex(job):
        return vertex_spec.package_uris(job)
    ti = job.get("trainingInput")
    uris = ti.get("packageUris") if isinstance(ti, dict) else None
    return [u for u in uris if isinstance(u, str)] if isinstance(uris, list) else []
