"""Checks jobs.create makes against Cloud Storage before it accepts a job.

The cloud service refused, at create time, a job whose `jobDir` bucket did not exist or whose
`packageUris` its service account could not read (ml.v1.json, `jobDir`: "The benefit of
specifying this field is that Cloud ML validates the path for use in training"). Here the
check is existence: the emulator has no access control, and on real Cloud Storage the
service's own credentials stand in for the cloud's service agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors

#: Seconds per storage request; the checks run inside the jobs.create call.
CHECK_TIMEOUT = 10.0


def _split(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b"); the URI shape is already validated by jobspec."""
    bucket, _, name = uri[len("gs://"):].partition("/")
    return bucket, name


def check_storage(ti: dict[str, Any], make_client: Callable[[], Any]) -> None:
    """Check that `ti["jobDir"]`'s bucket exists and every `ti["packageUris"]` object exists.

    `make_client()` returns a `google.cloud.storage.Client` and is only called when there is
    something to check. Raises `ApiError` 400 INVALID_ARGUMENT with one field violation per
    offending field (`training_input.job_dir`, `training_input.package_uris[i]`), or 503
    UNAVAILABLE when Cloud Storage does not answer (no retries: a create must not hang).
    """
    job_dir = ti.get("jobDir")
    uris = ti.get("packageUris", [])
    if not job_dir and not uris:
        return
    from google.api_core import exceptions as gexc  # lazy: only a service that checks needs it

    violations: list[tuple[str, str]] = []
    try:
        client = make_client()
        if job_dir:
            bucket, _ = _split(job_dir)
            try:
                found = client.bucket(bucket).exists(timeout=CHECK_TIMEOUT, retry=None)
            except (gexc.Forbidden, gexc.Unauthorized) as e:
                violations.append(("training_input.job_dir",
                                   f"The bucket {bucket} of the job directory {job_dir} cannot be accessed: {e}"))
            else:
                if not found:
                    violations.append(("training_input.job_dir",
                                       f"The bucket {bucket} of the job directory {job_dir} does not exist."))
        for i, uri in enumerate(uris):
            bucket, name = _split(uri)
            field = f"training_input.package_uris[{i}]"
            try:
                blob = client.bucket(bucket).get_blob(name, timeout=CHECK_TIMEOUT, retry=None)
            except gexc.NotFound:  # the bucket itself is missing
                blob = None
            except (gexc.Forbidden, gexc.Unauthorized) as e:
                violations.append((field, f"The package {uri} cannot be read: {e}"))
                continue
            if blob is None:
                violations.append((field, f"The package {uri} cannot be read: the object does not exist."))
    except Exception as e:  # connection refused, timeouts, 5xx: not the caller's fault
        raise errors.ApiError(503, "UNAVAILABLE", "Cloud Storage could not be reached to check the job's "
                                                  f"jobDir and packageUris: {type(e).__name__}: {e}") from None
    if violations:
        raise errors.invalid_argument(violations)
