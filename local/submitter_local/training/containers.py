"""Custom containers on the local training service: accepted, then failed in PREPARING, saying why.

A job that runs an image (ml v1 `trainingInput.masterConfig.imageUri`, or a Vertex worker pool's
`containerSpec.imageUri`) is valid and is accepted by the create call, as the cloud accepts it. The cloud would
then pull the image from its registry and start it on each replica's VM. This machine has neither: no
container registry is reachable (only PyPI, Debian's and npm's registries) and no container daemon runs here,
so the job fails in PREPARING (JOB_STATE_PENDING on Vertex) with `refusal(...)`'s message, which says exactly
that. The issue allows running the image where a container runtime and the image are present; that is not
built: the message says which runtime binaries are installed and whether one answers `info`; running images is not
implemented by this service.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable, Sequence

#: Container runtimes a host might have (looked up on PATH; `<name> info` asks whether it can run anything).
RUNTIMES: tuple[str, ...] = ("docker", "podman", "nerdctl")
PROBE_TIMEOUT_S = 5.0


@functools.cache
def _answers(path: str) -> bool:
    """True when `<runtime> info` succeeds (a daemon answers, or a daemonless runtime works). Probed once."""
    try:
        return subprocess.run([path, "info"], capture_output=True, timeout=PROBE_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def host_runtimes(which: Callable[[str], str | None] = shutil.which,
                  answers: Callable[[str], bool] = _answers) -> tuple[list[str], list[str]]:
    """(runtimes installed on PATH, those of them that answer `info`)."""
    installed = [(name, path) for name in RUNTIMES if (path := which(name))]
    return [n for n, _ in installed], [n for n, p in installed if answers(p)]


def refusal(images: Sequence[str], field: str, which: Callable[[str], str | None] = shutil.which,
            answers: Callable[[str], bool] = _answers) -> str:
    """The errorMessage of a container job on this service.

    Args:
        images: the image URIs the job names (first one first), e.g. ["gcr.io/p/trainer:1"].
        field: the field that names them, as the API spells it ("trainingInput.masterConfig.imageUri",
            "jobSpec.workerPoolSpecs[0].containerSpec.imageUri").
        which, answers: PATH lookup and the runtime probe (tests pass stand-ins).
    Returns:
        One paragraph: why it cannot run here, what was asked, what to do instead.
    """
    shown = ", ".join(dict.fromkeys(images)) or "(none)"
    installed, working = host_runtimes(which, answers)
    if working:
        machine = (f"{', '.join(working)} answers on this machine, but the local training service does not run "
                   "images (not implemented)")
    elif installed:
        machine = f"the {', '.join(installed)} client is installed but no container daemon answers it"
    else:
        machine = "no container runtime (docker, podman, nerdctl) is installed"
    return (f"The local training service cannot pull images here: no container registry is reachable and no "
            f"container daemon runs on this machine ({machine}). {field} names {shown}. The job was accepted as "
            "the cloud accepts it and fails in PREPARING. To run it locally, package the trainer as a Python "
            "package (packageUris and pythonModule; a pythonPackageSpec on Vertex); container jobs run on the "
            "cloud only.")


__all__ = ["refusal", "host_runtimes", "RUNTIMES"]
