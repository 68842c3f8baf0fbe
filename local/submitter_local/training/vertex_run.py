"""How a Vertex AI CustomJob runs on the local training service: its replicas, commands and environment.

The runner (`runner.JobRun`) does the work as for every job (downloads, one environment cached by dependency set,
one sandboxed process per replica, logs, outcome); this profile says what Vertex AI gives a trainer. Sources:
the aiplatform v1 discovery document bundled with google-api-python-client (`CustomJobSpec`, `WorkerPoolSpec`,
`PythonPackageSpec`, `baseOutputDirectory`), https://cloud.google.com/vertex-ai/docs/training/distributed-training
(worker pools, CLUSTER_SPEC, TF_CONFIG) and https://cloud.google.com/vertex-ai/docs/training/code-requirements
(environment variables).

Replicas: `workerPoolSpecs[0]` is the primary (replicaCount 1), `[1]` workers, `[2]` parameter servers, `[3]`
evaluators; an empty pool (`{}`) has none. Each pool runs `min(replicaCount, max_replicas_per_type)` processes
locally (the primary always one), named as Vertex names their Cloud Logging tasks: `workerpool<pool>-<index>`
(logs `workerpool1-0.log`; errorMessage "The replica workerpool1-0 exited with a non-zero status of 4.").

Command: `python -m <pythonModule> <args...>` of the replica's own pool, as written (Vertex appends nothing; the
submitter's adapter already ends args with `--job-dir <jobDir>`). Every pool's packageUris are installed into the
job's one environment (their union, in pool order).

Environment (besides the local storage settings and the allowlisted base, `replica_env.build`):
    CLUSTER_SPEC  on every replica: {"cluster": {"workerpool0": ["host:port"], "workerpool1": [...], ...
                  "workerpool3": [...]}, "task": {"type": "workerpool<N>", "index": i}, "environment": "cloud",
                  "job": <the CustomJobSpec>}; a pool without replicas is not listed; `task.trial` only for a
                  tuning trial.
    TF_CONFIG     only when more than one replica runs (a distributed job): {"cluster": {"chief": [...],
                  "worker": [...], "ps": [...]}, "task": {"type": "chief" | "worker" | "ps" | "evaluator",
                  "index": i}, "environment": "cloud", "job": <the CustomJobSpec>}; evaluators are never in the
                  cluster.
    AIP_MODEL_DIR, AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR   when jobSpec.baseOutputDirectory is set:
                  `<outputUriPrefix>/model/`, `/checkpoints/`, `/logs/` (a "/" is appended to the prefix when
                  it has none, as the field's description says).
    CLOUD_ML_JOB_ID   the CustomJob's numeric id.
    GOOGLE_CLOUD_PROJECT   the project (local: storage clients need one; not documented by Vertex).
    the pool's pythonPackageSpec.env   [{name, value}], `$(NAME)` expanded from variables defined before it and
                  the service's, `$$(` for a literal `$(`; the service's variables above win over them.
Not set: AIP_TRAINING_DATA_URI and the other dataset variables (only TrainingPipelines with a managed dataset
have them), AIP_TF_PROFILER_PORT, AIP_HTTP_HANDLER_PORT, AIP_TENSORBOARD_* (no profiler, no TensorBoard here).

Images: the executorImageUri names a prebuilt training container (`.../vertex-ai/training/tf-cpu.2-17.py310:latest`)
this service cannot pull. The pool runs on the local runtime instead (Python and the runtime libraries of
`make runtime`), as an ml v1 job's runtimeVersion does; the image's framework, version and Python are read from
its name and noted in the log. For a TensorFlow image the opt-in TensorFlow layer (`--runtime-tensorflow`) is the
one of the newest runtime version at or below the image's TensorFlow (runtime 2.11 -> TensorFlow 2.12.1 for
every TensorFlow 2.11+ image). A `containerSpec` pool cannot run here (`containers.refusal`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import cluster, containers, runtimes
from .config import ServiceConfig
from .profiles import MlV1Profile
from .store import JobRecord
from .study import StudySpec

#: TF_CONFIG task type of each worker pool (distributed-training: "Primary, chief ..."; workers; parameter servers;
#: evaluators).
POOL_TASK_TYPES = ("chief", "worker", "ps", "evaluator")
_IMAGE_RE = re.compile(r"/(?P<framework>tf2?|pytorch|sklearn|scikit-learn|xgboost)-(?P<hardware>cpu|gpu|tpu)"
                       r"\.(?P<major>\d+)-(?P<minor>\d+)(?:\.py(?P<python>\d)(?P<python_minor>\d+))?(?::|@|$)")
_FRAMEWORKS = {"tf": "TensorFlow", "tf2": "TensorFlow", "pytorch": "PyTorch", "sklearn": "scikit-learn",
               "scikit-learn": "scikit-learn", "xgboost": "XGBoost"}


@dataclass(frozen=True)
class PrebuiltImage:
    """What a prebuilt training image's name says: framework ("TensorFlow"), its version ("2.17"), hardware
    ("cpu"), Python ("3.10", or None when the name does not say)."""

    uri: str
    framework: str
    version: str
    hardware: str
    python: str | None


def parse_image(uri: str) -> PrebuiltImage | None:
    """Read a prebuilt training image's name (`us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest`),
    or None when it does not follow the prebuilt containers' naming."""
    m = _IMAGE_RE.search(uri or "")
    if not m:
        return None
    python = f"{m['python']}.{m['python_minor']}" if m["python"] else None
    return PrebuiltImage(uri, _FRAMEWORKS[m["framework"]], f"{m['major']}.{m['minor']}", m["hardware"], python)


