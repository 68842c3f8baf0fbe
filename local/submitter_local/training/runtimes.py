"""What a job's `runtimeVersion` promised, and what the local runtime gives instead.

The data is `runtime_versions.json` beside this module: for each AI Platform Training runtime
version, the TensorFlow Google's image shipped (and other library versions where a Google
source quoted them, each with its source), the Python versions it offered, and the nearest
TensorFlow installable on the local Python; plus the list of libraries the images shipped and
which of them the local runtime venv (`local/runtime-requirements.txt`) installs. The file says
where each fact comes from and which are unknown here.

Locally every runtime version runs on the one runtime venv (Python 3.11 and the image
libraries at their nearest installable versions). TensorFlow is opt-in
(`ServiceConfig.runtime_tensorflow`): when on, a job whose runtimeVersion shipped a TensorFlow
installable here gets it in a cached layer (`tensorflow_requirement`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any

TABLE_FILE = Path(__file__).with_name("runtime_versions.json")

#: Import names that differ from the distribution name (for ModuleNotFoundError hints).
_IMPORT_TO_DIST = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "PILLOW", "dateutil": "python-dateutil",
                   "hypertune": "cloudml-hypertune", "absl": "absl-py", "googleapiclient": "google-api-python-client",
                   "pythonjsonlogger": "python-json-logger", "paste": "Paste", "webob": "WebOb"}


@functools.lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The parsed runtime_versions.json (read once)."""
    return json.loads(TABLE_FILE.read_text())


@dataclasses.dataclass(frozen=True)
class RuntimeVersion:
    """One row of the table.

    version: "2.11"; tensorflow_shipped: what the image had ("2.11.x", "1.13.1"); python_versions:
    the pythonVersion values it offered; local_tensorflow: the nearest TensorFlow installable on
    the local Python ("2.12.1") or None, with the reason in local_tensorflow_why; libraries:
    other shipped versions a source confirmed, {name: {"shipped", "source"}}."""

    version: str
    tensorflow_shipped: str | None
    python_versions: tuple[str, ...]
    local_tensorflow: str | None
    local_tensorflow_why: str
    libraries: dict[str, dict[str, str]]
    local_tensorflow_extras: tuple[str, ...] = ()

    @property
    def tensorflow_requirements(self) -> list[str]:
        """`["tensorflow==2.12.1", "tensorflow-io-gcs-filesystem==0.32.0"]`: what the opt-in
        TensorFlow layer installs, or [] when no TensorFlow of this runtime installs here."""
        if not self.local_tensorflow:
            return []
        return [f"tensorflow=={self.local_tensorflow}", *self.local_tensorflow_extras]


def lookup(runtime_version: str | None) -> RuntimeVersion | None:
    """The table's row for `runtime_version` ("2.11"), or None when the table has none."""
    row = table()["runtime_versions"].get(runtime_version or "")
    if row is None:
        return None
    return RuntimeVersion(runtime_version or "", (row.get("tensorflow") or {}).get("shipped"),
                          tuple(row.get("python_versions", ())), row.get("local_tensorflow"),
                          row.get("local_tensorflow_why", ""), dict(row.get("libraries", {})),
                          tuple(row.get("local_tensorflow_extras", ())))


def local_libraries() -> dict[str, str]:
    """Library -> version the local runtime venv installs (from the table)."""
    return {k: v["version"] for k, v in table()["local"]["installed"].items()}


def notes(rv: RuntimeVersion | None, runtime_version: str | None, python_version: str | None,
          local_python: str, tensorflow_enabled: bool) -> list[str]:
    """Lines for the top of a job's log: how its runtimeVersion/pythonVersion map to the local runtime."""
    out: list[str] = []
    if rv is None:
        out.append(f"runtimeVersion {runtime_version or '(none)'} is not in the local runtime table: the job runs "
                   f"on the local runtime as it is (Python {local_python}).")
        return out
    if python_version and rv.python_versions and python_version not in rv.python_versions:
        out.append(f"pythonVersion {python_version} was not offered with runtime {rv.version} "
                   f"({', '.join(rv.python_versions)}); the cloud would have refused the job.")
    libs = ", ".join(f"{k} {v}" for k, v in sorted(local_libraries().items())
                     if k in ("numpy", "scipy", "pandas", "scikit-learn", "xgboost"))
    out.append(f"runtime {rv.version}'s image: TensorFlow {rv.tensorflow_shipped or '(unknown)'} on Python "
               f"{'/'.join(rv.python_versions) or '?'}; locally: Python {local_python} with {libs} "
               "(nearest versions installable here; see local/submitter_local/training/runtime_versions.json).")
    if rv.local_tensorflow is None:
        out.append(f"No TensorFlow for runtime {rv.version} here: {rv.local_tensorflow_why}.")
    elif tensorflow_enabled:
        out.append(f"TensorFlow {rv.local_tensorflow} stands in for TensorFlow {rv.tensorflow_shipped} "
                   f"({rv.local_tensorflow_why}).")
    else:
        out.append(f"The runtime's TensorFlow is not installed (opt-in: start the service with --runtime-tensorflow "
                   f"to get TensorFlow {rv.local_tensorflow}); a package may declare tensorflow itself.")
    return out


def missing_module_hint(stderr_cause: str | None, rv: RuntimeVersion | None, tensorflow_enabled: bool) -> str | None:
    """For `ModuleNotFoundError: No module named 'x'` naming a library the runtime image shipped
    but the local runtime lacks: a sentence saying so and what to do. None otherwise."""
    m = re.match(r"ModuleNotFoundError: No module named '([\w.]+)'", stderr_cause or "")
    if not m:
        return None
    top = m.group(1).split(".")[0]
    dist = _IMPORT_TO_DIST.get(top, top)
    if m.group(1).startswith("google.cloud."):
        dist = "google-cloud-" + m.group(1).split(".")[2].replace("_", "-")
    canon = dist.lower().replace("_", "-")
    shipped = {n.lower() for n in table()["image_libraries"]} | {"tensorflow"}
    if canon not in shipped or canon in {k.lower() for k in local_libraries()}:
        return None
    where = f"runtime {rv.version}'s image" if rv else "the runtime images"
    if canon == "tensorflow":
        if rv is not None and rv.local_tensorflow is None:
            return f"TensorFlow was part of {where}, but {rv.local_tensorflow_why}."
        if not tensorflow_enabled:
            return (f"TensorFlow was part of {where}; locally it is opt-in: start the local training service with "
                    "--runtime-tensorflow, or declare tensorflow in your package's requirements.")
        return None
    return (f"{dist} was part of {where} but is not in the local runtime: declare it in your package's "
            "requirements (install_requires).")
