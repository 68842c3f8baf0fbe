"""Read training data from, and write job outputs to, a local directory or a ``gs://bucket/prefix``.

Kept apart from ``task`` so the Cloud Storage client is only imported when a
``gs://`` path is actually used.
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


def is_data_file(name, suffix=".csv"):
    """True for a data file name: ends with ``suffix``, not hidden (``_SUCCESS``, ``.part-0.crc``, ``_temporary``
    are the writers' bookkeeping, not data)."""
    return name.endswith(suffix) and not name.startswith(("_", "."))


def read_folder(path, suffix=".csv", client=None):
    """The data files directly inside folder ``path`` (a local directory or ``gs://bucket/folder/``), sorted by name.

    Returns:
        A list of (location, text): the file's full path or gs:// URI and its content decoded as UTF-8.
    Raises:
        ValueError: the folder holds no data file.
    """
    found = []
    if is_gcs(path):
        bucket_name, prefix = split_gcs(path)
        prefix = f"{prefix}/" if prefix else ""
        client = client or storage_client()
        for blob in client.list_blobs(bucket_name, prefix=prefix, delimiter="/"):
            name = blob.name[len(prefix):]
            if is_data_file(name):
                found.append((f"{GCS_SCHEME}{bucket_name}/{blob.name}", blob.download_as_bytes().decode("utf-8")))
    else:
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full) and is_data_file(name):
                with open(full, encoding="utf-8") as fh:
                    found.append((full, fh.read()))
    if not found:
        raise ValueError(f"no *{suffix} file directly in {path}")
    return sorted(found)
