"""The one place that reads configuration.

Every setting comes from an environment variable (the Cloud Function's
runtime environment, or `.local/stack.env` on the local stack). Nothing else in
the package reads `os.environ`; code receives a `Settings` object instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping

from .policy import Policy

ENV_PREFIX = "SUBMITTER_"


# (attribute, SUBMITTER_ variable, default) for the numeric settings; units are in the attribute names.
_NUMBERS = (
    ("publish_timeout_s", "PUBLISH_TIMEOUT_SECONDS", 30.0),
    ("max_event_age_s", "MAX_EVENT_AGE_SECONDS", 24 * 3600.0),
    ("max_spec_bytes", "MAX_SPEC_BYTES", 1024 * 1024),
    ("max_package_bytes", "MAX_PACKAGE_BYTES", 512 * 1024 * 1024),
    ("incomplete_drop_s", "INCOMPLETE_DROP_SECONDS", 1800.0),
    ("duplicate_window_s", "DUPLICATE_WINDOW_SECONDS", 3600.0),
    ("claim_lease_s", "CLAIM_LEASE_SECONDS", 600.0),
    ("claim_wait_s", "CLAIM_WAIT_SECONDS", 10.0),
)


class SettingsError(ValueError):
    """A required setting is missing or a value is malformed; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Deployment settings of one submitter instance.

    Attributes:
        project: Google Cloud project id that owns the jobs (`SUBMITTER_PROJECT`,
            falling back to `GOOGLE_CLOUD_PROJECT`).
        drop_bucket: the watched bucket (`SUBMITTER_DROP_BUCKET`).
        drop_prefix: prefix under which drop folders live; "" means the whole
            bucket (`SUBMITTER_DROP_PREFIX`, always normalised to end in "/" when set).
        output_bucket: bucket for default jobDirs; never the drop bucket, so
            training outputs cannot look like new drops (`SUBMITTER_OUTPUT_BUCKET`).
        state_bucket: bucket holding the submitter's own records (`SUBMITTER_STATE_BUCKET`).
        state_prefix: prefix of those records (`SUBMITTER_STATE_PREFIX`, default "submitter/").
        topic: full Pub/Sub topic path `projects/P/topics/T` (`SUBMITTER_TOPIC`; a bare
            name is expanded with the project).
        backend: training backend name, "ml_v1" (`SUBMITTER_BACKEND`).
        training_api_endpoint: API endpoint override, e.g. the local training
            service `http://127.0.0.1:8090` (`SUBMITTER_TRAINING_API_ENDPOINT`), or None for Google's.
        anonymous_credentials: talk to the endpoints without Google credentials
            (local stack only; `SUBMITTER_ANONYMOUS_CREDENTIALS=true`).
        region / runtime_version / python_version: defaults filled into a job
            spec that does not set them (`SUBMITTER_DEFAULT_REGION`, `..._RUNTIME_VERSION`,
            `..._PYTHON_VERSION`).
        publish_timeout_s: seconds to wait for each Pub/Sub publish future.
        max_event_age_s: events older than this are ignored (seconds).
        max_spec_bytes / max_package_bytes: size caps for job.yaml and each package.
        job_label_key / job_label_value: label stamped on every job this submitter
            creates, used to recognise its jobs in `jobs.list`.
        incomplete_drop_s: a drop still incomplete this long after its first object is rejected once
            with reason INCOMPLETE_DROP by the scheduled sweep (`SUBMITTER_INCOMPLETE_DROP_SECONDS`).
        duplicate_window_s: a byte-identical job.yaml re-uploaded within this many seconds of a submitted
            one is a duplicate, not a new submission (`SUBMITTER_DUPLICATE_WINDOW_SECONDS`).
        claim_lease_s: an unfinished claim older than this is taken over (longer than the function timeout).
        claim_wait_s: how long an invocation that lost the claim waits for the winner's verdict before
            raising (the event is then redelivered).
        policy: the deployment policy, from the YAML file named by `SUBMITTER_POLICY_FILE`
            (built-in defaults when unset; see policy.py).
    """

    project: str
    drop_bucket: str
    output_bucket: str
    state_bucket: str
    topic: str
    drop_prefix: str = ""
    state_prefix: str = "submitter/"
    backend: str = "ml_v1"
    training_api_endpoint: str | None = None
    anonymous_credentials: bool = False
    region: str = "us-central1"
    runtime_version: str = "2.11"
    python_version: str = "3.7"
    publish_timeout_s: float = 30.0
    max_event_age_s: float = 24 * 3600.0
    max_spec_bytes: int = 1024 * 1024
    max_package_bytes: int = 512 * 1024 * 1024
    job_label_key: str = "submitter"
    job_label_value: str = "drop"
    incomplete_drop_s: float = 1800.0
    duplicate_window_s: float = 3600.0
    claim_lease_s: float = 600.0
    claim_wait_s: float = 10.0
    policy: Policy = dataclasses.field(default_factory=Policy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables.

        Args:
            env: mapping to read (default `os.environ`).
        Raises:
            SettingsError: a required variable is missing or a value does not parse;
                every problem is listed in one message.
        """
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(name: str, default: str | None = None, required: bool = False) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            if value:
                return value
            if required and default is None:
                problems.append(f"{ENV_PREFIX}{name} is required")
            return default

        def number(name: str, default: float) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError:
                problems.append(f"{ENV_PREFIX}{name}={raw!r} is not a number")
                return default

        project = get("PROJECT") or env.get("GOOGLE_CLOUD_PROJECT", "").strip()
        if not project:
            problems.append(f"{ENV_PREFIX}PROJECT (or GOOGLE_CLOUD_PROJECT) is required")
        drop_bucket = get("DROP_BUCKET", required=True) or ""
        output_bucket = get("OUTPUT_BUCKET", required=True) or ""
        state_bucket = get("STATE_BUCKET", required=True) or ""
        topic = get("TOPIC", required=True) or ""
        if topic and not topic.startswith("projects/"):
            topic = f"projects/{project}/topics/{topic}"
        if output_bucket and output_bucket == drop_bucket:
            problems.append(
                f"{ENV_PREFIX}OUTPUT_BUCKET must differ from {ENV_PREFIX}DROP_BUCKET "
                "(training outputs written there would look like new drops)"
            )
        drop_prefix = get("DROP_PREFIX", "") or ""
        if drop_prefix and not drop_prefix.endswith("/"):
            drop_prefix += "/"
        state_prefix = get("STATE_PREFIX", "submitter/") or ""
        if state_prefix and not state_prefix.endswith("/"):
            state_prefix += "/"
        backend = get("BACKEND", "ml_v1") or "ml_v1"
        if backend not in ("ml_v1",):
            problems.append(f"{ENV_PREFIX}BACKEND={backend!r} is not supported (known: ml_v1)")
        region = get("DEFAULT_REGION", "us-central1") or "us-central1"
        if not re.fullmatch(r"[a-z]+-[a-z]+\d+", region):
            problems.append(f"{ENV_PREFIX}DEFAULT_REGION={region!r} is not a region name like us-central1")

        numbers = {attr: number(name, default) for attr, name, default in _NUMBERS}
        for attr in ("max_spec_bytes", "max_package_bytes"):
            numbers[attr] = int(numbers[attr])
        policy = Policy()
        policy_file = get("POLICY_FILE")
        if policy_file:
            try:
                policy = Policy.from_yaml(Path(policy_file).read_text(), source=policy_file)
            except (OSError, ValueError) as exc:
                problems.append(f"{ENV_PREFIX}POLICY_FILE: {exc}")

        if problems:
            raise SettingsError("Invalid submitter settings: " + "; ".join(problems))
        return cls(
            project=project,
            drop_bucket=drop_bucket,
            output_bucket=output_bucket,
            state_bucket=state_bucket,
            topic=topic,
            drop_prefix=drop_prefix,
            state_prefix=state_prefix,
            backend=backend,
            training_api_endpoint=get("TRAINING_API_ENDPOINT"),
            anonymous_credentials=(get("ANONYMOUS_CREDENTIALS", "false") or "").lower() in ("1", "true", "yes"),
            region=region,
            runtime_version=get("DEFAULT_RUNTIME_VERSION", "2.11") or "2.11",
            python_version=get("DEFAULT_PYTHON_VERSION", "3.7") or "3.7",
            policy=policy,
            **numbers,
        )

    @classmethod
    def offline(cls, env: Mapping[str, str] | None = None) -> tuple["Settings", bool]:
        """Settings for offline tools (`submitter validate`): the deployment's when configured, else the
        local stack's names (project demo-project, buckets drop-bucket / drop-outputs / drop-state).

        Returns:
            (settings, True when they came from the environment).
        Raises:
            SettingsError: variables are set but invalid (a half-configured environment is reported).
        """
        env = os.environ if env is None else env
        if any(k.startswith(ENV_PREFIX) for k in env):
            return cls.from_env(env), True
        local = {f"{ENV_PREFIX}PROJECT": "demo-project", f"{ENV_PREFIX}DROP_BUCKET": "drop-bucket",
                 f"{ENV_PREFIX}OUTPUT_BUCKET": "drop-outputs", f"{ENV_PREFIX}STATE_BUCKET": "drop-state",
                 f"{ENV_PREFIX}TOPIC": "training-job-events", f"{ENV_PREFIX}DROP_PREFIX": "incoming/"}
        return cls.from_env(local), False
