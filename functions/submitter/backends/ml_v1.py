"""AI Platform Training (`ml` v1, `projects.jobs`) through google-api-python-client.

Uses the discovery document bundled with the client (no network fetch), so it works against the local
training service with an endpoint override and anonymous credentials. Built with a transport (any
httplib2-compatible object), so tests drive it with an in-memory API.

Idempotency: the job key is the client-chosen jobId; a retried `jobs.create` answers 409 ALREADY_EXISTS,
and the existing job is adopted when its normalised TrainingInput equals ours (Kubeflow Pipelines' ML
Engine component does the same), otherwise it is a JOB_ID_CONFLICT naming the differing fields.

States: the API's `GoogleCloudMlV1__Job.state` enum maps one to one onto `JobState`;
STATE_UNSPECIFIED (and any value this code does not know) maps to None.

Tuning: a job with `trainingInput.hyperparameters` reports its trials in `trainingOutput.trials[]`
(`GoogleCloudMlV1__HyperparameterOutput`); `study_of` turns them into the neutral `Study` (model.py).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from .. import vertex_spec
from ..errors import BackendError, BackendRefused, JobConflict
from ..model import (
    ACTIVE_STATES,
    DEFAULT_METRIC_TAG,
    JobHandle,
    JobRequest,
    JobState,
    JobStatus,
    Measurement,
    Study,
    Submission,
    Trial,
)
from ..reasons import Reason, Violation
from . import PAGE_SIZE
from .google_errors import CallContext, classify, transport_error

HTTP_TIMEOUT_S = 30
# The `projects.jobs` resource built from the bundled discovery document, per API endpoint, shared by every backend
# instance and thread of the process: building it (parsing the document, generating every method) cost more than
# the rest of a drop's CPU. Requests it builds are sent through the caller's own HTTP client (`execute(http=...)`),
# so sharing it shares no connection or credentials.
_RESOURCES: dict[str | None, Any] = {}
_RESOURCES_LOCK = threading.Lock()
ACTIVE_FILTER = " OR ".join(f"state:{s.value}" for s in ACTIVE_STATES)


class MlV1Backend:
    """`projects.jobs.*` of the ml v1 API.

    Args:
        project: project id; jobs live under `projects/{project}`.
        endpoint: API endpoint override (e.g. "http://127.0.0.1:8090"); None for Google's.
        anonymous: use no credentials (local stack); otherwise Application Default Credentials.
        label: the (key, value) label that marks the submitter's jobs.
        transport: an httplib2-compatible object (`request(uri, method, body, headers)`) to send requests
            through; None builds one authorised HTTP client per thread (httplib2 is not thread-safe).
    """

    name = "ml_v1"

    def __init__(self, project: str, endpoint: str | None = None, anonymous: bool = False,
                 label: tuple[str, str] = ("submitter", "drop"), transport: Any = None):
        self.project, self.endpoint, self.anonymous, self.label = project, endpoint, anonymous, label
        self._transport = transport
        self._local = threading.local()
        self._context = CallContext(project=project, api="ml.googleapis.com")

    # -- plumbing ---------------------------------------------------------------------------------
    def _jobs(self) -> Any:
        with _RESOURCES_LOCK:
            jobs = _RESOURCES.get(self.endpoint)
            if jobs is None:
                import httplib2
                from googleapiclient import discovery

                options = {"api_endpoint": self.endpoint} if self.endpoint else None
                # A placeholder client: nothing is ever sent through it (see _execute).
                service = discovery.build("ml", "v1", http=httplib2.Http(timeout=HTTP_TIMEOUT_S),
                                          client_options=options, static_discovery=True, cache_discovery=False)
                jobs = _RESOURCES[self.endpoint] = service.projects().jobs()
        return jobs

    def _client(self) -> Any:
        """This thread's HTTP client (httplib2 is not thread-safe)."""
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = self._http()
        return http

    def _http(self) -> Any:
        if self._transport is not None:
            return self._transport
        import google.auth
        import google_auth_httplib2
        import httplib2
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials() if self.anonymous else google.auth.default(  # type: ignore[no-untyped-call]
            scopes=["https://www.googleapis.com/auth/cloud-platform"])[0]
        identity = getattr(creds, "service_account_email", None)
        if identity:
            self._context = CallContext(project=self.project, identity=identity, api="ml.googleapis.com")
        return google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=HTTP_TIMEOUT_S))

    def _execute(self, request: Any) -> Any:
        from googleapiclient.errors import HttpError

        try:
            return request.execute(http=self._client(), num_retries=0)
        except HttpError as exc:
            raise classify(exc.resp.status, exc.content, self._context) from None
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise transport_error(exc) from None
        except Exception as exc:  # httplib2 raises its own exception types for transport failures
            if type(exc).__module__.startswith("httplib2"):
                raise transport_error(exc) from None
            raise

    def _name(self, key: str) -> str:
        return f"projects/{self.project}/jobs/{key}"

    def _status(self, job: dict[str, Any]) -> JobStatus:
        key = str(job.get("jobId", ""))
        api_state = str(job.get("state") or "STATE_UNSPECIFIED")
        try:
            state: JobState | None = JobState(api_state)
        except ValueError:
            state = None  # STATE_UNSPECIFIED or a state this code does not know: wait, do not guess
        ti = job.get("trainingInput") or {}
        detail = {"trainingOutput": job["trainingOutput"]} if job.get("trainingOutput") is not None else {}
        return JobStatus(handle=JobHandle(self.name, self._name(key), key), state=state, api_state=api_state,
                         create_time=job.get("createTime"), start_time=job.get("startTime"),
                         end_time=job.get("endTime"), error_message=job.get("errorMessage") or None,
                         labels=dict(job.get("labels") or {}), output_dir=ti.get("jobDir"), detail=detail,
                         study=study_of(job))

    # -- TrainingBackend --------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> Submission:
        """`projects.jobs.create` with jobId = the job key; on 409 adopt the existing job if it is the same.

        Raises:
            JobConflict: a job with this id exists and its TrainingInput differs.
            BackendRefused: the API refused (also a 409 whose job then cannot be read).
            BackendUnavailable: transient faults.
        """
        job = {**request.job, "jobId": request.key}
        try:
            created = self._execute(self._jobs().create(parent=f"projects/{self.project}", body=job))
            return Submission(self._status(created))
        except BackendRefused as exc:
            if exc.code != 409:
                raise
        try:
            existing = self._execute(self._jobs().get(name=self._name(request.key)))
        except BackendRefused as exc:
            raise BackendRefused(exc.code, exc.status, f"jobs.create answered 409 ALREADY_EXISTS but jobs.get "
                                 f"answered {exc.code} {exc.status}: {exc.message}", reason=exc.reason) from None
        diff = differences(normalize_training_input(job.get("trainingInput") or {}),
                           normalize_training_input(existing.get("trainingInput") or {}))
        if diff:
            # The other job may be someone else's: name none of its fields in a message that gets published.
            raise JobConflict(request.key, diff, f"a job named {request.key} already exists and is not the job this "
                              "input describes; choose another jobId, or remove jobId to get one derived from the drop")
        return Submission(self._status(existing), adopted=True)

    def status(self, handle: JobHandle) -> JobStatus:
        """`projects.jobs.get`."""
        return self._status(self.describe(handle))

    def describe(self, handle: JobHandle) -> dict[str, Any]:
        """The Job resource."""
        return dict(self._execute(self._jobs().get(name=handle.name)))

    def find(self, key: str) -> JobStatus | None:
        """The job with jobId `key`, or None (404)."""
        try:
            return self.status(JobHandle(self.name, self._name(key), key))
        except BackendRefused as exc:
            if exc.reason is Reason.NOT_FOUND:
                return None
            raise

    def list_active(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        """`projects.jobs.list` with the active-state filter; the API answers `{}` when nothing matches."""
        return self._list(ACTIVE_FILTER, page_token)

    def list_jobs(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        """`projects.jobs.list` without a filter."""
        return self._list(None, page_token)

    def _list(self, filter_: str | None, page_token: str | None) -> tuple[list[JobStatus], str | None]:
        kwargs: dict[str, Any] = {"parent": f"projects/{self.project}", "pageSize": PAGE_SIZE}
        if filter_:
            kwargs["filter"] = filter_
        if page_token:
            kwargs["pageToken"] = page_token
        answer = self._execute(self._jobs().list(**kwargs)) or {}
        jobs = [j for j in answer.get("jobs") or [] if isinstance(j, dict) and j.get("jobId")]
        return [self._status(j) for j in jobs], answer.get("nextPageToken") or None

    def cancel(self, handle: JobHandle) -> None:
        """`projects.jobs.cancel`."""
        self._execute(self._jobs().cancel(name=handle.name, body={}))

    def check(self, job: dict[str, Any]) -> tuple[list[Violation], list[str]]:
        """Nothing beyond the shared checks for an AI Platform Job (ml v1's own shape): ([], []). A Vertex-shaped
        spec (a CustomJobSpec or CustomJob, `vertex_spec.py`) is refused with the reason: it runs only on Vertex AI,
        and translating it back is not lossless."""
        if vertex_spec.is_vertex(job):
            shape = vertex_spec.shape_of(job)
            return [Violation("job.yaml", vertex_spec.REFUSAL_ON_ML_V1.format(shape=shape), Reason.SPEC_INVALID)], []
        return [], []


def study_of(job: dict[str, Any]) -> Study | None:
    """The neutral Study of an ml v1 Job with `trainingInput.hyperparameters`, else None.

    Sources (ml.v1.json): `HyperparameterSpec.goal` ("Defaults to MAXIMIZE"), `.hyperparameterMetricTag` (default
    "training/hptuning/metric"), `.maxTrials` ("Defaults to one"); `TrainingOutput.trials[]`: `trialId`, `state` (a job
    state), `hyperparameters` (map of strings), `finalMetric` {`trainingStep` (int64 as a string), `objectiveValue`},
    `allMetrics[]`, `startTime`, `endTime`, `isTrialStoppedEarly`. Malformed entries are skipped, never raised on;
    a non-finite objective value counts as no value.
    """
    ti = job.get("trainingInput")
    hp = ti.get("hyperparameters") if isinstance(ti, dict) else None
    if not isinstance(hp, dict):
        return None
    found = job.get("trainingOutput")
    output: dict[str, Any] = found if isinstance(found, dict) else {}
    trials = []
    for raw in output.get("trials") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("trialId"), str):
            continue
        try:
            state: JobState | None = JobState(str(raw.get("state")))
        except ValueError:
            state = None
        given = raw.get("hyperparameters")
        params: dict[str, Any] = given if isinstance(given, dict) else {}
        trials.append(Trial(
            trial_id=raw["trialId"], state=state, hyperparameters={str(k): str(v) for k, v in params.items()},
            final=_measurement(raw.get("finalMetric")),
            measurements=tuple(m for m in map(_measurement, raw.get("allMetrics") or []) if m is not None),
            start_time=raw.get("startTime"), end_time=raw.get("endTime"),
            stopped_early=bool(raw.get("isTrialStoppedEarly"))))
    goal = str(hp.get("goal")) if hp.get("goal") in ("MAXIMIZE", "MINIMIZE") else "MAXIMIZE"
    tag = hp.get("hyperparameterMetricTag") or output.get("hyperparameterMetricTag") or DEFAULT_METRIC_TAG
    max_trials = hp.get("maxTrials")
    return Study(goal=goal, metric_tag=str(tag), trials=tuple(trials),
                 max_trials=max_trials if isinstance(max_trials, int) and not isinstance(max_trials, bool) else 1)


def _measurement(raw: Any) -> Measurement | None:
    """`HyperparameterMetric` {trainingStep: "12", objectiveValue: 0.9} -> Measurement, or None when unusable."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("objectiveValue")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    step = raw.get("trainingStep", 0)
    try:
        steps = int(step)
    except (TypeError, ValueError):
        steps = 0
    return Measurement(step=steps, value=float(value))


def normalize_training_input(ti: dict[str, Any]) -> dict[str, Any]:
    """A comparable form of a TrainingInput, as the server echoes it.

    The service drops empty fields (`args: []`), echoes int64 fields as strings, treats a missing
    scaleTier as BASIC, and adds output-only or defaulted fields that a spec never sets.
    """
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items() if not _empty(v)}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return str(value) if float(value) != int(value) else str(int(value))
        return value

    out = norm(ti if isinstance(ti, dict) else {})
    out.setdefault("scaleTier", "BASIC")
    return dict(out)


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def differences(a: dict[str, Any], b: dict[str, Any], path: str = "trainingInput") -> list[str]:
    """Dotted paths where two normalised TrainingInputs differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                out += differences(a[key], b[key], f"{path}.{key}")
            else:
                out.append(f"{path}.{key}")
    return out


__all__ = ["MlV1Backend", "BackendError", "normalize_training_input", "differences", "study_of", "ACTIVE_FILTER"]
