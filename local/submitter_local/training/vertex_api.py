"""The Vertex AI `projects.locations.customJobs` subset of the local training service.

Routes (the aiplatform v1 discovery document's paths; google-api-python-client reaches them with
`client_options={"api_endpoint": <service url>}`; every location is served by this one endpoint and `{l}` in the
path is honoured: a job lives in the location it was created in, and is 404 from any other):

    POST /v1/projects/{p}/locations/{l}/customJobs               create: 200 with the CustomJob (server-assigned
                                                                 numeric id in `name`, JOB_STATE_QUEUED, createTime)
    GET  /v1/projects/{p}/locations/{l}/customJobs/{id}          get
    GET  /v1/projects/{p}/locations/{l}/customJobs?filter=&pageSize=&pageToken=
                                                                 list: newest first; `{}` when nothing matches;
                                                                 filter: `vertex_filters` (the documented subset)
    POST /v1/projects/{p}/locations/{l}/customJobs/{id}:cancel   cancel: `{}`; QUEUED -> CANCELLED at once,
                                                                 PENDING/RUNNING -> CANCELLING -> CANCELLED;
                                                                 400 FAILED_PRECONDITION when already final
    .../hyperparameterTuningJobs[/{id}[:cancel]]                the same four methods for tuning jobs
                                                                 (`vertex_tuning.py`: they run their trials)

Jobs run on the same scheduler, runner, environment cache and sandbox as ml v1 jobs (`vertex_run.VertexProfile`
says what differs). They are stored in the same job store under the key `("{p}/vertex-{l}", "{id}")`: an ml v1
project or jobId can never look like that (jobIds hold no "-", projects no "/"), so the two APIs never see each
other's jobs. The record's `trainingInput` holds the CustomJobSpec; `runtime["vertex"]` the resource name and the
CustomJob's other fields (displayName, encryptionSpec).

States (ml v1 record -> JobState of aiplatform v1): QUEUED -> JOB_STATE_QUEUED, PREPARING -> JOB_STATE_PENDING
("the service is preparing to run the job"), RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED -> JOB_STATE_*.
Failures and cancellations carry `error` (GoogleRpcStatus): code 1 (CANCELLED) for a cancelled job, as
customJobs.cancel documents; code 3 for a failed one (a local choice: the API does not say).

What create checks (400 INVALID_ARGUMENT with google.rpc.BadRequest field violations): the body against
`GoogleCloudAiplatformV1CustomJob` of the bundled aiplatform.v1.json (unknown fields, types, enums; output-only
fields are ignored), then `displayName` (required, at most 128 characters), `jobSpec.workerPoolSpecs` (1 to 4
pools; the first non-empty with replicaCount 1 (or unset); every non-empty pool a machineSpec.machineType, a
replicaCount of at least 1 (pools 1-3) and exactly one of pythonPackageSpec (executorImageUri, pythonModule, 1-100
gs:// packageUris) or containerSpec (imageUri)), `baseOutputDirectory.outputUriPrefix` a gs:// URI, env names,
and Vertex's label rules. A containerSpec job is accepted and fails in JOB_STATE_PENDING (`containers.py`).

With a create quota (`ServiceConfig.create_quota_per_minute`), a create beyond it in its location is answered 429
RESOURCE_EXHAUSTED before any check (`TrainingService.charge_create`); customJobs and hyperparameterTuningJobs share
the quota, as they share Vertex's "job or LRO submission requests" quota.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request

from . import errors, schema
from .errors import ApiError
from .model import CANCELLED, CANCELLING, FAILED, PREPARING, QUEUED, RUNNING, SUCCEEDED, TERMINAL_STATES, rfc3339
from .runner import USER_CANCEL_MESSAGE, replica_log_path
from .store import AlreadyExists, JobRecord
from .vertex_filters import FilterError, compile_filter
from .vertex_run import VertexProfile

if TYPE_CHECKING:
    from .service import TrainingService

DOCUMENT = "aiplatform.v1.json"
SCHEMA = "GoogleCloudAiplatformV1CustomJob"
RESOURCE_TYPE = "aiplatform.googleapis.com/CustomJob"
STATES = {QUEUED: "JOB_STATE_QUEUED", PREPARING: "JOB_STATE_PENDING", RUNNING: "JOB_STATE_RUNNING",
          SUCCEEDED: "JOB_STATE_SUCCEEDED", FAILED: "JOB_STATE_FAILED", CANCELLING: "JOB_STATE_CANCELLING",
          CANCELLED: "JOB_STATE_CANCELLED"}
#: Output-only CustomJob fields (aiplatform.v1.json: "Output only."): ignored in a create body.
OUTPUT_ONLY = ("name", "state", "createTime", "startTime", "endTime", "updateTime", "error", "webAccessUris",
               "satisfiesPzi", "satisfiesPzs")
CANCEL_MESSAGE = "CustomJob cancelled by the user (customJobs.cancel)."
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100
MAX_DISPLAY_NAME = 128
MAX_POOLS = 4
MAX_PACKAGE_URIS = 100
MAX_ENV = 100
#: The label the submitter's Vertex adapter puts its job key in ("-x" for each capital X).
JOB_KEY_LABEL = "submitter-job"
_GCS_OBJECT_RE = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/.+$")
_GCS_PATH_RE = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_LABEL_KEY_RE = re.compile(r"[^\W\dA-Z_][\w-]{0,63}")
_LABEL_VALUE_RE = re.compile(r"[\w-]{0,64}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_POOL_ALIASES = {"master": 0, "chief": 0, "worker": 1, "ps": 2, "evaluator": 3}
_TRIAL_REPLICA_RE = re.compile(r"trial-(\d+)/(.+)")
#: The record kinds (runtime["api"]) of this API's resources: CustomJobs and HyperparameterTuningJobs.
VERTEX_APIS = ("vertex", "vertex_tuning")


def store_project(project: str, location: str) -> str:
    """The job store's project key of a location's CustomJobs."""
    return f"{project}/vertex-{location}"


def job_name(project: str, location: str, job_id: str) -> str:
    """`projects/{p}/locations/{l}/customJobs/{id}`."""
    return f"projects/{project}/locations/{location}/customJobs/{job_id}"


def encode_key(key: str) -> str:
    """A job key as the submitter's adapter writes it in the `submitter-job` label ("-x" for each capital X; the
    rule of functions/submitter/backends/vertex_translate.encode_key)."""
    return "".join(f"-{c.lower()}" if "A" <= c <= "Z" else c for c in key)


def not_found(name: str, kind: str = "CustomJob") -> ApiError:
    """404 NOT_FOUND for a CustomJob (or another `kind` of aiplatform resource) name."""
    msg = f"The {kind} does not exist: {name}"
    return ApiError(404, "NOT_FOUND", msg, [{"@type": errors.RESOURCE_INFO_TYPE,
                                              "resourceType": f"aiplatform.googleapis.com/{kind}",
                                              "resourceName": name, "description": msg}])


# -- create: checks ------------------------------------------------------------------------------------------------
def validate_create(body: Any) -> dict[str, Any]:
    """A create body checked as Vertex's front end and service do; returns the normalized CustomJob (JSON names,
    int64 as decimal strings, defaults left out) without output-only fields.

    Raises:
        ApiError: 400 INVALID_ARGUMENT with a google.rpc.BadRequest listing every violation.
    """
    if not isinstance(body, dict):
        raise errors.invalid_argument([("custom_job", "The request body must be a JSON object (a CustomJob).")])
    body = {k: v for k, v in body.items() if k not in OUTPUT_ONLY}
    job, violations = schema.decode(SCHEMA, body, "custom_job", document=DOCUMENT)
    if violations:
        raise errors.invalid_argument(violations, message=violations[0][1])
    v = display_name_violations(job, "custom_job.display_name")
    spec = job.get("jobSpec")
    if not isinstance(spec, dict):
        v.append(("custom_job.job_spec", "job_spec is required."))
        spec = {}
    v += job_spec_violations(spec, "custom_job.job_spec")
    v += label_violations(job.get("labels", {}), "custom_job.labels")
    if v:
        raise errors.invalid_argument(v)
    return job


def job_spec_violations(spec: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """What a CustomJobSpec breaks (a CustomJob's `jobSpec`, a HyperparameterTuningJob's `trialJobSpec`): worker
    pools, their programs, baseOutputDirectory (module docstring). `path` is its proto path
    (`custom_job.job_spec`)."""
    v: list[tuple[str, str]] = []
    pools = spec.get("workerPoolSpecs") or []
    base = f"{path}.worker_pool_specs"
    if not pools:
        v.append((base, "At least one worker pool spec (the primary replica's) is required."))
    elif len(pools) > MAX_POOLS:
        v.append((base, f"At most {MAX_POOLS} worker pools (primary, workers, parameter servers, evaluators); "
                        f"got {len(pools)}."))
    for i, pool in enumerate(pools):
        v += _pool_violations(pool, i, f"{base}[{i}]")
    prefix = (spec.get("baseOutputDirectory") or {}).get("outputUriPrefix")
    if "baseOutputDirectory" in spec and not (prefix and _GCS_PATH_RE.match(prefix)):
        v.append((f"{path}.base_output_directory.output_uri_prefix",
                  f"{prefix!r} is not a Cloud Storage URI (gs://bucket/path)."))
    return v


def _pool_violations(pool: dict[str, Any], i: int, path: str) -> list[tuple[str, str]]:
    v: list[tuple[str, str]] = []
    if not pool:
        if i == 0:
            v.append((path, "The first worker pool holds the primary replica and cannot be empty."))
        return v
    count = int(pool.get("replicaCount") or 0)
    if i == 0 and count not in (0, 1):
        v.append((f"{path}.replica_count", f"The first worker pool holds the primary replica: replica_count must be "
                                           f"1, got {count}."))
    if i > 0 and count < 1:
        v.append((f"{path}.replica_count", "replica_count must be at least 1 in a non-empty worker pool."))
    if not (pool.get("machineSpec") or {}).get("machineType"):
        v.append((f"{path}.machine_spec.machine_type", "machine_type is required."))
    programs = [k for k in ("pythonPackageSpec", "containerSpec") if k in pool]
    if len(programs) != 1:
        v.append((path, "A worker pool runs exactly one of python_package_spec or container_spec; it has "
                        f"{' and '.join(programs) or 'neither'}."))
    package = pool.get("pythonPackageSpec")
    if isinstance(package, dict):
        p = f"{path}.python_package_spec"
        if not package.get("executorImageUri"):
            v.append((f"{p}.executor_image_uri", "executor_image_uri is required."))
        if not package.get("pythonModule"):
            v.append((f"{p}.python_module", "python_module is required."))
        uris = package.get("packageUris", [])
        if not uris:
            v.append((f"{p}.package_uris", "At least one package URI is required."))
        elif len(uris) > MAX_PACKAGE_URIS:
            v.append((f"{p}.package_uris", f"At most {MAX_PACKAGE_URIS} package URIs; got {len(uris)}."))
        v += [(f"{p}.package_uris[{j}]", f"{u!r} is not a Cloud Storage object URI (gs://bucket/object).")
              for j, u in enumerate(uris) if not _GCS_OBJECT_RE.match(u)]
        v += _env_violations(package.get("env", []), f"{p}.env")
    container = pool.get("containerSpec")
    if isinstance(container, dict):
        if not container.get("imageUri"):
            v.append((f"{path}.container_spec.image_uri", "image_uri is required."))
        v += _env_violations(container.get("env", []), f"{path}.container_spec.env")
    return v


def _env_violations(env: list[Any], path: str) -> list[tuple[str, str]]:
    v = [(path, f"At most {MAX_ENV} environment variables; got {len(env)}.")] if len(env) > MAX_ENV else []
    for j, item in enumerate(env):
        name = item.get("name", "") if isinstance(item, dict) else ""
        if not _ENV_NAME_RE.fullmatch(name):
            v.append((f"{path}[{j}].name", f"{name!r} is not a valid environment variable name (a C identifier)."))
    return v


def label_violations(labels: dict[str, str], path: str) -> list[tuple[str, str]]:
    """Vertex's label rules broken by `labels` (at `path`, e.g. `custom_job.labels`)."""
    v = [(path, f"At most 64 labels; got {len(labels)}.")] if len(labels) > 64 else []
    for key, value in labels.items():
        if not (_LABEL_KEY_RE.fullmatch(key) and key == key.lower()):
            v.append((f"{path}[{key!r}]", "Label keys start with a lowercase letter and hold lowercase letters, "
                                          "digits, '_' and '-', at most 64 characters."))
        if not (_LABEL_VALUE_RE.fullmatch(value) and value == value.lower()):
            v.append((f"{path}[{key!r}]", "Label values hold lowercase letters, digits, '_' and '-', at most 64 "
                                          "characters."))
    return v


