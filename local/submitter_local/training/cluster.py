"""The replicas of a training job and the `TF_CONFIG` each one sees (pure functions).

Sources:
* `ml.v1.json` (google-api-python-client's bundled discovery document): `scaleTier`,
  `workerCount`, `parameterServerCount`, `evaluatorCount`, `useChiefInTfConfig` ("Use `chief`
  instead of `master` ... when training with a custom container ... This field has no effect
  for training jobs that don't use a custom container").
* AI Platform Training docs, "Machine types / scale tiers": BASIC = 1 master; STANDARD_1 =
  1 master + 4 workers + 3 parameter servers; PREMIUM_1 = 1 master + 19 workers + 11
  parameter servers; BASIC_GPU = 1 master with a GPU; BASIC_TPU = 1 master + 1 Cloud TPU
  worker. (The discovery document only says "Many workers and a few parameter servers".)
* AI Platform Training docs, "TF_CONFIG and distributed training": every replica gets
  `{"cluster": {...}, "task": {"type", "index"}, "job": <TrainingInput>, "environment": "cloud"}`;
  the cluster lists `master` (or `chief`), `worker` and `ps` but never `evaluator`.

Local differences (see docs/local-training.md): worker / parameter-server / evaluator counts
are capped at `max_replicas_per_type` processes each; a Cloud TPU worker (`cloud_tpu`) is an
accelerator, not a machine running the trainer, so it is not started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Preset tiers as (workers, parameter servers) besides the single master.
PRESET_TIERS: dict[str, tuple[int, int]] = {
    "BASIC": (0, 0),
    "BASIC_GPU": (0, 0),
    "BASIC_TPU": (1, 0),  # the one worker is a Cloud TPU
    "STANDARD_1": (4, 3),
    "PREMIUM_1": (19, 11),
}
TPU_MACHINE = "cloud_tpu"

#: TrainingInput count/type field prefixes -> TF_CONFIG task type.
_ROLES = (("worker", "worker"), ("parameterServer", "ps"), ("evaluator", "evaluator"))


@dataclass(frozen=True)
class Replica:
    """One process of a job: its TF_CONFIG task `type` (master, chief, worker, ps, evaluator)
    and `index` (0-based within its type); `pool` is its Vertex worker pool (0-3) for a Vertex
    CustomJob, None for an ml v1 job."""

    type: str
    index: int
    pool: int | None = None

    @property
    def name(self) -> str:
        """`master-0`, `worker-1`, ... (`workerpool1-0` on Vertex, its Cloud Logging task name): the
        log file stem and the logs endpoint's `replica`."""
        return f"{self.type}-{self.index}" if self.pool is None else f"workerpool{self.pool}-{self.index}"

    @property
    def label(self) -> str:
        """`master 0` (`workerpool0-0` on Vertex): how the cloud names a replica in errorMessage."""
        return f"{self.type} {self.index}" if self.pool is None else self.name


@dataclass(frozen=True)
class ClusterPlan:
    """What runs locally for a TrainingInput.

    replicas: the processes, primary first, then workers, parameter servers, evaluators.
    requested: replicas per TF type the spec asks for (before the local cap), e.g.
        {"master": 1, "worker": 4, "ps": 3, "evaluator": 0}.
    notes: one line per local difference (caps, TPU workers, ignored useChiefInTfConfig).
    """

    replicas: tuple[Replica, ...]
    requested: dict[str, int]
    notes: tuple[str, ...]

    @property
    def primary(self) -> Replica:
        return self.replicas[0]

    def names(self) -> list[str]:
        return [r.name for r in self.replicas]


def primary_type(ti: dict[str, Any]) -> str:
    """`chief` when `useChiefInTfConfig` is set on a custom-container job, else `master`
    (the field "has no effect for training jobs that don't use a custom container")."""
    custom_container = bool(ti.get("masterConfig", {}).get("imageUri"))
    return "chief" if ti.get("useChiefInTfConfig") and custom_container else "master"


def plan(ti: dict[str, Any], max_replicas_per_type: int) -> ClusterPlan:
    """The replicas to run for TrainingInput `ti` (already validated by `jobspec`).

    Counts come from the preset tier, or from `workerCount` / `parameterServerCount` /
    `evaluatorCount` (int64 strings on the wire) for CUSTOM; each non-primary type is capped
    at `max_replicas_per_type` (>= 0). TPU workers are counted in `requested` but not run.
    """
    tier = ti.get("scaleTier") or "BASIC"  # the service treats a missing tier as BASIC
    requested = {"worker": 0, "ps": 0, "evaluator": 0}
    if tier == "CUSTOM":
        for field, tf_type in _ROLES:
            requested[tf_type] = int(ti.get(f"{field}Count", "0") or 0)
    else:
        requested["worker"], requested["ps"] = PRESET_TIERS.get(tier, (0, 0))
    primary = primary_type(ti)
    notes: list[str] = []
    if ti.get("useChiefInTfConfig") and primary == "master":
        notes.append("useChiefInTfConfig has no effect without a custom container: the primary replica is "
                     "'master', as on the cloud.")
    tpu_workers = tier == "BASIC_TPU" or (tier == "CUSTOM" and ti.get("workerType") == TPU_MACHINE)
    replicas = [Replica(primary, 0)]
    for _, tf_type in _ROLES:
        want = requested[tf_type]
        if tf_type == "worker" and tpu_workers and want:
            notes.append(f"{want} Cloud TPU worker(s) requested: a TPU is an accelerator, not a machine running "
                         "the trainer, so no process is started for it locally.")
            continue
        run = min(want, max_replicas_per_type)
        if run < want:
            notes.append(f"{want} {tf_type} replica(s) requested, {run} run locally "
                         f"(max_replicas_per_type={max_replicas_per_type}).")
        replicas.extend(Replica(tf_type, i) for i in range(run))
    return ClusterPlan(tuple(replicas), {primary: 1, **requested}, tuple(notes))


def cluster_spec(plan_: ClusterPlan, addresses: dict[str, str]) -> dict[str, list[str]]:
    """`TF_CONFIG.cluster`: {primary: [addr], "worker": [...], "ps": [...]} in index order.

    `addresses` maps replica name -> "host:port". Evaluators are never listed (as on the
    cloud); types without replicas are left out."""
    cluster: dict[str, list[str]] = {}
    for r in plan_.replicas:
        if r.type == "evaluator":
            continue
        cluster.setdefault(r.type, []).append(addresses[r.name])
    return cluster


def tf_config(plan_: ClusterPlan, addresses: dict[str, str], replica: Replica,
              training_input: dict[str, Any]) -> dict[str, Any]:
    """The `TF_CONFIG` dict of one replica (JSON-encode it into the environment)."""
    return {
        "cluster": cluster_spec(plan_, addresses),
        "task": {"type": replica.type, "index": replica.index},
        "job": training_input,
        "environment": "cloud",
    }


def consumed_ml_units(replica_count: int, running_seconds: float) -> float:
    """A local estimate of `trainingOutput.consumedMLUnits`: one ML unit per replica-hour of
    RUNNING wall-clock time (the rate of a BASIC machine), rounded to 6 decimals.

    The cloud priced each machine type differently; this service runs every replica on the
    same machine, so it does not pretend to know those rates."""
    return round(max(0, replica_count) * max(0.0, running_seconds) / 3600.0, 6)
