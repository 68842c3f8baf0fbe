"""Vertex-shaped job specs (pure): a job.yaml that is a Vertex AI CustomJobSpec or CustomJob (issue 12.3).

A job.yaml is one of three shapes, told apart by its top-level keys (`detect`):

- `Job`: anything else (`trainingInput`, ...): the AI Platform Training Job (`gcloud ai-platform jobs submit
  training --config`);
- `CustomJob`: a `jobSpec` key: aiplatform v1 `GoogleCloudAiplatformV1CustomJob` (`displayName`, `labels`,
  `jobSpec`, `encryptionSpec`);
- `CustomJobSpec`: a `workerPoolSpecs` key: aiplatform v1 `GoogleCloudAiplatformV1CustomJobSpec`, the file of
  `gcloud ai custom-jobs create --config`.

The shape is reported as a note. A Vertex-shaped spec is held inside the core as `{"jobId": <key>, "labels": {...},
"customJob": {"displayName"?, "jobSpec": {...}, ...}}` (`to_job`), so the drop protocol, the ledger and the
messages treat it like any job; `is_vertex(job)` tells the two apart.

What the submitter adds (`complete`), never replacing what the file says: the marker label (`submitter: drop`), a
`jobSpec.baseOutputDirectory` in the outputs bucket (the same default as a Job's jobDir: trainers see it as
AIP_MODEL_DIR etc.), the drop's packages as `packageUris` of every `pythonPackageSpec` that names none, and the
policy's cap as `jobSpec.scheduling.timeout` when absent. The Vertex adapter adds `displayName` (the drop folder)
when the file has none, and its `submitter-key` / `submitter-job` labels. The job runs in the deployment's default
region: neither Vertex shape has a region field (gcloud takes it from `--region`).

What is checked (`check`): the CustomJob against `GoogleCloudAiplatformV1CustomJob` of the bundled aiplatform.v1.json
(fields, types, enums, output-only fields) and the rules the schema cannot express (`vertex_translate.validate`:
one primary, a machine type and exactly one program per pool, packages, accelerators, disks, labels), the
deployment policy in Vertex terms (`Policy.check_vertex`), the baseOutputDirectory against the submitter's own
areas, and the reserved labels. Field paths are the CustomJob's (`jobSpec.workerPoolSpecs[0].machineSpec`).

Backends: the Vertex backend submits it as written (`vertex_translate.translate` with the additions above). The ml
v1 backend refuses it with the reason (`REFUSAL_ON_ML_V1`): translating a CustomJob back into an AI Platform Job is
lossy in general (machine types are not mapped back to scale tiers or legacy names, executor images to runtime
versions, pools with different programs to one trainingInput), so it is not attempted.
"""

from __future__ import annotations

import copy
from typing import Any

from .reasons import Reason, Violation

SHAPE_JOB = "Job"
SHAPE_CUSTOM_JOB = "CustomJob"
SHAPE_CUSTOM_JOB_SPEC = "CustomJobSpec"
REFUSAL_ON_ML_V1 = ("this job.yaml is a Vertex AI {shape}, which runs only on the Vertex AI backend "
                    "(SUBMITTER_BACKEND=vertex); this deployment uses AI Platform Training (ml_v1). Write it as an AI "
                    "Platform Job (trainingInput), or submit it to a Vertex deployment. It is not translated back: a "
                    "CustomJob's machine types, executor images and per-pool programs have no lossless AI Platform "
                    "equivalent")


def detect(doc: dict[str, Any]) -> tuple[str, str | None]:
    """The shape of a parsed job.yaml mapping and the key that told it: (SHAPE_*, key or None for a Job)."""
    if "jobSpec" in doc:
        return SHAPE_CUSTOM_JOB, "jobSpec"
    if "workerPoolSpecs" in doc:
        return SHAPE_CUSTOM_JOB_SPEC, "workerPoolSpecs"
    return SHAPE_JOB, None


def to_job(doc: dict[str, Any], shape: str) -> dict[str, Any]:
    """The core's form of a Vertex-shaped document: {"labels"?, "customJob": {...}} (labels lifted out of a
    CustomJob, so the marker and the reserved-label rules apply as to every job)."""
    if shape == SHAPE_CUSTOM_JOB_SPEC:
        return {"customJob": {"jobSpec": dict(doc)}}
    custom_job = {k: v for k, v in doc.items() if k != "labels"}
    return {"labels": doc["labels"], "customJob": custom_job} if "labels" in doc else {"customJob": custom_job}


def is_vertex(job: Any) -> bool:
    """True for a job held in the Vertex form (`to_job`)."""
    return isinstance(job, dict) and isinstance(job.get("customJob"), dict)


def shape_of(job: dict[str, Any]) -> str:
    """SHAPE_CUSTOM_JOB or SHAPE_CUSTOM_JOB_SPEC for a Vertex-form job: a CustomJob file carries more than jobSpec
    (its required displayName); labels do not tell, the submitter adds its own to every job."""
    custom_job = job.get("customJob") or {}
    return SHAPE_CUSTOM_JOB if set(custom_job) - {"jobSpec"} else SHAPE_CUSTOM_JOB_SPEC


