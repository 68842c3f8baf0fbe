"""Write job outputs to a local directory or a ``gs://bucket/prefix`` job dir.

Kept apart from ``task`` so the Cloud Storage client is only imported when a
``gs://`` job dir is actually used.
"""

import os

GCS_SCHEME = "gs://"


def is_gcs(path):
    """Return True when ``path`` is a ``gs://`` URI."""
    return path.startswith(GCS_SCHEME)


def split_gcs(uri):
    """Split ``gs://bucket/some/prefix`` into ``("bucket", "some/prefix")``."""
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, prefix = uri[len(GCS_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI has no bucket: {uri}")
    return bucket, prefix.strip("/")


def storage_client():
    """Build a ``storage.Client``.

    When ``STORAGE_EMULATOR_HOST`` is set (local stack, tests) the client uses
    anonymous credentials and the project from ``CLOUD_ML_PROJECT`` (default
    ``demo-project``); otherwise it uses the ambient default credentials.
    """
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("CLOUD_ML_PROJECT", "demo-project"),
            credentials=AnonymousCredentials(),
        )
    return storage.Client()


def write_file(job_dir, name, local_path, client=None):
    """Copy the local file ``local_path`` to ``job_dir/name``; return the destination.

    ``job_dir`` may be a local directory (created if needed) or a gs:// URI.
    """
    if is_gcs(job_dir):
        bucket_name, prefix = split_gcs(job_dir)
        blob_name = f"{prefix}/{name}" if prefix else name
        client = client or storage_client()
        client.bucket(bucket_name).blob(blob_name).upload_from_filename(local_path)
        return f"{GCS_SCHEME}{bucket_name}/{blob_name}"

    import shutil

    os.makedirs(job_dir, exist_ok=True)
    dest = os.path.join(job_dir, name)
    shutil.copyfile(local_path, dest)
    return dest
