"""Training backends: one interface, one adapter per training API.

`TrainingBackend` is all the core knows about a training API. Each adapter translates the neutral job
model (`model.py`) to and from its API, owns its idempotency (how a retried submission finds the job an
earlier attempt created), maps its states onto `JobState`, and translates its failures into the error
tree (`errors.BackendRefused`, `errors.JobConflict`, `errors.BackendUnavailable`).

Adapters: `ml_v1` (AI Platform Training `projects.jobs`; the local training service speaks it) and `vertex`
(Vertex AI custom training `projects.locations.customJobs`, the cloud default; `vertex_translate` turns the AI
Platform job spec into a CustomJob). Adapters are built with a transport: tests pass an in-memory API instead of
patching internals.

An adapter may also offer `check(job) -> (violations, warnings)`: translate and validate a completed job without
calling the API. The planner calls it (`backend_check`) before anything is created, so a job the training API
cannot run is REJECTED with the fields to fix, not SUBMIT_FAILED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..model import JobHandle, JobRequest, JobStatus, Submission

if TYPE_CHECKING:
    from ..reasons import Violation
    from ..settings import Settings

# Every backend a deployment may name in SUBMITTER_BACKEND (settings.py checks against this).
KNOWN_BACKENDS: tuple[str, ...] = ("ml_v1", "vertex")
PAGE_SIZE = 100  # the APIs' maximum page size


class TrainingBackend(Protocol):
    """The calls the core makes on a training API.

    Every method raises `errors.BackendUnavailable` for faults a retry may fix and `errors.BackendRefused`
    for permanent refusals (with a reason and, where the API says, the remedy).
    """

    name: str

    def submit(self, request: JobRequest) -> Submission:
        """Create the job for `request.key`, or adopt the one an earlier attempt for the same key created.

        Raises:
            JobConflict: a different job already holds the key (the message names the differing fields).
        """
        ...

    def status(self, handle: JobHandle) -> JobStatus:
        """The job's current status."""
        ...

    def find(self, key: str) -> JobStatus | None:
        """The job the submitter created for `key` (or, for ml v1, the job with that jobId), or None."""
        ...

    def list_active(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        """One page of jobs that have not finished (server-side filter): (statuses, next page token or None)."""
        ...

    def list_jobs(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        """One page of the project's jobs, newest first: (statuses, next page token or None)."""
        ...

    def cancel(self, handle: JobHandle) -> None:
        """Ask the service to cancel the job."""
        ...

    def describe(self, handle: JobHandle) -> dict[str, Any]:
        """The API's own resource for the job (for `--json` output)."""
        ...


def backend_check(backend: Any, job: dict[str, Any]) -> tuple[list[Violation], list[str]]:
    """The backend's own check of a completed job, before any call: (violations, warnings).

    `check(job)` is optional in an adapter (pure: translate and validate, no I/O); without one the answer is
    ([], []).
    """
    check = getattr(backend, "check", None)
    if not callable(check):
        return [], []
    violations, warnings = check(job)
    return list(violations), list(warnings)


def quota_region(backend: Any, job: dict[str, Any]) -> str:
    """The region whose create quota a job's `jobs.create` counts against (the quota queue's key, quota.py).

    An adapter may offer `region_of(job)` (Vertex: the location `submit` creates in); otherwise the job's
    trainingInput.region, or "global" when it names none.
    """
    region_of = getattr(backend, "region_of", None)
    if callable(region_of):
        return str(region_of(job))
    from ..naming import REGION_RE

    ti = job.get("trainingInput")
    region = ti.get("region") if isinstance(ti, dict) else None
    return region if isinstance(region, str) and REGION_RE.fullmatch(region) else "global"


def build_backend(settings: Settings, transport: Any = None) -> TrainingBackend:
    """The backend named by `settings.backend` (built lazily by the caller, never at import).

    Args:
        settings: deployment settings (backend, project, endpoint, credentials).
        transport: an httplib2-compatible object to send requests through (an in-memory API in tests);
            None for the real network with Google credentials (or none on the local stack).
    Raises:
        ConfigurationError: the backend name is not in KNOWN_BACKENDS.
    """
    from ..errors import ConfigurationError

    if settings.backend == "ml_v1":
        from .ml_v1 import MlV1Backend

        return MlV1Backend(project=settings.project, endpoint=settings.training_api_endpoint,
                           anonymous=settings.anonymous_credentials, label=(settings.job_label_key,
                                                                              settings.job_label_value),
                           transport=transport)
    if settings.backend == "vertex":
        from .vertex import VertexBackend

        return VertexBackend(project=settings.project, region=settings.region,
                             regions=settings.policy.allowed_regions, endpoint=settings.training_api_endpoint,
                             anonymous=settings.anonymous_credentials,
                             label=(settings.job_label_key, settings.job_label_value),
                             service_account=settings.training_service_account, transport=transport)
    raise ConfigurationError(f"unknown backend {settings.backend!r} (known: {', '.join(KNOWN_BACKENDS)})")
