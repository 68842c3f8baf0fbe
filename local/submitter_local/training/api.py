"""HTTP routes: the ml v1 `projects.jobs` paths of the discovery document, plus our logs and
health endpoints. Every error, including unknown paths and bad JSON, is a Google JSON error.

    POST  /v1/projects/{project}/jobs                     jobs.create
    GET   /v1/projects/{project}/jobs                     jobs.list  (pageSize, pageToken, filter)
    GET   /v1/projects/{project}/jobs/{jobId}             jobs.get
    PATCH /v1/projects/{project}/jobs/{jobId}             jobs.patch (updateMask=labels[,etag])
    POST  /v1/projects/{project}/jobs/{jobId}:cancel      jobs.cancel
    GET   /local/v1/projects/{project}/jobs/{jobId}/logs  text/plain, ?replica=worker-1&offset=N
                                                          (default: the primary, master-0);
                                                          header X-Next-Offset
    GET   /local/v1/changes?after=N&timeout=S              {"changes": M} once M > N (jobs created plus
                                                          visible changes), or after S seconds (at most 30);
                                                          without `after`, at once (the local scheduler's cue)
    GET   /local/v1/health                                {"status": "ok"}

plus the Vertex AI customJobs and hyperparameterTuningJobs subsets (`vertex_api.py`, `vertex_tuning.py`: create,
get, list, cancel under /v1/projects/{p}/locations/{l}/customJobs and .../hyperparameterTuningJobs); the logs
endpoint also serves them, by numeric id or by the submitter's job key (label `submitter-job`).

Query parameters the client libraries add (`alt=json`, `$.xgafv`, `prettyPrint`) are ignored.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import errors, vertex_api
from .errors import ApiError

if TYPE_CHECKING:
    from .service import TrainingService

log = logging.getLogger(__name__)

CHANGES_MAX_WAIT_S = 30.0  # the longest a /local/v1/changes long poll holds a server thread

_STATUS_BY_HTTP = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   405: "UNIMPLEMENTED", 409: "ABORTED", 411: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT",
                   415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
                   503: "UNAVAILABLE"}


def _json(body: Any, code: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")) + "\n", status=code,
                    mimetype="application/json", headers={"Cache-Control": "private"})


def _error(err: ApiError) -> Response:
    return _json(err.to_json(), err.code)


def _body() -> Any:
    """The request JSON; an empty body is `{}`; unparsable JSON is 400 as Google answers it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as e:
        raise errors.invalid_argument([("", f"Invalid JSON payload received. {e}")],
                                      message=f"Invalid JSON payload received. {e}") from None


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.invalid_argument([(name, f"Invalid value for {name}: {raw!r} is not an integer.")]) from None


def create_app(svc: TrainingService) -> Flask:
    """The Flask app serving `svc`'s API methods."""
    app = Flask("submitter_local.training")

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return _error(err)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 404:
            msg = f"Method not found: {request.method} {request.path}"
        elif code == 405:
            code, msg = 404, f"Method not found: {request.method} {request.path}"
        else:
            msg = exc.description or exc.name
        status = _STATUS_BY_HTTP.get(code, "UNKNOWN")
        details = [errors.bad_request_detail([("", msg)])] if code == 400 else []
        return _error(ApiError(code, status, msg, details))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(errors.internal(f"Internal error in the local training service: {exc!r}"))

    @app.post("/v1/projects/<project>/jobs")
    def create(project: str) -> Response:
        return _json(svc.create_job(project, _body()))

    @app.get("/v1/projects/<project>/jobs")
    def list_jobs(project: str) -> Response:
        return _json(svc.list_jobs(project, _int_arg("pageSize"), request.args.get("pageToken") or None,
                                   request.args.get("filter")))

    @app.get("/v1/projects/<project>/jobs/<job>")
    def get(project: str, job: str) -> Response:
        if ":" in job:  # getIamPolicy and friends
            raise errors.unimplemented(f"{job.split(':', 1)[1]} is not implemented by the local training service.")
        return _json(svc.get_job(project, job))

    @app.patch("/v1/projects/<project>/jobs/<job>")
    def patch(project: str, job: str) -> Response:
        return _json(svc.patch_job(project, job, _body(), request.args.get("updateMask")))

    @app.post("/v1/projects/<project>/jobs/<job>")
    def custom_method(project: str, job: str) -> Response:
        job_id, _, verb = job.partition(":")
        if verb == "cancel":
            _body()  # CancelJobRequest is empty, but it must be JSON
            return _json(svc.cancel_job(project, job_id))
        if not verb:
            raise ApiError(404, "NOT_FOUND", f"Method not found: POST {request.path}")
        raise errors.unimplemented(f"{verb} is not implemented by the local training service.")

    vertex = vertex_api.register(app, svc, _json, _body, _int_arg)

    @app.get("/local/v1/projects/<project>/jobs/<job>/logs")
    def logs(project: str, job: str) -> Response:
        replica, offset = request.args.get("replica") or None, _int_arg("offset") or 0
        custom_job = vertex.find_by_key(project, job) if svc.store.get(project, job) is None else None
        if custom_job is not None:
            data, nxt = vertex.read_logs(custom_job, replica, offset)
        else:
            data, nxt = svc.read_logs(project, job, replica, offset)
        return Response(data, mimetype="text/plain", headers={"X-Next-Offset": str(nxt)})

    @app.get("/local/v1/changes")
    def changes() -> Response:
        # Not part of Google's API: lets the local scheduler call `reconcile` as soon as a job changed (the cloud
        # design's counterpart is a trigger on the training service's state-change logs), instead of only on its
        # period. The reconciler still publishes only what it reads from the API.
        raw = request.args.get("timeout") or "0"
        try:
            timeout = max(0.0, min(float(raw), CHANGES_MAX_WAIT_S))
        except ValueError:
            raise errors.invalid_argument([("timeout", f"Invalid value for timeout: {raw!r} is not a number of "
                                                       "seconds.")]) from None
        after = _int_arg("after")
        return _json({"changes": svc.store.wait_for_change(after, timeout)})

    @app.get("/local/v1/health")
    def health() -> Response:
        return _json({"status": "ok", **svc.stats()})

    return app
