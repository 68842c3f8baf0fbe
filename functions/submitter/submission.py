"""Turning a storage event into at most one training job (the upload path).

`DropHandler.handle` runs for every finalize event: it decides with no I/O
whether the object can belong to a drop, checks that the drop is complete,
reads job.yaml and the packages pinned to their generations, completes and
checks the spec, calls `jobs.create`, and publishes SUBMITTED, REJECTED or
SUBMIT_FAILED. Permanent problems are published once and the invocation
returns normally; transient faults raise (after bounded retries) so Eventarc
redelivers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from typing import Any, Callable

from . import events as ev
from . import logs, naming, validation
from .backends import AlreadyExists, BackendError, TrainingBackend
from .envelope import DropRef, JobEvent, encode
from .gcs import DropStorage, ObjectInfo, ObjectMissing
from .ledger import JobRecord, Ledger
from .package import PackageRejected, duplicate_distributions, inspect_package, module_violations
from .publisher import EventPublisher
from .retry import call_with_retries
from .settings import Settings
from .spec import DropContext, ParsedSpec, Reason, SpecRejected, Violation, normalize_training_input, parse_job_yaml
from .states import State

log = logs.get("submission")


class ClaimBusy(Exception):
    """Another invocation is deciding the same drop and has not finished: transient, the event is redelivered."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one invocation did: `action` is ignored | waiting | duplicate | submitted | adopted | rejected |
    submit_failed; `detail` is the human explanation."""

    action: str
    detail: str
    job_id: str | None = None


def event_source(settings: Settings) -> str:
    """CloudEvent `source` of everything this deployment publishes."""
    return f"//drop-submitter/projects/{settings.project}/buckets/{settings.drop_bucket}"


def drop_context(settings: Settings, folder: str, job_id: str, packages: list[ObjectInfo]) -> DropContext:
    """What a drop implies for its spec under these settings (shared with `submitter validate`)."""
    return DropContext(
        package_uris=tuple(p.uri for p in packages),
        default_job_dir=f"gs://{settings.output_bucket}/{folder}/{job_id}",
        region=settings.region, runtime_version=settings.runtime_version, python_version=settings.python_version,
        labels={settings.job_label_key: settings.job_label_value},
        protected_prefixes=protected_prefixes(settings),
    )


def protected_prefixes(settings: Settings) -> tuple[str, ...]:
    """Where a jobDir must not point: the drop area and the submitter's state."""
    return (f"gs://{settings.drop_bucket}/{settings.drop_prefix}", f"gs://{settings.state_bucket}/{settings.state_prefix}")