def display_name_violations(job: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """`displayName`: required, at most 128 characters (`path`: e.g. `custom_job.display_name`)."""
    name = job.get("displayName", "")
    if not name:
        return [(path, "display_name is required.")]
    if len(name) > MAX_DISPLAY_NAME:
        return [(path, f"display_name is {len(name)} characters; at most {MAX_DISPLAY_NAME}.")]
    return []


# -- the resource ----------------------------------------------------------------------------------------------------
def render(rec: JobRecord) -> dict[str, Any]:
    """The CustomJob resource of a stored record."""
    meta = rec.runtime.get("vertex", {})
    job: dict[str, Any] = {"name": meta.get("name"), "displayName": meta.get("displayName"),
                           "jobSpec": rec.job["trainingInput"]}
    if rec.job.get("labels"):
        job["labels"] = rec.job["labels"]
    job.update(meta.get("fields", {}))
    job["state"] = STATES.get(rec.state, "JOB_STATE_UNSPECIFIED")
    job["createTime"] = rec.job["createTime"]
    for field in ("startTime", "endTime"):
        if rec.job.get(field):
            job[field] = rec.job[field]
    job["updateTime"] = rfc3339(rec.state_since)
    message = rec.job.get("errorMessage")
    if rec.state in (FAILED, CANCELLED, CANCELLING) and message:
        if message == USER_CANCEL_MESSAGE:
            message = CANCEL_MESSAGE
        job["error"] = {"code": 1 if rec.state != FAILED else 3, "message": message}
    return job


class VertexJobs:
    """The customJobs methods over a `TrainingService` (its store and scheduler); each raises ApiError.

    `vertex_tuning.VertexTuningJobs` serves hyperparameterTuningJobs with the same methods: the class attributes
    and the `render` / `validate` / `split` hooks say what differs."""

    COLLECTION = "customJobs"
    KIND = "CustomJob"
    API = "vertex"  # the record's runtime["api"]

    def __init__(self, svc: TrainingService):
        self.svc = svc

    # -- what differs per collection ------------------------------------------------------------------
    def name(self, project: str, location: str, job_id: str) -> str:
        """`projects/{p}/locations/{l}/<collection>/{id}`."""
        return f"projects/{project}/locations/{location}/{self.COLLECTION}/{job_id}"

    def render(self, rec: JobRecord) -> dict[str, Any]:
        """The resource of a stored record."""
        return render(rec)

    def validate(self, body: Any) -> dict[str, Any]:
        """The create body checked and normalized, without output-only fields; raises ApiError 400."""
        return validate_create(body)

    def split(self, job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the CustomJobSpec the record runs, extra runtime["vertex"] entries) of a validated body, whose other
        fields stay in it (they go to runtime["vertex"]["fields"])."""
        return job.pop("jobSpec"), {}

    # -- the methods ------------------------------------------------------------------------------------
    def _require(self, project: str, location: str, job_id: str) -> JobRecord:
        rec = self.svc.store.get(store_project(project, location), job_id) if job_id.isdigit() else None
        if rec is None or rec.runtime.get("api") != self.API:
            raise not_found(self.name(project, location, job_id), self.KIND)
        return rec

    def create(self, project: str, location: str, body: Any) -> dict[str, Any]:
        """create: charge the location's create quota (429 beyond it, when configured: customJobs and
        hyperparameterTuningJobs share it), check, store JOB_STATE_QUEUED with a new numeric id, return the
        resource."""
        self.svc.count(f"{self.COLLECTION}.create")
        self.svc.charge_create("aiplatform.googleapis.com", project, location)
        job = self.validate(body)
        key = store_project(project, location)
        spec, extra = self.split(job)
        labels = job.pop("labels", {})
        display_name = job.pop("displayName")
        for _ in range(5):
            job_id = str(10 ** 18 + secrets.randbelow(9 * 10 ** 18))  # 19 digits, as Vertex's ids
            meta = {"name": self.name(project, location, job_id), "displayName": display_name, "project": project,
                    "location": location, "fields": job, **extra}
            try:
                rec = self.svc.store.insert(key, job_id, labels, spec, 0, runtime={"api": self.API, "vertex": meta})
                break
            except AlreadyExists:
                continue
        else:  # pragma: no cover - five random 63-bit collisions
            raise errors.internal(f"could not assign a {self.KIND} id")
        self.svc.scheduler.wake()
        return self.render(rec)

    def get(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """get; 404 for an unknown id or a job of another location."""
        self.svc.count(f"{self.COLLECTION}.get")
        return self.render(self._require(project, location, job_id))

    def list(self, project: str, location: str, page_size: int | None, page_token: str | None,
             filter_text: str | None) -> dict[str, Any]:
        """list: `{"<collection>": [...], "nextPageToken"?}` newest first, or `{}`."""
        self.svc.count(f"{self.COLLECTION}.list")
        size = page_size or DEFAULT_PAGE_SIZE
        if size < 0:
            raise errors.invalid_argument([("page_size", "The page size must not be negative.")])
        size = min(size, MAX_PAGE_SIZE)
        try:
            matches = compile_filter(filter_text)
        except FilterError as exc:
            raise errors.invalid_argument([("filter", f"Invalid filter {filter_text!r}: {exc}")]) from None
        scope = hashlib.sha256(f"{self.COLLECTION}\0{project}\0{location}\0{filter_text or ''}".encode()
                               ).hexdigest()[:12]
        cursor = _decode_token(page_token, scope) if page_token else None
        out: list[dict[str, Any]] = []
        last: JobRecord | None = None
        more = False
        for rec in self.svc.store.iter_project(store_project(project, location), states=_store_states(matches.states),
                                               before=cursor):
            if rec.runtime.get("api") != self.API:
                continue
            job = self.render(rec)
            if not matches(job):
                continue
            if len(out) == size:
                more = True
                break
            out.append(job)
            last = rec
        if not out:
            return {}
        answer: dict[str, Any] = {self.COLLECTION: out}
        if more and last is not None:
            answer["nextPageToken"] = _encode_token(last, scope)
        return answer

    def cancel(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """cancel: `{}`; 404; 400 FAILED_PRECONDITION for a job already in a final state."""
        self.svc.count(f"{self.COLLECTION}.cancel")
        rec = self._require(project, location, job_id)
        name = self.name(project, location, job_id)
        if rec.state in TERMINAL_STATES:
            raise errors.failed_precondition("name", f"Cannot cancel {self.KIND} {name}: it is already in state "
                                                     f"{STATES[rec.state]}.", name)
        try:
            self.svc.scheduler.cancel(rec.project, rec.job_id)
        except ApiError as exc:
            if exc.code == 400:  # it reached a final state meanwhile
                raise errors.failed_precondition("name", f"Cannot cancel {self.KIND} {name}: it is already "
                                                         "finished.", name) from None
            raise
        return {}

    # -- the logs endpoint (our extension) --------------------------------------------------------------
    def find_by_key(self, project: str, key: str) -> JobRecord | None:
        """A CustomJob or HyperparameterTuningJob of `project` (any location) by numeric id, or by the submitter's
        job key (label `submitter-job`); the newest when several match."""
        wanted = encode_key(key)
        for rec in self.svc.store.list_prefix(f"{project}/vertex-"):
            if rec.runtime.get("api") in VERTEX_APIS and (rec.job_id == key or
                                                          rec.job.get("labels", {}).get(JOB_KEY_LABEL) == wanted):
                return rec
        return None

    def read_logs(self, rec: JobRecord, replica: str | None, offset: int) -> tuple[bytes, int]:
        """A replica's combined log from byte `offset` (see `TrainingService.read_logs`). `replica` is a Cloud
        Logging task name (`workerpool1-0`) or a TF_CONFIG-style one (`master-0`, `worker-1`, `ps-0`, `evaluator-0`);
        None is the primary. A HyperparameterTuningJob's trial replica is `trial-<id>/<replica>`
        (`trial-3/workerpool0-0`); its own log (the primary's) notes when each trial starts and ends."""
        plan = VertexProfile(rec, self.svc.config).plan
        trial = _TRIAL_REPLICA_RE.fullmatch(replica or "")
        name = (trial.group(2) if trial else replica) or plan.primary.name
        kind, _, index = name.rpartition("-")
        if kind in _POOL_ALIASES and index.isdigit():
            name = f"workerpool{_POOL_ALIASES[kind]}-{index}"
        resource = rec.runtime.get("vertex", {}).get("name")
        if name not in plan.names():
            raise ApiError(404, "NOT_FOUND", f"Replica {replica!r} does not exist in {resource}; its "
                                             f"replicas are {', '.join(plan.names())}.")
        path = replica_log_path(self.svc.config.data_dir, rec.project, rec.job_id, name)
        if trial is not None:
            path = path.parent / "trials" / trial.group(1) / f"{name}.log"
            if not path.is_file():
                raise ApiError(404, "NOT_FOUND", f"Trial replica {replica!r} has no log in {resource} (not started "
                                                 "yet, or no such trial).")
        try:
            with open(path, "rb") as f:
                f.seek(max(0, offset))
                data = f.read()
        except FileNotFoundError:
            return b"", max(0, offset)
        return data, max(0, offset) + len(data)


def _store_states(api_states: frozenset[str] | None) -> set[str] | None:
    """The stored states whose jobs a filter on `api_states` can match (None: every job is read). States this
    service never shows (JOB_STATE_PAUSED, JOB_STATE_UPDATING) select nothing; JOB_STATE_UNSPECIFIED, which a
    stored state missing from STATES would show, reads every job."""
    if api_states is None or "JOB_STATE_UNSPECIFIED" in api_states:
        return None
    return {stored for stored, shown in STATES.items() if shown in api_states}


def _encode_token(last: JobRecord, scope: str) -> str:
    raw = json.dumps({"s": scope, "t": last.create_time, "q": last.seq})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, scope: str) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = (str(data["t"]), int(data["q"]))
        ok = data["s"] == scope
    except (ValueError, KeyError, TypeError, binascii.Error):
        ok = False
    if not ok:
        raise errors.invalid_argument([("page_token", "The page token is not valid for this request (it must come "
                                                      "from a list call with the same parent and filter).")])
    return cursor


