"""Vertex AI custom training (`aiplatform` v1, `projects.locations.customJobs` and, for tuning specs,
`projects.locations.hyperparameterTuningJobs`) through google-api-python-client.

Uses the `aiplatform` v1 discovery document bundled with the client (no network fetch). Calls go to the
regional endpoint `https://{region}-aiplatform.googleapis.com`, one client per region (a job's handle names its
location: `projects/P/locations/L/customJobs/N`), unless an endpoint override serves every region (the local
training service). Built with a transport (any httplib2-compatible object), so tests drive it with an in-memory
Vertex API (`tests/fake_vertex.py`).

Translation: `vertex_translate.translate` (pure): the same AI Platform job spec becomes a CustomJob, or, with
`trainingInput.hyperparameters`, a HyperparameterTuningJob (`vertex_tuning.py`). `check` runs it before any call
(the planner calls it, so a job Vertex cannot run is REJECTED, never SUBMIT_FAILED).

Two collections: a handle's resource name says which one holds the job (`projects/P/locations/L/customJobs/N` or
`projects/P/locations/L/hyperparameterTuningJobs/N`), so `status`, `describe` and `cancel` route by it; `submit`
looks for and creates the job in the collection its translation names; `find` and the listings cover both
(customJobs first). A HyperparameterTuningJob has the same JobState and labels as a CustomJob; its `trials[]` become
`JobStatus.study` (`vertex_tuning.study_of`).

Idempotency: Vertex assigns job ids and never answers 409. Every job carries the label
`submitter-key: <first 40 hex digits of SHA-256(job key)>` (naming.key_label_value); `submit` first lists the
region's CustomJobs with the server-side filter `labels.submitter-key="<value>"` and adopts the job it finds
(the oldest, when an earlier race left two), else creates one. The core's claim keeps two instances from
creating at once; a crash between create and publish is healed by the next delivery (it finds the job) or by
the reconciler (`find`). A found job is adopted only if it is the one this input describes: same displayName
and, pool by pool, the same machineType and replicaCount; otherwise JobConflict. The key itself travels in the
label `submitter-job` ("-x" for each capital X) when it fits a label, so listings can name it.

States (`CustomJob.state`, aiplatform v1 JobState) -> published JobState:

| JOB_STATE_*             | published  | why |
|-------------------------|------------|-----|
| QUEUED                  | QUEUED     | "just created or resumed and processing has not yet begun" |
| PENDING                 | PREPARING  | "the service is preparing to run the job" |
| RUNNING                 | RUNNING    | |
| CANCELLING              | CANCELLING | not terminal: goes on to SUCCEEDED, FAILED or CANCELLED |
| SUCCEEDED               | SUCCEEDED  | the only success |
| FAILED                  | FAILED     | errorMessage = error.message |
| CANCELLED               | CANCELLED  | errorMessage = error.message, if any |
| EXPIRED                 | FAILED     | errorMessage says the job expired (and error.message, if any) |
| PARTIALLY_SUCCEEDED     | FAILED     | "some results may be missing": not a success a consumer can rely on |
| PAUSED, UPDATING        | None       | the last published state stays (PAUSED "can be resumed"; UPDATING  |
|                         |            | goes back to RUNNING)                                               |
| UNSPECIFIED, unknown    | None       | never guessed |

Listing (`list_active`, `list_jobs`): the regions a job may run in are the deployment's default region and the
policy's allowed regions; each call lists one page of one collection of one region (pageSize 100) and the page token
carries which (customJobs, then hyperparameterTuningJobs, region by region), so a caller paging until the token is
None sees every job. `list_active` filters on the server:
`labels.submitter="drop" AND (state="JOB_STATE_QUEUED" OR ... )` with every non-terminal state (the filter grammar
of customJobs.list in aiplatform.v1.json: `labels.key=value`, `state=`, AND, OR, parentheses).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import vertex_spec
from ..errors import BackendRefused, JobConflict
from ..model import JobHandle, JobRequest, JobState, JobStatus, Submission
from ..naming import REGION_RE, key_label_value
from ..reasons import Reason, Violation
from . import PAGE_SIZE
from . import vertex_translate as vt
from .google_errors import CallContext, classify, transport_error
from .vertex_tuning import study_of

HTTP_TIMEOUT_S = 30
API = "aiplatform.googleapis.com"

STATES: dict[str, JobState | None] = {
    "JOB_STATE_QUEUED": JobState.QUEUED,
    "JOB_STATE_PENDING": JobState.PREPARING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_CANCELLING": JobState.CANCELLING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
    "JOB_STATE_EXPIRED": JobState.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FAILED,
    "JOB_STATE_PAUSED": None,
    "JOB_STATE_UPDATING": None,
    "JOB_STATE_UNSPECIFIED": None,
}
# Not finished: listed by list_active (PAUSED and UPDATING too, so a followed job in them is not fetched alone).
ACTIVE_API_STATES = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING",
                     "JOB_STATE_PAUSED", "JOB_STATE_UPDATING")
_FAILURE_NOTES = {"JOB_STATE_EXPIRED": "the job expired (JOB_STATE_EXPIRED)",
                  "JOB_STATE_PARTIALLY_SUCCEEDED": "the job only partially succeeded (JOB_STATE_PARTIALLY_SUCCEEDED): "
                                                   "some results may be missing"}


def job_id_of(name: str) -> str:
    """The numeric id at the end of a CustomJob resource name (Cloud Logging's resource.labels.job_id)."""
    return name.rsplit("/", 1)[-1]


CUSTOM_JOBS, TUNING_JOBS = "customJobs", "hyperparameterTuningJobs"
COLLECTIONS = (CUSTOM_JOBS, TUNING_JOBS)


def location_of(name: str) -> str | None:
    """The location of `projects/P/locations/L/customJobs/N` (or `.../hyperparameterTuningJobs/N`), or None for
    another shape."""
    parts = name.split("/")
    return parts[3] if len(parts) == 6 and parts[0] == "projects" and parts[2] == "locations" else None


def collection_of(name: str) -> str | None:
    """"customJobs" or "hyperparameterTuningJobs" for a Vertex job resource name, None for another shape."""
    parts = name.split("/")
    return parts[4] if location_of(name) is not None and parts[4] in COLLECTIONS else None


class VertexBackend:
    """`projects.locations.customJobs.*` of the aiplatform v1 API.

    Args:
        project: project id; jobs live under `projects/{project}/locations/{region}`.
        region: the deployment's default region (jobs whose spec names none; the first region listed).
        regions: every region a job may run in (the policy's allowed regions); listings cover them all.
        endpoint: an endpoint override serving every region (the local training service); None for Google's
            regional endpoints `https://{region}-aiplatform.googleapis.com`.
        anonymous: use no credentials (local stack); otherwise Application Default Credentials.
        label: the (key, value) label that marks the submitter's jobs.
        service_account: the account jobs run as when a spec names none (None: Vertex's default).
        transport: an httplib2-compatible object (`request(uri, method, body, headers)`); None builds one
            authorised HTTP client per thread and region (httplib2 is not thread-safe).
    """

    name = "vertex"

    def __init__(self, project: str, region: str = "us-central1", regions: Sequence[str] = (),
                 endpoint: str | None = None, anonymous: bool = False, label: tuple[str, str] = ("submitter", "drop"),
                 service_account: str | None = None, transport: Any = None):
        self.project, self.region, self.endpoint, self.anonymous = project, region, endpoint, anonymous
        self.regions = tuple(dict.fromkeys([region, *regions]))
        self.label = label
        self.options = vt.Options(default_region=region, service_account=service_account)
        self._transport = transport
        self._local = threading.local()
        self._identity: str | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def endpoint_for(self, region: str) -> str:
        """The API endpoint for `region`: the override, else `https://{region}-aiplatform.googleapis.com`.

        Raises:
            BackendRefused: `region` is not a region name (it becomes part of a host name).
        """
        if self.endpoint:
            return self.endpoint
        if not REGION_RE.fullmatch(region):
            raise BackendRefused(400, "INVALID_ARGUMENT", f"{region!r} is not a region", reason=Reason.INVALID_ARGUMENT)
        return f"https://{region}-{API}"

    def _jobs(self, region: str, collection: str = CUSTOM_JOBS) -> Any:
        """The `customJobs()` or `hyperparameterTuningJobs()` resource of `region`'s client (one per thread)."""
        clients: dict[str, Any] = getattr(self._local, "jobs", None) or {}
        self._local.jobs = clients
        if region not in clients:
            from googleapiclient import discovery

            clients[region] = discovery.build("aiplatform", "v1", http=self._http(),
                                              client_options={"api_endpoint": self.endpoint_for(region)},
                                              static_discovery=True, cache_discovery=False).projects().locations()
        locations = clients[region]
        return locations.hyperparameterTuningJobs() if collection == TUNING_JOBS else locations.customJobs()

    def _http(self) -> Any:
        if self._transport is not None:
            return self._transport
        import google.auth
        import google_auth_httplib2
        import httplib2
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials() if self.anonymous else google.auth.default(  # type: ignore[no-untyped-call]
            scopes=["https://www.googleapis.com/auth/cloud-platform"])[0]
        self._identity = getattr(creds, "service_account_email", None) or self._identity
        return google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=HTTP_TIMEOUT_S))

    def _execute(self, request: Any, region: str) -> Any:
        from googleapiclient.errors import HttpError

        try:
            return request.execute(num_retries=0)
        except HttpError as exc:
            ctx = CallContext(project=self.project, region=region, identity=self._identity, api=API)
            raise classify(exc.resp.status, exc.content, ctx) from None
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise transport_error(exc) from None
        except Exception as exc:  # httplib2 raises its own exception types for transport failures
            if type(exc).__module__.startswith("httplib2"):
                raise transport_error(exc) from None
            raise

    def _parent(self, region: str) -> str:
        return f"projects/{self.project}/locations/{region}"

    def _status(self, job: dict[str, Any], key: str | None = None) -> JobStatus:
        name = str(job.get("name", ""))
        labels = {str(k): str(v) for k, v in (job.get("labels") or {}).items()}
        if key is None:
            encoded = labels.get(vt.JOB_LABEL)
            key = vt.decode_key(encoded) if encoded else ""
        api_state = str(job.get("state") or "JOB_STATE_UNSPECIFIED")
        state = STATES.get(api_state)
        error = job.get("error")
        message = str(error.get("message") or "") or None if isinstance(error, dict) else None
        note = _FAILURE_NOTES.get(api_state)
        if note:
            message = f"{note}: {message}" if message else note
        return JobStatus(handle=JobHandle(self.name, name, key), state=state, api_state=api_state,
                         create_time=job.get("createTime"), start_time=job.get("startTime"),
                         end_time=job.get("endTime"), error_message=message, labels=labels,
                         output_dir=_output_dir(job), study=study_of(job))

    def _list(self, region: str, filter_: str | None, token: str | None, collection: str = CUSTOM_JOBS
              ) -> tuple[list[dict[str, Any]], str | None]:
        kwargs: dict[str, Any] = {"parent": self._parent(region), "pageSize": PAGE_SIZE}
        if filter_:
            kwargs["filter"] = filter_
        if token:
            kwargs["pageToken"] = token
        answer = self._execute(self._jobs(region, collection).list(**kwargs), region) or {}
        jobs = [j for j in answer.get(collection) or [] if isinstance(j, dict) and j.get("name")]
        return jobs, answer.get("nextPageToken") or None

    def _find_in(self, region: str, key: str, collection: str = CUSTOM_JOBS) -> list[dict[str, Any]]:
        value = key_label_value(key)
        found: list[dict[str, Any]] = []
        token = None
        while True:
            page, token = self._list(region, f'labels.{vt.KEY_LABEL}="{value}"', token, collection)
            found += [j for j in page if (j.get("labels") or {}).get(vt.KEY_LABEL) == value]
            if not token:
                return sorted(found, key=lambda j: (str(j.get("createTime") or ""), str(j.get("name"))))

    def _pages(self, page_token: str | None, filter_: str | None, status: Callable[[dict[str, Any]], JobStatus]
               ) -> tuple[list[JobStatus], str | None]:
        """One page of one collection of one region; the token is "<source index>:<the API's token>", the sources
        being each region's customJobs, then its hyperparameterTuningJobs."""
        sources = [(region, collection) for region in self.regions for collection in COLLECTIONS]
        index, inner = _parse_token(page_token, len(sources))
        region, collection = sources[index]
        jobs, next_inner = self._list(region, filter_, inner, collection)
        if next_inner:
            token: str | None = f"{index}:{next_inner}"
        elif index + 1 < len(sources):
            token = f"{index + 1}:"
        else:
            token = None
        return [status(j) for j in jobs], token

    # -- TrainingBackend --------------------------------------------------------------------------
    def check(self, job: dict[str, Any]) -> tuple[list[Violation], list[str]]:
        """Translate and validate without calling the API: (violations, warnings). Pure.

        The display name is not known here (the planner has no origin name); the jobId stands in, which only
        affects the displayName length rule (`translate` cuts long names itself).
        """
        key = job.get("jobId") if isinstance(job.get("jobId"), str) else ""
        return vt.check(job, key=key or "job", display_name=key or "job", options=self.options)

    def region_of(self, job: dict[str, Any]) -> str:
        """The location `submit` creates the job in (pure): the spec's region, else the deployment's default; a
        Vertex-shaped spec always runs in the default region (as `vt.translate` decides)."""
        ti = job.get("trainingInput") if not vertex_spec.is_vertex(job) else None
        region = ti.get("region") if isinstance(ti, dict) else None
        return region if isinstance(region, str) and REGION_RE.fullmatch(region) else self.options.default_region

    def translate(self, request: JobRequest) -> vt.Translation:
        """The CustomJob (or, for a tuning spec, the HyperparameterTuningJob) for a request (pure)."""
        return vt.translate(request.job, key=request.key, display_name=request.display_name or request.key,
                            options=self.options)

    def submit(self, request: JobRequest) -> Submission:
        """Adopt the job an earlier attempt created for `request.key` (found by its label), else create it.

        Raises:
            BackendRefused: the translation has violations (the planner normally rejects those first), or the
                API refused.
            JobConflict: a job with this key's label exists and is not the job this request describes.
            BackendUnavailable: transient faults.
        """
        t = self.translate(request)
        if t.violations:
            raise BackendRefused(400, "INVALID_ARGUMENT", "the job cannot run on Vertex AI: " + "; ".join(
                f"{v.field}: {v.message}" for v in t.violations[:20]), reason=Reason.INVALID_ARGUMENT)
        existing = self._find_in(t.region, request.key, t.collection)
        if existing:
            found = existing[0]
            diff = differences(t.custom_job, found)
            if diff:
                # The other job may be someone else's: name none of its fields in a message that gets published.
                raise JobConflict(request.key, diff, f"a Vertex AI job labelled as job {request.key} already exists "
                                  "and is not the job this input describes; choose another jobId, or remove jobId "
                                  "to get one derived from the drop")
            return Submission(self._status(found, request.key), adopted=True)
        created = self._execute(self._jobs(t.region, t.collection).create(parent=self._parent(t.region),
                                                                          body=t.custom_job), t.region)
        return Submission(self._status(created, request.key))

    def status(self, handle: JobHandle) -> JobStatus:
        """`customJobs.get` or `hyperparameterTuningJobs.get` of the handle's resource name (its location picks the
        regional endpoint)."""
        return self._status(self.describe(handle), handle.key)

    def describe(self, handle: JobHandle) -> dict[str, Any]:
        """The CustomJob or HyperparameterTuningJob resource.

        Raises:
            BackendRefused: NOT_FOUND for a name that is neither a CustomJob's nor a HyperparameterTuningJob's.
        """
        region, collection = location_of(handle.name), collection_of(handle.name)
        if region is None or collection is None:
            raise BackendRefused(404, "NOT_FOUND", f"{handle.name!r} is not a CustomJob or HyperparameterTuningJob "
                                 "resource name", reason=Reason.NOT_FOUND)
        return dict(self._execute(self._jobs(region, collection).get(name=handle.name), region))

    def find(self, key: str) -> JobStatus | None:
        """The job created for `key` (label `submitter-key`), searching the default region first (its customJobs,
        then its hyperparameterTuningJobs), or None."""
        for region in self.regions:
            for collection in COLLECTIONS:
                found = self._find_in(region, key, collection)
                if found:
                    return self._status(found[0], key)
        return None

    def list_active(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        """One page of the submitter's unfinished jobs (server-side filter on its label and the state)."""
        states = " OR ".join(f'state="{s}"' for s in ACTIVE_API_STATES)
        return self._pages(page_token, f'labels.{self.label[0]}="{self.label[1]}" AND ({states})', self._status)

    def list_jobs(self, page_token: str | None = None) -> tuple[list[JobStatus], str | None]:
        """One page of the project's CustomJobs, region by region (the API documents no order)."""
        return self._pages(page_token, None, self._status)

    def cancel(self, handle: JobHandle) -> None:
        """`customJobs.cancel` or `hyperparameterTuningJobs.cancel`, by the handle's resource name."""
        region = location_of(handle.name) or self.region
        collection = collection_of(handle.name) or CUSTOM_JOBS
        self._execute(self._jobs(region, collection).cancel(name=handle.name, body={}), region)


def differences(wanted: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """What differs between the job a request describes and one found under its key: displayName, pool by pool
    (non-empty pools of jobSpec, or of trialJobSpec for a HyperparameterTuningJob) machineType and replicaCount,
    and a tuning job's maxTrialCount and parallelTrialCount. Dotted Vertex paths."""
    out = []
    if wanted.get("displayName") != found.get("displayName"):
        out.append("displayName")
    spec = "trialJobSpec" if "trialJobSpec" in wanted else "jobSpec"
    shape_a, shape_b = _shape(wanted), _shape(found)
    for index in sorted(set(shape_a) | set(shape_b)):
        if shape_a.get(index) != shape_b.get(index):
            out.append(f"{spec}.workerPoolSpecs[{index}]")
    for field in ("maxTrialCount", "parallelTrialCount"):
        if field in wanted and str(wanted.get(field)) != str(found.get(field)):
            out.append(field)
    return out


def _shape(job: dict[str, Any]) -> dict[int, tuple[str, str]]:
    pools = (job.get("jobSpec") or job.get("trialJobSpec") or {}).get("workerPoolSpecs") or []
    return {i: (str((p.get("machineSpec") or {}).get("machineType")), str(p.get("replicaCount", 1)))
            for i, p in enumerate(pools) if isinstance(p, dict) and p}


def _output_dir(job: dict[str, Any]) -> str | None:
    """The jobDir the job was given: the `--job-dir` value the adapter appended to the primary's args (echoed
    verbatim), else baseOutputDirectory.outputUriPrefix (which Vertex may normalise with a trailing "/"); of the
    jobSpec, or of a HyperparameterTuningJob's trialJobSpec."""
    spec = job.get("jobSpec") or job.get("trialJobSpec") or {}
    pools = spec.get("workerPoolSpecs") or [{}]
    first = pools[0] if isinstance(pools[0], dict) else {}
    program = first.get("pythonPackageSpec") or first.get("containerSpec") or {}
    args = program.get("args") or []
    for i, arg in enumerate(args[:-1]):
        if arg == vt.JOB_DIR_FLAG and isinstance(args[i + 1], str):
            return str(args[i + 1])
    prefix = (spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
    return str(prefix) if prefix else None


def _parse_token(token: str | None, regions: int) -> tuple[int, str | None]:
    if not token:
        return 0, None
    head, _, inner = token.partition(":")
    index = int(head) if head.isdigit() else 0
    return (index, inner or None) if index < regions else (0, None)


__all__ = ["VertexBackend", "STATES", "ACTIVE_API_STATES", "COLLECTIONS", "differences", "job_id_of", "location_of",
           "collection_of"]
