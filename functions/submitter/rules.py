"""Semantic rules for a completed Job (pure): every rule the schema cannot express, each in one place.

The schema layer (`schema.py`) owns field names, types and enums; this module owns what the values mean
and how fields go together; the deployment's caps are `policy.py`'s. Each rule names its source.
"ml.v1.json" is the ml v1 discovery document bundled
with google-api-python-client (field descriptions of GoogleCloudMlV1__TrainingInput,
__ReplicaConfig, __Scheduling, __DiskConfig, __HyperparameterSpec, __ParameterSpec);
"machine-types" is https://cloud.google.com/ai-platform/training/docs/machine-types;
"runtime-list" is https://cloud.google.com/ai-platform/training/docs/runtime-version-list;
"using-gpus" is https://cloud.google.com/ai-platform/training/docs/using-gpus;
"reference grammar" is the container image reference grammar of the distribution project
(github.com/distribution/reference, reference.go), which Docker, Container Registry and Artifact Registry use.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any

from . import naming
from .reasons import Reason, Violation
from .spec import REPLICA_CONFIGS, master_image

INVALID_MACHINE_CONFIG = Reason.INVALID_MACHINE_CONFIG
UNSUPPORTED_RUNTIME = Reason.UNSUPPORTED_RUNTIME
# Strings that still hold `{{...}}`, `{name}` or `<placeholder>` after a skipped templating step.
TEMPLATE_RE = re.compile(r"\{\{.*?\}\}|\{[A-Za-z_][A-Za-z0-9_]*\}|<[A-Za-z_][A-Za-z0-9_ -]*>")
DOTTED_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Control characters in an arg: C0 except tab and newline, and DEL. One regex search per arg instead of a Python-level
# loop over its characters (a long args list made that loop the biggest pure-Python cost of a drop).
ARG_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_PACKAGE_URIS = 100  # ml.v1.json TrainingInput.packageUris: "at most 100"
MAX_DISCRETE_VALUES = 1000  # ml.v1.json ParameterSpec.discreteValues

# Replica roles: (count field, type field, config field, TF_CONFIG name). Source: ml.v1.json TrainingInput.
ROLES = (
    ("workerCount", "workerType", "workerConfig", "worker"),
    ("parameterServerCount", "parameterServerType", "parameterServerConfig", "parameterServer"),
    ("evaluatorCount", "evaluatorType", "evaluatorConfig", "evaluator"),
)

# Legacy machine names (machine-types, "legacy machine types"); the *_gpu/_p100/_v100 ones carry GPUs.
LEGACY_MACHINE_TYPES = frozenset({
    "standard", "large_model", "complex_model_s", "complex_model_m", "complex_model_l",
    "standard_gpu", "complex_model_m_gpu", "complex_model_l_gpu", "standard_p100", "complex_model_m_p100",
    "standard_v100", "large_model_v100", "complex_model_m_v100", "complex_model_l_v100",
})
# Legacy GPU types meant K80 GPUs, which Compute Engine has retired (GUIDE, Vertex specifics).
LEGACY_K80_TYPES = frozenset({"standard_gpu", "complex_model_m_gpu", "complex_model_l_gpu"})
TPU_MACHINE = "cloud_tpu"
# Compute Engine machine types AI Platform Training accepted (machine-types, "Compute Engine machine types").
COMPUTE_ENGINE_TYPES = frozenset(
    [f"n1-standard-{n}" for n in (4, 8, 16, 32, 64, 96)]
    + [f"n1-highmem-{n}" for n in (2, 4, 8, 16, 32, 64, 96)]
    + [f"n1-highcpu-{n}" for n in (16, 32, 64, 96)]
    + ["a2-highgpu-1g", "a2-highgpu-2g", "a2-highgpu-4g", "a2-highgpu-8g", "a2-megagpu-16g"]
)
# Which accelerators attach to which machine families, and in what counts (using-gpus, "GPU-enabled machines";
# A100 only on A2 machines with the count fixed by the shape; the others on N1 machines).
A2_GPU_COUNT = {"a2-highgpu-1g": 1, "a2-highgpu-2g": 2, "a2-highgpu-4g": 4, "a2-highgpu-8g": 8, "a2-megagpu-16g": 16}
N1_GPU_COUNTS = {
    "NVIDIA_TESLA_K80": (1, 2, 4, 8), "NVIDIA_TESLA_P4": (1, 2, 4), "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_T4": (1, 2, 4), "NVIDIA_TESLA_V100": (1, 2, 4, 8),
}
TPU_ACCELERATORS = frozenset({"TPU_V2", "TPU_V3", "TPU_V2_POD", "TPU_V3_POD", "TPU_V4_POD"})

# Python versions per runtime version (ml.v1.json TrainingInput.pythonVersion; runtime-list).
RUNTIME_VERSIONS = tuple(f"1.{n}" for n in range(16)) + tuple(f"2.{n}" for n in range(1, 12))


def python_versions_for(runtime: str) -> tuple[str, ...]:
    """Python versions a runtime version offered, newest first; () for an unknown runtime.

    Source: ml.v1.json pythonVersion — 3.7 for 1.15 and later; 3.5 for 1.4–1.14; 2.7 for 1.15 and earlier.
    """
    if runtime not in RUNTIME_VERSIONS:
        return ()
    major, minor = (int(x) for x in runtime.split("."))
    out = []
    if (major, minor) >= (1, 15):
        out.append("3.7")
    if (1, 4) <= (major, minor) <= (1, 14):
        out.append("3.5")
    if (major, minor) <= (1, 15):
        out.append("2.7")
    return tuple(out)


# Every runtime version of AI Platform Training is retired (the service shut down on 2025-01-31).
RETIRED_NOTE = ("runtimeVersion {v} is retired: AI Platform Training was shut down on 2025-01-31 (the local "
                "training service still runs it)")

# Preset tiers as replica counts (master, workers, parameter servers). Source: ml.v1.json scaleTier /
# machine-types "scale tiers": STANDARD_1 = 1 master, 4 workers, 3 ps; PREMIUM_1 = 1 master, 19 workers, 11 ps.
PRESET_REPLICAS = {"BASIC": (1, 0, 0), "BASIC_GPU": (1, 0, 0), "BASIC_TPU": (1, 1, 0), "STANDARD_1": (1, 4, 3),
                   "PREMIUM_1": (1, 19, 11)}
PRESET_ACCELERATORS = {"BASIC_GPU": 1}

# Container image references (reference grammar): [registry host[:port]/]path[:tag][@digest], the path in lower
# case; the whole name at most 255 characters. AI Platform pulls from a registry (ml.v1.json ReplicaConfig.imageUri:
# "This image must be in Container Registry"), so the host is required here: without one Docker means Docker Hub.
_IMAGE_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF_RE = re.compile(rf"(?P<host>{_IMAGE_HOST})/(?P<path>{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*)"
                          r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
                          r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?")
MAX_IMAGE_NAME = 255
# Replica roles and their config/type fields, master first (ml.v1.json TrainingInput).
REPLICA_TYPES = dict(zip(REPLICA_CONFIGS, ("masterType", "workerType", "parameterServerType", "evaluatorType"),
                         strict=True))

DURATION_RE = re.compile(r"^(\d+(\.\d{1,9})?)s$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


@dataclasses.dataclass
class Findings:
    """Violations (block submission) and warnings (reported, do not block)."""

    violations: list[Violation] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def bad(self, field: str, message: str, value: Any = None, reason: Reason = Reason.SPEC_INVALID) -> None:
        self.violations.append(Violation(field, message, reason, value))


def machine_family(machine: str) -> str:
    """'compute_engine', 'legacy', 'tpu' or 'unknown' for a machine type name."""
    if machine == TPU_MACHINE:
        return "tpu"
    if machine in LEGACY_MACHINE_TYPES:
        return "legacy"
    if re.fullmatch(r"[a-z]\d+[a-z]?-[a-z]+-\d+g?", machine):
        return "compute_engine"
    return "unknown"


def parse_duration(value: Any) -> float | None:
    """Seconds for a google-duration string like "1800s" or "3.5s"; None when malformed."""
    if isinstance(value, str):
        match = DURATION_RE.match(value)
        if match:
            return float(match.group(1))
    return None


def scale_tier(ti: dict[str, Any]) -> str:
    """The job's scaleTier; a missing one is BASIC, as the service treated it (a malformed one too:
    the schema layer reports it)."""
    tier = ti.get("scaleTier")
    return tier if isinstance(tier, str) and tier else "BASIC"


def replica_counts(ti: dict[str, Any]) -> dict[str, int]:
    """Replicas per role {"master", "worker", "parameterServer", "evaluator"} for a TrainingInput."""
    tier = scale_tier(ti)
    if tier != "CUSTOM":
        m, w, p = PRESET_REPLICAS.get(tier, (1, 0, 0))
        return {"master": m, "worker": w, "parameterServer": p, "evaluator": 0}
    out = {"master": 1}
    for count_field, _, _, role in ROLES:
        out[role] = _int(ti.get(count_field)) or 0
    return out


def accelerator_total(ti: dict[str, Any]) -> int:
    """Accelerators the job asks for across all replicas."""
    tier = scale_tier(ti)
    if tier != "CUSTOM":
        return PRESET_ACCELERATORS.get(tier, 0)
    counts = replica_counts(ti)
    total = 0
    for role, config_field in (("master", "masterConfig"), ("worker", "workerConfig"),
                               ("parameterServer", "parameterServerConfig"), ("evaluator", "evaluatorConfig")):
        acc = (ti.get(config_field) or {}).get("acceleratorConfig") if isinstance(ti.get(config_field), dict) else None
        if isinstance(acc, dict):
            total += (_int(acc.get("count")) or 0) * counts.get(role, 0)
    return total


def check_job(job: dict[str, Any], protected_prefixes: tuple[str, ...] = ()) -> Findings:
    """Every semantic rule on a completed Job; all violations are collected, each with its fix.

    Job-level rules (ml.v1.json field descriptions; naming.py for the name rules): jobId syntax; labels
    (syntax, at most 64, the submitter's own key reserved is policy's business); no unrendered template
    placeholders in any string; trainingInput present as a mapping (its fields' types are the schema's).

    Args:
        job: the completed Job dict.
        protected_prefixes: gs:// prefixes a jobDir must not point into.
    """
    f = Findings()
    job_id = job.get("jobId")
    if isinstance(job_id, str) and not naming.is_valid_job_id(job_id):
        f.bad("jobId", f"{job_id!r} is not a valid jobId: {naming.JOB_ID_RULE}. Rename it, or remove jobId to let "
              "the submitter derive one from the drop", job_id, Reason.INVALID_JOB_ID)
    _check_labels(job.get("labels"), f)
    ti = job.get("trainingInput")
    if ti is None:
        f.bad("trainingInput", "is required: a mapping of TrainingInput fields (pythonModule, args, ...)")
        return f
    if not isinstance(ti, dict):
        return f  # the schema reports the type
    _check_templates(ti, "trainingInput", f)
    _check_program(ti, f)
    _check_locations(ti, protected_prefixes, f)
    _check_tier_and_machines(ti, f)
    _check_runtime(ti, f)
    _check_containers(ti, f)
    _check_scheduling(ti.get("scheduling"), f)
    _check_disks(ti, f)
    account = ti.get("serviceAccount")
    if isinstance(account, str) and not EMAIL_RE.match(account):
        f.bad("trainingInput.serviceAccount", f"must be a service account email, got {account!r}", account)
    if isinstance(ti.get("hyperparameters"), dict):
        _check_hyperparameters(ti["hyperparameters"], f)
    return f


def _check_labels(labels: Any, f: Findings) -> None:
    """Label syntax (labels-overview); the schema reports non-mapping labels and non-string values."""
    if not isinstance(labels, dict):
        return
    if len(labels) > naming.MAX_LABELS:
        f.bad("labels", f"has {len(labels)} labels; at most {naming.MAX_LABELS}", None, Reason.INVALID_LABELS)
    for key, value in labels.items():
        field = f"labels.{key}"
        if isinstance(key, str) and not naming.is_valid_label_key(key):
            f.bad(field, f"label key {key!r} is not allowed: {naming.LABEL_RULE}", key, Reason.INVALID_LABELS)
        if isinstance(value, str) and not naming.is_valid_label_value(value):
            f.bad(field, f"label value {value!r} is not allowed: {naming.LABEL_RULE}", value, Reason.INVALID_LABELS)


def _check_templates(value: Any, path: str, f: Findings) -> None:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if TEMPLATE_RE.search(item):
                f.bad(where, f"holds an unrendered template placeholder: {item!r}; render the template before "
                      "dropping", item, Reason.TEMPLATE_UNRENDERED)
        elif isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))


def _check_program(ti: dict[str, Any], f: Findings) -> None:
    """What runs: pythonModule (ml.v1.json: "The Python module name to run after installing the packages"),
    args (a list of strings passed to the program), and the custom container alternative (`_check_containers`):
    a job whose master runs an image needs no package and no pythonModule."""
    module = ti.get("pythonModule")
    image = master_image(ti)
    if module is None:
        if image is None:
            f.bad("trainingInput.pythonModule", "is required: the dotted module to run with `python -m`, e.g. "
                  "trainer.task (or run a custom container: masterConfig.imageUri)")
    elif isinstance(module, str) and not DOTTED_MODULE_RE.fullmatch(module):
        hint = ""
        if module.endswith(".py") or "/" in module:
            hint = f" (write {module.removesuffix('.py').replace('/', '.')!r})"
        f.bad("trainingInput.pythonModule", f"must be a dotted module name, got {module!r}{hint}", module)
    args = ti.get("args")
    if isinstance(args, list):
        for i, item in enumerate(args):
            field = f"trainingInput.args[{i}]"
            if not isinstance(item, str):
                continue  # the schema reports the type
            if item == "--":
                f.bad(field, "'--' is gcloud CLI syntax; remove it from args", item)
            elif item.strip() == "\\":
                f.bad(field, "is a bare backslash (a shell line continuation); remove it", item)
            elif ti.get("jobDir") and (item == "--job-dir" or item.startswith("--job-dir=")):
                f.bad(field, "passes --job-dir, but the service passes jobDir to the trainer as --job-dir itself (it "
                      "would arrive twice and the last one wins); remove it from args and set trainingInput.jobDir",
                      item)
            elif ARG_CONTROL_RE.search(item):
                f.bad(field, "holds a control character (NUL, escape, ...), which no shell or trainer expects; "
                      "remove it", item)


def _check_locations(ti: dict[str, Any], protected_prefixes: tuple[str, ...], f: Findings) -> None:
    """packageUris (at most 100 gs:// URIs), jobDir (gs://bucket/path, outside the submitter's areas), region."""
    uris = ti.get("packageUris")
    if isinstance(uris, list):
        if len(uris) > MAX_PACKAGE_URIS:
            f.bad("trainingInput.packageUris", f"has {len(uris)} entries; at most {MAX_PACKAGE_URIS} are allowed")
        for i, uri in enumerate(uris):
            if isinstance(uri, str) and not naming.GCS_URI_RE.fullmatch(uri):
                f.bad(f"trainingInput.packageUris[{i}]", f"{uri!r} is not a gs://bucket/object URI", uri)
    job_dir = ti.get("jobDir")
    if isinstance(job_dir, str):
        if not naming.GCS_DIR_RE.fullmatch(job_dir):
            f.bad("trainingInput.jobDir", f"must be gs://<bucket>/<path> with a valid bucket name, got {job_dir!r}",
                  job_dir)
        else:
            path = job_dir.rstrip("/") + "/"
            inside = [p for p in protected_prefixes if path.startswith(p)]
            if inside:
                f.bad("trainingInput.jobDir", f"{job_dir} is inside {inside[0]}, where training outputs would look "
                      "like new drops or overwrite the submitter's records; use the outputs bucket (or leave jobDir "
                      "out to get the default)", job_dir)
    region = ti.get("region")
    if isinstance(region, str) and not naming.REGION_RE.fullmatch(region):
        f.bad("trainingInput.region", f"must be a region name like us-central1, got {region!r}", region)


def _check_tier_and_machines(ti: dict[str, Any], f: Findings) -> None:
    tier = scale_tier(ti)
    custom = tier == "CUSTOM"
    master = ti.get("masterType")
    if custom and not master:
        f.bad("trainingInput.masterType", "masterType is required when scaleTier is CUSTOM (e.g. n1-standard-8)")
    if not custom:
        for field in ("masterType",) + tuple(x for role in ROLES for x in role[:2]):
            if ti.get(field) not in (None, 0, "0"):
                f.bad(f"trainingInput.{field}", f"{field} can only be used when scaleTier is CUSTOM (scaleTier is "
                      f"{tier}); set scaleTier: CUSTOM or remove {field}", ti.get(field))
    families: dict[str, str] = {}
    if isinstance(master, str):
        families["masterType"] = machine_family(master)
    for count_field, type_field, _, _ in ROLES:
        count, machine = _int(ti.get(count_field)), ti.get(type_field)
        if count is not None and count < 0:
            f.bad(f"trainingInput.{count_field}", f"must not be negative, got {count}", ti.get(count_field))
        if custom and count and not machine:
            f.bad(f"trainingInput.{type_field}", f"{type_field} is required when {count_field} > 0")
        if isinstance(machine, str):
            families[type_field] = machine_family(machine)
    for field, family in families.items():
        value = ti[field]
        if family == "unknown":
            close = difflib.get_close_matches(value, sorted(COMPUTE_ENGINE_TYPES | LEGACY_MACHINE_TYPES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            f.bad(f"trainingInput.{field}", f"{value!r} is not a machine type AI Platform Training offers{hint}",
                  value, INVALID_MACHINE_CONFIG)
        elif family == "compute_engine" and value not in COMPUTE_ENGINE_TYPES:
            close = difflib.get_close_matches(value, sorted(COMPUTE_ENGINE_TYPES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            f.bad(f"trainingInput.{field}", f"{value!r} is not one of the Compute Engine machine types AI Platform "
                  f"Training accepts (n1-standard-4..96, n1-highmem-2..96, n1-highcpu-16..96, a2-highgpu-*){hint}",
                  value, INVALID_MACHINE_CONFIG)
        elif value in LEGACY_K80_TYPES:
            f.warnings.append(f"trainingInput.{field}: {value} means NVIDIA K80 GPUs, which Compute Engine has "
                              "retired; use a Compute Engine type with acceleratorConfig instead")
    # One family per job; TPU workers may sit beside either family (machine-types, "cloud_tpu").
    distinct = {fam for fam in families.values() if fam in ("compute_engine", "legacy")}
    if len(distinct) > 1:
        f.bad("trainingInput", "mixes Compute Engine machine types and legacy machine types ("
              + ", ".join(f"{k}={ti[k]}" for k in families) + "); use one family for every replica",
              None, INVALID_MACHINE_CONFIG)
    for config_field, type_field in (("masterConfig", "masterType"), ("workerConfig", "workerType"),
                                     ("parameterServerConfig", "parameterServerType"),
                                     ("evaluatorConfig", "evaluatorType")):
        config = ti.get(config_field)
        acc = config.get("acceleratorConfig") if isinstance(config, dict) else None
        if acc is None:
            continue
        path = f"trainingInput.{config_field}.acceleratorConfig"
        if isinstance(acc, dict) and ti.get(type_field) is None:
            # ml.v1.json masterConfig (and the other replica configs): "You should only set
            # masterConfig.acceleratorConfig if masterType is set to a Compute Engine machine type."
            f.bad(path, f"acceleratorConfig needs {type_field} set to a Compute Engine machine type (scaleTier CUSTOM, "
                  f"e.g. {type_field}: n1-standard-8); preset tiers choose their own hardware (BASIC_GPU has one GPU)",
                  None, INVALID_MACHINE_CONFIG)
            continue
        _check_accelerator(path, acc, ti.get(type_field), f)


def _check_accelerator(path: str, acc: Any, machine: Any, f: Findings) -> None:
    if not isinstance(acc, dict):
        return  # the schema layer reports the type
    kind, count = acc.get("type"), _int(acc.get("count"))
    if not kind or kind == "ACCELERATOR_TYPE_UNSPECIFIED":
        f.bad(f"{path}.type", "acceleratorConfig needs a type, e.g. NVIDIA_TESLA_T4", kind, INVALID_MACHINE_CONFIG)
    if count is None or count <= 0:
        f.bad(f"{path}.count", f"acceleratorConfig needs a positive count, got {acc.get('count')!r}",
              acc.get("count"), INVALID_MACHINE_CONFIG)
    if not isinstance(machine, str) or not kind or count is None or count <= 0:
        return
    family = machine_family(machine)
    if kind in TPU_ACCELERATORS:
        if machine != TPU_MACHINE:
            f.bad(f"{path}.type", f"{kind} needs machine type cloud_tpu, not {machine}", kind, INVALID_MACHINE_CONFIG)
        return
    if family != "compute_engine":
        f.bad(path, f"acceleratorConfig is only allowed on Compute Engine machine types; {machine} is a legacy "
              "type (its GPUs, if any, are implied)", None, INVALID_MACHINE_CONFIG)
        return
    if machine.startswith("a2-"):
        if kind != "NVIDIA_TESLA_A100":
            f.bad(f"{path}.type", f"{machine} carries NVIDIA_TESLA_A100 GPUs only, got {kind}", kind,
                  INVALID_MACHINE_CONFIG)
        elif count != A2_GPU_COUNT.get(machine):
            f.bad(f"{path}.count", f"{machine} has exactly {A2_GPU_COUNT.get(machine)} A100 GPUs, got {count}",
                  count, INVALID_MACHINE_CONFIG)
    elif kind == "NVIDIA_TESLA_A100":
        f.bad(f"{path}.type", f"NVIDIA_TESLA_A100 is only available on a2-highgpu-*/a2-megagpu-16g machines, not "
              f"{machine}", kind, INVALID_MACHINE_CONFIG)
    elif kind in N1_GPU_COUNTS and count not in N1_GPU_COUNTS[kind]:
        f.bad(f"{path}.count", f"{kind} is attached in counts of {N1_GPU_COUNTS[kind]}, got {count}", count,
              INVALID_MACHINE_CONFIG)


def _check_runtime(ti: dict[str, Any], f: Findings) -> None:
    """runtimeVersion or a custom container, never both (ml.v1.json runtimeVersion: "You must either specify this
    field or specify masterConfig.imageUri"; masterConfig: "Only one of masterConfig.imageUri and runtimeVersion
    should be set"), and pythonVersion within what the runtime offers."""
    runtime, python = ti.get("runtimeVersion"), ti.get("pythonVersion")
    image = master_image(ti)
    if runtime is not None and image:
        f.bad("trainingInput.runtimeVersion", "runtimeVersion and masterConfig.imageUri are mutually exclusive; "
              "keep one", runtime)
    if not isinstance(runtime, str):
        if runtime is None and not image:
            f.bad("trainingInput.runtimeVersion", "set runtimeVersion (e.g. \"2.11\") or masterConfig.imageUri")
        return
    offered = python_versions_for(runtime)
    if not offered:
        f.bad("trainingInput.runtimeVersion", f"{runtime!r} is not an AI Platform Training runtime version (1.0–1.15, "
              "2.1–2.11)", runtime, UNSUPPORTED_RUNTIME)
        return
    f.warnings.append(RETIRED_NOTE.format(v=runtime))
    if isinstance(python, str) and python not in offered:
        f.bad("trainingInput.pythonVersion", f"runtimeVersion {runtime} offers pythonVersion "
              + " or ".join(offered) + f", not {python}", python, UNSUPPORTED_RUNTIME)


def image_problem(image: str) -> str | None:
    """What is wrong with the form of a container image reference (reference grammar), or None."""
    if len(image) > MAX_IMAGE_NAME + 80:  # the name part is capped below; a tag/digest adds at most ~80
        return f"is {len(image)} characters long; an image reference is at most a few hundred"
    match = IMAGE_REF_RE.fullmatch(image)
    host = match.group("host") if match else image.partition("/")[0]
    if "/" not in image or not ("." in host or ":" in host or host == "localhost"):
        return ("names no registry host; write the full reference, e.g. gcr.io/PROJECT/IMAGE:TAG or "
                "REGION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE:TAG (AI Platform pulls from a registry, never "
                "Docker Hub by default)")
    if match is None:
        lowered = image.lower()
        hint = " (repository paths are lower case)" if lowered != image and IMAGE_REF_RE.fullmatch(
            host + lowered[len(host):]) else ""
        return ("is not an image reference of the form HOST/PATH[:TAG][@sha256:DIGEST] (path components of "
                f"lower-case letters, digits and . _ -; a tag of at most 128 word characters){hint}")
    if len(match.group("host")) + 1 + len(match.group("path")) > MAX_IMAGE_NAME:
        return f"has a repository name longer than {MAX_IMAGE_NAME} characters"
    return None


def _check_containers(ti: dict[str, Any], f: Findings) -> None:
    """Custom containers (ml.v1.json ReplicaConfig, TrainingInput; each rule names its source):

    - a replica's `imageUri` is a full image reference with a registry host (reference grammar; policy.py decides
      which registries a deployment admits);
    - `imageUri` on a worker, parameter server or evaluator needs `masterConfig.imageUri` (a job runs a runtime
      version or custom containers; replicas without their own image run the master's: workerConfig "If
      workerConfig.imageUri has not been set, AI Platform uses the value of masterConfig.imageUri");
    - `containerCommand` / `containerArgs` only where the replica runs an image ("It cannot be set if custom
      container image is not provided"), and never with `trainingInput.args` ("this field and
      [TrainingInput.args] are mutually exclusive");
    - `tpuTfVersion` exactly on a TPU worker (`workerType: cloud_tpu`) that runs a custom container ("This field is
      required if the replica is a TPU worker that uses a custom container. Otherwise, do not specify this field"),
      naming a runtime version (TensorFlow major.minor);
    - warnings for what a container job ignores (pythonModule, packageUris, pythonVersion: the image holds the
      program and its Python) and for `useChiefInTfConfig` without one ("This field has no effect for training jobs
      that don't use a custom container").
    """
    master = master_image(ti)
    configs = {name: ti[name] for name in REPLICA_CONFIGS if isinstance(ti.get(name), dict)}
    for name, config in configs.items():
        base = f"trainingInput.{name}"
        image = config.get("imageUri")
        if isinstance(image, str):
            problem = image_problem(image) if image else "is empty; name an image or remove imageUri"
            if problem:
                f.bad(f"{base}.imageUri", f"{image!r} {problem}", image)
            if name != "masterConfig" and image and master is None:
                f.bad(f"{base}.imageUri", f"{name}.imageUri needs masterConfig.imageUri: a job runs either a runtime "
                      "version or custom containers (replicas without an image of their own run the master's); set "
                      "masterConfig.imageUri, or remove this one and use runtimeVersion", image)
        runs_image = bool(image) or master is not None
        for field in ("containerCommand", "containerArgs"):
            if config.get(field) is None:
                continue
            if not runs_image:
                f.bad(f"{base}.{field}", f"{field} can only be set on a replica that runs a custom container "
                      "(masterConfig.imageUri, or this replica's imageUri)", config.get(field))
            elif ti.get("args"):
                f.bad(f"{base}.{field}", f"{field} and trainingInput.args are mutually exclusive: put the program's "
                      f"arguments in one place (containerArgs per replica, or args for every replica)",
                      config.get(field))
    tpu_worker = ti.get("workerType") == TPU_MACHINE and master is not None
    worker = configs.get("workerConfig", {})
    if tpu_worker and not worker.get("tpuTfVersion"):
        f.bad("trainingInput.workerConfig.tpuTfVersion", "is required for a TPU worker (workerType cloud_tpu) that "
              "runs a custom container: the runtime version whose TensorFlow matches the image's, e.g. \"2.11\"")
    for name, config in configs.items():
        version = config.get("tpuTfVersion")
        if version is None:
            continue
        field = f"trainingInput.{name}.tpuTfVersion"
        if name != "workerConfig" or not tpu_worker:
            f.bad(field, "tpuTfVersion is only for a TPU worker (workerType cloud_tpu) that runs a custom container; "
                  "remove it", version)
        elif isinstance(version, str) and version not in RUNTIME_VERSIONS:
            f.bad(field, f"{version!r} is not a runtime version (TensorFlow major.minor such as \"2.11\" or "
                  "\"1.15\")", version, UNSUPPORTED_RUNTIME)
    if master is not None:
        unused = [name for name in ("pythonModule", "packageUris", "pythonVersion") if ti.get(name)]
        if unused:
            f.warnings.append(f"trainingInput.{', '.join(unused)}: not used by a custom-container job (the image "
                              f"{master} holds the program and its Python; it runs its ENTRYPOINT or "
                              "containerCommand with args)")
    elif ti.get("useChiefInTfConfig") is True:
        f.warnings.append("trainingInput.useChiefInTfConfig has no effect without a custom container (masterConfig."
                          "imageUri): runtime-version jobs always name the primary replica \"master\" in TF_CONFIG")


def _check_scheduling(scheduling: Any, f: Findings) -> None:
    if not isinstance(scheduling, dict):
        return
    base = "trainingInput.scheduling"
    wait = scheduling.get("maxWaitTime")
    if wait is not None:
        seconds = parse_duration(wait)
        if seconds is not None and seconds < 1800:
            f.bad(f"{base}.maxWaitTime", f"must be at least 1800s (30 minutes), got {wait!r}", wait)
    running = scheduling.get("maxRunningTime")
    if running is not None:
        seconds = parse_duration(running)
        if seconds is not None and seconds <= 0:
            f.bad(f"{base}.maxRunningTime", f"must be greater than 0s, got {running!r}", running)
    priority = scheduling.get("priority")
    if isinstance(priority, int) and not isinstance(priority, bool) and not 0 <= priority <= 1000:
        f.bad(f"{base}.priority", f"must be between 0 and 1000, got {priority}", priority)


def _check_disks(ti: dict[str, Any], f: Findings) -> None:
    for config_field in ("masterConfig", "workerConfig", "parameterServerConfig", "evaluatorConfig"):
        config = ti.get(config_field)
        disk = config.get("diskConfig") if isinstance(config, dict) else None
        if not isinstance(disk, dict):
            continue
        path = f"trainingInput.{config_field}.diskConfig"
        kind = disk.get("bootDiskType")
        if kind is not None and kind not in ("pd-ssd", "pd-standard"):
            f.bad(f"{path}.bootDiskType", f"must be \"pd-ssd\" or \"pd-standard\", got {kind!r}", kind)
        size = disk.get("bootDiskSizeGb")
        # Compute Engine boot disks: 10 GB to 64 TB; the service defaults to 100 GB.
        if isinstance(size, int) and not isinstance(size, bool) and not 10 <= size <= 64000:
            f.bad(f"{path}.bootDiskSizeGb", f"must be between 10 and 64000 (GB), got {size}", size)


def _check_hyperparameters(hp: dict[str, Any], f: Findings) -> None:
    """HyperparameterSpec rules (ml.v1.json GoogleCloudMlV1__HyperparameterSpec / __ParameterSpec)."""
    base = "trainingInput.hyperparameters"
    if hp.get("goal") not in ("MAXIMIZE", "MINIMIZE"):
        f.bad(f"{base}.goal", f"goal is required: MAXIMIZE or MINIMIZE, got {hp.get('goal')!r}", hp.get("goal"))
    params = hp.get("params")
    if not isinstance(params, list) or not params:
        f.bad(f"{base}.params", "at least one parameter is required")
        params = []
    seen: set[str] = set()
    grid = hp.get("algorithm") == "GRID_SEARCH"
    for i, p in enumerate(params):
        path = f"{base}.params[{i}]"
        if not isinstance(p, dict):
            continue
        name = p.get("parameterName")
        if not name:
            f.bad(f"{path}.parameterName", "parameterName is required")
        elif name in seen:
            f.bad(f"{path}.parameterName", f"duplicate parameterName {name!r}; names must be unique", name)
        else:
            seen.add(name)
        kind = p.get("type")
        lo, hi = p.get("minValue"), p.get("maxValue")
        low, high = _num(lo), _num(hi)
        if kind in ("DOUBLE", "INTEGER"):
            if lo is None or hi is None:
                f.bad(path, f"{kind} parameter {name!r} needs minValue and maxValue")
            elif low is not None and high is not None and low > high:
                f.bad(f"{path}.minValue", f"minValue {lo} is greater than maxValue {hi}", lo)
            if kind == "INTEGER" and any(v is not None and not v.is_integer() for v in (low, high)):
                f.bad(path, f"INTEGER parameter {name!r} needs whole-number bounds, got {lo}..{hi}")
            if p.get("scaleType") in ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE") and low is not None and low <= 0:
                f.bad(f"{path}.minValue", f"{p['scaleType']} needs a positive range; minValue is {lo}", lo)
            if grid and kind == "DOUBLE":
                f.bad(f"{path}.type", "GRID_SEARCH works only with INTEGER, CATEGORICAL and DISCRETE parameters",
                      kind)
        elif kind == "CATEGORICAL":
            values = p.get("categoricalValues")
            if not isinstance(values, list) or not values:
                f.bad(f"{path}.categoricalValues", f"CATEGORICAL parameter {name!r} needs categoricalValues")
            # ml.v1.json ParameterSpec: minValue/maxValue "should be unset if type is CATEGORICAL"; scaleType
            # "Leave unset for categorical parameters".
            for unset in ("minValue", "maxValue", "scaleType"):
                if p.get(unset) is not None:
                    f.bad(f"{path}.{unset}", f"must be unset for the CATEGORICAL parameter {name!r} (the API says "
                          f"so); remove {unset}", p.get(unset))
        elif kind == "DISCRETE":
            values = p.get("discreteValues")
            maybe = [_num(v) for v in values] if isinstance(values, list) else []
            nums = [n for n in maybe if n is not None]
            if not nums or len(nums) != len(maybe):
                f.bad(f"{path}.discreteValues", f"DISCRETE parameter {name!r} needs numeric discreteValues")
            elif any(b <= a for a, b in zip(nums, nums[1:])):
                f.bad(f"{path}.discreteValues", f"must be strictly increasing, got {values}", values)
            elif len(nums) > MAX_DISCRETE_VALUES:  # ml.v1.json: "should not contain more than 1,000 values"
                f.bad(f"{path}.discreteValues", f"has {len(nums)} values; at most {MAX_DISCRETE_VALUES}", len(nums))
    trials, parallel = _int(hp.get("maxTrials")), _int(hp.get("maxParallelTrials"))
    if trials is not None and parallel is not None and parallel > trials:
        f.bad(f"{base}.maxParallelTrials", f"maxParallelTrials ({parallel}) must not exceed maxTrials ({trials})",
              parallel)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None
