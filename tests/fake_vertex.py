"""The Vertex AI `projects.locations.customJobs` and `hyperparameterTuningJobs` REST APIs in memory, as an
httplib2-compatible transport.

The real `VertexBackend` adapter (the bundled aiplatform v1 discovery document, request building, regional
endpoints, error classification) talks to it as it talks to Google, like `fakes.FakeMlApi` for ml v1:

- `POST /v1/projects/{p}/locations/{l}/customJobs`: creates a job with a server-assigned numeric id
  (`projects/{p}/locations/{l}/customJobs/{n}`), state JOB_STATE_QUEUED; no client-chosen ids, never 409;
  a body without displayName or workerPoolSpecs, or with output-only fields, answers 400 like Vertex.
- `GET .../customJobs/{n}`: the job, or 404 (also for a job of another location).
- `GET .../customJobs?filter=&pageSize=&pageToken=`: the location's jobs matching the filter (the subset of the
  AIP-160 grammar customJobs.list documents, parsed by the local training service's own
  `submitter_local.training.vertex_filters`; anything else answers 400), paged; `{}` when nothing matches.
- `POST .../customJobs/{n}:cancel`: a running job goes to JOB_STATE_CANCELLING; `{}`.

`projects.locations.hyperparameterTuningJobs` is served the same way (ids from the same counter; its calls are
recorded as "tuning.create", "tuning.get", "tuning.list", "tuning.cancel"); a create without displayName, studySpec,
trialJobSpec.workerPoolSpecs, maxTrialCount or parallelTrialCount answers 400, and `set_trials` scripts the
`trials[]` Vertex reports (`Trial`: id, state, parameters, finalMeasurement, startTime, endTime).

Each request's host is recorded, so tests can prove calls go to the regional endpoint of the job's location.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from urllib.parse import parse_qs, urlparse

import httplib2

from submitter_local.training.vertex_filters import FilterError, compile_filter

from fakes import error_body

TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
            "JOB_STATE_PARTIALLY_SUCCEEDED"}
OUTPUT_ONLY = {"name", "state", "createTime", "startTime", "endTime", "updateTime", "error", "webAccessUris", "trials"}
_BASE = r"/v1/projects/([^/]+)/locations/([^/]+)/(customJobs|hyperparameterTuningJobs)"
TUNING = "hyperparameterTuningJobs"


class FakeVertexApi:
    """customJobs in memory.

    Attributes:
        jobs: resource name -> stored CustomJob.
        calls: (kind, detail) in order: ("create", displayName), ("get", name), ("list", filter), ("cancel", name).
        hosts: the host of every request, in order.
        errors: kind -> (HTTP status, body) answered, first one first, before handling normally.
    """

    def __init__(self, first_id: int = 8_000_000_000_000_000_001):
        self.jobs: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.hosts: list[str] = []
        self.errors: dict[str, list[tuple[int, dict]]] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(first_id)
        self.clock = itertools.count()

    # -- scripting --------------------------------------------------------------------------------
    def fail(self, kind: str, code: int, status: str = "", message: str = "scripted", details=None) -> None:
        """Answer the next `kind` call ("create", "get", "list", "cancel") with an error."""
        self.errors.setdefault(kind, []).append((code, error_body(code, status, message, details)))

    def set_state(self, name: str, state: str | None, **extra) -> None:
        """Move a job (by resource name, or by its numeric id when unique) to `state`, with extra fields."""
        with self.lock:
            job = self.jobs[self._resolve(name)]
            if state is None:
                job.pop("state", None)
            else:
                job["state"] = state
            job.update(extra)

    def set_trials(self, name: str, *trials: dict, state: str | None = None) -> None:
        """Script a HyperparameterTuningJob's `trials[]` (and optionally its state)."""
        with self.lock:
            job = self.jobs[self._resolve(name)]
            job["trials"] = [json.loads(json.dumps(t)) for t in trials]
            if state is not None:
                job["state"] = state

    def only(self) -> dict:
        """The one job (tests that create exactly one)."""
        [job] = self.jobs.values()
        return job

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)

    def _resolve(self, name: str) -> str:
        if name in self.jobs:
            return name
        [full] = [n for n in self.jobs if n.rsplit("/", 1)[-1] == name]
        return full

    # -- httplib2.Http.request --------------------------------------------------------------------
    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        url = urlparse(uri)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        with self.lock:
            self.hosts.append(url.netloc)
            m = re.fullmatch(_BASE, path)
            if m and method == "POST":
                job = json.loads(body)
                return self._answer(_kind(m, "create"), str(job.get("displayName")), lambda: self._create(m, job))
            if m and method == "GET":
                return self._answer(_kind(m, "list"), query.get("filter", ""), lambda: self._list(m, query))
            m = re.fullmatch(_BASE + r"/([^/:]+):cancel", path)
            if m and method == "POST":
                return self._answer(_kind(m, "cancel"), self._name(m), lambda: self._cancel(self._name(m)))
            m = re.fullmatch(_BASE + r"/([^/:]+)", path)
            if m and method == "GET":
                return self._answer(_kind(m, "get"), self._name(m), lambda: self._get(self._name(m)))
        return self._respond(404, error_body(404, "NOT_FOUND", f"no route {method} {path}"))

    @staticmethod
    def _name(m) -> str:
        return f"projects/{m.group(1)}/locations/{m.group(2)}/{m.group(3)}/{m.group(4)}"

    def _answer(self, kind, detail, handler):
        self.calls.append((kind, detail))
        if self.errors.get(kind):
            code, payload = self.errors[kind].pop(0)
            return self._respond(code, payload)
        code, payload = handler()
        return self._respond(code, payload)

    @staticmethod
    def _respond(code, payload):
        resp = httplib2.Response({"status": str(code), "content-type": "application/json"})
        return resp, json.dumps(payload).encode()

    def _create(self, m, job):
        bad = sorted(OUTPUT_ONLY & set(job))
        tuning = m.group(3) == TUNING
        spec = (job.get("trialJobSpec") if tuning else job.get("jobSpec")) or {}
        missing = not job.get("displayName") or not spec.get("workerPoolSpecs") or (tuning and not (
            job.get("studySpec") and job.get("maxTrialCount") and job.get("parallelTrialCount")))
        if bad or missing:
            why = f"output-only fields {bad}" if bad else (
                "displayName, studySpec, trialJobSpec.workerPoolSpecs, maxTrialCount and parallelTrialCount are "
                "required" if tuning else "displayName and jobSpec.workerPoolSpecs are required")
            kind = "HyperparameterTuningJob" if tuning else "CustomJob"
            return 400, error_body(400, "INVALID_ARGUMENT", f"Invalid {kind}: {why}")
        name = f"projects/{m.group(1)}/locations/{m.group(2)}/{m.group(3)}/{next(self.ids)}"
        t = next(self.clock)
        stored = {**json.loads(json.dumps(job)), "name": name, "state": "JOB_STATE_QUEUED",
                  "createTime": f"2024-06-10T12:{t // 60 % 60:02d}:{t % 60:02d}.000000Z",
                  "updateTime": f"2024-06-10T12:{t // 60 % 60:02d}:{t % 60:02d}.000000Z"}
        self.jobs[name] = stored
        return 200, stored

    def _get(self, name):
        if name not in self.jobs:
            return 404, error_body(404, "NOT_FOUND", f"The job does not exist: {name}")
        return 200, self.jobs[name]

    def _cancel(self, name):
        if name not in self.jobs:
            return 404, error_body(404, "NOT_FOUND", f"The job does not exist: {name}")
        if self.jobs[name].get("state") not in TERMINAL:
            self.jobs[name]["state"] = "JOB_STATE_CANCELLING"
        return 200, {}

    def _list(self, m, query):
        parent = f"projects/{m.group(1)}/locations/{m.group(2)}/{m.group(3)}/"
        try:
            matches = compile_filter(query.get("filter", ""))
        except FilterError as exc:
            return 400, error_body(400, "INVALID_ARGUMENT", f"Invalid filter: {exc}")
        found = [j for n, j in self.jobs.items() if n.startswith(parent) and matches(j)]
        start = int(query.get("pageToken") or 0)
        size = int(query.get("pageSize") or 100)
        page = found[start:start + size]
        if not page:
            return 200, {}
        answer = {m.group(3): page}
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return 200, answer


def _kind(m, verb: str) -> str:
    """The call's kind as `calls` records it: "create" for customJobs, "tuning.create" for hyperparameterTuningJobs."""
    return f"tuning.{verb}" if m.group(3) == TUNING else verb
