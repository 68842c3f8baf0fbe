"""Local implementation of the AI Platform Training (ml v1) `projects.jobs` API, and of the Vertex AI
`projects.locations.customJobs` and `hyperparameterTuningJobs` subsets the submitter uses (`vertex_api.py`,
`vertex_tuning.py`, `vertex_run.py`, `vertex_filters.py`; `profiles.py` is what differs per API for the runner;
`containers.py` why images do not run here).

Jobs are real: packages are downloaded from GCS (or the GCS emulator), installed on an
environment cached by their dependency set on top of the runtime venv (`envs.py`,
`install.py`, `runtimes.py`), and every replica runs as its own sandboxed process
(`replica_env.py`, `sandbox.py`, `gcs_access.py`). A job with `hyperparameters` (or a Vertex
HyperparameterTuningJob) runs its tuning trials the same way (`trials.py`; the study's rules, pure, in `study.py`).

Optionally, creates are rate limited as Google limits them (`ServiceConfig.create_quota_per_minute`, off by
default): beyond N creates per project and region in a sliding minute (`create_quota_window_s`), ml v1 jobs.create
and Vertex customJobs / hyperparameterTuningJobs create answer 429 RESOURCE_EXHAUSTED with Google's
RATE_LIMIT_EXCEEDED ErrorInfo (the counting, pure, in `quota.py`; the error in `errors.rate_limited`).

    from submitter_local.training import ServiceConfig, TrainingService
    svc = TrainingService(ServiceConfig(data_dir=Path(...), runtime_python=Path(...)))
    svc.start(host="127.0.0.1", port=0)
    ...  # discovery.build("ml", "v1", client_options={"api_endpoint": svc.url}, ...)
    svc.stop()

CLI: `python -m submitter_local.training --port 8090 --data-dir DIR --runtime-python PATH
[--create-quota-per-minute N]` (every flag: `__main__.py`).
"""

from .config import ServiceConfig
from .errors import ApiError
from .service import TrainingService

__all__ = ["ApiError", "ServiceConfig", "TrainingService"]