def tensorflow_runtime(image: PrebuiltImage | None) -> str | None:
    """The runtime version whose TensorFlow layer stands in for a TensorFlow image: the newest runtime of the table
    at or below the image's TensorFlow version; None for other frameworks."""
    if image is None or image.framework != "TensorFlow":
        return None
    wanted = tuple(int(x) for x in image.version.split("."))
    best: tuple[tuple[int, ...], str] | None = None
    for version in runtimes.table()["runtime_versions"]:
        key = tuple(int(x) for x in version.split("."))
        if key <= wanted and (best is None or key > best[0]):
            best = (key, version)
    return best[1] if best else None


def expand(value: str, defined: dict[str, str]) -> str:
    """Vertex's `$(NAME)` references in an EnvVar value: replaced from `defined`, left as written when unknown;
    `$$(` is a literal `$(` (aiplatform.v1.json GoogleCloudAiplatformV1EnvVar.value)."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$(", i):
            out.append("$(")
            i += 3
            continue
        m = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)").match(value, i)
        if m:
            out.append(defined.get(m.group(1), m.group(0)))
            i = m.end()
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


class VertexProfile(MlV1Profile):
    """A Vertex AI CustomJob stored by `vertex_api` (record: trainingInput = the CustomJobSpec; runtime["vertex"] =
    project, location, resource name)."""

    api = "vertex"
    timeout_field = "scheduling.timeout"

    def __init__(self, rec: JobRecord, config: ServiceConfig):  # noqa: D107 - see the class
        self.project, self.job_id = rec.project, rec.job_id
        self.ti = rec.job["trainingInput"]  # the CustomJobSpec
        self.meta: dict[str, Any] = rec.runtime.get("vertex", {})
        self.pools: list[dict[str, Any]] = [p if isinstance(p, dict) else {} for p in
                                            self.ti.get("workerPoolSpecs", [])]
        self.plan = self._plan(config.max_replicas_per_type)
        self.images = [parse_image(self._package(i).get("executorImageUri", "")) for i in range(len(self.pools))]

    # -- replicas ----------------------------------------------------------------------------------
    def _plan(self, cap: int) -> cluster.ClusterPlan:
        replicas: list[cluster.Replica] = []
        requested: dict[str, int] = {}
        notes: list[str] = []
        for pool, spec in enumerate(self.pools[:4]):
            if not spec:
                continue
            want = 1 if pool == 0 else int(spec.get("replicaCount") or 0)
            run = want if pool == 0 else min(want, cap)
            requested[POOL_TASK_TYPES[pool]] = want
            if run < want:
                notes.append(f"workerPoolSpecs[{pool}] asks for {want} replica(s), {run} run locally "
                             f"(max_replicas_per_type={cap}).")
            replicas.extend(cluster.Replica(POOL_TASK_TYPES[pool], i, pool) for i in range(run))
            accelerator = (spec.get("machineSpec") or {}).get("acceleratorType")
            if accelerator and accelerator != "ACCELERATOR_TYPE_UNSPECIFIED":
                notes.append(f"workerPoolSpecs[{pool}] asks for {accelerator}: no accelerators here, its replicas "
                             "run as plain processes on this machine.")
        return cluster.ClusterPlan(tuple(replicas), requested, tuple(notes))

    def _package(self, pool: int) -> dict[str, Any]:
        spec = self.pools[pool] if pool < len(self.pools) else {}
        package = spec.get("pythonPackageSpec")
        return package if isinstance(package, dict) else {}

    # -- the profile ------------------------------------------------------------------------------
    @property
    def resource_name(self) -> str:
        """`projects/{p}/locations/{l}/customJobs/{id}`."""
        return str(self.meta.get("name") or f"customJobs/{self.job_id}")

    @property
    def runtime_version(self) -> str | None:
        """The runtime whose TensorFlow layer stands in for the primary's image (`tensorflow_runtime`)."""
        return tensorflow_runtime(self.images[0] if self.images else None)

    @property
    def python_version(self) -> str | None:
        """The primary image's Python ("3.10"), when its name says."""
        image = self.images[0] if self.images else None
        return image.python if image else None

    def refusal(self) -> str | None:
        """A pool with a containerSpec: its image cannot be pulled here."""
        images = [(i, (p.get("containerSpec") or {}).get("imageUri", "")) for i, p in enumerate(self.pools)
                  if isinstance(p.get("containerSpec"), dict)]
        if not images:
            return None
        field = f"jobSpec.workerPoolSpecs[{images[0][0]}].containerSpec.imageUri"
        return containers.refusal([uri for _, uri in images], field)

    def runtime_notes(self, rv: runtimes.RuntimeVersion | None, local_python: str, tensorflow: bool) -> list[str]:
        """One line per distinct executor image: what it is and what runs instead; then the TensorFlow layer."""
        libs = ", ".join(f"{k} {v}" for k, v in sorted(runtimes.local_libraries().items())
                         if k in ("numpy", "scipy", "pandas", "scikit-learn", "xgboost"))
        out = []
        for pool, image in enumerate(self.images):
            uri = self._package(pool).get("executorImageUri")
            if not uri or any(self._package(p).get("executorImageUri") == uri for p in range(pool)):
                continue
            what = (f"a prebuilt {image.framework} {image.version} ({image.hardware.upper()}"
                    f"{', Python ' + image.python if image.python else ''}) training image" if image
                    else "not a prebuilt training image name this service recognises")
            out.append(f"executorImageUri {uri} (workerPoolSpecs[{pool}]) is {what}; the local training service "
                       f"cannot pull images, so the pool runs on the local runtime instead: Python {local_python} "
                       f"with {libs} (see docs/local-training.md).")
        if rv is not None and rv.local_tensorflow:
            if tensorflow:
                out.append(f"TensorFlow {rv.local_tensorflow} (the local layer of runtime {rv.version}) stands in for "
                           "the image's TensorFlow.")
            else:
                out.append(f"The image's TensorFlow is not installed (opt-in: start the service with "
                           f"--runtime-tensorflow to get TensorFlow {rv.local_tensorflow}); a package may declare "
                           "tensorflow itself.")
        return out

    def package_uris(self) -> list[str]:
        """Every pool's packageUris, in pool order, each once."""
        uris: list[str] = []
        for pool in range(len(self.pools)):
            uris += [u for u in self._package(pool).get("packageUris", []) if u not in uris]
        return uris

    def max_running_time(self) -> str | None:
        """jobSpec.scheduling.timeout ("The maximum job running time. The default is 7 days.")."""
        value = (self.ti.get("scheduling") or {}).get("timeout")
        return str(value) if value else None

    def command(self, replica: cluster.Replica) -> list[str]:
        """`[pythonModule, *args]` of the replica's pool, as written."""
        package = self._package(replica.pool or 0)
        return [str(package.get("pythonModule", "")), *[str(a) for a in package.get("args", [])]]

    def addressed(self, replica: cluster.Replica) -> bool:
        """Every replica has an address (CLUSTER_SPEC lists evaluators' pool too)."""
        return True

    @property
    def tuning(self) -> bool:
        """A CustomJob runs one cluster; a HyperparameterTuningJob (`VertexTuningProfile`) runs trials."""
        return False

    def trial_command(self, replica: cluster.Replica, trial_args: list[str]) -> list[str]:
        """`[pythonModule, *args, *trial_args]` of the replica's pool: Vertex passes a trial's parameters as
        `--<parameterId>=<value>` after the pool's own args."""
        return [*self.command(replica), *trial_args]

    def cluster_spec(self, replica: cluster.Replica, addresses: dict[str, str],
                     trial: str | None = None) -> dict[str, Any]:
        """CLUSTER_SPEC of one replica (`task.trial` for a tuning trial)."""
        pools: dict[str, list[str]] = {}
        for r in self.plan.replicas:
            pools.setdefault(f"workerpool{r.pool}", []).append(addresses[r.name])
        task: dict[str, Any] = {"type": f"workerpool{replica.pool}", "index": replica.index}
        if trial is not None:
            task["trial"] = trial
        return {"cluster": pools, "task": task, "environment": "cloud", "job": self.ti}

    def tf_config(self, replica: cluster.Replica, addresses: dict[str, str],
                  trial: str | None = None) -> dict[str, Any] | None:
        """TF_CONFIG of one replica (`task.trial` for a tuning trial), or None for a job of one replica."""
        if len(self.plan.replicas) < 2:
            return None
        members: dict[str, list[str]] = {}
        for r in self.plan.replicas:
            if r.type != "evaluator":
                members.setdefault(r.type, []).append(addresses[r.name])
        task: dict[str, Any] = {"type": replica.type, "index": replica.index}
        if trial is not None:
            task["trial"] = trial
        return {"cluster": members, "task": task, "environment": "cloud", "job": self.ti}

    def output_variables(self, trial: str | None = None) -> dict[str, str]:
        """AIP_MODEL_DIR, AIP_CHECKPOINT_DIR, AIP_TENSORBOARD_LOG_DIR from baseOutputDirectory (empty without); a
        tuning trial's are under `<outputUriPrefix>/<trial id>/` ("the baseOutputDirectory of each child CustomJob
        backing a Trial is set to a subdirectory of name id under its parent HyperparameterTuningJob's
        baseOutputDirectory")."""
        prefix = (self.ti.get("baseOutputDirectory") or {}).get("outputUriPrefix")
        if not prefix:
            return {}
        base = prefix if prefix.endswith("/") else prefix + "/"
        if trial is not None:
            base = f"{base}{trial}/"
        return {"AIP_MODEL_DIR": f"{base}model/", "AIP_CHECKPOINT_DIR": f"{base}checkpoints/",
                "AIP_TENSORBOARD_LOG_DIR": f"{base}logs/"}

    def variables(self, replica: cluster.Replica, addresses: dict[str, str],
                  trial: str | None = None) -> dict[str, str]:
        """The pool's own env (expanded), then what Vertex sets (which wins): CLUSTER_SPEC, TF_CONFIG when
        distributed, AIP_* output directories, CLOUD_ML_JOB_ID, GOOGLE_CLOUD_PROJECT; a tuning trial's `trial`
        id goes into CLUSTER_SPEC's and TF_CONFIG's `task.trial` and the AIP_* directories."""
        service = {"CLUSTER_SPEC": json.dumps(self.cluster_spec(replica, addresses, trial)),
                   **self.output_variables(trial), "CLOUD_ML_JOB_ID": self.job_id,
                   "GOOGLE_CLOUD_PROJECT": self.project}
        tf = self.tf_config(replica, addresses, trial)
        if tf is not None:
            service["TF_CONFIG"] = json.dumps(tf)
        own: dict[str, str] = {}
        for item in self._package(replica.pool or 0).get("env", []):
            if isinstance(item, dict) and item.get("name"):
                own[str(item["name"])] = expand(str(item.get("value", "")), {**service, **own})
        return {**own, **service}


