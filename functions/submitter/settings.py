"""The one place that reads configuration.

Every setting comes from an environment variable (the Cloud Function's runtime environment, set by
Terraform in `infra/`, or `.local/stack.env` on the local stack). `VARIABLES` is the table of every
variable the code reads: its name, the `Settings` attribute it fills, its default and its meaning.
Terraform's tests read the same table, so the deployed environment and the code cannot drift apart.
Nothing else in the package reads `os.environ`; code receives a `Settings` object instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from .backends import KNOWN_BACKENDS
from .errors import ConfigurationError
from .naming import BUCKET_RE, PROJECT_ID_RE, REGION_RE
from .policy import Policy
from .rule_set import RuleSet

ENV_PREFIX = "SUBMITTER_"
# Environment variables through which requests takes proxies or a CA bundle (either case).
REQUESTS_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
Kind = Literal["str", "float", "int", "bool"]

@dataclasses.dataclass(frozen=True)
class Variable:
    """One environment variable the submitter reads.

    Attributes:
        name: the full variable name, e.g. "SUBMITTER_DROP_BUCKET".
        attribute: the `Settings` attribute it fills.
        kind: how the text is parsed: "str", "float", "int" or "bool" ("1", "true", "yes").
        default: the value when unset; None with `required` means the variable must be set.
        required: the submitter cannot start without it.
        description: what it means, with units.
        local_only: only the local stack sets it (an endpoint override, anonymous credentials);
            a cloud deployment must leave it unset.
    """

    name: str
    attribute: str
    kind: Kind
    default: Any
    required: bool
    description: str
    local_only: bool = False


def _var(suffix: str, attribute: str, kind: Kind, default: Any, description: str, *, required: bool = False,
         local_only: bool = False) -> Variable:
    return Variable(ENV_PREFIX + suffix, attribute, kind, default, required, description, local_only)


VARIABLES: tuple[Variable, ...] = (
    _var("PROJECT", "project", "str", None, "project that owns the jobs (falls back to GOOGLE_CLOUD_PROJECT)",
         required=True),
    _var("DROP_BUCKET", "drop_bucket", "str", None, "the watched bucket", required=True),
    _var("DROP_PREFIX", "drop_prefix", "str", "", "where drop folders live (\"\" = the whole bucket)"),
    _var("OUTPUT_BUCKET", "output_bucket", "str", None, "bucket of default jobDirs; must differ from the drop "
         "bucket", required=True),
    _var("STATE_BUCKET", "state_bucket", "str", None, "bucket of the submitter's own records", required=True),
    _var("STATE_PREFIX", "state_prefix", "str", "submitter/", "prefix of those records"),
    _var("STAGING_BUCKET", "staging_bucket_name", "str", None, "bucket for immutable per-job copies of packages "
         "(under staging/; default: the outputs bucket)"),
    _var("TOPIC", "topic", "str", None, "topic for state events (name or projects/P/topics/T)", required=True),
    _var("BACKEND", "backend", "str", "ml_v1", "training API: " + " or ".join(KNOWN_BACKENDS) + " (vertex: Vertex "
         "AI custom training, the cloud default; ml_v1: AI Platform Training's API, the local stack)"),
    _var("TRAINING_API_ENDPOINT", "training_api_endpoint", "str", None, "endpoint override (the local training "
         "service)", local_only=True),
    _var("ANONYMOUS_CREDENTIALS", "anonymous_credentials", "bool", False, "talk to the endpoints without Google "
         "credentials", local_only=True),
    _var("DEFAULT_REGION", "region", "str", "us-central1", "region filled when a spec has none"),
    _var("DEFAULT_RUNTIME_VERSION", "runtime_version", "str", "2.11", "runtimeVersion filled when a spec has none"),
    _var("DEFAULT_PYTHON_VERSION", "python_version", "str", "3.7", "pythonVersion filled with the default runtime"),
    _var("PUBLISH_TIMEOUT_SECONDS", "publish_timeout_s", "float", 30.0, "seconds to wait for each publish"),
    _var("MAX_EVENT_AGE_SECONDS", "max_event_age_s", "float", 24 * 3600.0, "events older than this are ignored"),
    _var("MAX_SPEC_BYTES", "max_spec_bytes", "int", 1024 * 1024, "size cap of a job.yaml (bytes)"),
    _var("MAX_PACKAGE_BYTES", "max_package_bytes", "int", 512 * 1024 * 1024, "size cap of a package (bytes)"),
    _var("INCOMPLETE_DROP_SECONDS", "incomplete_drop_s", "float", 1800.0, "when the sweep rejects an incomplete "
         "drop (seconds after its first object)"),
    _var("DUPLICATE_WINDOW_SECONDS", "duplicate_window_s", "float", 3600.0, "a byte-identical job.yaml "
         "re-uploaded within this many seconds is a duplicate"),
    _var("CLAIM_LEASE_SECONDS", "claim_lease_s", "float", 120.0, "a claim not renewed for this long is taken "
         "over (its holder renews it at each slow step; a killed holder's input is decided by the next delivery)"),
    _var("CLAIM_WAIT_SECONDS", "claim_wait_s", "float", 10.0, "how long a concurrent invocation waits for the "
         "claim holder's verdict"),
    _var("RECONCILE_WINDOW_SECONDS", "reconcile_window_s", "float", 0.0, "how long one reconcile invocation keeps "
         "ticking (seconds; 0: one tick). With Cloud Scheduler's one-minute period, a window just under the minute "
         "publishes a state change within one tick interval instead of up to a minute late"),
    _var("RECONCILE_INTERVAL_SECONDS", "reconcile_interval_s", "float", 5.0, "seconds between the ticks of one "
         "reconcile invocation (from the start of one tick to the start of the next)"),
    _var("POLICY_FILE", "policy_file", "str", None, "the deployment policy (YAML; built-in defaults when unset)"),
    _var("TRIGGER_RULES_FILE", "trigger_rules_file", "str", None, "the data-trigger rules (YAML, see the README's "
         "Data-triggered training; no rules when unset)"),
    _var("DATA_BUCKETS", "data_bucket_names", "str", None, "comma-separated buckets whose finalize events reach the "
         "function for trigger rules (default: the buckets the rules name); never the drop or state bucket"),
    _var("TRAINING_SERVICE_ACCOUNT", "training_service_account", "str", None, "service account Vertex AI jobs run "
         "as when a spec names none (the deployment's own training account: the policy always allows it); unset: "
         "Vertex's default, the Vertex AI Custom Code Service Agent"),
)


SettingsError = ConfigurationError  # the name the CLI and tests know


@dataclasses.dataclass(frozen=True)
class Settings:
    """Deployment settings of one submitter instance (see `VARIABLES` for each variable).

    Attributes:
        project: Google Cloud project id that owns the jobs.
        drop_bucket / drop_prefix: the watched bucket and where drop folders live ("" or ending in "/").
        output_bucket: bucket for default jobDirs; never the drop bucket, so training outputs cannot look
            like new drops.
        state_bucket / state_prefix: the submitter's own records (prefix ending in "/").
        topic: full Pub/Sub topic path `projects/P/topics/T`.
        backend: training backend name, one of `backends.KNOWN_BACKENDS`.
        training_api_endpoint: API endpoint override (the local training service), or None for Google's.
        anonymous_credentials: no Google credentials (local stack only).
        region / runtime_version / python_version: defaults filled into a spec that does not set them.
        publish_timeout_s / max_event_age_s / incomplete_drop_s / duplicate_window_s / claim_lease_s /
            claim_wait_s: durations in seconds.
        reconcile_window_s / reconcile_interval_s: one reconcile invocation ticks every `reconcile_interval_s`
            seconds for `reconcile_window_s` seconds (0: a single tick).
        max_spec_bytes / max_package_bytes: size caps in bytes.
        job_label_key / job_label_value: label stamped on every job this submitter creates (fixed, not a
            variable: consumers and the reconciler rely on it).
        policy_file / policy: the deployment policy and where it came from.
        training_service_account: the account Vertex AI jobs run as when a spec names none; the policy's
            allowed_service_accounts always include it (from_env adds it).
        trigger_rules_file / trigger_rules: the data-trigger rules and where they came from (`triggers.load_rules`;
            rules that cannot fire are in `trigger_rules.broken`).
        data_bucket_names: the data buckets as configured (comma-separated), or None for the rules' buckets.
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
    incomplete_drop_s: float = 1800.0
    duplicate_window_s: float = 3600.0
    claim_lease_s: float = 120.0
    claim_wait_s: float = 10.0
    reconcile_window_s: float = 0.0
    reconcile_interval_s: float = 5.0
    policy_file: str | None = None
    staging_bucket_name: str | None = None
    training_service_account: str | None = None
    trigger_rules_file: str | None = None
    data_bucket_names: str | None = None
    job_label_key: str = "submitter"
    job_label_value: str = "drop"
    policy: Policy = dataclasses.field(default_factory=Policy)
    trigger_rules: RuleSet = dataclasses.field(default_factory=RuleSet)
    # Whether the environment sets a proxy or CA bundle for requests (REQUESTS_ENV); when it does not, HTTP sessions
    # skip requests' per-request scan of the environment (gcs.GcsObjectStore).
    http_env: bool = True

    @property
    def data_buckets(self) -> tuple[str, ...]:
        """The buckets whose events go to the trigger rules: the configured ones, or the buckets the rules name."""
        if self.data_bucket_names is not None:
            return parse_bucket_list(self.data_bucket_names)
        return self.trigger_rules.buckets

    def is_data_bucket(self, bucket: str) -> bool:
        """True for a data bucket of this deployment (never the drop bucket): its events go to the trigger rules."""
        return bucket != self.drop_bucket and bucket in self.data_buckets

    @property
    def staging_bucket(self) -> str:
        """Where packages are staged before a job is created (the outputs bucket unless one is set)."""
        return self.staging_bucket_name or self.output_bucket

    @property
    def event_source(self) -> str:
        """CloudEvent `source` of everything this deployment publishes."""
        return f"//drop-submitter/projects/{self.project}/buckets/{self.drop_bucket}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables.

        Args:
            env: mapping to read (default `os.environ`).
        Raises:
            SettingsError: a required variable is missing or a value does not parse or breaks Google's naming
                rule; every problem is listed in one message, each naming the variable, the value and the rule.
        """
        env = os.environ if env is None else env
        problems: list[str] = []
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.name, "").strip()
            if not raw and var.attribute == "project":
                raw = env.get("GOOGLE_CLOUD_PROJECT", "").strip()
            if not raw:
                if var.required:
                    problems.append(f"{var.name} is required ({var.description})")
                values[var.attribute] = var.default
                continue
            try:
                values[var.attribute] = _PARSERS[var.kind](raw)
            except ValueError:
                problems.append(f"{var.name}={raw!r} is not {_KIND_WORDS[var.kind]}")
                values[var.attribute] = var.default
        values = {k: v for k, v in values.items() if v is not None}
        values["http_env"] = any(env.get(name) or env.get(name.lower()) for name in REQUESTS_ENV)
        problems += _check_names(values)
        problems += _check_reconcile_window(values)
        for key in ("drop_prefix", "state_prefix"):
            if values.get(key) and not values[key].endswith("/"):
                values[key] += "/"
        topic = values.get("topic")
        if topic and not topic.startswith("projects/"):
            values["topic"] = f"projects/{values.get('project', '')}/topics/{topic}"
        if values.get("policy_file"):
            try:
                values["policy"] = Policy.from_yaml(Path(values["policy_file"]).read_text(),
                                                    source=values["policy_file"])
            except (OSError, ValueError) as exc:
                problems.append(f"{ENV_PREFIX}POLICY_FILE: {exc}")
        if values.get("trigger_rules_file"):
            from .triggers import load_rules, restrict  # only a deployment with rules pays for the rules' module

            try:
                rules = load_rules(Path(values["trigger_rules_file"]).read_text(), values["trigger_rules_file"])
            except (OSError, ValueError) as exc:
                problems.append(f"{ENV_PREFIX}TRIGGER_RULES_FILE: {exc}")
            else:
                named = values.get("data_bucket_names")
                buckets = parse_bucket_list(named) if named is not None else rules.buckets
                reserved = {b: why for b, why in ((values.get("drop_bucket"), "is the drop bucket"),
                                                  (values.get("state_bucket"), "is the state bucket")) if b}
                values["trigger_rules"] = restrict(rules, buckets, reserved)
        account = values.get("training_service_account")
        if account:
            policy = values.get("policy") or Policy()
            if account not in policy.allowed_service_accounts:  # the deployment's own account is always allowed
                values["policy"] = dataclasses.replace(
                    policy, allowed_service_accounts=(*policy.allowed_service_accounts, account))
        if problems:
            raise SettingsError("Invalid submitter settings: " + "; ".join(problems))
        return cls(**values)

    @classmethod
    def offline(cls, env: Mapping[str, str] | None = None) -> tuple[Settings, bool]:
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
        return cls.from_env(LOCAL_DEFAULTS), False


# The local stack's names, used by offline tools when nothing is configured.
LOCAL_DEFAULTS = {f"{ENV_PREFIX}PROJECT": "demo-project", f"{ENV_PREFIX}DROP_BUCKET": "drop-bucket",
                  f"{ENV_PREFIX}OUTPUT_BUCKET": "drop-outputs", f"{ENV_PREFIX}STATE_BUCKET": "drop-state",
                  f"{ENV_PREFIX}TOPIC": "training-job-events", f"{ENV_PREFIX}DROP_PREFIX": "incoming/"}


def parse_bucket_list(text: str) -> tuple[str, ...]:
    """Bucket names from a comma-separated list ("a, b,,c" -> ("a", "b", "c")), order kept, repeats dropped."""
    return tuple(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError(raw)


_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "float": float, "int": lambda raw: int(float(raw)),
                                             "bool": _parse_bool}
_KIND_WORDS = {"str": "text", "float": "a number", "int": "a whole number", "bool": "true or false"}


def _check_reconcile_window(values: Mapping[str, Any]) -> list[str]:
    """The window may not be negative, and ticks need a positive interval (else one invocation would spin)."""
    problems = []
    window, interval = values.get("reconcile_window_s", 0.0), values.get("reconcile_interval_s", 5.0)
    if window < 0:
        problems.append(f"{ENV_PREFIX}RECONCILE_WINDOW_SECONDS={window:g} is negative; use 0 for one tick per "
                        "invocation, or a window shorter than the scheduler's period (e.g. 50 for every minute)")
    if interval <= 0:
        problems.append(f"{ENV_PREFIX}RECONCILE_INTERVAL_SECONDS={interval:g} must be above 0 (seconds between "
                        "ticks, e.g. 5)")
    return problems


def _check_names(values: Mapping[str, Any]) -> list[str]:
    """Problems with names that Google would refuse later, found at start instead."""
    problems = []
    project = values.get("project")
    if project and not PROJECT_ID_RE.fullmatch(project):
        problems.append(f"{ENV_PREFIX}PROJECT={project!r} is not a project id (6-30 lowercase letters, digits and "
                        "hyphens, starting with a letter); an unrendered placeholder like {PROJECT}?")
    for attr, suffix in (("drop_bucket", "DROP_BUCKET"), ("output_bucket", "OUTPUT_BUCKET"),
                         ("state_bucket", "STATE_BUCKET"), ("staging_bucket_name", "STAGING_BUCKET")):
        bucket = values.get(attr)
        if bucket and not BUCKET_RE.fullmatch(bucket):
            problems.append(f"{ENV_PREFIX}{suffix}={bucket!r} is not a bucket name (3-63 lowercase letters, digits, "
                            "'-', '_' and '.'; write the name, not gs://...)")
    if values.get("output_bucket") and values.get("output_bucket") == values.get("drop_bucket"):
        problems.append(f"{ENV_PREFIX}OUTPUT_BUCKET must differ from {ENV_PREFIX}DROP_BUCKET (training outputs "
                        "written there would look like new drops)")
    region = values.get("region")
    if region and not REGION_RE.fullmatch(region):
        problems.append(f"{ENV_PREFIX}DEFAULT_REGION={region!r} is not a region name like us-central1")
    account = values.get("training_service_account")
    if account and not _is_email(account):
        problems.append(f"{ENV_PREFIX}TRAINING_SERVICE_ACCOUNT={account!r} is not a service account email")
    for bucket in parse_bucket_list(values.get("data_bucket_names") or ""):
        if not BUCKET_RE.fullmatch(bucket):
            problems.append(f"{ENV_PREFIX}DATA_BUCKETS: {bucket!r} is not a bucket name (write names, not gs://...)")
        elif bucket in (values.get("drop_bucket"), values.get("state_bucket")):
            problems.append(f"{ENV_PREFIX}DATA_BUCKETS: {bucket} is the drop or state bucket; data buckets are "
                            "other buckets")
    backend = values.get("backend")
    if backend and backend not in KNOWN_BACKENDS:
        problems.append(f"{ENV_PREFIX}BACKEND={backend!r} is not supported (known: {', '.join(KNOWN_BACKENDS)})")
    return problems


def _is_email(text: str) -> bool:
    """`rules.EMAIL_RE`, imported only when an account is set: `rules` brings the YAML loader and the spec module,
    which reading settings does not otherwise need (a CLI command that reads a job's status never does)."""
    from .rules import EMAIL_RE

    return EMAIL_RE.match(text) is not None