def register(app: Flask, svc: TrainingService, to_json: Any, body: Any, int_arg: Any) -> VertexJobs:
    """Add the customJobs and hyperparameterTuningJobs routes to the service's Flask app; returns the VertexJobs
    serving customJobs (its `find_by_key` / `read_logs` serve both collections' logs).

    to_json, body, int_arg: api.py's response and request helpers (one wire format for both APIs)."""
    from . import vertex_tuning  # late: vertex_tuning builds on this module

    jobs = VertexJobs(svc)
    add_routes(app, jobs, to_json, body, int_arg)
    vertex_tuning.register(app, svc, to_json, body, int_arg)
    return jobs


def add_routes(app: Flask, jobs: VertexJobs, to_json: Any, body: Any, int_arg: Any) -> None:
    """create, list, get and `:cancel` of one collection (`jobs.COLLECTION`) under
    /v1/projects/{p}/locations/{l}/."""
    base = f"/v1/projects/<project>/locations/<location>/{jobs.COLLECTION}"

    def create(project: str, location: str) -> Response:
        return to_json(jobs.create(project, location, body()))

    def list_(project: str, location: str) -> Response:
        return to_json(jobs.list(project, location, int_arg("pageSize"), request.args.get("pageToken") or None,
                                 request.args.get("filter")))

    def get(project: str, location: str, job: str) -> Response:
        if ":" in job:
            raise errors.unimplemented(f"{job.split(':', 1)[1]} is not implemented by the local training service.")
        return to_json(jobs.get(project, location, job))

    def custom_method(project: str, location: str, job: str) -> Response:
        job_id, _, verb = job.partition(":")
        if verb == "cancel":
            body()  # the Cancel*JobRequest is empty, but it must be JSON
            return to_json(jobs.cancel(project, location, job_id))
        if not verb:
            raise ApiError(404, "NOT_FOUND", f"Method not found: POST {request.path}")
        raise errors.unimplemented(f"{verb} is not implemented by the local training service.")

    for rule, view, method in ((base, create, "POST"), (base, list_, "GET"), (base + "/<job>", get, "GET"),
                               (base + "/<job>", custom_method, "POST")):
        app.add_url_rule(rule, endpoint=f"{jobs.COLLECTION}.{view.__name__}", view_func=view, methods=[method])


__all__ = ["VertexJobs", "register", "add_routes", "render", "validate_create", "job_spec_violations",
           "label_violations", "display_name_violations", "store_project", "job_name", "STATES", "VERTEX_APIS"]
