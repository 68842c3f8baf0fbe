"""What the runner needs to know about a job, per API: the hook between a stored job and `runner.JobRun`.

The runner (`runner.py`) does the same work for every job: download and install packages, start one sandboxed
process per replica with an allowlisted environment (`replica_env.build`, `sandbox.launch`), watch them, stop
them. What differs between an ml v1 Job and a Vertex CustomJob (or, later, a tuning trial) is small and lives in
a `RunProfile`:

    plan                  the replicas to start (`cluster.ClusterPlan`), primary first
    refusal()             why the job cannot run here at all (a container image, ...), or None
    package_uris()        the gs:// packages to install (one environment serves every replica)
    command(replica)      `[module, *args]` the replica runs as `python -m`
    addressed(replica)    whether the replica gets a cluster address
    variables(...)        what the training service sets in the replica's environment (TF_CONFIG, ...)
    runtime_version, python_version, runtime_notes(...)   the runtime the job asked for, and log notes
    max_running_time(), timeout_field                     the job's running-time limit and its field name
    tuning, study_spec(), trial_command(...), trial_timeout()   a tuning job's study and how a trial runs
                          (`trials.py`; ml v1 `trainingInput.hyperparameters`, or a Vertex HyperparameterTuningJob)

`for_record(rec, config)` picks the profile from the record's internal `runtime["api"]` ("ml_v1" when absent;
"vertex" for a CustomJob, "vertex_tuning" for a HyperparameterTuningJob).
`MlV1Profile` is the ml v1 behaviour (docs "TF_CONFIG and distributed training"); `vertex_run.VertexProfile`
is Vertex AI's.
"""

from __future__ import annotations

import json
from typing import Any

from . import cluster, containers, runtimes
from .config import ServiceConfig
from .store import JobRecord
from .study import StudySpec


class MlV1Profile:
    """An ml v1 `projects.jobs` Job: `trainingInput` decides everything (see `cluster.py`)."""

    api = "ml_v1"
    timeout_field = "scheduling.maxRunningTime"

    def __init__(self, rec: JobRecord, config: ServiceConfig):
        self.project, self.job_id = rec.project, rec.job_id
        self.ti: dict[str, Any] = rec.job["trainingInput"]
        self.plan = cluster.plan(self.ti, config.max_replicas_per_type)
        self.runtime_python = config.runtime_python

    @property
    def resource_name(self) -> str:
        """`projects/{p}/jobs/{id}`."""
        return f"projects/{self.project}/jobs/{self.job_id}"

    @property
    def runtime_version(self) -> str | None:
        """The runtime the job asked for (a key of `runtimes.table()`), or None."""
        return self.ti.get("runtimeVersion")

    @property
    def python_version(self) -> str | None:
        """The Python the job asked for ("3.7"), or None."""
        return self.ti.get("pythonVersion")

    def refusal(self) -> str | None:
        """Why the job fails in PREPARING before anything is downloaded, or None."""
        image = self.ti.get("masterConfig", {}).get("imageUri")
        if image:
            others = [self.ti.get(f"{role}Config", {}).get("imageUri") for role in
                      ("worker", "parameterServer", "evaluator")]
            return containers.refusal([image, *filter(None, others)], "trainingInput.masterConfig.imageUri")
        return None

    def runtime_notes(self, rv: runtimes.RuntimeVersion | None, local_python: str, tensorflow: bool) -> list[str]:
        """Log lines: how the runtime the job asked for maps to the local runtime."""
        return [f"runtimeVersion {self.runtime_version or '(none)'} / pythonVersion {self.python_version or '(none)'}"
                f" run on the local runtime {self.runtime_python} (Python {local_python}); see "
                "docs/local-training.md.",
                *runtimes.notes(rv, self.runtime_version, self.python_version, local_python, tensorflow)]

    def package_uris(self) -> list[str]:
        """The packages to download and install."""
        return list(self.ti.get("packageUris", []))

    def max_running_time(self) -> str | None:
        """The running-time limit (a google-duration), or None."""
        value = self.ti.get("scheduling", {}).get("maxRunningTime")
        return str(value) if value else None

    def command(self, replica: cluster.Replica) -> list[str]:
        """`[pythonModule, *args, "--job-dir", jobDir]`: the service appends jobDir, as the cloud does."""
        args = [*self.ti.get("args", [])]
        if self.ti.get("jobDir"):
            args += ["--job-dir", self.ti["jobDir"]]
        return [self.ti["pythonModule"], *args]

    def addressed(self, replica: cluster.Replica) -> bool:
        """Evaluators are not cluster members (TF_CONFIG never lists them)."""
        return replica.type != "evaluator"

    def variables(self, replica: cluster.Replica, addresses: dict[str, str],
                  trial: str | None = None) -> dict[str, str]:
        """TF_CONFIG (with `task.trial` = the trial id for a tuning trial), CLOUD_ML_JOB_ID, GOOGLE_CLOUD_PROJECT."""
        tf_config = cluster.tf_config(self.plan, addresses, replica, self.ti)
        if trial is not None:
            tf_config["task"]["trial"] = trial
        return {
            "TF_CONFIG": json.dumps(tf_config),
            "CLOUD_ML_JOB_ID": self.job_id,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    # -- tuning ----------------------------------------------------------------------------------
    @property
    def tuning(self) -> bool:
        """True for a hyperparameter tuning job: its trials run instead of one cluster (`trials.py`)."""
        return "hyperparameters" in self.ti

    def study_spec(self) -> StudySpec:
        """The study of a tuning job (`trainingInput.hyperparameters`). Raises study.StudyError."""
        return StudySpec.from_training_input(self.ti)

    def trial_command(self, replica: cluster.Replica, trial_args: list[str]) -> list[str]:
        """`[pythonModule, *args, *trial_args, "--job-dir", jobDir]`: a trial's `--<parameterName>=<value>`
        arguments come after the job's args, before the `--job-dir` the service appends."""
        args = [*self.ti.get("args", []), *trial_args]
        if self.ti.get("jobDir"):
            args += ["--job-dir", self.ti["jobDir"]]
        return [self.ti["pythonModule"], *args]

    def trial_timeout(self) -> str | None:
        """Each trial's own running-time limit (a google-duration), or None: ml v1 limits the whole job only
        (`max_running_time`)."""
        return None


def for_record(rec: JobRecord, config: ServiceConfig) -> MlV1Profile:
    """The profile of a stored job, by its internal `runtime["api"]` ("ml_v1" when absent)."""
    api = rec.runtime.get("api", "ml_v1")
    if api == "vertex":
        from .vertex_run import VertexProfile  # late: vertex_run builds on this module

        return VertexProfile(rec, config)
    if api == "vertex_tuning":
        from .vertex_run import VertexTuningProfile

        return VertexTuningProfile(rec, config)
    return MlV1Profile(rec, config)


__all__ = ["MlV1Profile", "for_record"]
