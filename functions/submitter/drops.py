"""The drop protocol, as pure decisions (no I/O).

A drop is the set of objects directly inside one folder `<drop prefix><name>/` of the drop bucket: a
`job.yaml` and one or more `*.tar.gz` packages, uploaded in any order. `classify` decides from an event
alone whether an object can belong to a drop; `decide` takes a snapshot (the folder listing, the
submitter's records, the clock) and says what to do; `missing_packages` is the completeness rule once
job.yaml is parsed. `drop_handler.py` does the I/O around these decisions; `submitter validate` runs
the same rules on a local folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any, TypeAlias

from . import naming, vertex_spec
from .events import FINALIZED, WRITTEN_BY_KEY, WRITTEN_BY_VALUE, StorageObjectEvent
from .model import Origin
from .objects import ObjectInfo
from .records import SubmittedSpec, VerdictRecord
from .spec import master_image

JOB_SPEC_NAME = "job.yaml"
PACKAGE_SUFFIX = ".tar.gz"
MAX_OBJECT_NAME_BYTES = 1024  # GCS object-name limit


class ObjectRole(enum.StrEnum):
    """What an object is to the drop protocol."""

    JOB_SPEC = "job_spec"
    PACKAGE = "package"


@dataclasses.dataclass(frozen=True)
class DropObject:
    """An object that belongs to a drop.

    Attributes:
        folder: the drop folder, the object's parent with no trailing slash (e.g. "incoming/run-001").
        drop_name: the folder relative to the drop prefix (e.g. "run-001").
        filename: the last path component.
        role: JOB_SPEC or PACKAGE.
    """

    folder: str
    drop_name: str
    filename: str
    role: ObjectRole


@dataclasses.dataclass(frozen=True)
class Ignored:
    """An event that must not start anything; `why` is logged at INFO."""

    why: str


@dataclasses.dataclass(frozen=True)
class DropRef:
    """One drop decision's input: the drop bucket, folder, job.yaml object and its generation."""

    bucket: str
    folder: str
    object: str
    generation: int

    def as_dict(self) -> dict[str, Any]:
        """The `drop` field of events and status documents (generation as a decimal string)."""
        return {"bucket": self.bucket, "folder": self.folder, "object": self.object,
                "generation": str(self.generation)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DropRef:
        return cls(bucket=str(d["bucket"]), folder=str(d["folder"]), object=str(d["object"]),
                   generation=int(d["generation"]))

    def origin(self, status_extra: Mapping[str, Any] | None = None) -> Origin:
        """The drop as the submission core sees it; `status_extra` (see `status_extra()`) goes into every status
        document written for it."""
        return Origin(record_key=f"drops/{self.bucket}/{self.folder}/{self.generation}",
                      fields={"drop": self.as_dict()}, status_key=status_key(self.bucket, self.folder),
                      name=self.folder, bucket=self.bucket, status_extra=dict(status_extra or {}))


def status_extra(spec: ObjectInfo | None, last: SubmittedSpec | None) -> dict[str, Any]:
    """What a drop's status documents carry for the next drop of the folder: its job.yaml's checksum (the next
    byte-identical re-upload is recognised if this one is submitted) and the folder's last submitted job.yaml
    (kept when this one is not). Never published."""
    out: dict[str, Any] = {}
    if spec is not None and spec.size > 0:
        out["jobYaml"] = {"crc32c": spec.crc32c, "size": spec.size}
    if last is not None:
        out["lastSubmitted"] = last.to_doc()
    return out


def status_key(bucket: str, folder: str) -> str:
    """Where a drop's status document lives in the state store."""
    return f"status/{bucket}/{folder}.json"


def classify(event: StorageObjectEvent, *, drop_bucket: str, drop_prefix: str,
             reserved_prefixes: tuple[str, ...] = ()) -> DropObject | Ignored:
    """Decide whether an object event can concern a drop (pure, no I/O).

    Anything else is ignored: other event types, other buckets, objects the submitter wrote, folder
    placeholders, objects at the prefix root or in a subfolder of a drop, other file names, names that
    are not valid UTF-8 or hold control characters, and zero-byte objects (the first half of a two-step
    upload; the real content arrives as a new generation with its own event).

    Args:
        event: the parsed event.
        drop_bucket: the watched bucket.
        drop_prefix: "" or a prefix ending in "/".
        reserved_prefixes: object-name prefixes the submitter writes to in this bucket.
    """
    name = event.name
    if event.event_type and event.event_type != FINALIZED:
        return Ignored(f"event type {event.event_type!r} is not {FINALIZED}")
    if event.metadata.get(WRITTEN_BY_KEY) == WRITTEN_BY_VALUE:
        return Ignored("object was written by the submitter")
    if event.bucket != drop_bucket:
        return Ignored(f"bucket {event.bucket!r} is not the drop bucket {drop_bucket}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return Ignored("object name is not valid UTF-8")
    if size > MAX_OBJECT_NAME_BYTES or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        return Ignored("object name has control characters or is too long")
    if any(name.startswith(p) for p in reserved_prefixes if p):
        return Ignored("object is under a prefix the submitter writes to")
    if name.endswith("/"):
        return Ignored("folder placeholder")
    if not name.startswith(drop_prefix):
        return Ignored(f"object is outside the drop prefix {drop_prefix!r}")
    parts = name[len(drop_prefix):].split("/")
    if len(parts) != 2 or not parts[0]:
        where = "at the drop prefix root" if len(parts) < 2 else "in a subfolder of a drop"
        return Ignored(f"object is {where}; drops are files directly inside <prefix><name>/")
    drop_name, filename = parts
    if filename == JOB_SPEC_NAME:
        role = ObjectRole.JOB_SPEC
    elif filename.endswith(PACKAGE_SUFFIX) and len(filename) > len(PACKAGE_SUFFIX):
        role = ObjectRole.PACKAGE
    else:
        return Ignored(f"{filename!r} is neither {JOB_SPEC_NAME} nor a *{PACKAGE_SUFFIX} package")
    if event.size == 0:
        return Ignored("zero-byte object (the content arrives as a later generation)")
    return DropObject(folder=drop_prefix + drop_name, drop_name=drop_name, filename=filename, role=role)


# -- decisions from a snapshot ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the decision needs to know, read once.

    Attributes:
        listing: the drop folder's objects by file name.
        verdict: the verdict recorded for the live job.yaml generation, if any.
        last_spec: the folder's last submitted job.yaml, if any.
        now: the current time.
    """

    listing: Mapping[str, ObjectInfo]
    verdict: VerdictRecord | None
    last_spec: SubmittedSpec | None
    now: dt.datetime

    @property
    def spec(self) -> ObjectInfo | None:
        return self.listing.get(JOB_SPEC_NAME)

    @property
    def packages(self) -> list[ObjectInfo]:
        """The folder's non-empty packages, by name."""
        return sorted((o for n, o in self.listing.items() if n.endswith(PACKAGE_SUFFIX) and o.size > 0),
                      key=lambda o: o.name)


@dataclasses.dataclass(frozen=True)
class Wait:
    """The drop is incomplete: `missing` names what it lacks."""

    missing: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AlreadyDecided:
    """This job.yaml generation has a verdict. `late_package` names a package that arrived after submission and
    is not part of the job; `replaced_package` one the job uses that was uploaded again (the job keeps the
    bytes it was submitted with)."""

    drop: DropRef
    key: str
    verdict: VerdictRecord
    late_package: str | None
    replaced_package: str | None = None


@dataclasses.dataclass(frozen=True)
class Identical:
    """A byte-identical re-upload of the folder's submitted job.yaml within the duplicate window."""

    drop: DropRef
    previous: SubmittedSpec
    age_s: float


@dataclasses.dataclass(frozen=True)
class Evaluate:
    """Read job.yaml and decide; `too_large` means reject it unread (its size is in the listing)."""

    drop: DropRef
    key: str
    spec: ObjectInfo
    packages: tuple[ObjectInfo, ...]
    too_large: bool = False


Decision: TypeAlias = Ignored | Wait | AlreadyDecided | Identical | Evaluate


@dataclasses.dataclass(frozen=True)
class DropRules:
    """The deployment's parameters of the drop protocol (from Settings)."""

    drop_prefix: str
    max_spec_bytes: int
    duplicate_window_s: float


def drop_ref(bucket: str, folder: str, spec: ObjectInfo | None) -> DropRef:
    """The DropRef for a folder's live job.yaml (generation 0 when there is none)."""
    generation = spec.generation if spec is not None and spec.size > 0 else 0
    return DropRef(bucket=bucket, folder=folder, object=f"{folder}/{JOB_SPEC_NAME}", generation=generation)


def spec_absence(spec: ObjectInfo | None) -> str | None:
    """What is wrong with a folder's job.yaml for completeness ("job.yaml", "job.yaml (it is empty: 0 bytes)"),
    or None when a non-empty one is present."""
    if spec is None:
        return JOB_SPEC_NAME
    if spec.size == 0:
        return f"{JOB_SPEC_NAME} (it is empty: 0 bytes)"
    return None


def decide(bucket: str, where: DropObject, generation: int, snapshot: Snapshot, rules: DropRules) -> Decision:
    """What to do about an event for `where` at `generation`, given the snapshot.

    Args:
        bucket: the drop bucket.
        where: the classified object.
        generation: the event's object generation.
        snapshot: the folder listing and records.
        rules: the deployment's drop protocol parameters.
    """
    current = snapshot.listing.get(where.filename)
    if current is None or current.generation != generation:
        return Ignored(f"stale event: generation {generation} of {where.folder}/{where.filename} is no longer live")
    absent = spec_absence(snapshot.spec)
    if absent is not None or snapshot.spec is None:
        return Wait((absent or JOB_SPEC_NAME,))
    spec = snapshot.spec
    drop = drop_ref(bucket, where.folder, spec)
    key = naming.derive_job_id(where.drop_name, spec.generation)
    if snapshot.verdict is not None:
        late = replaced = None
        uri = f"gs://{bucket}/{where.folder}/{where.filename}"
        used = snapshot.verdict.packages
        if where.role is ObjectRole.PACKAGE and used is not None:
            if uri not in used:
                late = where.filename
            elif used[uri] and used[uri] != generation:
                replaced = where.filename
        return AlreadyDecided(drop, key, snapshot.verdict, late, replaced)
    last = snapshot.last_spec
    if last is not None and spec.crc32c and last.generation != spec.generation:
        age = (snapshot.now - last.time).total_seconds()
        if last.crc32c == spec.crc32c and last.size == spec.size and age <= rules.duplicate_window_s:
            return Identical(drop, last, age)
    return Evaluate(drop, key, spec, tuple(snapshot.packages), too_large=spec.size > rules.max_spec_bytes)


def missing_packages(job: Mapping[str, Any], bucket: str, folder: str, present: list[str]) -> list[str]:
    """What a drop still lacks, given its parsed job.yaml (the drop protocol's completeness rule).

    Complete when every package the spec names inside this drop folder (`trainingInput.packageUris`
    entries `gs://<bucket>/<folder>/<file>`) is present, or, when it names no package at all, when at
    least one `*.tar.gz` is present, or, for a custom-container job (`masterConfig.imageUri`: every replica
    runs an image, see `spec.master_image`), with job.yaml alone. Packages named elsewhere are not waited
    for (they are read and inspected when the drop is decided).

    Args:
        job: the parsed Job (trainingInput may be malformed: then nothing is waited for).
        present: file names of the non-empty packages in the folder.
    Returns:
        Missing file names, or ["a *.tar.gz package"], or [] when complete.
    """
    ti = job.get("trainingInput")
    uris = ti.get("packageUris") if isinstance(ti, Mapping) else None
    if vertex_spec.is_vertex(job):  # a CustomJobSpec: every pool's packages; a containers-only job needs none
        uris = vertex_spec.package_uris(dict(job))
        if not uris and vertex_spec.runs_containers_only(dict(job)):
            return []
    if isinstance(uris, list) and uris:
        prefix = f"gs://{bucket}/{folder}/"
        named = [u[len(prefix):] for u in uris if isinstance(u, str) and u.startswith(prefix)]
        return [n for n in named if n not in present]
    if present or master_image(ti) is not None:
        return []
    return [f"a *{PACKAGE_SUFFIX} package"]
