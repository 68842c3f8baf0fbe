"""Uploading a drop: packages first, job.yaml last, into a new folder (client side).

Uploading job.yaml last makes the common case a single complete-drop event;
the function copes with any order anyway.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class DropLocation:
    """Where a drop was written: bucket, folder, and the job.yaml generation (which fixes the jobId)."""

    bucket: str
    folder: str
    spec_generation: int

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.folder}/"


def upload_drop(client, bucket: str, folder: str, packages: list[Path], job_yaml: bytes) -> DropLocation:
    """Upload `packages` then `job_yaml` under `folder/` with create-only preconditions.

    Args:
        client: google.cloud.storage.Client.
        bucket: the drop bucket.
        folder: drop folder (no trailing slash), e.g. "incoming/run-001".
        packages: local .tar.gz files.
        job_yaml: the spec's bytes.
    Raises:
        ValueError: a package is not a .tar.gz file.
        google.api_core.exceptions.PreconditionFailed: the folder already holds that object.
    """
    target = client.bucket(bucket)
    for package in packages:
        if not package.name.endswith(".tar.gz"):
            raise ValueError(f"{package} is not a .tar.gz package")
        target.blob(f"{folder}/{package.name}").upload_from_filename(str(package), content_type="application/gzip",
                                                                     if_generation_match=0)
    spec = target.blob(f"{folder}/job.yaml")
    spec.upload_from_string(job_yaml, content_type="application/x-yaml", if_generation_match=0)
    return DropLocation(bucket=bucket, folder=folder, spec_generation=int(spec.generation))