class VertexTuningProfile(VertexProfile):
    """A Vertex AI HyperparameterTuningJob stored by `vertex_tuning` (record: trainingInput = the trialJobSpec, a
    CustomJobSpec every trial runs; runtime["vertex"]["study"] = studySpec, maxTrialCount, parallelTrialCount,
    maxFailedTrialCount). Its replicas, packages, images and environment are the trial CustomJob's."""

    api = "vertex_tuning"
    timeout_field = "trialJobSpec.scheduling.timeout"

    @property
    def tuning(self) -> bool:
        """Always: the job runs its trials (`trials.py`)."""
        return True

    def study_spec(self) -> StudySpec:
        """The study (`vertex_tuning.study_spec`). Raises study.StudyError."""
        from .vertex_tuning import study_spec  # late: vertex_tuning imports vertex_api, which imports this module

        return study_spec(self.meta.get("study") or {})

    def max_running_time(self) -> str | None:
        """None: a HyperparameterTuningJob has no running-time limit of its own; trialJobSpec.scheduling.timeout
        limits each trial (`trial_timeout`)."""
        return None

    def trial_timeout(self) -> str | None:
        """trialJobSpec.scheduling.timeout: the limit of each trial's CustomJob."""
        value = (self.ti.get("scheduling") or {}).get("timeout")
        return str(value) if value else None


__all__ = ["VertexProfile", "VertexTuningProfile", "PrebuiltImage", "parse_image", "tensorflow_runtime", "expand",
           "POOL_TASK_TYPES"]
