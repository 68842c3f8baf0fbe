"""The flags of `gcloud ai-platform jobs submit training`, for `submitter validate` and `submitter submit`.

Same names, same meaning, same precedence over `--config` (the flag wins, nothing else in the file is lost),
as the installed Cloud SDK implements them (`surface/ai_platform/jobs/submit/training.py`,
`command_lib/ml_engine/flags.py`, `jobs_util.py`, `api_lib/ml_engine/jobs.py` BuildTrainingJob). Parsing
follows gcloud's: `--scale-tier custom` or `CUSTOM`; accelerators as `type=nvidia-tesla-v100,count=1`;
`--worker-machine-type` and `--worker-count` only together (the same for parameter servers);
`--use-chief-in-tf-config true|false|yes|no`; `--kms-key` a full key name, or its id with `--kms-keyring`,
`--kms-location` and `--kms-project` (default: the deployment's project, as gcloud defaults to core/project).

Where gcloud loses data, the submitter does not (README, "The CLI"): `--labels` merges over the file's labels,
an empty `--` keeps the file's args, a config-only packageUris is kept when no package flag is given, and
`--enable-web-access` absent leaves the file's value (gcloud writes `enableWebAccess: false` over it). Every value
a flag replaces is reported as a note (`submitter.validation.apply_overrides`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from submitter.validation import Overrides

# gcloud's --scale-tier choices (jobs_util._SCALE_TIER_CHOICES) -> the API's enum; enum names are accepted too.
SCALE_TIERS = {"basic": "BASIC", "standard-1": "STANDARD_1", "premium-1": "PREMIUM_1", "basic-gpu": "BASIC_GPU",
               "basic-tpu": "BASIC_TPU", "custom": "CUSTOM"}
# GoogleCloudMlV1AcceleratorConfig.TypeValueValuesEnum without ACCELERATOR_TYPE_UNSPECIFIED (flags.py
# _ACCELERATOR_TYPE_MAPPER); gcloud spells them nvidia-tesla-v100 and accepts the enum names.
ACCELERATOR_TYPES = ("NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4",
                     "NVIDIA_TESLA_T4", "NVIDIA_TESLA_A100", "TPU_V2", "TPU_V3", "TPU_V2_POD", "TPU_V3_POD",
                     "TPU_V4_POD")
ROLES = (("master", "master"), ("worker", "worker"), ("parameter-server", "parameter server"))


class GcloudCommand(click.Command):
    """A command whose words after the first `--` are all the trainer's (`user_args`), as gcloud's REMAINDER:
    none of them is taken for an option or for the command's other arguments."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        after: list[str] = []
        if "--" in args:
            at = args.index("--")
            args, after = args[:at], args[at + 1:]
        rest = super().parse_args(ctx, args)
        ctx.params["user_args"] = tuple(ctx.params.get("user_args") or ()) + tuple(after)
        return rest