def job_spec(job: dict[str, Any]) -> dict[str, Any]:
    """The CustomJobSpec of a Vertex-form job ({} when malformed)."""
    spec = (job.get("customJob") or {}).get("jobSpec")
    return spec if isinstance(spec, dict) else {}


def python_pools(job: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(pool index, pythonPackageSpec) of every pool that runs a Python package."""
    pools = job_spec(job).get("workerPoolSpecs")
    out = []
    for i, pool in enumerate(pools if isinstance(pools, list) else []):
        package = pool.get("pythonPackageSpec") if isinstance(pool, dict) else None
        if isinstance(package, dict):
            out.append((i, package))
    return out


def package_uris(job: dict[str, Any]) -> list[str]:
    """Every pool's packageUris, each once, in pool order."""
    uris: list[str] = []
    for _, package in python_pools(job):
        listed = package.get("packageUris")
        uris += [u for u in (listed if isinstance(listed, list) else []) if isinstance(u, str) and u not in uris]
    return uris


def runs_containers_only(job: dict[str, Any]) -> bool:
    """True when no pool runs a Python package (every pool is a containerSpec): nothing to wait for in a drop."""
    pools = job_spec(job).get("workerPoolSpecs")
    return isinstance(pools, list) and bool(pools) and not python_pools(job)


def output_dir(job: dict[str, Any]) -> str | None:
    """Where the job writes: the `--job-dir` value in the primary pool's args when it passes one, else
    jobSpec.baseOutputDirectory.outputUriPrefix (the reading the Vertex adapter's statuses use), or None."""
    pools = job_spec(job).get("workerPoolSpecs")
    first = pools[0] if isinstance(pools, list) and pools and isinstance(pools[0], dict) else {}
    program = first.get("pythonPackageSpec") or first.get("containerSpec") or {}
    args = program.get("args") if isinstance(program, dict) else None
    if isinstance(args, list):
        for flag, value in zip(args, args[1:]):
            if flag == "--job-dir" and isinstance(value, str):
                return value
    base = job_spec(job).get("baseOutputDirectory")
    prefix = base.get("outputUriPrefix") if isinstance(base, dict) else None
    return prefix if isinstance(prefix, str) else None


def with_package_uris(job: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """A copy of the job with every pool's packageUris replaced through `mapping` (staged copies)."""
    out = copy.deepcopy(job)
    for _, package in python_pools(out):
        if isinstance(package.get("packageUris"), list):
            package["packageUris"] = [mapping.get(u, u) if isinstance(u, str) else u for u in package["packageUris"]]
    return out


def complete(job: dict[str, Any], *, job_id: str, labels: dict[str, str], default_output_dir: str,
             drop_packages: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """Fill what the input and the deployment imply (see the module docstring); returns (new job, notes)."""
    out = copy.deepcopy(job)
    notes: list[str] = []
    out.setdefault("jobId", job_id)
    if out.get("labels") is None or isinstance(out.get("labels"), dict):
        out["labels"] = {**(out.get("labels") or {}), **labels}
    spec = job_spec(out)
    if not spec and not isinstance((out["customJob"]).get("jobSpec"), dict):
        return out, notes  # malformed: the checks report it
    if "baseOutputDirectory" not in spec:
        spec["baseOutputDirectory"] = {"outputUriPrefix": default_output_dir}
        notes.append(f"jobSpec.baseOutputDirectory.outputUriPrefix {default_output_dir} filled (the outputs bucket)")
    for i, package in python_pools(out):
        if "packageUris" not in package and drop_packages:
            package["packageUris"] = list(drop_packages)
            notes.append(f"jobSpec.workerPoolSpecs[{i}].pythonPackageSpec.packageUris filled from the drop's packages")
    return out, notes


def check(job: dict[str, Any], protected_prefixes: tuple[str, ...] = ()) -> list[Violation]:
    """The aiplatform v1 schema and Vertex's rules (`vertex_translate.validate`) over the completed CustomJob, and
    the baseOutputDirectory against the submitter's own areas. A missing displayName is not a violation here: the
    Vertex adapter fills it from the drop folder."""
    from .backends.vertex_translate import validate  # the rules live with the Vertex translation

    custom_job = dict(job.get("customJob") or {})
    custom_job.setdefault("displayName", "drop")
    if "labels" in job:
        custom_job["labels"] = job["labels"]
    out = list(validate(custom_job))
    base = job_spec(job).get("baseOutputDirectory")
    prefix = base.get("outputUriPrefix") if isinstance(base, dict) else None
    if isinstance(prefix, str) and prefix:
        path = prefix.rstrip("/") + "/"
        inside = [p for p in protected_prefixes if path.startswith(p)]
        if inside:
            out.append(Violation("jobSpec.baseOutputDirectory.outputUriPrefix", f"{prefix} is inside {inside[0]}, "
                                 "where training outputs would look like new drops or overwrite the submitter's "
                                 "records; use the outputs bucket (or leave it out to get the default)",
                                 Reason.SPEC_INVALID, prefix))
    return out


__all__ = ["detect", "to_job", "is_vertex", "shape_of", "job_spec", "python_pools", "package_uris", "output_dir",
           "with_package_uris", "complete", "check", "runs_containers_only", "SHAPE_JOB", "SHAPE_CUSTOM_JOB",
           "SHAPE_CUSTOM_JOB_SPEC", "REFUSAL_ON_ML_V1"]
