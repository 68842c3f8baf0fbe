"""AI Platform Training (`ml` v1) through google-api-python-client.

Uses the discovery document bundled with the client (no network fetch), so it
works against the local training service with
`client_options={"api_endpoint": ...}` and anonymous credentials.
"""

from __future__ import annotations

import socket
import threading

from .errors import BackendError, classify_http_error, transport_error

HTTP_TIMEOUT_S = 30


class MlV1Backend:
    """`projects.jobs.*` of the ml v1 API.

    Args:
        project: project id; jobs live under `projects/{project}`.
        endpoint: API endpoint override (e.g. "http://127.0.0.1:8090"); None for Google's.
        anonymous: use no credentials (local stack); otherwise Application Default Credentials.
    """

    name = "ml_v1"

    def __init__(self, project: str, endpoint: str | None = None, anonymous: bool = False):
        self.project = project
        self.endpoint = endpoint
        self.anonymous = anonymous
        # httplib2 connections are not thread-safe: one client per thread, built on first use.
        self._local = threading.local()

    def _jobs(self):
        jobs = getattr(self._local, "jobs", None)
        if jobs is None:
            import google.auth
            import google_auth_httplib2
            import httplib2
            from google.auth.credentials import AnonymousCredentials
            from googleapiclient import discovery

            creds = AnonymousCredentials() if self.anonymous else google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"])[0]
            http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=HTTP_TIMEOUT_S))
            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            service = discovery.build("ml", "v1", http=http, client_options=options, static_discovery=True,
                                      cache_discovery=False)
            jobs = self._local.jobs = service.projects().jobs()
        return jobs

    def _execute(self, request):
        from googleapiclient.errors import HttpError

        try:
            return request.execute(num_retries=0)
        except HttpError as exc:
            raise classify_http_error(exc.resp.status, exc.content) from None
        except (OSError, socket.timeout, ConnectionError) as exc:
            raise transport_error(exc) from None
        except Exception as exc:  # httplib2 raises its own exception types for transport failures
            if type(exc).__module__.startswith("httplib2"):
                raise transport_error(exc) from None
            raise

    def create_job(self, job: dict) -> dict:
        """`projects.jobs.create`; raises AlreadyExists on 409."""
        return self._execute(self._jobs().create(parent=f"projects/{self.project}", body=job))

    def get_job(self, job_id: str) -> dict:
        """`projects.jobs.get`."""
        return self._execute(self._jobs().get(name=f"projects/{self.project}/jobs/{job_id}"))

    def list_jobs(self, *, filter: str | None = None, page_size: int = 100,
                  page_token: str | None = None) -> tuple[list[dict], str | None]:
        """`projects.jobs.list`; the API answers `{}` when nothing matches."""
        kwargs = {"parent": f"projects/{self.project}", "pageSize": page_size}
        if filter:
            kwargs["filter"] = filter
        if page_token:
            kwargs["pageToken"] = page_token
        answer = self._execute(self._jobs().list(**kwargs)) or {}
        return list(answer.get("jobs") or []), answer.get("nextPageToken") or None

    def cancel_job(self, job_id: str) -> None:
        """`projects.jobs.cancel`."""
        self._execute(self._jobs().cancel(name=f"projects/{self.project}/jobs/{job_id}", body={}))


__all__ = ["MlV1Backend", "BackendError"]