class DropHandler:
    """Handles storage events for one deployment.

    Args:
        settings: deployment settings.
        storage: GCS reads.
        backend: the training API.
        publisher: Pub/Sub publisher for the events topic.
        ledger: verdicts and followed jobs.
        now: clock (aware UTC datetimes), injectable for tests.
        sleep: how to wait (seconds), injectable for tests.
    """

    def __init__(self, settings: Settings, storage: DropStorage, backend: TrainingBackend, publisher: EventPublisher,
                 ledger: Ledger, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 sleep: Callable[[float], None] = time.sleep):
        self.settings, self.storage, self.backend = settings, storage, backend
        self.publisher, self.ledger, self.now, self.sleep = publisher, ledger, now, sleep
        # Package inspections by (bucket, name, generation): a package is read once per generation.
        self._inspected: dict[tuple[str, str, int], Any] = {}

    # -- entry ---------------------------------------------------------------------------------
    def handle(self, event: ev.StorageObjectEvent) -> Outcome:
        """Process one finalize event. Raises only for transient faults (the event is then redelivered)."""
        s = self.settings
        reserved = (s.state_prefix,) if s.state_bucket == s.drop_bucket else ()
        where = ev.classify(event, drop_bucket=s.drop_bucket, drop_prefix=s.drop_prefix, reserved_prefixes=reserved)
        if isinstance(where, ev.Ignored):
            return Outcome("ignored", where.why)
        age = ev.event_age_seconds(event, self.now())
        if age is not None and age > s.max_event_age_s:
            return Outcome("ignored", f"event older than {s.max_event_age_s:.0f}s (age {age:.0f}s)")
        listing = call_with_retries(lambda: self.storage.list_folder(event.bucket, where.folder))
        by_name = {o.name.rsplit("/", 1)[-1]: o for o in listing}
        current = by_name.get(where.filename)
        if current is None or current.generation != event.generation:
            return Outcome("ignored", f"stale event: generation {event.generation} of {event.name} is no longer live")
        try:
            return self._handle_drop(event.bucket, where, by_name)
        except ObjectMissing as exc:
            return Outcome("ignored", f"stale event: {exc}")

    def _handle_drop(self, bucket: str, where: ev.DropObject, by_name: dict[str, ObjectInfo]) -> Outcome:
        spec_obj = by_name.get(ev.JOB_SPEC_NAME)
        if spec_obj is None or spec_obj.size == 0:
            what = ev.JOB_SPEC_NAME if spec_obj is None else f"{ev.JOB_SPEC_NAME} (it is empty: 0 bytes)"
            self.ledger.note_pending(bucket, where.folder, [what], self.now())
            return Outcome("waiting", f"drop {where.folder}/ has no {what} yet")
        drop = DropRef(bucket=bucket, folder=where.folder, object=spec_obj.name, generation=spec_obj.generation)
        derived_id = naming.derive_job_id(where.drop_name, spec_obj.generation)
        verdict = self.ledger.verdict(drop)
        if verdict is not None:
            self._note_late_package(drop, where, verdict)
            return Outcome("duplicate", f"{drop.object}#{drop.generation} was already handled", derived_id)
        copy_of = self._identical_to_submitted(drop, spec_obj)
        if copy_of:
            return copy_of
        parsed: ParsedSpec | None = None
        if spec_obj.size > self.settings.max_spec_bytes:  # never read it: the size is in the listing
            spec_errors = [Violation(drop.object, f"is {spec_obj.size} bytes; a job.yaml may be at most "
                                     f"{self.settings.max_spec_bytes} bytes (SUBMITTER_MAX_SPEC_BYTES)",
                                     Reason.SPEC_TOO_LARGE, spec_obj.size)]
        else:
            text = call_with_retries(lambda: self.storage.read(drop.bucket, drop.object, drop.generation,
                                                               max_bytes=self.settings.max_spec_bytes))
            try:
                parsed = parse_job_yaml(text, filename=drop.object)
            except SpecRejected as exc:
                spec_errors = exc.violations
        packages = sorted((o for n, o in by_name.items() if n.endswith(ev.PACKAGE_SUFFIX) and o.size > 0),
                          key=lambda o: o.name)
        if parsed is not None:
            missing = ev.missing_packages(parsed.job, drop.bucket, drop.folder,
                                          [o.name.rsplit("/", 1)[-1] for o in packages])
            if missing:
                self.ledger.note_pending(bucket, where.folder, missing, self.now())
                return Outcome("waiting", f"drop {where.folder}/ is waiting for {', '.join(missing)}", derived_id)
        owner = uuid.uuid4().hex  # this invocation
        if not self._claim(drop, owner):
            return Outcome("duplicate", f"{drop.object}#{drop.generation} was decided by a concurrent invocation",
                           derived_id)
        try:
            if parsed is None:
                outcome = self._reject(drop, derived_id, spec_errors)
            else:
                outcome = self._submit(drop, derived_id, parsed, packages)
        except Exception:
            # Still alive: let the redelivery decide at once instead of waiting out the lease. A killed
            # invocation cannot do this; its claim is taken over after `claim_lease_s`.
            self.ledger.release(drop, owner)
            raise
        self.ledger.clear_pending(bucket, where.folder)
        if outcome.action in ("submitted", "adopted"):
            self.ledger.remember_spec(drop, spec_obj.crc32c, spec_obj.size, outcome.job_id or derived_id, self.now())
        return outcome

    def _note_late_package(self, drop: DropRef, where: ev.DropObject, verdict: dict[str, Any]) -> None:
        """A package that arrives after its drop was submitted is not part of the job: say so on the status."""
        uris = verdict.get("packageUris")
        uri = f"gs://{drop.bucket}/{where.folder}/{where.filename}"
        if where.role is ev.ObjectRole.PACKAGE and uris is not None and uri not in uris:
            note = (f"{where.filename} arrived after job {verdict.get('jobId')} was submitted and is not part of it "
                    "(a drop without packageUris is submitted with the packages present when it completes). Upload "
                    "packages before job.yaml, or list them in trainingInput.packageUris, then upload job.yaml again.")
            self.ledger.add_status_note(drop, note)
            log.warning(note, extra={"ctx": {"jobId": verdict.get("jobId"), "drop": drop.folder}})

    def _identical_to_submitted(self, drop: DropRef, spec_obj: ObjectInfo) -> Outcome | None:
        """A byte-identical re-upload (same crc32c and size) of the folder's submitted job.yaml within the
        duplicate window is not a new submission; it gets a status note and nothing is published."""
        last = self.ledger.last_spec(drop.bucket, drop.folder)
        if not last or not spec_obj.crc32c or last["generation"] == str(drop.generation):
            return None
        age = (self.now() - dt.datetime.fromisoformat(last["time"])).total_seconds()
        same_bytes = last["crc32c"] == spec_obj.crc32c and int(last["size"]) == spec_obj.size
        if not same_bytes or age > self.settings.duplicate_window_s:
            return None
        note = (f"generation {drop.generation} is byte-identical to generation {last['generation']}, submitted as "
                f"{last['jobId']} {age:.0f}s ago; not resubmitted. To rerun on purpose, change anything in "
                "job.yaml (for example a label).")
        if self.ledger.record_verdict(drop, State.SUBMITTED, last["jobId"]):
            self.ledger.write_status(drop, {"state": "DUPLICATE", "jobId": last["jobId"], "message": note,
                                            "time": self.now().isoformat()})
        return Outcome("duplicate", note, last["jobId"])

    def _claim(self, drop: DropRef, owner: str) -> bool:
        """Claim the decision on `drop`, or wait (bounded) for the invocation that holds it.

        Returns False when the other invocation recorded its verdict meanwhile.
        Raises:
            ClaimBusy: the holder did not finish within `claim_wait_s`; the event is redelivered and the
                claim is taken over once its lease expires (the holder may have died).
        """
        s = self.settings
        deadline = time.monotonic() + s.claim_wait_s
        while True:
            if self.ledger.claim(drop, owner, self.now(), s.claim_lease_s):
                return True
            if self.ledger.verdict(drop) is not None:
                return False
            if time.monotonic() >= deadline:
                raise ClaimBusy(f"{drop.object}#{drop.generation} is being decided by another invocation")
            self.sleep(0.25)

    # -- steps ---------------------------------------------------------------------------------
    def _submit(self, drop: DropRef, derived_id: str, parsed: ParsedSpec, packages: list[ObjectInfo]) -> Outcome:
        s = self.settings
        named = parsed.job.get("jobId")
        job_id = named if naming.is_valid_job_id(named) else derived_id
        checked = validation.check(parsed, drop_context(s, drop.folder, job_id, packages), derived_id, s.policy)
        job, violations = checked.job, list(checked.violations)
        if isinstance(job.get("trainingInput"), dict):
            taken = {v.field for v in violations}
            violations += [v for v in self._check_packages(packages, job["trainingInput"]) if v.field not in taken]
        if violations:
            return self._reject(drop, job_id, violations)
        warnings = checked.warnings + self._region_warning(drop.bucket, job["trainingInput"].get("region"))
        for warning in warnings:
            log.warning(warning, extra={"ctx": {"jobId": job_id, "drop": drop.folder}})
        return self._create(drop, job, warnings)

    def _region_warning(self, bucket: str, region: Any) -> list[str]:
        """Train where the data is: a job region other than the drop bucket's (regional) location is a warning."""
        location = getattr(self.storage, "bucket_location", lambda _: None)(bucket)
        if location and any(c.isdigit() for c in location) and isinstance(region, str) and region != location:
            return [f"trainingInput.region {region} differs from the drop bucket's location {location}; reading the "
                    "package and data across regions is slower and costs egress"]
        return []

    def _check_packages(self, packages: list[ObjectInfo], ti: dict[str, Any]) -> list[Violation]:
        """Inspect the drop's packages that the job uses; check pythonModule is in one of them."""
        uris = ti.get("packageUris")
        used = {u for u in uris if isinstance(u, str)} if isinstance(uris, list) else set()
        infos, out = [], []
        for obj in packages:
            if obj.uri not in used:
                continue
            key = (obj.bucket, obj.name, obj.generation)
            try:
                if key not in self._inspected:
                    with self.storage.open(obj.bucket, obj.name, obj.generation,
                                           max_bytes=self.settings.max_package_bytes) as stream:
                        self._inspected[key] = inspect_package(stream, obj.name.rsplit("/", 1)[-1])
                    while len(self._inspected) > 256:  # bounded: oldest first
                        self._inspected.pop(next(iter(self._inspected)))
                infos.append(self._inspected[key])
            except PackageRejected as exc:
                out.append(exc.violation)
            except ValueError as exc:
                out.append(Violation(obj.name, str(exc), Reason.PACKAGE_INVALID))
        return out or duplicate_distributions(infos) or module_violations(infos, ti.get("pythonModule"))

    def _create(self, drop: DropRef, job: dict[str, Any], warnings: list[str]) -> Outcome:
        job_id = job["jobId"]
        ctx = {"jobId": job_id, "drop": drop.folder}
        try:
            created = call_with_retries(lambda: self.backend.create_job(job))
            action = "submitted"
        except AlreadyExists:
            try:
                existing = call_with_retries(lambda: self.backend.get_job(job_id))
            except BackendError as exc:
                if exc.transient:
                    raise
                return self._verdict(drop, job_id, State.SUBMIT_FAILED, job.get("labels") or {}, reason=exc.reason,
                                     message=f"jobs.create answered 409 ALREADY_EXISTS but jobs.get answered "
                                             f"{exc.code} {exc.status}: {exc.message}")
            diff = _differences(normalize_training_input(job.get("trainingInput") or {}),
                                normalize_training_input(existing.get("trainingInput") or {}))
            if diff:
                return self._verdict(drop, job_id, State.SUBMIT_FAILED, job.get("labels") or {},
                                     reason="JOB_ID_CONFLICT",
                                     message=f"a different job named {job_id} already exists; differing fields: "
                                             + ", ".join(diff) + ". Choose another jobId or remove it.")
            created, action = existing, "adopted"
        except BackendError as exc:
            if exc.transient:
                raise
            return self._verdict(drop, job_id, State.SUBMIT_FAILED, job.get("labels") or {}, reason=exc.reason,
                                 message=f"jobs.create answered {exc.code} {exc.status}: {exc.message}")
        labels = dict(job.get("labels") or {})
        job_dir = (job.get("trainingInput") or {}).get("jobDir")
        if not self.ledger.is_known(job_id):
            ids = self._publish(JobEvent(job_id=job_id, state=State.SUBMITTED, drop=drop, time=self.now(),
                                         labels=labels, job_dir=job_dir, backend=self.backend.name,
                                         job=created, warnings=tuple(warnings)))
            log.info("published SUBMITTED", extra={"ctx": {**ctx, "messageIds": ids}})
            self.ledger.follow(JobRecord(job_id=job_id, state=State.SUBMITTED, drop=drop, labels=labels,
                                         job_dir=job_dir, backend=self.backend.name))
        self.ledger.record_verdict(drop, State.SUBMITTED, job_id,
                                   list((job.get("trainingInput") or {}).get("packageUris") or []))
        self.ledger.write_status(drop, {"state": State.SUBMITTED.value, "jobId": job_id, "jobDir": job_dir,
                                        "warnings": warnings, "time": self.now().isoformat()})
        return Outcome(action, f"job {job_id} {action}", job_id)

    def _reject(self, drop: DropRef, job_id: str, violations: list[Violation]) -> Outcome:
        message = f"{drop.object}: " + "; ".join(f"{v.field}: {v.message}" for v in violations)
        return self._verdict(drop, job_id, State.REJECTED, {}, reason=violations[0].reason, message=message,
                             violations=tuple(v.as_dict() for v in violations))

    def _verdict(self, drop: DropRef, job_id: str, state: State, labels: dict, *, reason: str, message: str,
                 violations: tuple = ()) -> Outcome:
        ids = self._publish(JobEvent(job_id=job_id, state=state, drop=drop, time=self.now(), reason=reason,
                                     message=message, violations=violations, labels=labels,
                                     backend=self.backend.name))
        self.ledger.record_verdict(drop, state, job_id)
        self.ledger.write_status(drop, {"state": state.value, "jobId": job_id, "reason": reason, "message": message,
                                        "violations": list(violations), "time": self.now().isoformat()})
        log.info(f"published {state.value}: {message}",
                 extra={"ctx": {"jobId": job_id, "drop": drop.folder, "reason": reason, "messageIds": ids}})
        return Outcome(state.value.lower(), message, job_id)

    def sweep_incomplete(self) -> list[Outcome]:
        """Reject, once each, drops still incomplete `incomplete_drop_s` after their first object (INCOMPLETE_DROP).

        Called by the scheduled entry point. A drop that completed meanwhile is left to its events.
        """
        out = []
        for pending in self.ledger.pending():
            since = dt.datetime.fromisoformat(pending["since"])
            if (self.now() - since).total_seconds() < self.settings.incomplete_drop_s:
                continue
            bucket, folder = pending["bucket"], pending["folder"]
            by_name = {o.name.rsplit("/", 1)[-1]: o for o in self.storage.list_folder(bucket, folder)}
            spec_obj = by_name.get(ev.JOB_SPEC_NAME)
            generation = spec_obj.generation if spec_obj and spec_obj.size else 0
            drop = DropRef(bucket=bucket, folder=folder, object=f"{folder}/{ev.JOB_SPEC_NAME}", generation=generation)
            if self.ledger.verdict(drop) is not None:
                self.ledger.clear_pending(bucket, folder)
                continue
            packages = [n for n, o in by_name.items() if n.endswith(ev.PACKAGE_SUFFIX) and o.size > 0]
            if not generation:
                missing = [ev.JOB_SPEC_NAME if spec_obj is None else f"{ev.JOB_SPEC_NAME} (it is empty: 0 bytes)"]
            else:
                missing = pending.get("missing") or []
            if generation and not packages:
                missing = missing or [f"a *{ev.PACKAGE_SUFFIX} package"]
            if generation and packages and not pending.get("missing"):
                self.ledger.clear_pending(bucket, folder)
                continue
            drop_name = folder[len(self.settings.drop_prefix):]
            if self.ledger.claim(drop, uuid.uuid4().hex, self.now(), self.settings.claim_lease_s):
                age = (self.now() - since).total_seconds()
                out.append(self._verdict(drop, naming.derive_job_id(drop_name, generation), State.REJECTED, {},
                                         reason="INCOMPLETE_DROP",
                                         message=f"drop {folder}/ is still incomplete after {age:.0f}s: missing "
                                                 + ", ".join(missing) + ". Upload the missing files, then job.yaml "
                                                 "again (a new generation) to submit."))
            self.ledger.clear_pending(bucket, folder)
        return out

    def _publish(self, event: JobEvent) -> list[str]:
        return self.publisher.publish([encode(event, source=event_source(self.settings))])


def _differences(a: dict[str, Any], b: dict[str, Any], path: str = "trainingInput") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                out += _differences(a[key], b[key], f"{path}.{key}")
            else:
                out.append(f"{path}.{key}")
    return out
