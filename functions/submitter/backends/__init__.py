"""Training backends: one interface, one adapter per API.

`TrainingBackend` is what the submitter and the reconciler call; `ml_v1`
(AI Platform Training) is the first adapter. Vertex AI custom training
(`aiplatform` v1) is the planned default for the cloud and plugs in here.
"""

from __future__ import annotations

from typing import Protocol

from .errors import AlreadyExists, BackendError, classify_http_error  # noqa: F401  (public API)

# Every backend a deployment may name in SUBMITTER_BACKEND (settings.py checks against this).
KNOWN_BACKENDS: tuple[str, ...] = ("ml_v1",)


class TrainingBackend(Protocol):
    """The calls the submitter makes on a training API (resource dicts use the API's camelCase).

    Every method raises `BackendError` (with `.transient` telling whether a retry
    can help) or its subclass `AlreadyExists`.
    """

    name: str

    def create_job(self, job: dict) -> dict:
        """Create `job` (a Job resource with jobId); returns the created resource."""

    def get_job(self, job_id: str) -> dict:
        """The Job resource for `job_id`."""

    def list_jobs(self, *, filter: str | None = None, page_size: int = 100,
                  page_token: str | None = None) -> tuple[list[dict], str | None]:
        """One page of jobs: (jobs, next_page_token or None). An empty `{}` answer is ([], None)."""

    def cancel_job(self, job_id: str) -> None:
        """Ask the service to cancel `job_id`."""


def build_backend(settings) -> TrainingBackend:
    """The backend named by `settings.backend` (built lazily by the caller, never at import)."""
    if settings.backend == "ml_v1":
        from .ml_v1 import MlV1Backend

        return MlV1Backend(project=settings.project, endpoint=settings.training_api_endpoint,
                           anonymous=settings.anonymous_credentials)
    raise ValueError(f"unknown backend {settings.backend!r}")
