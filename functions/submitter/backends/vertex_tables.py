"""The data the Vertex AI translation reads: prebuilt training images, legacy machine types, scale tiers, TPUs.

Pure data, each table with its source and the date it was read. When Google's lists change, this file is the
one place to update (`tests/test_vertex_translate.py` checks the tables' shape and the rules that read them).

Sources (read on REVIEWED; Google's pages now live under docs.cloud.google.com, the old URLs redirect):
  [images]   https://cloud.google.com/vertex-ai/docs/training/pre-built-containers and
             https://cloud.google.com/vertex-ai/docs/supported-frameworks-list ("Supported frameworks for custom
             training", TensorFlow table: version, accelerators, end of patch, end of availability, image URIs).
             Read from a stored copy of the page whose capture date is unknown; its newest TensorFlow row is 2.17.
  [compute]  https://cloud.google.com/vertex-ai/docs/training/configure-compute (machine types for custom
             training, GPU types and the valid GPU counts per machine type, TPU v2/v3 layout, boot disks
             100-64000 GB; "NVIDIA P100 GPUs reach end of support on September 15, 2026").
  [ml-v1]    the ml v1 discovery document bundled with google-api-python-client (TrainingInput.masterType lists
             the legacy machine names and describes them relative to each other: complex_model_m has "roughly
             twice the number of cores and roughly double the memory of complex_model_s", standard_gpu is
             "equivalent to standard" plus one K80, complex_model_m_gpu four, complex_model_l_gpu eight;
             *_p100 and *_v100 likewise), and https://cloud.google.com/ai-platform/training/docs/machine-types
             (scale tiers: BASIC one replica, BASIC_GPU one replica with one K80, BASIC_TPU a master and a Cloud
             TPU, STANDARD_1 1 master + 4 workers + 3 parameter servers, PREMIUM_1 1 + 19 + 11).
  [aiplatform-v1] aiplatform.v1.json bundled with google-api-python-client (MachineSpec.acceleratorType:
             "NVIDIA_TESLA_K80 Deprecated: Nvidia Tesla K80 GPU has reached end of support").

What could not be verified, and the conservative choice made instead:
  - The exact Compute Engine shape behind each legacy machine name was not in the documents available here (the
    ml v1 document describes them only relative to each other). The table below reads `standard` as
    n1-standard-4, `large_model` as n1-highmem-8 and complex_model_s/m/l as 8/16/32-vCPU high-CPU machines;
    Vertex does not offer n1-highcpu-8, so complex_model_s becomes n1-standard-8 (same vCPUs, more memory).
  - The machine types of the STANDARD_1 and PREMIUM_1 tiers are not documented: every replica gets the
    `standard` shape (n1-standard-4), the cheapest reading; a warning says so.
  - K80s are retired (aiplatform v1 enum): each K80 becomes one NVIDIA_TESLA_T4, the cheapest current GPU that
    fits the same N1 machines; an n1-highcpu-32 takes at most 4 T4s [compute], so complex_model_l_gpu (8 K80)
    gets 4.
  - Which prebuilt images are still available on a given day is not knowable offline. Every TensorFlow image in
    the table had passed its documented end of availability by REVIEWED; the rule in `pick_training_image` then
    takes the image available longest (TensorFlow 2.17) and the warning says so. Add newer rows here as Google
    publishes them; the same rule then picks them.
  - AI Platform's default Cloud TPU (no acceleratorConfig on a cloud_tpu worker) is read as TPU_V2 with 8 cores,
    the smallest v2/v3 configuration Vertex documents [compute].
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Literal

REVIEWED = dt.date(2026, 12, 2)
IMAGES_SOURCE = ("https://cloud.google.com/vertex-ai/docs/training/pre-built-containers; "
                 "https://cloud.google.com/vertex-ai/docs/supported-frameworks-list")
COMPUTE_SOURCE = "https://cloud.google.com/vertex-ai/docs/training/configure-compute"

ImageKind = Literal["cpu", "gpu", "tpu"]


@dataclasses.dataclass(frozen=True)
class TrainingImage:
    """One prebuilt training image [images].

    Attributes:
        version: the TensorFlow (major, minor) version, e.g. (2, 17).
        kind: "cpu", "gpu" (CUDA) or "tpu" (TPU VMs).
        python: the image's Python version, e.g. "3.10".
        end_of_availability: the documented end of availability.
        name: the image name in the vertex-ai/training repository, e.g. "tf-cpu.2-17.py310".
    """

    version: tuple[int, int]
    kind: ImageKind
    python: str
    end_of_availability: dt.date
    name: str

    def uri(self, registry: str) -> str:
        """The image URI in one of the regional registries ("us-docker.pkg.dev", ...); `latest` is the only tag
        Vertex supports for prebuilt images [images]."""
        return f"{registry}/vertex-ai/training/{self.name}:latest"


def _tf(version: tuple[int, int], python: str, eoa: dt.date, suffix: str, kinds: tuple[ImageKind, ...] = ("cpu", "gpu")
        ) -> list[TrainingImage]:
    tag = f"{version[0]}-{version[1]}"
    return [TrainingImage(version, kind, python, eoa, f"tf-{kind}.{tag}{suffix}") for kind in kinds]


# Every TensorFlow training image of [images]: (version, Python, end of availability). The page lists no 2.10.
TRAINING_IMAGES: tuple[TrainingImage, ...] = tuple(
    _tf((2, 17), "3.10", dt.date(2026, 7, 11), ".py310")
    + _tf((2, 16), "3.10", dt.date(2026, 6, 28), ".py310")
    + _tf((2, 15), "3.10", dt.date(2025, 11, 14), ".py310")
    + _tf((2, 15), "3.10", dt.date(2025, 10, 23), ".cp310", ("tpu",))
    + _tf((2, 14), "3.10", dt.date(2025, 9, 26), ".py310")
    + _tf((2, 13), "3.10", dt.date(2025, 7, 5), ".py310")
    + _tf((2, 12), "3.10", dt.date(2025, 6, 30), ".py310")
    + _tf((2, 12), "3.8", dt.date(2025, 6, 30), "", ("tpu",))
    + _tf((2, 11), "3.10", dt.date(2024, 11, 15), ".py310")
    + _tf((2, 11), "3.7", dt.date(2024, 11, 15), "")
    + _tf((2, 9), "3.10", dt.date(2024, 11, 15), ".py310")
    + _tf((2, 9), "3.7", dt.date(2024, 11, 15), "")
    + _tf((2, 8), "3.10", dt.date(2024, 11, 15), ".py310")
    + _tf((2, 8), "3.7", dt.date(2024, 11, 15), "")
    + [image for minor in (7, 6, 5, 4, 3, 2, 1) for image in _tf((2, minor), "3.7", dt.date(2024, 9, 1), "")]
    + _tf((1, 15), "3.7", dt.date(2024, 9, 1), "")
)

# The regional copies of each image [images]: "use any of the URIs; each provides the same container image".
# The one nearest the job's region is chosen (the console does the same).
REGISTRY_BY_REGION_PREFIX = (("europe-", "europe-docker.pkg.dev"), ("me-", "europe-docker.pkg.dev"),
                             ("africa-", "europe-docker.pkg.dev"), ("asia-", "asia-docker.pkg.dev"),
                             ("australia-", "asia-docker.pkg.dev"))
DEFAULT_REGISTRY = "us-docker.pkg.dev"  # us-*, northamerica-*, southamerica-* and anything else


def registry_for(region: str) -> str:
    """The Artifact Registry host of the prebuilt images nearest to `region`."""
    return next((host for prefix, host in REGISTRY_BY_REGION_PREFIX if region.startswith(prefix)), DEFAULT_REGISTRY)


@dataclasses.dataclass(frozen=True)
class ImageChoice:
    """The prebuilt image chosen for a runtimeVersion, and why it differs from what was asked, if it does."""

    image: TrainingImage
    exact: bool  # the same TensorFlow minor version as the runtimeVersion
    available: bool  # its end of availability is not before REVIEWED


def runtime_tensorflow(runtime_version: str) -> tuple[int, int] | None:
    """The TensorFlow version an AI Platform runtimeVersion bundled: runtime 1.x meant TensorFlow 1.x and
    2.x meant 2.x (https://cloud.google.com/ai-platform/training/docs/runtime-version-list); None when
    `runtime_version` is not "<major>.<minor>"."""
    major, dot, minor = runtime_version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def pick_training_image(tensorflow: tuple[int, int], python: str | None, kind: ImageKind) -> ImageChoice:
    """The prebuilt image for TensorFlow `tensorflow` on `kind` hardware (pure; the rule is the README's).

    Among the images of `kind` still available on REVIEWED, the nearest version: the same one, else the
    smallest newer one, else the newest older one; the image for the requested Python when both exist. When
    none of `kind` is still available, the one available longest (latest end of availability, then newest).
    """
    of_kind = [i for i in TRAINING_IMAGES if i.kind == kind]
    available = [i for i in of_kind if i.end_of_availability >= REVIEWED]
    if available:
        newer = sorted((i for i in available if i.version >= tensorflow), key=lambda i: i.version)
        older = sorted((i for i in available if i.version < tensorflow), key=lambda i: i.version, reverse=True)
        version = (newer or older)[0].version
        pool = [i for i in available if i.version == version]
    else:
        last = max(i.end_of_availability for i in of_kind)
        pool = sorted((i for i in of_kind if i.end_of_availability == last), key=lambda i: i.version, reverse=True)
        pool = [i for i in pool if i.version == pool[0].version]
    image = next((i for i in pool if i.python == python), pool[0])
    return ImageChoice(image, image.version == tensorflow, image.end_of_availability >= REVIEWED)


@dataclasses.dataclass(frozen=True)
class Machine:
    """A Vertex machine for a legacy AI Platform machine name.

    Attributes:
        machine_type: the Compute Engine machine type [compute].
        accelerator_type / accelerator_count: GPUs the legacy name implied, as they run on Vertex (or None/0).
        meant: what the legacy name meant, for messages [ml-v1].
    """

    machine_type: str
    accelerator_type: str | None
    accelerator_count: int
    meant: str


# Legacy machine names -> Vertex machines (see the module docstring for what is a reading, not a fact). The GPU
# counts are ones [compute] lists as valid for the machine type.
LEGACY_MACHINES: dict[str, Machine] = {
    "standard": Machine("n1-standard-4", None, 0, "a basic machine"),
    "large_model": Machine("n1-highmem-8", None, 0, "a machine with a lot of memory"),
    "complex_model_s": Machine("n1-standard-8", None, 0, "a machine with about 8 cores"),
    "complex_model_m": Machine("n1-highcpu-16", None, 0, "twice complex_model_s"),
    "complex_model_l": Machine("n1-highcpu-32", None, 0, "twice complex_model_m"),
    "standard_gpu": Machine("n1-standard-4", "NVIDIA_TESLA_T4", 1, "standard with 1 NVIDIA K80"),
    "complex_model_m_gpu": Machine("n1-highcpu-16", "NVIDIA_TESLA_T4", 4, "complex_model_m with 4 NVIDIA K80"),
    "complex_model_l_gpu": Machine("n1-highcpu-32", "NVIDIA_TESLA_T4", 4, "complex_model_l with 8 NVIDIA K80"),
    "standard_p100": Machine("n1-standard-4", "NVIDIA_TESLA_P100", 1, "standard with 1 NVIDIA P100"),
    "complex_model_m_p100": Machine("n1-highcpu-16", "NVIDIA_TESLA_P100", 4, "complex_model_m with 4 NVIDIA P100"),
    "standard_v100": Machine("n1-standard-4", "NVIDIA_TESLA_V100", 1, "standard with 1 NVIDIA V100"),
    "large_model_v100": Machine("n1-highmem-8", "NVIDIA_TESLA_V100", 1, "large_model with 1 NVIDIA V100"),
    "complex_model_m_v100": Machine("n1-highcpu-16", "NVIDIA_TESLA_V100", 4, "complex_model_m with 4 NVIDIA V100"),
    "complex_model_l_v100": Machine("n1-highcpu-32", "NVIDIA_TESLA_V100", 8, "complex_model_l with 8 NVIDIA V100"),
}
# The legacy names whose GPUs were K80s (retired): they run with T4s instead, with a warning.
K80_LEGACY = frozenset({"standard_gpu", "complex_model_m_gpu", "complex_model_l_gpu"})
K80 = "NVIDIA_TESLA_K80"
K80_REPLACEMENT = "NVIDIA_TESLA_T4"
P100 = "NVIDIA_TESLA_P100"
P100_END_OF_SUPPORT = dt.date(2026, 9, 15)  # [compute]

# Preset scale tiers -> (legacy machine name, replicas) per pool: master, workers, parameter servers [ml-v1].
# BASIC_TPU is a TPU job (TPU_LAYOUT); CUSTOM names its machines itself.
SCALE_TIERS: dict[str, tuple[tuple[str, int], ...]] = {
    "BASIC": (("standard", 1),),
    "BASIC_GPU": (("standard_gpu", 1),),
    "STANDARD_1": (("standard", 1), ("standard", 4), ("standard", 3)),
    "PREMIUM_1": (("standard", 1), ("standard", 19), ("standard", 11)),
}
UNDOCUMENTED_TIER_MACHINES = frozenset({"STANDARD_1", "PREMIUM_1"})

# TPU v2/v3 on Vertex [compute]: one worker pool on a TPU VM, machineType cloud-tpu, acceleratorType TPU_V2 or
# TPU_V3, acceleratorCount 8 (one TPU) or a multiple of 32 (a Pod slice), replicaCount 1.
TPU_MACHINE_TYPE = "cloud-tpu"
TPU_DEFAULT = ("TPU_V2", 8)
TPU_TYPES = {"TPU_V2": "TPU_V2", "TPU_V3": "TPU_V3", "TPU_V2_POD": "TPU_V2", "TPU_V3_POD": "TPU_V3"}
TPU_POD_UNIT = 32

# Boot disks on Vertex [compute]: 100 to 64,000 GB (AI Platform allowed smaller ones).
MIN_BOOT_DISK_GB = 100
MAX_BOOT_DISK_GB = 64000
MAX_DISPLAY_NAME = 128  # aiplatform v1 CustomJob.displayName: "up to 128 characters"
MAX_LABEL_CHARS = 64  # aiplatform v1 CustomJob.labels: "no longer than 64 characters"
MAX_LABELS = 64  # https://cloud.google.com/resource-manager/docs/labels-overview
