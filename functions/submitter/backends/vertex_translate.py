"""An AI Platform Training Job -> a Vertex AI CustomJob, and the checks of the result (pure: no I/O, no clock).

`translate(job, key=..., display_name=...)` takes the completed, validated AI Platform Job (`validation.check`:
jobId, labels with `submitter: drop`, trainingInput with region, runtimeVersion, pythonVersion, jobDir,
scaleTier, packageUris and scheduling.maxRunningTime filled) and returns a `Translation`: the CustomJob body
of `projects.locations.customJobs.create`, its region, warnings (what changed meaning on the way) and
violations (what cannot run on Vertex, or what the result breaks). Every violation names the AI Platform field
the user wrote (`trainingInput.masterType`), and the Vertex field in its message.

The rules (the README's "Vertex AI backend" section repeats them; the tables are in `vertex_tables.py`),
AI Platform field -> Vertex AI CustomJob field:

- the drop folder (JobRequest.display_name) -> displayName (cut to 128 characters with a hash, warned);
- labels -> labels, plus `submitter-key` (the job key's hash, for lookups) and `submitter-job` (the key itself,
  "-x" for each capital X, when it fits a label value);
- region -> the job's location (projects/P/locations/REGION);
- master*, worker*, parameterServer*, evaluator* -> workerPoolSpecs[0], [1], [2], [3] (`{}` for an absent
  middle pool); scaleTier BASIC, BASIC_GPU, STANDARD_1, PREMIUM_1 -> the tier's replicas on the table's
  machines (SCALE_TIERS);
- legacy machine names -> Compute Engine machine types and GPUs (LEGACY_MACHINES; K80 -> T4, warned);
- cloud_tpu workers, BASIC_TPU -> one pool: cloud-tpu with TPU_V2/TPU_V3 x 8 (or a Pod slice), replicaCount 1;
- acceleratorConfig {type, count} -> machineSpec.acceleratorType / acceleratorCount (K80 -> T4, warned);
- diskConfig -> diskSpec (a boot disk under 100 GB becomes 100 GB, warned);
- runtimeVersion + pythonVersion -> pythonPackageSpec.executorImageUri, a prebuilt TensorFlow image for the
  pool's hardware (CPU, GPU or TPU; pick_training_image; a changed version is warned);
- packageUris, pythonModule, args -> pythonPackageSpec.packageUris, pythonModule, args (every pool);
- a replica's imageUri, containerCommand, containerArgs -> containerSpec.imageUri, command, args (workers,
  parameter servers and evaluators inherit masterConfig.imageUri, as on AI Platform);
- jobDir -> baseOutputDirectory.outputUriPrefix, and `--job-dir <jobDir>` appended to every pool's args unless
  they hold it (AI Platform passed it; Vertex does not);
- scheduling.maxRunningTime -> scheduling.timeout; maxWaitTime -> scheduling.maxWaitDuration (warned: Vertex
  applies it only to FLEX_START scheduling); priority -> nothing (warned);
- serviceAccount (else the deployment's training account) -> jobSpec.serviceAccount; network, enableWebAccess ->
  jobSpec.network, jobSpec.enableWebAccess; encryptionConfig.kmsKeyName -> encryptionSpec.kmsKeyName;
- useChiefInTfConfig, tpuTfVersion, etag, predictionInput -> nothing (warned);
- hyperparameters -> not a CustomJob: a tuning spec becomes a HyperparameterTuningJob (`vertex_tuning.py`), whose
  trialJobSpec is this translation's jobSpec; `translate` hands such a job to `vertex_tuning.translate`;
- jobId -> nothing: Vertex assigns the id; the key travels in the labels.

A Vertex-shaped spec (a CustomJobSpec or CustomJob job.yaml, `vertex_spec.py`) is not translated: it is submitted
as written, with displayName (the drop folder) when it has none, the submitter's labels, and the deployment's
service account when it names none (`_Translator.as_written`); `validate` checks it the same way.

Rejected (violations): a TPU job with parameter servers or evaluators, with more than one TPU
worker, with TPU_V4_POD, or with a Pod count that is not a multiple of 32; the reserved labels; more labels than
Vertex allows; and every finding of `validate` (below).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from typing import Any

from .. import naming, rules, vertex_spec
from ..reasons import Reason, Violation
from ..schema import check_custom_job
from . import vertex_tables as tables

KEY_LABEL = "submitter-key"
JOB_LABEL = "submitter-job"
JOB_DIR_FLAG = "--job-dir"

_ROLES = (  # (pool index, role, type field, count field, config field)
    (0, "master", "masterType", None, "masterConfig"),
    (1, "worker", "workerType", "workerCount", "workerConfig"),
    (2, "parameter server", "parameterServerType", "parameterServerCount", "parameterServerConfig"),
    (3, "evaluator", "evaluatorType", "evaluatorCount", "evaluatorConfig"),
)


@dataclasses.dataclass(frozen=True)
class Options:
    """What the deployment adds to every translation.

    Attributes:
        default_region: the region of a job whose spec has none (validation fills it; kept as a fallback).
        service_account: the account jobs run as when a spec names none (SUBMITTER_TRAINING_SERVICE_ACCOUNT),
            or None for Vertex's default (the Vertex AI Custom Code Service Agent).
    """

    default_region: str = "us-central1"
    service_account: str | None = None


@dataclasses.dataclass
class Translation:
    """A translated job.

    Attributes:
        custom_job: the body to create: the CustomJob, e.g. {"displayName": "incoming/run-001", "labels": {...},
            "jobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
            "pythonPackageSpec": {"executorImageUri": "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest",
            "packageUris": [...], "pythonModule": "trainer.task", "args": [..., "--job-dir", "gs://..."]}}],
            "baseOutputDirectory": {"outputUriPrefix": "gs://..."}, "scheduling": {"timeout": "172800s"}}}; for a
            tuning spec the HyperparameterTuningJob (`vertex_tuning.py`).
        region: the job's location, e.g. "us-central1".
        warnings: what changed meaning (published with SUBMITTED).
        violations: what cannot be submitted, each naming the AI Platform field (REJECTED).
        origins: Vertex field path -> the AI Platform field it came from.
        collection: the Vertex collection the body is created in: "customJobs" or "hyperparameterTuningJobs".
    """

    custom_job: dict[str, Any]
    region: str
    warnings: list[str]
    violations: list[Violation]
    origins: dict[str, str]
    collection: str = "customJobs"


def translate(job: dict[str, Any], *, key: str, display_name: str, options: Options = Options()) -> Translation:
    """Translate a completed AI Platform Job into a CustomJob and check the result (`validate`).

    Args:
        job: the completed Job ({"jobId", "labels", "trainingInput": {...}}); malformed parts are skipped (the
            ml v1 checks report them), never raised on.
        key: the submitter's job key (labels `submitter-key` / `submitter-job`).
        display_name: the CustomJob's displayName (the drop folder).
        options: the deployment's additions.
    Returns:
        The Translation; `violations` holds the translation's refusals and `validate`'s findings. A job with
        `trainingInput.hyperparameters` is translated by `vertex_tuning.translate` into a HyperparameterTuningJob.
    """
    if vertex_spec.is_vertex(job):
        return _Translator(options).as_written(job, key, display_name)
    job = job if isinstance(job, dict) else {}
    if _dict(job.get("trainingInput")).get("hyperparameters") is not None:
        from .vertex_tuning import translate as translate_tuning

        return translate_tuning(job, key=key, display_name=display_name, options=options)
    return translate_custom_job(job, key=key, display_name=display_name, options=options)


def translate_custom_job(job: dict[str, Any], *, key: str, display_name: str, options: Options = Options()
                         ) -> Translation:
    """`translate` into a CustomJob, whatever the job holds (`hyperparameters` is not looked at: the tuning
    translation builds its trials' CustomJob spec with it)."""
    return _Translator(options).run(job if isinstance(job, dict) else {}, key, display_name)


def check(job: dict[str, Any], *, key: str, display_name: str, options: Options = Options()
          ) -> tuple[list[Violation], list[str]]:
    """`translate` without the CustomJob: (violations, warnings)."""
    t = translate(job, key=key, display_name=display_name, options=options)
    return t.violations, t.warnings


# -- labels ------------------------------------------------------------------------------------------------------
def encode_key(key: str) -> str | None:
    """The job key as a label value ("Run_A_1" -> "-run_-a_1": "-" + lowercase for each capital; jobIds hold no
    "-"), or None when it does not fit a label value (63 characters, the stricter of GCP's and Vertex's limits)."""
    encoded = "".join(f"-{c.lower()}" if "A" <= c <= "Z" else c for c in key)
    return encoded if re.fullmatch(r"[a-z0-9_-]{1,63}", encoded) else None


def decode_key(value: str) -> str:
    """The inverse of `encode_key`."""
    return re.sub(r"-([a-z])", lambda m: m.group(1).upper(), value)


def display_name_for(name: str) -> tuple[str, str | None]:
    """A displayName for `name` (at most 128 characters: cut, with a short hash so cut names stay distinct), and
    a warning when it was cut."""
    name = name or "drop"
    if len(name) <= tables.MAX_DISPLAY_NAME:
        return name, None
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    short = name[: tables.MAX_DISPLAY_NAME - 9] + "~" + digest
    return short, (f"the CustomJob's displayName is {short!r}: Vertex allows 128 characters, the drop name has "
                   f"{len(name)}")


# -- the translator ------------------------------------------------------------------------------------------------
class _Translator:
    def __init__(self, options: Options):
        self.options = options
        self.warnings: list[str] = []
        self.violations: list[Violation] = []
        self.origins: dict[str, str] = {}

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def bad(self, field: str, message: str, value: Any = None, reason: Reason = Reason.SPEC_INVALID) -> None:
        self.violations.append(Violation(field, message, reason, value))

    def origin(self, vertex_path: str, ai_path: str) -> None:
        self.origins.setdefault(vertex_path, ai_path)

    def run(self, job: dict[str, Any], key: str, display_name: str) -> Translation:
        ti = _dict(job.get("trainingInput"))
        region = ti.get("region") if isinstance(ti.get("region"), str) else None
        if not region or not naming.REGION_RE.fullmatch(region):
            region = self.options.default_region
        name, cut = display_name_for(display_name or key)
        if cut:
            self.warn(cut)
        custom_job: dict[str, Any] = {"displayName": name, "labels": self.labels(job.get("labels"), key)}
        self.origin("displayName", "jobId")
        self.origin("labels", "labels")
        self.unsupported(job, ti)
        spec: dict[str, Any] = {"workerPoolSpecs": self.pools(ti, region)}
        self.origin("jobSpec.workerPoolSpecs", "trainingInput.scaleTier")
        job_dir = ti.get("jobDir")
        if isinstance(job_dir, str) and job_dir:
            spec["baseOutputDirectory"] = {"outputUriPrefix": job_dir}
            self.origin("jobSpec.baseOutputDirectory", "trainingInput.jobDir")
        scheduling = self.scheduling(_dict(ti.get("scheduling")))
        if scheduling:
            spec["scheduling"] = scheduling
        account = ti.get("serviceAccount")
        if isinstance(account, str) and account:
            spec["serviceAccount"] = account
            self.origin("jobSpec.serviceAccount", "trainingInput.serviceAccount")
        elif self.options.service_account:
            spec["serviceAccount"] = self.options.service_account
        for field, target in (("network", "network"), ("enableWebAccess", "enableWebAccess")):
            if ti.get(field) is not None:
                spec[target] = ti[field]
                self.origin(f"jobSpec.{target}", f"trainingInput.{field}")
        custom_job["jobSpec"] = spec
        kms = _dict(ti.get("encryptionConfig")).get("kmsKeyName")
        if kms is not None:
            custom_job["encryptionSpec"] = {"kmsKeyName": kms}
            self.origin("encryptionSpec", "trainingInput.encryptionConfig")
        self.violations += validate(custom_job, self.origins)
        return Translation(custom_job, region, self.warnings, _unique(self.violations), self.origins)

    def as_written(self, job: dict[str, Any], key: str, display_name: str) -> Translation:
        """A Vertex-shaped spec as the CustomJob body, with the submitter's additions, checked by `validate`."""
        custom_job = copy.deepcopy(job["customJob"])
        if not isinstance(custom_job.get("displayName"), str) or not custom_job["displayName"]:
            name, cut = display_name_for(display_name or key)
            if cut:
                self.warn(cut)
            custom_job["displayName"] = name
        custom_job["labels"] = self.labels(job.get("labels"), key)
        spec = custom_job.get("jobSpec")
        if isinstance(spec, dict) and not spec.get("serviceAccount") and self.options.service_account:
            spec["serviceAccount"] = self.options.service_account
        self.violations += validate(custom_job)
        return Translation(custom_job, self.options.default_region, self.warnings, _unique(self.violations), {})

    # labels, and fields without a Vertex equivalent
    def labels(self, labels: Any, key: str) -> dict[str, str]:
        out = {k: v for k, v in _dict(labels).items() if isinstance(k, str) and isinstance(v, str)}
        for reserved in (KEY_LABEL, JOB_LABEL):
            if reserved in out:
                self.bad(f"labels.{reserved}", f"label {reserved!r} is reserved on the Vertex backend: the "
                         "submitter sets it to find the job again; use another key", out[reserved],
                         Reason.INVALID_LABELS)
        out[KEY_LABEL] = naming.key_label_value(key)
        encoded = encode_key(key)
        if encoded is not None:
            out[JOB_LABEL] = encoded
        return out

    def unsupported(self, job: dict[str, Any], ti: dict[str, Any]) -> None:
        if ti.get("useChiefInTfConfig") is not None:
            self.warn("trainingInput.useChiefInTfConfig has no Vertex equivalent and is ignored: Vertex names the "
                      "primary replica in TF_CONFIG itself ('chief' in its documentation's example)")
        for field, why in (("etag", "it only matters to jobs.patch on AI Platform"),
                           ("predictionInput", "a training job carries no prediction input")):
            if job.get(field) is not None:
                self.warn(f"{field} is ignored on the Vertex backend: {why}")

    def scheduling(self, scheduling: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        base = "trainingInput.scheduling"
        if scheduling.get("maxRunningTime") is not None:
            out["timeout"] = scheduling["maxRunningTime"]
            self.origin("jobSpec.scheduling.timeout", f"{base}.maxRunningTime")
        if scheduling.get("maxWaitTime") is not None:
            out["maxWaitDuration"] = scheduling["maxWaitTime"]
            self.origin("jobSpec.scheduling.maxWaitDuration", f"{base}.maxWaitTime")
            self.warn(f"{base}.maxWaitTime became Vertex's scheduling.maxWaitDuration, which Vertex applies only "
                      "to jobs scheduled with the FLEX_START strategy: this job is not cancelled for waiting")
        if scheduling.get("priority") is not None:
            self.warn(f"{base}.priority has no Vertex equivalent and is ignored")
        return out

    # worker pools
    def pools(self, ti: dict[str, Any], region: str) -> list[dict[str, Any]]:
        tier = rules.scale_tier(ti)
        roles = self.roles(ti, tier)
        if tier == "BASIC_TPU" or any(machine == rules.TPU_MACHINE for _, machine, _, _ in roles.values()):
            return self.tpu_pool(ti, tier, roles, region)
        if len(roles) > 1 and 0 in roles:
            self.warn("Vertex names the primary replica 'chief' in TF_CONFIG (AI Platform named it 'master' for "
                      "runtime-version jobs); tf.distribute strategies accept both, code that reads TF_CONFIG's "
                      "task type itself may not")
        pools: list[dict[str, Any]] = []
        for index in sorted(roles):
            while len(pools) < index:
                pools.append({})  # Vertex: "all worker pools except the first one ... can be skipped by an empty value"
            pools.append(self.pool(ti, index, *roles[index], region))
        return pools

    def roles(self, ti: dict[str, Any], tier: str) -> dict[int, tuple[str, Any, int, str]]:
        """Pool index -> (role, machine name, replicas, where the machine came from), for the pools that exist."""
        out: dict[int, tuple[str, Any, int, str]] = {}
        if tier == "CUSTOM":
            for index, role, type_field, count_field, _ in _ROLES:
                count = 1 if count_field is None else (_int(ti.get(count_field)) or 0)
                if count > 0:
                    out[index] = (role, ti.get(type_field), count, f"trainingInput.{type_field}")
            return out
        if tier == "BASIC_TPU":
            return {0: ("master", "standard", 1, "trainingInput.scaleTier"),
                    1: ("worker", rules.TPU_MACHINE, 1, "trainingInput.scaleTier")}
        preset = tables.SCALE_TIERS.get(tier, tables.SCALE_TIERS["BASIC"])
        for index, (machine, count) in enumerate(preset):
            out[index] = (_ROLES[index][1], machine, count, "trainingInput.scaleTier")
        if tier in tables.UNDOCUMENTED_TIER_MACHINES:
            self.warn(f"scaleTier {tier} runs as 1 primary, {preset[1][1]} workers and {preset[2][1]} parameter "
                      f"servers on {tables.LEGACY_MACHINES['standard'].machine_type} machines (AI Platform did not "
                      "document the tier's machine types); set scaleTier: CUSTOM to choose them")
        return out

    def pool(self, ti: dict[str, Any], index: int, role: str, machine: Any, count: int, machine_field: str,
             region: str) -> dict[str, Any]:
        config_field = _ROLES[index][4]
        config = _dict(ti.get(config_field))
        path = f"jobSpec.workerPoolSpecs[{index}]"
        self.origin(f"{path}.replicaCount", "trainingInput.scaleTier" if machine_field == "trainingInput.scaleTier"
                    else f"trainingInput.{_ROLES[index][3] or 'masterType'}")
        pool: dict[str, Any] = {"machineSpec": self.machine_spec(machine, config, machine_field,
                                                                 f"trainingInput.{config_field}", path)}
        pool["replicaCount"] = 1 if index == 0 else count
        disk = self.disk_spec(_dict(config.get("diskConfig")), f"trainingInput.{config_field}.diskConfig")
        if disk:
            pool["diskSpec"] = disk
            self.origin(f"{path}.diskSpec", f"trainingInput.{config_field}.diskConfig")
        kind: tables.ImageKind = "gpu" if pool["machineSpec"].get("acceleratorType") else "cpu"
        pool.update(self.program(ti, config, config_field, path, kind, region))
        return pool

    def machine_spec(self, machine: Any, config: dict[str, Any], machine_field: str, config_path: str,
                     path: str) -> dict[str, Any]:
        self.origin(f"{path}.machineSpec", machine_field)
        if not isinstance(machine, str) or not machine:
            return {}
        spec: dict[str, Any] = {}
        legacy = tables.LEGACY_MACHINES.get(machine)
        if legacy is not None:
            spec["machineType"] = legacy.machine_type
            what = f"{machine_field} {machine}" if machine_field != "trainingInput.scaleTier" else \
                f"the scale tier's {machine} machine"
            gpus = f" with {legacy.accelerator_count} {legacy.accelerator_type}" if legacy.accelerator_type else ""
            self.warn(f"{what} ({legacy.meant}) runs as {legacy.machine_type}{gpus} on Vertex, which has no "
                      "legacy machine types")
            if legacy.accelerator_type:
                spec["acceleratorType"] = legacy.accelerator_type
                spec["acceleratorCount"] = legacy.accelerator_count
                if machine in tables.K80_LEGACY:
                    self.warn(f"{what} meant NVIDIA K80 GPUs, which Compute Engine has retired: the job gets "
                              f"{legacy.accelerator_count} {tables.K80_REPLACEMENT} instead")
        else:
            spec["machineType"] = machine
        acc = _dict(config.get("acceleratorConfig"))
        if acc:
            self.origin(f"{path}.machineSpec.acceleratorType", f"{config_path}.acceleratorConfig.type")
            self.origin(f"{path}.machineSpec.acceleratorCount", f"{config_path}.acceleratorConfig.count")
            kind, count = acc.get("type"), _int(acc.get("count"))
            if kind is not None:
                spec["acceleratorType"] = kind
            if count is not None:
                spec["acceleratorCount"] = count
            if kind == tables.K80:
                spec["acceleratorType"] = tables.K80_REPLACEMENT
                if count is not None and count > 4:
                    spec["acceleratorCount"] = 4
                self.warn(f"{config_path}.acceleratorConfig.type {tables.K80} is retired by Compute Engine: the job "
                          f"gets {spec.get('acceleratorCount', count)} {tables.K80_REPLACEMENT} instead")
        if spec.get("acceleratorType") == tables.P100:
            self.warn(f"NVIDIA_TESLA_P100 GPUs reached end of support on {tables.P100_END_OF_SUPPORT.isoformat()} "
                      f"({tables.COMPUTE_SOURCE}); Vertex may refuse or stop offering them: prefer NVIDIA_TESLA_T4 "
                      "or NVIDIA_TESLA_V100")
        return spec

    def disk_spec(self, disk: dict[str, Any], disk_path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if disk.get("bootDiskType") is not None:
            out["bootDiskType"] = disk["bootDiskType"]
        size = _int(disk.get("bootDiskSizeGb"))
        if size is not None:
            if size < tables.MIN_BOOT_DISK_GB:
                self.warn(f"{disk_path}.bootDiskSizeGb {size} became {tables.MIN_BOOT_DISK_GB}: Vertex boot disks are "
                          f"{tables.MIN_BOOT_DISK_GB} to {tables.MAX_BOOT_DISK_GB} GB")
                size = tables.MIN_BOOT_DISK_GB
            out["bootDiskSizeGb"] = size
        return out

    def program(self, ti: dict[str, Any], config: dict[str, Any], config_field: str, path: str,
                kind: tables.ImageKind, region: str) -> dict[str, Any]:
        """containerSpec for a replica with an image (its own, else the master's), else pythonPackageSpec."""
        master = _dict(ti.get("masterConfig"))
        image = config.get("imageUri") or master.get("imageUri")
        job_dir = ti.get("jobDir") if isinstance(ti.get("jobDir"), str) else None
        if image:
            source = config if config.get("imageUri") else master
            source_field = config_field if config.get("imageUri") else "masterConfig"
            container: dict[str, Any] = {"imageUri": image}
            self.origin(f"{path}.containerSpec", f"trainingInput.{source_field}.imageUri")
            if source.get("containerCommand") is not None:
                container["command"] = source["containerCommand"]
                self.origin(f"{path}.containerSpec.command", f"trainingInput.{source_field}.containerCommand")
            if source.get("containerArgs") is not None:
                args = source["containerArgs"]
                self.origin(f"{path}.containerSpec.args", f"trainingInput.{source_field}.containerArgs")
            else:
                args = ti.get("args")
                self.origin(f"{path}.containerSpec.args", "trainingInput.args")
            container["args"] = _with_job_dir(args, job_dir)
            if config.get("tpuTfVersion") is not None:
                self.warn(f"trainingInput.{config_field}.tpuTfVersion is ignored: a Vertex TPU VM runs the "
                          "TensorFlow of its image")
            return {"containerSpec": container}
        package: dict[str, Any] = {"executorImageUri": self.executor_image(ti, kind, region)}
        self.origin(f"{path}.pythonPackageSpec.executorImageUri", "trainingInput.runtimeVersion")
        for field in ("packageUris", "pythonModule"):
            if ti.get(field) is not None:
                package[field] = ti[field]
            self.origin(f"{path}.pythonPackageSpec.{field}", f"trainingInput.{field}")
        package["args"] = _with_job_dir(ti.get("args"), job_dir)
        self.origin(f"{path}.pythonPackageSpec.args", "trainingInput.args")
        return {"pythonPackageSpec": package}

    def executor_image(self, ti: dict[str, Any], kind: tables.ImageKind, region: str) -> str:
        runtime, python = ti.get("runtimeVersion"), ti.get("pythonVersion")
        tensorflow = tables.runtime_tensorflow(runtime) if isinstance(runtime, str) else None
        if tensorflow is None:
            tensorflow = max(i.version for i in tables.TRAINING_IMAGES)
        choice = tables.pick_training_image(tensorflow, python if isinstance(python, str) else None, kind)
        image = choice.image
        uri = image.uri(tables.registry_for(region))
        asked = f"runtimeVersion {runtime}" + (f" (Python {python})" if isinstance(python, str) else "")
        if not choice.exact or (isinstance(python, str) and python != image.python):
            self.warn(f"{asked} runs on Vertex AI's prebuilt image {uri}: TensorFlow "
                      f"{image.version[0]}.{image.version[1]} with Python {image.python} (the nearest prebuilt "
                      "training image; AI Platform runtime versions do not exist on Vertex). Test the trainer with "
                      "those versions, or name an image of your own in masterConfig.imageUri")
        if not choice.available:
            self.warn(f"the table of prebuilt images (functions/submitter/backends/vertex_tables.py, reviewed "
                      f"{tables.REVIEWED.isoformat()}) lists no {kind.upper()} image still available on that date; "
                      f"{image.name} was documented as available until {image.end_of_availability.isoformat()}. If "
                      "Vertex refuses it, update the table from " + tables.IMAGES_SOURCE)
        return uri

    def tpu_pool(self, ti: dict[str, Any], tier: str, roles: dict[int, tuple[str, Any, int, str]],
                 region: str) -> list[dict[str, Any]]:
        """A TPU job: one pool on a TPU VM (vertex_tables TPU layout); the code runs on the TPU VM itself."""
        path = "jobSpec.workerPoolSpecs[0]"
        tpu_index = next((i for i, r in roles.items() if r[1] == rules.TPU_MACHINE), 1)
        type_field = _ROLES[tpu_index][2]
        config_field = _ROLES[tpu_index][4]
        where = "trainingInput.scaleTier" if tier == "BASIC_TPU" else f"trainingInput.{type_field}"
        self.origin(f"{path}.machineSpec", where)
        self.origin(f"{path}.replicaCount", where)
        for index, (role, machine, count, field) in sorted(roles.items()):
            if index in (0, tpu_index):
                if index != tpu_index and count and machine != rules.TPU_MACHINE:
                    self.warn(f"the {role} ({machine}) and the Cloud TPU worker become one TPU VM on Vertex, which "
                              "runs the code on the TPU host: use TPUClusterResolver(tpu='local') (or tpu='') "
                              "instead of a TPU name")
                if index == tpu_index and count > 1:
                    self.bad(f"trainingInput.{_ROLES[index][3]}", f"a Vertex TPU job has one TPU VM (replicaCount "
                             f"1); got {count} TPU workers: use one worker with a TPU Pod slice (acceleratorConfig "
                             f"count, a multiple of {tables.TPU_POD_UNIT}) instead", count)
                continue
            self.bad(field, f"a {role} cannot be part of a TPU job on Vertex, which runs one TPU VM pool; remove "
                     f"{field} or run the job without cloud_tpu", machine)
        acc = _dict(_dict(ti.get(config_field)).get("acceleratorConfig"))
        asked_type, asked_count = acc.get("type"), _int(acc.get("count"))
        acc_path = f"trainingInput.{config_field}.acceleratorConfig"
        tpu_type, count = tables.TPU_DEFAULT
        if asked_type is not None:
            self.origin(f"{path}.machineSpec.acceleratorType", f"{acc_path}.type")
            if asked_type in tables.TPU_TYPES:
                tpu_type = tables.TPU_TYPES[asked_type]
            else:
                self.bad(f"{acc_path}.type", f"{asked_type} has no documented Vertex layout for this submitter "
                         "(Vertex custom training documents cloud-tpu with TPU_V2 or TPU_V3); use TPU_V2 or TPU_V3",
                         asked_type)
        if asked_count is not None:
            self.origin(f"{path}.machineSpec.acceleratorCount", f"{acc_path}.count")
            pod = isinstance(asked_type, str) and asked_type.endswith("_POD")
            if (pod and asked_count % tables.TPU_POD_UNIT) or (not pod and asked_count != 8):
                self.bad(f"{acc_path}.count", f"Vertex runs TPU_V2/TPU_V3 with 8 cores (one TPU) or a multiple of "
                         f"{tables.TPU_POD_UNIT} (a Pod slice); got {asked_count}", asked_count)
            count = asked_count
        pool: dict[str, Any] = {"machineSpec": {"machineType": tables.TPU_MACHINE_TYPE, "acceleratorType": tpu_type,
                                                "acceleratorCount": count}, "replicaCount": 1}
        pool.update(self.program(ti, _dict(ti.get(config_field)), config_field, path, "tpu", region))
        if tier == "BASIC_TPU" or asked_type is None:
            self.warn(f"the Cloud TPU runs as a Vertex TPU VM: {tables.TPU_MACHINE_TYPE} with {count} {tpu_type} "
                      f"cores ({tables.COMPUTE_SOURCE})")
        return [pool]


# -- checks of the result ------------------------------------------------------------------------------------------
def validate(custom_job: dict[str, Any], origins: dict[str, str] | None = None) -> list[Violation]:
    """Check a CustomJob before any call: the aiplatform v1 schema (fields, types, enums, output-only fields),
    then the rules the schema cannot express.

    Rules (aiplatform.v1.json field descriptions; "configure-compute" and "distributed-training" pages of the
    Vertex docs): displayName required, at most 128 characters; at least one worker pool; the first pool
    non-empty with replicaCount 1; every non-empty pool has a machineSpec.machineType and exactly one of
    pythonPackageSpec / containerSpec; pythonPackageSpec needs executorImageUri, packageUris (1 to 100
    gs:// URIs) and pythonModule; containerSpec needs imageUri; acceleratorType and acceleratorCount come
    together (a type with a count of at least 1); no K80 (retired); boot disks of 100 to 64000 GB;
    baseOutputDirectory.outputUriPrefix a gs:// URI; labels: at most 64, keys and values at most 64 characters
    of lowercase letters, digits, "_" and "-" (keys starting with a letter).

    Args:
        custom_job: the CustomJob body.
        origins: Vertex path -> AI Platform field, to name the field the user wrote (see Translation.origins).
    Returns:
        Violations whose `field` is the AI Platform field and whose message names the Vertex field.
    """
    origins = origins or {}
    found: list[tuple[str, str, Any, Reason]] = [(v.field, v.message, v.value, v.reason)
                                                 for v in check_custom_job(custom_job)]

    def bad(path: str, message: str, value: Any = None, reason: Reason = Reason.SPEC_INVALID) -> None:
        found.append((path, message, value, reason))

    name = custom_job.get("displayName")
    if not isinstance(name, str) or not name:
        bad("displayName", "is required")
    elif len(name) > tables.MAX_DISPLAY_NAME:
        bad("displayName", f"is {len(name)} characters; at most {tables.MAX_DISPLAY_NAME}", name)
    spec = _dict(custom_job.get("jobSpec"))
    pools = spec.get("workerPoolSpecs")
    if not isinstance(pools, list) or not pools:
        bad("jobSpec.workerPoolSpecs", "needs at least one worker pool (the primary replica)")
        pools = []
    for i, pool in enumerate(pools):
        if isinstance(pool, dict):
            _check_pool(pool, i, bad)
    out_dir = _dict(spec.get("baseOutputDirectory")).get("outputUriPrefix")
    if "baseOutputDirectory" in spec and not (isinstance(out_dir, str) and out_dir.startswith("gs://")):
        bad("jobSpec.baseOutputDirectory.outputUriPrefix", "must be a gs:// URI", out_dir)
    _check_labels(custom_job.get("labels"), bad)
    out = []
    for path, message, value, reason in found:
        field = _ai_field(path, origins)
        shown = message if field == path else f"{message} (Vertex field {path})"
        out.append(Violation(field, shown, Reason.INVALID_LABELS if field.startswith("labels") else reason, value))
    return _unique(out)


def _check_pool(pool: dict[str, Any], i: int, bad: Any) -> None:
    path = f"jobSpec.workerPoolSpecs[{i}]"
    if not pool:
        if i == 0:
            bad(path, "the first worker pool (the primary replica) cannot be empty")
        return
    count = _int(pool.get("replicaCount"))
    if i == 0 and count != 1:
        bad(f"{path}.replicaCount", f"the first worker pool holds the primary replica: replicaCount must be 1, got "
            f"{pool.get('replicaCount')!r}", pool.get("replicaCount"))
    elif count is None or count < 1:
        bad(f"{path}.replicaCount", f"must be at least 1 in a non-empty pool, got {pool.get('replicaCount')!r}",
            pool.get("replicaCount"))
    machine = _dict(pool.get("machineSpec"))
    if not machine.get("machineType"):
        bad(f"{path}.machineSpec.machineType", "is required in every non-empty worker pool", None,
            Reason.INVALID_MACHINE_CONFIG)
    kind, acc_count = machine.get("acceleratorType"), machine.get("acceleratorCount")
    if kind is not None and kind != "ACCELERATOR_TYPE_UNSPECIFIED":
        if not isinstance(acc_count, int) or isinstance(acc_count, bool) or acc_count < 1:
            bad(f"{path}.machineSpec.acceleratorCount", f"acceleratorType {kind} needs an acceleratorCount of at "
                "least 1", acc_count, Reason.INVALID_MACHINE_CONFIG)
        if kind == tables.K80:
            bad(f"{path}.machineSpec.acceleratorType", "NVIDIA K80 GPUs are retired (Compute Engine end of support)",
                kind, Reason.INVALID_MACHINE_CONFIG)
    elif acc_count not in (None, 0):
        bad(f"{path}.machineSpec.acceleratorType", f"acceleratorCount {acc_count} needs an acceleratorType", None,
            Reason.INVALID_MACHINE_CONFIG)
    programs = [k for k in ("pythonPackageSpec", "containerSpec") if pool.get(k) is not None]
    if len(programs) != 1:
        bad(path, "a worker pool runs exactly one of pythonPackageSpec (a Python package on a prebuilt image) or "
            f"containerSpec (a custom container); it has {' and '.join(programs) or 'neither'}")
    package = pool.get("pythonPackageSpec")
    if isinstance(package, dict):
        for field in ("executorImageUri", "pythonModule"):
            if not package.get(field):
                bad(f"{path}.pythonPackageSpec.{field}", "is required")
        uris = package.get("packageUris")
        if not isinstance(uris, list) or not uris:
            bad(f"{path}.pythonPackageSpec.packageUris", "needs at least one gs:// package", uris)
        elif len(uris) > rules.MAX_PACKAGE_URIS:
            bad(f"{path}.pythonPackageSpec.packageUris", f"has {len(uris)} URIs; at most {rules.MAX_PACKAGE_URIS}")
    container = pool.get("containerSpec")
    if isinstance(container, dict) and not container.get("imageUri"):
        bad(f"{path}.containerSpec.imageUri", "is required")
    size = _dict(pool.get("diskSpec")).get("bootDiskSizeGb")
    if isinstance(size, int) and not tables.MIN_BOOT_DISK_GB <= size <= tables.MAX_BOOT_DISK_GB:
        bad(f"{path}.diskSpec.bootDiskSizeGb", f"must be {tables.MIN_BOOT_DISK_GB} to {tables.MAX_BOOT_DISK_GB} "
            f"(GB), got {size}", size)


def _check_labels(labels: Any, bad: Any) -> None:
    if not isinstance(labels, dict):
        return
    if len(labels) > tables.MAX_LABELS:
        bad("labels", f"a CustomJob holds at most {tables.MAX_LABELS} labels and the submitter adds "
            f"{KEY_LABEL!r} and {JOB_LABEL!r}: this job would have {len(labels)}; remove some", len(labels))
    for key, value in labels.items():
        if not (isinstance(key, str) and re.fullmatch(r"[^\W\dA-Z_][\w-]{0,63}", key) and key == key.lower()):
            bad(f"labels.{key}", f"label key {key!r} is not allowed on Vertex: lowercase letters, digits, '_' and "
                "'-', starting with a letter, at most 64 characters", key)
        if not (isinstance(value, str) and re.fullmatch(r"[\w-]{0,64}", value) and value == value.lower()):
            bad(f"labels.{key}", f"label value {value!r} is not allowed on Vertex: lowercase letters, digits, '_' "
                "and '-', at most 64 characters", value)


def _ai_field(path: str, origins: dict[str, str]) -> str:
    """The AI Platform field behind a Vertex path: the origin of the longest recorded prefix of `path` (the path
    itself when no origins are known: a CustomJob checked on its own)."""
    if not origins:
        return path
    probe = path
    while probe:
        if probe in origins:
            return origins[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return path if path.startswith(("labels", "trainingInput", "jobId")) else "trainingInput"


# -- helpers -------------------------------------------------------------------------------------------------------
def _with_job_dir(args: Any, job_dir: str | None) -> list[Any]:
    out = list(args) if isinstance(args, list) else []
    if job_dir and not any(isinstance(a, str) and (a == JOB_DIR_FLAG or a.startswith(JOB_DIR_FLAG + "="))
                           for a in out):
        out += [JOB_DIR_FLAG, job_dir]
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value):
        return int(value)
    return None


def _unique(violations: list[Violation]) -> list[Violation]:
    seen: set[tuple[str, str]] = set()
    out = []
    for v in violations:
        if (v.field, v.message) not in seen:
            seen.add((v.field, v.message))
            out.append(v)
    return out


__all__ = ["Options", "Translation", "translate", "translate_custom_job", "check", "validate", "encode_key",
           "decode_key",
           "display_name_for", "KEY_LABEL", "JOB_LABEL"]
