"""`gs://` from every library a trainer uses, pointed at the local storage emulator.

Each library finds Cloud Storage its own way; each is pointed at the emulator the way its
authors documented, through the replica's environment (and one file in its HOME):

| library                                   | how                                                        |
|-------------------------------------------|------------------------------------------------------------|
| google-cloud-storage                      | STORAGE_EMULATOR_HOST (anonymous credentials when set)     |
| gcsfs, so pandas `gs://` paths            | STORAGE_EMULATOR_HOST (fsspec/gcsfs #424)                  |
| `gcloud storage`                          | CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE, credentials off   |
| gsutil                                    | its gcloud-storage shim (`[GSUtil] use_gcloud_storage` in  |
|                                           | $HOME/.boto): gsutil's own JSON client only speaks https   |
| `tf.io.gfile` (the opt-in TensorFlow)     | tensorflow-io's GCS plugin (TF_USE_MODULAR_FILESYSTEM=1),  |
|                                           | built on google-cloud-cpp: CLOUD_STORAGE_EMULATOR_ENDPOINT |
| `/gcs/<bucket>/` (Vertex's FUSE mounts)   | not provided (no FUSE here): the failure says so           |

TensorFlow's built-in `gs://` filesystem has Google's endpoints built in
(tensorflow/tensorflow#60235), so `tf.io.gfile` reaches the emulator only through the plugin,
and only the plugin release built for the installed TensorFlow works (another one crashes it):
TF_USE_MODULAR_FILESYSTEM is set only for jobs on the service's own TensorFlow layer, which
installs the matching pair. A job with a TensorFlow of its own gets the plugin variables it
can use by hand and a hint when `gs://` fails.
"""

from __future__ import annotations

import re

#: Every variable `replica_variables` may set (for allowlist checks).
VARIABLES = ("STORAGE_EMULATOR_HOST", "CLOUD_STORAGE_EMULATOR_ENDPOINT", "TF_USE_MODULAR_FILESYSTEM",
             "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE", "CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "CLOUDSDK_CORE_PROJECT",
             "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "BOTO_CONFIG")

BOTO_CONFIG = ("[GSUtil]\n# gsutil runs its commands through `gcloud storage`, which honours the endpoint override\n"
               "use_gcloud_storage = True\n")


def replica_variables(emulator_url: str | None, project: str, home: str, tensorflow_plugin: bool) -> dict[str, str]:
    """Variables that point a replica's storage libraries at `emulator_url`
    (`http://127.0.0.1:PORT`, the value of STORAGE_EMULATOR_HOST); {} without an emulator.

    home: the replica's HOME as it sees it (BOTO_CONFIG points into it; write `BOTO_CONFIG`'s
    text there with `boto_file`). tensorflow_plugin: the job runs on the service's TensorFlow
    layer, whose tensorflow-io-gcs-filesystem matches its TensorFlow."""
    if not emulator_url:
        return {}
    url = emulator_url.rstrip("/")
    if not re.match(r"^https?://", url):  # STORAGE_EMULATOR_HOST may be given as host:port
        url = "http://" + url
    env = {
        "STORAGE_EMULATOR_HOST": emulator_url,
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{url}/storage/v1/",
        "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
        "CLOUDSDK_CORE_PROJECT": project,
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "BOTO_CONFIG": boto_file(home),
    }
    if tensorflow_plugin:
        env["TF_USE_MODULAR_FILESYSTEM"] = "1"
    return env


def boto_file(home: str) -> str:
    """Where the replica's gsutil configuration lives: `<home>/.boto`."""
    return home.rstrip("/") + "/.boto"


def failure_hint(cause: str | None, tensorflow_plugin: bool) -> str | None:
    """A sentence for errorMessage when a failure looks like a `gs://` access the local stack
    cannot serve: a Vertex `/gcs/` path, or TensorFlow's built-in filesystem reaching for Google."""
    if not cause:
        return None
    if re.search(r"['\" ]/gcs/", cause) or cause.rstrip().endswith("/gcs"):
        return ("Vertex AI mounts buckets at /gcs/<bucket>/ with Cloud Storage FUSE; the local training service "
                "cannot (no FUSE here): read gs://<bucket>/... with google-cloud-storage, gcsfs or tf.io.gfile")
    if "gs://" in cause and ("tensorflow" in cause.lower() or cause.startswith(("NotFoundError", "PermissionDenied"))) \
            and not tensorflow_plugin:
        return ("tf.io.gfile's built-in gs:// filesystem talks to Google's servers, not the local storage emulator: "
                "run on the runtime's TensorFlow (--runtime-tensorflow), or install the tensorflow-io-gcs-filesystem "
                "release built for your TensorFlow and set TF_USE_MODULAR_FILESYSTEM=1")
    return None
