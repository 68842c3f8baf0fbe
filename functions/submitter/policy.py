"""Deployment policy: what a drop may ask for (pure).

A bucket that starts training jobs is a door for running code on the
project's money, so each deployment caps what a drop can request. The policy
is a small YAML file (`SUBMITTER_POLICY_FILE`); without one the defaults below
apply. A drop over the policy is rejected with reason POLICY_VIOLATION naming
the rule. Absent `scheduling.maxRunningTime` is filled with the policy's cap
(the service default would be seven days).

`rules` and the YAML loader are imported by the methods that use them: `Settings` holds a Policy, so every process
imports this module, and a CLI command that only reads a job's status should not load them (~0.03 s).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from .reasons import Reason, Violation

POLICY_VIOLATION = Reason.POLICY_VIOLATION


@dataclasses.dataclass(frozen=True)
class Policy:
    """Caps on a job spec. Patterns use shell wildcards (fnmatch).

    Attributes:
        allowed_regions: regions jobs may run in.
        allowed_scale_tiers: scaleTier values.
        allowed_machine_types: patterns for masterType/workerType/parameterServerType/evaluatorType.
        allowed_accelerators: acceleratorConfig.type values.
        max_replicas: replicas in one job, master included (preset tiers count as their documented sizes).
        max_accelerators: accelerators across all replicas.
        max_running_time_s: cap on scheduling.maxRunningTime (seconds); also the value filled when absent.
        allowed_service_accounts: emails the job may run as; empty means no custom serviceAccount.
        allowed_image_registries: patterns a replica's `imageUri` must match (custom containers); the default
            admits Google's registries only (Artifact Registry, Container Registry), so a drop cannot pull an
            arbitrary public image.
        allowed_networks: VPC networks (`network`, projects/P/global/networks/N) a job may peer with; empty
            means none.
        allow_web_access: whether `enableWebAccess` (an interactive shell into the training replicas) may be set.
    """

    allowed_regions: tuple[str, ...] = ("us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4",
                                        "asia-east1")
    allowed_scale_tiers: tuple[str, ...] = ("BASIC", "STANDARD_1", "BASIC_GPU", "BASIC_TPU", "CUSTOM")
    allowed_machine_types: tuple[str, ...] = ("n1-standard-*", "n1-highmem-*", "n1-highcpu-*", "standard",
                                              "large_model", "complex_model_*", "standard_gpu", "standard_p100",
                                              "standard_v100", "cloud_tpu")
    allowed_accelerators: tuple[str, ...] = ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "TPU_V2",
                                             "TPU_V3")
    max_replicas: int = 100  # Google's published samples go up to 90 (criteo_tft/config-large.yaml)
    max_accelerators: int = 8
    max_running_time_s: float = 2 * 24 * 3600.0
    allowed_service_accounts: tuple[str, ...] = ()
    allowed_image_registries: tuple[str, ...] = ("*-docker.pkg.dev/*", "gcr.io/*", "*.gcr.io/*")
    allowed_networks: tuple[str, ...] = ()
    allow_web_access: bool = False

    @classmethod
    def from_yaml(cls, text: str, source: str = "policy file") -> Policy:
        """Parse a policy file; keys are the attribute names (`max_running_time_s` may be "86400s").

        Raises:
            ValueError: unknown keys or wrong types, naming the file and key.
        """
        import yaml

        from . import rules  # imported here: see the module docstring

        doc = yaml.safe_load(text) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{source}: must be a mapping of policy settings")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in doc.items():
            if key not in fields:
                raise ValueError(f"{source}: unknown key {key!r}; known: {', '.join(fields)}")
            if key.startswith(("allowed_",)):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{source}: {key} must be a list of strings")
                values[key] = tuple(value)
            elif key == "allow_web_access":
                if not isinstance(value, bool):
                    raise ValueError(f"{source}: allow_web_access must be true or false")
                values[key] = value
            elif key == "max_running_time_s":
                seconds = rules.parse_duration(value) if isinstance(value, str) else value
                if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
                    raise ValueError(f"{source}: max_running_time_s must be seconds, e.g. 86400 or \"86400s\"")
                values[key] = float(seconds)
            else:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{source}: {key} must be a non-negative integer")
                values[key] = value
        return cls(**values)

    def fill(self, ti: dict[str, Any]) -> None:
        """Fill scheduling.maxRunningTime with the cap when the spec has none (in place)."""
        scheduling = ti.get("scheduling")
        if scheduling is None:
            scheduling = ti["scheduling"] = {}
        if isinstance(scheduling, dict) and "maxRunningTime" not in scheduling:
            scheduling["maxRunningTime"] = f"{int(self.max_running_time_s)}s"

    def check(self, ti: dict[str, Any]) -> list[Violation]:
        """Violations of this policy by a completed TrainingInput (reason POLICY_VIOLATION)."""
        from . import rules  # imported here: see the module docstring

        out: list[Violation] = []

        def bad(field: str, message: str, value: Any = None) -> None:
            out.append(Violation(field, message + " (deployment policy)", POLICY_VIOLATION, value))

        region = ti.get("region")
        if isinstance(region, str) and region not in self.allowed_regions:
            bad("trainingInput.region", f"region {region!r} is not allowed; allowed: {', '.join(self.allowed_regions)}",
                region)
        tier = rules.scale_tier(ti)
        if tier not in self.allowed_scale_tiers:
            bad("trainingInput.scaleTier", f"scaleTier {tier} is not allowed; allowed: "
                + ", ".join(self.allowed_scale_tiers), tier)
        for field in ("masterType", "workerType", "parameterServerType", "evaluatorType"):
            machine = ti.get(field)
            if isinstance(machine, str) and not any(fnmatch.fnmatchcase(machine, p)
                                                    for p in self.allowed_machine_types):
                bad(f"trainingInput.{field}", f"machine type {machine} is not allowed; allowed: "
                    + ", ".join(self.allowed_machine_types), machine)
        for config_field in ("masterConfig", "workerConfig", "parameterServerConfig", "evaluatorConfig"):
            config = ti.get(config_field)
            acc = config.get("acceleratorConfig") if isinstance(config, dict) else None
            kind = acc.get("type") if isinstance(acc, dict) else None
            if isinstance(kind, str) and kind not in self.allowed_accelerators:
                bad(f"trainingInput.{config_field}.acceleratorConfig.type", f"accelerator {kind} is not allowed; "
                    "allowed: " + ", ".join(self.allowed_accelerators), kind)
        replicas = sum(rules.replica_counts(ti).values())
        if replicas > self.max_replicas:
            bad("trainingInput", f"the job asks for {replicas} replicas; at most {self.max_replicas} are allowed",
                replicas)
        accelerators = rules.accelerator_total(ti)
        if accelerators > self.max_accelerators:
            bad("trainingInput", f"the job asks for {accelerators} accelerators; at most {self.max_accelerators} "
                "are allowed", accelerators)
        scheduling: dict[str, Any] = ti["scheduling"] if isinstance(ti.get("scheduling"), dict) else {}
        running = rules.parse_duration(scheduling.get("maxRunningTime"))
        if running is not None and running > self.max_running_time_s:
            bad("trainingInput.scheduling.maxRunningTime", f"{scheduling['maxRunningTime']} exceeds the cap of "
                f"{int(self.max_running_time_s)}s", scheduling["maxRunningTime"])
        for config_field in ("masterConfig", "workerConfig", "parameterServerConfig", "evaluatorConfig"):
            config = ti.get(config_field)
            image = config.get("imageUri") if isinstance(config, dict) else None
            if isinstance(image, str) and not any(fnmatch.fnmatchcase(image, p) for p in self.allowed_image_registries):
                bad(f"trainingInput.{config_field}.imageUri", f"image {image} is not from an allowed registry; "
                    "allowed: " + (", ".join(self.allowed_image_registries) or "none"), image)
        network = ti.get("network")
        if isinstance(network, str) and network not in self.allowed_networks:
            bad("trainingInput.network", f"network {network} is not allowed; allowed: "
                + (", ".join(self.allowed_networks) or "none (jobs run without VPC peering)"), network)
        if ti.get("enableWebAccess") is True and not self.allow_web_access:
            bad("trainingInput.enableWebAccess", "web access to the training replicas is not allowed (set "
                "allow_web_access: true in the policy to permit it)", True)
        account = ti.get("serviceAccount")
        if account is not None and account not in self.allowed_service_accounts:
            allowed = ", ".join(self.allowed_service_accounts) or "none: jobs run as the service's default account"
            bad("trainingInput.serviceAccount", f"serviceAccount {account} is not allowed; allowed: {allowed}",
                account)
        return out

    def fill_vertex(self, spec: dict[str, Any]) -> None:
        """Fill a CustomJobSpec's scheduling.timeout with the cap when it has none (in place)."""
        scheduling = spec.get("scheduling")
        if scheduling is None:
            scheduling = spec["scheduling"] = {}
        if isinstance(scheduling, dict) and "timeout" not in scheduling:
            scheduling["timeout"] = f"{int(self.max_running_time_s)}s"

    def check_vertex(self, spec: dict[str, Any], region: str | None = None) -> list[Violation]:
        """Violations of this policy by a completed Vertex CustomJobSpec (the same caps as `check`, in Vertex terms:
        each pool's machineSpec and replicaCount, containerSpec and executor images, scheduling.timeout, network,
        enableWebAccess, serviceAccount), fields named by their CustomJob path. `region`: where it would run."""
        from . import rules  # imported here: see the module docstring

        out: list[Violation] = []

        def bad(field: str, message: str, value: Any = None) -> None:
            out.append(Violation(field, message + " (deployment policy)", POLICY_VIOLATION, value))

        if region is not None and region not in self.allowed_regions:
            bad("region", f"region {region!r} is not allowed; allowed: {', '.join(self.allowed_regions)}", region)
        pools = spec.get("workerPoolSpecs")
        replicas = accelerators = 0
        for i, pool in enumerate(pools if isinstance(pools, list) else []):
            if not isinstance(pool, dict) or not pool:
                continue
            path = f"jobSpec.workerPoolSpecs[{i}]"
            count = _as_int(pool.get("replicaCount"))
            count = 1 if count is None else count
            replicas += count
            machine: dict[str, Any] = pool["machineSpec"] if isinstance(pool.get("machineSpec"), dict) else {}
            kind = machine.get("machineType")
            if isinstance(kind, str) and not any(fnmatch.fnmatchcase(kind, p) for p in self.allowed_machine_types):
                bad(f"{path}.machineSpec.machineType", f"machine type {kind} is not allowed; allowed: "
                    + ", ".join(self.allowed_machine_types), kind)
            accelerator = machine.get("acceleratorType")
            if isinstance(accelerator, str) and accelerator != "ACCELERATOR_TYPE_UNSPECIFIED":
                if accelerator not in self.allowed_accelerators:
                    bad(f"{path}.machineSpec.acceleratorType", f"accelerator {accelerator} is not allowed; allowed: "
                        + ", ".join(self.allowed_accelerators), accelerator)
                accelerators += count * (_as_int(machine.get("acceleratorCount")) or 0)
            for program, field in (("containerSpec", "imageUri"), ("pythonPackageSpec", "executorImageUri")):
                image = pool.get(program, {}).get(field) if isinstance(pool.get(program), dict) else None
                if isinstance(image, str) and not any(fnmatch.fnmatchcase(image, p)
                                                      for p in self.allowed_image_registries):
                    bad(f"{path}.{program}.{field}", f"image {image} is not from an allowed registry; allowed: "
                        + (", ".join(self.allowed_image_registries) or "none"), image)
        if replicas > self.max_replicas:
            bad("jobSpec.workerPoolSpecs", f"the job asks for {replicas} replicas; at most {self.max_replicas} are "
                "allowed", replicas)
        if accelerators > self.max_accelerators:
            bad("jobSpec.workerPoolSpecs", f"the job asks for {accelerators} accelerators; at most "
                f"{self.max_accelerators} are allowed", accelerators)
        scheduling: dict[str, Any] = spec["scheduling"] if isinstance(spec.get("scheduling"), dict) else {}
        running = rules.parse_duration(scheduling.get("timeout"))
        if running is not None and running > self.max_running_time_s:
            bad("jobSpec.scheduling.timeout", f"{scheduling['timeout']} exceeds the cap of "
                f"{int(self.max_running_time_s)}s", scheduling["timeout"])
        network = spec.get("network")
        if isinstance(network, str) and network not in self.allowed_networks:
            bad("jobSpec.network", f"network {network} is not allowed; allowed: "
                + (", ".join(self.allowed_networks) or "none (jobs run without VPC peering)"), network)
        for access in ("enableWebAccess", "enableDashboardAccess"):
            if spec.get(access) is True and not self.allow_web_access:
                bad(f"jobSpec.{access}", "access to the training replicas is not allowed (set allow_web_access: "
                    "true in the policy to permit it)", True)
        account = spec.get("serviceAccount")
        if account is not None and account not in self.allowed_service_accounts:
            allowed = ", ".join(self.allowed_service_accounts) or "none: jobs run as the service's default account"
            bad("jobSpec.serviceAccount", f"serviceAccount {account} is not allowed; allowed: {allowed}", account)
        return out


def _as_int(value: Any) -> int | None:
    """An int64 as JSON writes it (a number or a decimal string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
