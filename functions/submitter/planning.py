"""The planner: what would be submitted for a spec, and every reason it cannot be (no claims, no jobs).

`Planner.plan` merges and checks the spec (`validation.py`: schema, rules, policy), inspects every
package the job will install from its tar headers (streamed, wherever it lives), and adds advice (the
job's region against the input bucket's location), and, given a backend, runs the backend's own check
(`backends.backend_check`: the Vertex backend translates the job into a CustomJob and validates it), so a job the
training API cannot run is rejected before anything is created. The function's submission path and `submitter
validate` / `submitter submit` run this same planner; only the storage they read through differs (Cloud
Storage, or local files).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from . import validation, vertex_spec
from .backends import backend_check
from .clock import Clock
from .errors import ObjectGone, StorageRefused
from .naming import GCS_URI_RE
from .objects import ObjectInfo, ObjectStore, TooLarge
from .package import PackageInfo, PackageRejected, duplicate_distributions, inspect_package, module_violations
from .reasons import Reason, Violation
from .retry import call_with_retries
from .settings import Settings
from .spec import ParsedSpec, SpecDefaults

T = TypeVar("T")
INSPECTION_CACHE_SIZE = 256


@dataclasses.dataclass(frozen=True)
class SpecInput:
    """A spec to plan or submit, as an origin prepared it.

    Attributes:
        parsed: the parsed job.yaml, or None when it could not be parsed.
        errors: why it could not be parsed (or was refused unread); REJECTED with these when non-empty.
        defaults: what the origin and the deployment imply (packageUris, jobDir, region, ...).
        packages: the packages that came with the input, by gs:// URI, pinned to the generation listed.
    """

    parsed: ParsedSpec | None
    errors: tuple[Violation, ...] = ()
    defaults: SpecDefaults | None = None
    packages: dict[str, ObjectInfo] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PackageSource:
    """A package exactly as it was inspected: the object generation read and the SHA-256 of its bytes."""

    obj: ObjectInfo
    sha256: str


@dataclasses.dataclass
class Plan:
    """What would be submitted: the completed Job, its jobId, every violation, warning and note, and the
    packages as inspected (by packageUris entry), which the submission stages before creating the job."""

    job: dict[str, Any]
    job_id: str
    violations: list[Violation]
    warnings: list[str]
    notes: list[str]
    packages: dict[str, PackageSource] = dataclasses.field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.violations


def spec_defaults(settings: Settings, folder: str, job_id: str, package_uris: tuple[str, ...]) -> SpecDefaults:
    """What an input in `folder` implies for its spec under these settings (the function and the CLI share it)."""
    return SpecDefaults(
        package_uris=package_uris,
        default_job_dir=f"gs://{settings.output_bucket}/{folder}/{job_id}",
        region=settings.region, runtime_version=settings.runtime_version, python_version=settings.python_version,
        labels={settings.job_label_key: settings.job_label_value},
        protected_prefixes=(f"gs://{settings.drop_bucket}/{settings.drop_prefix}",
                            f"gs://{settings.state_bucket}/{settings.state_prefix}",
                            f"gs://{settings.staging_bucket}/staging/"),
    )


class Planner:
    """Checks specs and inspects packages through an ObjectStore.

    Args:
        settings: policy and caps.
        storage: where packages are read (Cloud Storage, or local files for the CLI).
        clock: for bounded retries of transient read failures.
        backend: the training backend whose `check` (if it has one) runs on every completed job; None for none.
    """

    def __init__(self, settings: Settings, storage: ObjectStore, clock: Clock, backend: Any = None):
        self.settings, self.storage, self.clock, self.backend = settings, storage, clock, backend
        # Package inspections by (bucket, name, generation), oldest first: a package is read once per generation.
        self._inspected: collections.OrderedDict[tuple[str, str, int], PackageInfo] = collections.OrderedDict()

    def _retry(self, fn: Callable[[], T]) -> T:
        return call_with_retries(fn, clock=self.clock)

    def plan(self, spec: SpecInput, key: str, *, flags: validation.Overrides | None = None,
             origin_bucket: str | None = None, inspect_unlisted: bool = True) -> Plan:
        """Check `spec` as the function would submit it.

        Args:
            spec: the parsed spec (or its parse errors), defaults and the packages that came with it.
            key: the input's job key (the jobId when the spec names none).
            flags: CLI overrides.
            origin_bucket: the input's bucket, to compare the job's region with its location.
            inspect_unlisted: also read packages named by URI that did not come with the input (the function
                does; the offline CLI cannot).
        Raises:
            ObjectGone: a package that came with the input was replaced since it was listed.
            TransientError: storage kept failing for the retry budget.
        """
        if spec.errors or spec.parsed is None or spec.defaults is None:
            return Plan(job={}, job_id=key, violations=list(spec.errors), warnings=[], notes=[])
        checked = validation.check(spec.parsed, spec.defaults, key, self.settings.policy, flags)
        job = checked.job
        violations = list(checked.violations)
        ti = job.get("trainingInput")
        warnings = list(checked.warnings)
        sources: dict[str, PackageSource] = {}
        if isinstance(ti, dict) or vertex_spec.is_vertex(job):
            taken = {v.field for v in violations}
            if isinstance(ti, dict):
                problems = self.check_packages(ti, spec.packages, inspect_unlisted, sources)
                region = ti.get("region")
            else:  # a Vertex-shaped spec runs in the deployment's region
                problems = self.check_pool_packages(job, spec.packages, inspect_unlisted, sources)
                region = self.settings.region
            violations += [v for v in problems if v.field not in taken]
            warnings += self.region_warning(origin_bucket, region)
            more, notes = backend_check(self.backend, job)
            taken = {v.field for v in violations}  # one problem per field: the shared checks' own comes first
            violations += [v for v in more if v.field not in taken]
            warnings += [n for n in notes if n not in warnings]
        job_id = job.get("jobId")
        return Plan(job=job, job_id=job_id if isinstance(job_id, str) else key, violations=violations,
                    warnings=warnings, notes=checked.notes, packages=sources)

    def check_packages(self, ti: dict[str, Any], known: dict[str, ObjectInfo], inspect_unlisted: bool = True,
                       sources: dict[str, PackageSource] | None = None) -> list[Violation]:
        """Inspect every package the job will install (tar headers, streamed) and check pythonModule is in one.

        Args:
            sources: filled with each inspected package's generation and hash, by packageUris entry.
        """
        uris = ti.get("packageUris")
        if not isinstance(uris, list):
            return []
        infos: list[PackageInfo] = []
        out: list[Violation] = []
        for i, uri in enumerate(uris):
            match = GCS_URI_RE.fullmatch(uri) if isinstance(uri, str) else None
            if match is None or (uri not in known and not inspect_unlisted):
                continue  # the rules report the URI's form
            field = f"trainingInput.packageUris[{i}]"
            bucket, name = match.group(1), match.group(2)
            try:
                obj = known.get(uri) or self._retry(functools.partial(self.storage.stat, bucket, name))
                info = self._inspect(obj)
                infos.append(info)
                if sources is not None:
                    sources[uri] = PackageSource(obj, info.sha256)
            except PackageRejected as exc:
                out.append(exc.violation)
            except TooLarge as exc:
                out.append(Violation(name.rsplit("/", 1)[-1], f"{exc} (SUBMITTER_MAX_PACKAGE_BYTES)",
                                     Reason.PACKAGE_INVALID))
            except ObjectGone:
                if uri in known:
                    raise  # replaced since it was listed: its new generation has an event of its own
                out.append(Violation(field, f"{uri} does not exist; upload it or fix the URI", Reason.PACKAGE_INVALID,
                                     uri))
            except StorageRefused as exc:
                out.append(Violation(field, f"{uri} cannot be read by the submitter ({exc}); grant it read access "
                                     "or put the package in the drop", Reason.PACKAGE_INVALID, uri))
        return out or duplicate_distributions(infos) or module_violations(infos, ti.get("pythonModule"))

    def check_pool_packages(self, job: dict[str, Any], known: dict[str, ObjectInfo], inspect_unlisted: bool = True,
                            sources: dict[str, PackageSource] | None = None) -> list[Violation]:
        """`check_packages` for each pythonPackageSpec of a Vertex-shaped job, fields named by the pool's path."""
        out: list[Violation] = []
        for i, package in vertex_spec.python_pools(job):
            base = f"jobSpec.workerPoolSpecs[{i}].pythonPackageSpec"
            found = self.check_packages({"packageUris": package.get("packageUris"),
                                         "pythonModule": package.get("pythonModule")}, known, inspect_unlisted, sources)
            out += [dataclasses.replace(v, field=v.field.replace("trainingInput.", f"{base}.", 1)) for v in found]
        return out

    def _inspect(self, obj: ObjectInfo) -> PackageInfo:
        cache_key = (obj.bucket, obj.name, obj.generation)
        if cache_key not in self._inspected:
            with self._retry(lambda: self.storage.open(obj.bucket, obj.name, obj.generation,
                                                       max_bytes=self.settings.max_package_bytes)) as stream:
                self._inspected[cache_key] = inspect_package(stream, obj.filename)
            while len(self._inspected) > INSPECTION_CACHE_SIZE:
                self._inspected.popitem(last=False)
        return self._inspected[cache_key]

    def region_warning(self, bucket: str | None, region: Any) -> list[str]:
        """Train where the data is: a job region other than the input bucket's (regional) location is a warning."""
        if bucket is None or not isinstance(region, str):
            return []
        location = self.storage.bucket_location(bucket)
        if location and any(c.isdigit() for c in location) and region != location:
            return [f"trainingInput.region {region} differs from the drop bucket's location {location}; reading the "
                    "package and data across regions is slower and costs egress"]
        return []
