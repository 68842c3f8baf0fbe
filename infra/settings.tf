# The functions' settings: the SUBMITTER_* environment variables read by functions/submitter/settings.py.
#
# `VARIABLES` in settings.py is the one list of every variable the code reads. tests/infra/ checks that
#   keys(local.submitter_env) + local.submitter_env_left_to_code_defaults
# is exactly the set of non-local-only names in VARIABLES: no variable the code does not read, none forgotten.
# Adding a variable to the deployment is one line here (in the map, or in the list of code defaults).
#
# Variables marked local_only in VARIABLES (SUBMITTER_TRAINING_API_ENDPOINT, SUBMITTER_ANONYMOUS_CREDENTIALS)
# are never set in the cloud.

locals {
  # Prefix of the submitter's records in the state bucket; the lifecycle rules in buckets.tf use it too.
  state_prefix = "submitter/"

  # Eventarc redelivers a failed event for up to 24 hours; the submitter ignores older events.
  max_event_age_seconds = 86400

  # A claim must outlive the invocation that holds it, or a second invocation could take over a drop that is
  # still being decided: lease = function timeout + 60 s margin (one variable drives both).
  claim_lease_seconds = var.function_timeout_seconds + 60

  # Where stage_source.py puts the deployment policy inside the function source (/workspace is the source
  # root of a Cloud Functions 2nd gen Python instance).
  policy_path_in_function = "/workspace/policy.yaml"

  # Where stage_source.py puts the data-trigger rules (infra/triggers.yaml) inside the function source.
  triggers_path_in_function = "/workspace/triggers.yaml"

  submitter_env = {
    SUBMITTER_PROJECT               = var.project_id
    SUBMITTER_DROP_BUCKET           = google_storage_bucket.drop.name
    SUBMITTER_DROP_PREFIX           = var.drop_prefix
    SUBMITTER_OUTPUT_BUCKET         = google_storage_bucket.outputs.name
    SUBMITTER_STATE_BUCKET          = google_storage_bucket.state.name
    SUBMITTER_STATE_PREFIX          = local.state_prefix
    SUBMITTER_TOPIC                 = google_pubsub_topic.events.id
    SUBMITTER_BACKEND               = var.backend
    SUBMITTER_DEFAULT_REGION        = var.region
    SUBMITTER_MAX_EVENT_AGE_SECONDS = tostring(local.max_event_age_seconds)
    SUBMITTER_CLAIM_LEASE_SECONDS   = tostring(local.claim_lease_seconds)
    SUBMITTER_POLICY_FILE           = local.policy_path_in_function
    # Read by the reconcile function only: one scheduled invocation ticks every interval for the window, so a state
    # change is published within about one interval (variables.tf).
    SUBMITTER_RECONCILE_WINDOW_SECONDS   = tostring(var.reconcile_window_seconds)
    SUBMITTER_RECONCILE_INTERVAL_SECONDS = tostring(var.reconcile_interval_seconds)
    # Data-trigger rules (staged with the source) and the buckets whose events reach them: one Eventarc trigger
    # per data bucket (triggers.tf) delivers to the upload function, which routes by bucket.
    SUBMITTER_TRIGGER_RULES_FILE = local.triggers_path_in_function
    SUBMITTER_DATA_BUCKETS       = join(",", sort(keys(var.data_buckets)))
    # Per-job immutable, content-addressed copies of packages (bucket, lifecycle and IAM in buckets.tf/iam.tf).
    SUBMITTER_STAGING_BUCKET = google_storage_bucket.staging.name
    # The identity Vertex AI jobs run as when a spec names none (without it a job runs as the Vertex AI Custom
    # Code Service Agent); the code's policy always allows it.
    SUBMITTER_TRAINING_SERVICE_ACCOUNT = google_service_account.training.email
  }

  # Read by the code, deliberately not set: the code's defaults (settings.py) are the deployment's.
  # To change one, move it into submitter_env above.
  submitter_env_left_to_code_defaults = [
    "SUBMITTER_DEFAULT_RUNTIME_VERSION",  # ml_v1 only; a Vertex job names its executor image
    "SUBMITTER_DEFAULT_PYTHON_VERSION",   # ml_v1 only
    "SUBMITTER_PUBLISH_TIMEOUT_SECONDS",  # 30 s, well inside both function timeouts
    "SUBMITTER_MAX_SPEC_BYTES",           # 1 MiB
    "SUBMITTER_MAX_PACKAGE_BYTES",        # 512 MiB
    "SUBMITTER_INCOMPLETE_DROP_SECONDS",  # 30 min
    "SUBMITTER_DUPLICATE_WINDOW_SECONDS", # 1 h
    "SUBMITTER_CLAIM_WAIT_SECONDS",       # 10 s
  ]

  # PLANNED: values the deployment already provides but the code does not read yet, so they are NOT passed to
  # the functions (no variable the code does not read). tests/infra/ fails as soon as one of these names
  # appears in VARIABLES, to say: move it into submitter_env.
  submitter_env_planned = {
  }
}