def job_flags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command with every flag of `gcloud ai-platform jobs submit training` (and `--json`)."""
    options = [
        click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                     help="job.yaml (the Job resource; YAML or JSON); flags override its values"),
        click.option("--packages", "packages", default=None,
                     help="comma-separated local .tar.gz files (inspected) or gs:// URIs"),
        click.option("--package-path", type=click.Path(file_okay=False, exists=True, path_type=Path),
                     help="a Python package folder (with __init__.py) built as gcloud does: with the setup.py of its "
                          "parent folder if there is one, else a generated minimal one. A project folder (holding "
                          "pyproject.toml or setup.py) is built as it is"),
        click.option("--build-isolation/--no-build-isolation", default=False, show_default=True,
                     help="build --package-path in an isolated environment (needs the package index)"),
        click.option("--staging-bucket", default=None, metavar="gs://BUCKET",
                     help="upload local packages to gs://BUCKET/<jobId>/<sha256>/ (gcloud's layout) instead of "
                          "into the drop folder"),
        click.option("--job-id", default=None, help="jobId (gcloud's JOB argument; default: derived from the drop)"),
        click.option("--module-name", default=None, help="trainingInput.pythonModule"),
        click.option("--region", default=None, help="trainingInput.region"),
        click.option("--runtime-version", default=None, help="trainingInput.runtimeVersion"),
        click.option("--python-version", default=None, help="trainingInput.pythonVersion"),
        click.option("--scale-tier", default=None, help="trainingInput.scaleTier: " + ", ".join(SCALE_TIERS)),
        click.option("--job-dir", default=None, help="trainingInput.jobDir (gs://bucket/path)"),
        click.option("--labels", default=None, help="KEY=VALUE,... merged over the file's labels"),
        click.option("--master-machine-type", default=None, help="trainingInput.masterType"),
        click.option("--master-accelerator", default=None, metavar="type=TYPE,count=N",
                     help="trainingInput.masterConfig.acceleratorConfig"),
        click.option("--master-image-uri", default=None, help="trainingInput.masterConfig.imageUri (custom container)"),
        click.option("--worker-machine-type", default=None, help="trainingInput.workerType (with --worker-count)"),
        click.option("--worker-count", type=click.IntRange(min=1), default=None,
                     help="trainingInput.workerCount (with --worker-machine-type)"),
        click.option("--worker-accelerator", default=None, metavar="type=TYPE,count=N",
                     help="trainingInput.workerConfig.acceleratorConfig"),
        click.option("--worker-image-uri", default=None, help="trainingInput.workerConfig.imageUri"),
        click.option("--parameter-server-machine-type", default=None,
                     help="trainingInput.parameterServerType (with --parameter-server-count)"),
        click.option("--parameter-server-count", type=click.IntRange(min=1), default=None,
                     help="trainingInput.parameterServerCount (with --parameter-server-machine-type)"),
        click.option("--parameter-server-accelerator", default=None, metavar="type=TYPE,count=N",
                     help="trainingInput.parameterServerConfig.acceleratorConfig"),
        click.option("--parameter-server-image-uri", default=None, help="trainingInput.parameterServerConfig.imageUri"),
        click.option("--use-chief-in-tf-config", default=None, metavar="BOOLEAN",
                     help="trainingInput.useChiefInTfConfig (true/false)"),
        click.option("--service-account", default=None, help="trainingInput.serviceAccount"),
        click.option("--kms-key", default=None, help="trainingInput.encryptionConfig.kmsKeyName: a full key name, or "
                     "the key id with --kms-keyring and --kms-location"),
        click.option("--kms-keyring", default=None, help="the key ring of --kms-key"),
        click.option("--kms-location", default=None, help="the location of --kms-key"),
        click.option("--kms-project", default=None, help="the project of --kms-key (default: the deployment's)"),
        click.option("--enable-web-access", is_flag=True, default=None,
                     help="trainingInput.enableWebAccess: true (absent: the file's value is kept)"),
        click.option("--async", "async_", is_flag=True, default=False,
                     help="return once submitted (the default; accepted for gcloud command lines)"),
        click.option("--stream-logs", is_flag=True, default=False,
                     help="submit: then follow the job as `submitter watch` does, with its exit codes"),
        click.option("--json", "as_json", is_flag=True, help="machine-readable output"),
        click.argument("user_args", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def parse_labels(raw: str | None) -> dict[str, str] | None:
    """`--labels k1=v1,k2=v2` -> {k1: v1, k2: v2}; None when not given."""
    if not raw:
        return None
    labels = {}
    for pair in raw.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--labels: {pair!r} is not KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def parse_scale_tier(raw: str | None) -> str | None:
    """gcloud's choice (`custom`, `standard-1`) or the enum name (`CUSTOM`, `STANDARD_1`) -> the enum name."""
    if raw is None:
        return None
    tier = SCALE_TIERS.get(raw.lower().replace("_", "-"))
    if tier is None:
        raise click.UsageError(f"--scale-tier: {raw!r} is not one of {', '.join(SCALE_TIERS)}")
    return tier


