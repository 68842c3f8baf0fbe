"""The environment a replica's process starts with: built from an allowlist, never inherited.

On the cloud a trainer runs in a fresh VM/container: it sees the variables the training
service sets (`TF_CONFIG` on every replica, docs "TF_CONFIG and distributed training") and
the image's ordinary ones (PATH, HOME, LANG), not the service's own settings. Locally the
service's process holds SUBMITTER_* settings, every endpoint of the stack and whatever the user
exported, so a trainer's environment is built here from nothing:

    fixed          PATH (the job environment's bin first), HOME, TMPDIR, USER, LOGNAME, LANG,
                   LC_ALL, PYTHONUNBUFFERED=1, PYTHONDONTWRITEBYTECODE unset
    passed through only names in PASS_THROUGH, from the service's environment, if set there:
                   time zone and proxy settings a host may need
    the caller's   `variables`: TF_CONFIG, CLOUD_ML_JOB_ID, GOOGLE_CLOUD_PROJECT, and the local
                   storage settings (`gcs_access.py`: STORAGE_EMULATOR_HOST, BOTO_CONFIG, ...)

`build` is the one function every runner (ml v1 jobs today; Vertex customJobs and tuning
trials later) uses: give it the variables to set, get the whole environment back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Ordinary variables copied from the service's environment when present.
PASS_THROUGH: tuple[str, ...] = ("TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                                 "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
#: A PATH as a Debian image has it, after the job environment's own bin directory.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build(variables: Mapping[str, str], *, bin_dir: str, home: str, tmpdir: str, user: str,
          environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of one replica process.

    variables: what the service sets for this replica (TF_CONFIG, CLOUD_ML_JOB_ID, ...); they
        win over everything else. bin_dir: the job environment's `bin` (first on PATH). home,
        tmpdir: the replica's own HOME and TMPDIR (paths as the process sees them). user: the
        account name (USER, LOGNAME). environ: where PASS_THROUGH values come from (default
        os.environ). Returns a new dict; nothing else of `environ` is copied.
    """
    source = os.environ if environ is None else environ
    env = {k: source[k] for k in PASS_THROUGH if k in source}
    env.update({
        "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        "HOME": home,
        "TMPDIR": tmpdir,
        "USER": user,
        "LOGNAME": user,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(variables)
    return env
