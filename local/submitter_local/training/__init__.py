"""Local implementation of the AI Platform Training (ml v1) `projects.jobs` API.

Jobs are real: packages are downloaded from GCS (or the GCS emulator), installed on an
environment cached by their dependency set on top of the runtime venv (`envs.py`,
`install.py`, `runtimes.py`), and every replica runs as its own sandboxed process
(`replica_env.py`, `sandbox.py`, `gcs_access.py`).

    from submitter_local.training import ServiceConfig, TrainingService
    svc = TrainingService(ServiceConfig(data_dir=Path(...), runtime_python=Path(...)))
    svc.start(host="127.0.0.1", port=0)
    ...  # discovery.build("ml", "v1", client_options={"api_endpoint": svc.url}, ...)
    svc.stop()

CLI: `python -m submitter_local.training --port 8090 --data-dir DIR --runtime-python PATH`.
"""

from .config import ServiceConfig
from .errors import ApiError
from .service import TrainingService

__all__ = ["ApiError", "ServiceConfig", "TrainingService"]