def parse_accelerator(flag: str, raw: str | None) -> dict[str, Any] | None:
    """`type=nvidia-tesla-v100,count=1` -> {"type": "NVIDIA_TESLA_V100", "count": 1} (both keys required)."""
    if raw is None:
        return None
    parts: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("type", "count"):
            raise click.UsageError(f"{flag}: {item!r} is not type=TYPE or count=N")
        parts[key.strip()] = value.strip()
    if set(parts) != {"type", "count"}:
        raise click.UsageError(f"{flag}: give both type=TYPE and count=N")
    kind = parts["type"].upper().replace("-", "_")
    if kind not in ACCELERATOR_TYPES:
        raise click.UsageError(f"{flag}: type {parts['type']!r} is not one of "
                               + ", ".join(t.lower().replace("_", "-") for t in ACCELERATOR_TYPES))
    try:
        count = int(parts["count"])
    except ValueError:
        count = 0
    if count <= 0:
        raise click.UsageError(f"{flag}: the count of the accelerator must be greater than 0")
    return {"type": kind, "count": count}


def parse_bool(flag: str, raw: str | None) -> bool | None:
    """gcloud's ArgBoolean: true/yes or false/no, any case."""
    if raw is None:
        return None
    if raw.lower() in ("true", "yes"):
        return True
    if raw.lower() in ("false", "no"):
        return False
    raise click.UsageError(f"{flag}: {raw!r} is not true or false")


def kms_key_name(kw: dict[str, Any], project: str) -> str | None:
    """`--kms-key` as a full key name; the short form takes --kms-keyring, --kms-location, --kms-project."""
    key, ring, location = kw.get("kms_key"), kw.get("kms_keyring"), kw.get("kms_location")
    if key is None:
        if ring or location or kw.get("kms_project"):
            raise click.UsageError("--kms-key: encryption key not fully specified (give --kms-key)")
        return None
    if key.startswith("projects/"):
        return str(key)
    if not ring or not location:
        raise click.UsageError("--kms-key: encryption key not fully specified: give a full key name "
                               "(projects/P/locations/L/keyRings/R/cryptoKeys/K) or --kms-keyring and --kms-location")
    return f"projects/{kw.get('kms_project') or project}/locations/{location}/keyRings/{ring}/cryptoKeys/{key}"


def overrides_from(kw: dict[str, Any], package_uris: list[str] | None, project: str) -> Overrides:
    """Overrides from the parsed flags (`user_args` are the words after `--`).

    Args:
        kw: the command's keyword arguments.
        package_uris: packageUris the package flags imply, or None when no package flag was given.
        project: the deployment's project (the default of --kms-project).
    Raises:
        click.UsageError: a flag's value is malformed, or one of a pair is missing (gcloud's argument groups).
    """
    for role, _ in ROLES[1:]:
        machine, count = kw.get(f"{role.replace('-', '_')}_machine_type"), kw.get(f"{role.replace('-', '_')}_count")
        if (machine is None) != (count is None):
            raise click.UsageError(f"--{role}-machine-type and --{role}-count go together: give both")
    if kw.get("async_") and kw.get("stream_logs"):
        raise click.UsageError("--async and --stream-logs are mutually exclusive")
    return Overrides(
        job_id=kw.get("job_id"), module_name=kw.get("module_name"), region=kw.get("region"),
        runtime_version=kw.get("runtime_version"), python_version=kw.get("python_version"),
        scale_tier=parse_scale_tier(kw.get("scale_tier")), job_dir=kw.get("job_dir"),
        labels=parse_labels(kw.get("labels")), args=list(kw.get("user_args") or ()) or None,
        package_uris=package_uris,
        master_type=kw.get("master_machine_type"),
        master_accelerator=parse_accelerator("--master-accelerator", kw.get("master_accelerator")),
        master_image_uri=kw.get("master_image_uri"),
        worker_type=kw.get("worker_machine_type"), worker_count=kw.get("worker_count"),
        worker_accelerator=parse_accelerator("--worker-accelerator", kw.get("worker_accelerator")),
        worker_image_uri=kw.get("worker_image_uri"),
        parameter_server_type=kw.get("parameter_server_machine_type"),
        parameter_server_count=kw.get("parameter_server_count"),
        parameter_server_accelerator=parse_accelerator("--parameter-server-accelerator",
                                                       kw.get("parameter_server_accelerator")),
        parameter_server_image_uri=kw.get("parameter_server_image_uri"),
        use_chief_in_tf_config=parse_bool("--use-chief-in-tf-config", kw.get("use_chief_in_tf_config")),
        service_account=kw.get("service_account"), kms_key_name=kms_key_name(kw, project),
        enable_web_access=kw.get("enable_web_access"))
