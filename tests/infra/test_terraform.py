"""The rules of issue 17 for infra/, checked on the parsed HCL (no Terraform provider is reachable here).

Least privilege, one service account per function and per role, the storage trigger, the settings the
code reads (functions/submitter/settings.py VARIABLES), the claim lease vs. the function timeout, buckets,
operations, variables and outputs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess

import pytest
from infra_hcl import INFRA, REPO, comment_before, load, one, ref, walk

from submitter.reconciler import TICK_LEASE_S
from submitter.settings import VARIABLES

FINALIZED = "google.cloud.storage.object.v1.finalized"
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}

# The only project-level grants, each because the resource does not exist at a narrower level (comments in iam.tf).
PROJECT_LEVEL_GRANTS = {
    "upload_submits_jobs",         # training jobs are project resources
    "reconcile_reads_jobs",        # idem
    "reconcile_submits_jobs",      # idem: the sweep submits undecided drops and sweep-started trigger batches
    "trigger_receives_events",     # Eventarc offers eventReceiver at project level only
    "gcs_agent_publishes_events",  # Eventarc's transport topic does not exist before the trigger
    "function_build_writes_logs",  # log writing is project-level
}

RUNTIME_ACCOUNTS = {"upload", "reconcile"}
ALL_ACCOUNTS = {"upload", "reconcile", "trigger", "scheduler", "training", "function_build"}


@pytest.fixture(scope="module")
def cfg():
    return load()


def test_one_concern_per_file(cfg):
    expected = {"versions.tf", "variables.tf", "settings.tf", "apis.tf", "buckets.tf", "pubsub.tf",
                "service_accounts.tf", "iam.tf", "source.tf", "functions.tf", "triggers.tf", "scheduler.tf",
                "monitoring.tf", "outputs.tf"}
    assert expected <= set(cfg.files), f"missing: {expected - set(cfg.files)}"
    by_file = {b.type: b.file for b in cfg.resources}
    assert by_file["google_storage_bucket"] == "buckets.tf"
    assert by_file["google_pubsub_topic"] == "pubsub.tf"
    assert by_file["google_cloudfunctions2_function"] == "functions.tf"
    assert by_file["google_logging_metric"] == "monitoring.tf"
    assert {b.file for b in cfg.iam_members()} == {"iam.tf"}, "every grant lives in iam.tf"


# ---- least privilege -----------------------------------------------------------------------------------------

def test_no_primitive_role_anywhere(cfg):
    for block in cfg.resources:
        for path, value in walk(block.body):
            if path.endswith("role") and isinstance(value, str):
                assert value not in PRIMITIVE_ROLES, f"{block.address} grants {value}"
    for text in cfg.files.values():
        for role in PRIMITIVE_ROLES:
            assert f'"{role}"' not in text


def test_grants_are_additive_members_only(cfg):
    authoritative = [b.address for b in cfg.resources if b.type.endswith(("_iam_policy", "_iam_binding"))]
    assert not authoritative, f"authoritative IAM resources replace other grants: {authoritative}"


def test_every_grant_says_why(cfg):
    for block in cfg.iam_members():
        why = comment_before(cfg.files[block.file], block.type, block.name)
        assert len(why) >= 20, f"{block.address} has no comment saying why it is granted"


def test_project_level_grants_are_the_justified_few(cfg):
    project_grants = {b.name for b in cfg.of_type("google_project_iam_member")}
    assert project_grants == PROJECT_LEVEL_GRANTS
    for block in cfg.of_type("google_project_iam_member"):
        assert block.body["role"] not in ("roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator")


def test_act_as_only_on_the_accounts_the_policy_allows(cfg):
    acts_as = [b for b in cfg.of_type("google_service_account_iam_member")
               if b.body["role"] == "roles/iam.serviceAccountUser" and "upload" in b.body["member"]]
    targets = {b.name: b.body["service_account_id"] for b in acts_as}
    assert targets == {
        "upload_acts_as_training": "${google_service_account.training.name}",
        "upload_acts_as_policy_accounts": "projects/-/serviceAccounts/${each.value}",
    }
    policy_grant = cfg.get("google_service_account_iam_member", "upload_acts_as_policy_accounts")
    assert policy_grant.body["for_each"] == "${local.policy_service_accounts}"
    assert "local.staged_policy.allowed_service_accounts" in cfg.locals["policy_service_accounts"]
    # The sweep submits too (undecided drops, sweep-started trigger batches): the reconcile function acts as exactly
    # the same accounts as the upload function, no others.
    reconcile_acts_as = {b.name: b.body for b in cfg.iam_members() if "reconcile.member" in b.body.get("member", "")
                         and b.body["role"] == "roles/iam.serviceAccountUser"}
    assert {name: body["service_account_id"] for name, body in reconcile_acts_as.items()} == {
        "reconcile_acts_as_training": "${google_service_account.training.name}",
        "reconcile_acts_as_policy_accounts": "projects/-/serviceAccounts/${each.value}",
    }
    assert reconcile_acts_as["reconcile_acts_as_policy_accounts"]["for_each"] == "${local.policy_service_accounts}"


def test_job_roles_are_custom_and_narrow(cfg):
    submit = cfg.get("google_project_iam_member", "upload_submits_jobs").body
    read = cfg.get("google_project_iam_member", "reconcile_reads_jobs").body
    assert submit["role"] == "${google_project_iam_custom_role.job_submitter.id}"
    assert read["role"] == "${google_project_iam_custom_role.job_reader.id}"
    perms = cfg.locals["job_permissions"]
    for backend in ("vertex", "ml_v1"):
        assert set(perms[backend]["read"]) < set(perms[backend]["submit"])
        assert all(p.endswith((".get", ".list")) for p in perms[backend]["read"])
        assert all(p.endswith((".create", ".get", ".list")) for p in perms[backend]["submit"])
    assert "aiplatform.customJobs.create" in perms["vertex"]["submit"]


def _grants_to(cfg, account: str) -> list:
    return [b for b in cfg.iam_members() if b.body.get("member") == f"${{google_service_account.{account}.member}}"]


def test_runtime_accounts_never_write_the_drop_bucket(cfg):
    for account in RUNTIME_ACCOUNTS:
        for block in _grants_to(cfg, account):
            if block.body.get("bucket") == "${google_storage_bucket.drop.name}":
                assert block.body["role"] == "${google_project_iam_custom_role.bucket_reader.id}", block.address
    reader = cfg.get("google_project_iam_custom_role", "bucket_reader").body
    assert set(reader["permissions"]) == {"storage.buckets.get", "storage.objects.get", "storage.objects.list"}


def test_runtime_accounts_write_state_and_publish_to_the_topic_only(cfg):
    for account in RUNTIME_ACCOUNTS:
        grants = _grants_to(cfg, account)
        state = [b for b in grants if b.body.get("bucket") == "${google_storage_bucket.state.name}"]
        assert [b.body["role"] for b in state] == ["${google_project_iam_custom_role.state_writer.id}"]
        publish = [b for b in grants if b.type == "google_pubsub_topic_iam_member"]
        assert [(b.body["topic"], b.body["role"]) for b in publish] == [
            ("${google_pubsub_topic.events.id}", "roles/pubsub.publisher")]
        assert not [b for b in grants if b.body.get("bucket") == "${google_storage_bucket.outputs.name}"], \
            "the functions only name jobDirs in the outputs bucket; training jobs write there"


def test_trigger_and_scheduler_accounts_invoke_one_function_each(cfg):
    trigger = _grants_to(cfg, "trigger")
    assert {(b.type, b.body["role"]) for b in trigger} == {
        ("google_project_iam_member", "roles/eventarc.eventReceiver"),
        ("google_cloud_run_v2_service_iam_member", "roles/run.invoker")}
    invoke = cfg.get("google_cloud_run_v2_service_iam_member", "trigger_invokes_upload").body
    assert invoke["name"] == "${google_cloudfunctions2_function.upload.name}"
    scheduler = _grants_to(cfg, "scheduler")
    assert [(b.type, b.body["role"], b.body["name"]) for b in scheduler] == [
        ("google_cloud_run_v2_service_iam_member", "roles/run.invoker",
         "${google_cloudfunctions2_function.reconcile.name}")]


def test_storage_service_agent_publishes(cfg):
    grant = cfg.get("google_project_iam_member", "gcs_agent_publishes_events").body
    assert grant["role"] == "roles/pubsub.publisher"
    assert grant["member"] == "${local.gcs_service_agent}"
    assert "google_storage_project_service_account.gcs.email_address" in cfg.locals["gcs_service_agent"]


def test_uploaders_get_object_creation_on_the_drop_bucket_and_nothing_else(cfg):
    users = [b for b in cfg.resources if "var.uploaders" in str(b.body)]
    assert [b.address for b in users] == ["google_storage_bucket_iam_member.uploaders_create_drops"]
    grant = users[0].body
    assert grant["for_each"] == "${toset(var.uploaders)}"
    assert grant["member"] == "${each.value}"
    assert grant["bucket"] == "${google_storage_bucket.drop.name}"
    assert grant["role"] == "roles/storage.objectCreator"
    assert "condition" not in grant


def test_training_account_reads_packages_and_writes_outputs(cfg):
    grants = {(b.body.get("bucket"), b.body["role"]) for b in _grants_to(cfg, "training")}
    assert ("${google_storage_bucket.outputs.name}", "roles/storage.objectUser") in grants
    assert ("${google_storage_bucket.drop.name}", "roles/storage.objectViewer") in grants
    assert ("${google_storage_bucket.staging.name}", "roles/storage.objectViewer") in grants
    assert all(role in ("roles/storage.objectViewer", "roles/storage.objectUser") for _, role in grants)


# ---- service accounts and functions ---------------------------------------------------------------------------

def test_a_service_account_per_role(cfg):
    accounts = {b.name for b in cfg.of_type("google_service_account")}
    assert accounts == ALL_ACCOUNTS
    ids = [b.body["account_id"] for b in cfg.of_type("google_service_account")]
    assert len(set(ids)) == len(ids)
    assert all(6 <= len(i) <= 30 and re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", i) for i in ids), ids


def test_each_function_runs_as_its_own_account(cfg):
    functions = {b.name: b.body for b in cfg.of_type("google_cloudfunctions2_function")}
    assert set(functions) == {"upload", "reconcile"}
    runtime = {name: ref(one(body, "service_config")["service_account_email"]) for name, body in functions.items()}
    assert runtime == {"upload": "google_service_account.upload.email",
                       "reconcile": "google_service_account.reconcile.email"}
    trigger = ref(one(functions["upload"], "event_trigger")["service_account_email"])
    job = cfg.get("google_cloud_scheduler_job", "reconcile").body
    scheduler = ref(one(one(job, "http_target"), "oidc_token")["service_account_email"])
    build = {ref(one(body, "build_config")["service_account"]) for body in functions.values()}
    used = set(runtime.values()) | {trigger, scheduler}
    assert len(used) == 4, "runtime, trigger and scheduler accounts are all different"
    assert build == {"google_service_account.function_build.id"}


def test_entry_points_exist_in_main(cfg):
    tree = ast.parse((REPO / "functions" / "main.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    entry = {b.name: one(b.body, "build_config")["entry_point"] for b in cfg.of_type("google_cloudfunctions2_function")}
    assert entry == {"upload": "on_object_finalized", "reconcile": "reconcile"}
    assert set(entry.values()) <= defined


def test_upload_trigger_filters_the_drop_bucket_with_retries(cfg):
    trigger = one(cfg.get("google_cloudfunctions2_function", "upload").body, "event_trigger")
    assert trigger["event_type"] == FINALIZED
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["event_filters"] == [{"attribute": "bucket", "value": "${google_storage_bucket.drop.name}"}]
    assert trigger["trigger_region"] == "${lower(google_storage_bucket.drop.location)}", \
        "a Cloud Storage trigger lives in the bucket's location"


def test_data_bucket_triggers_reach_the_upload_function(cfg):
    trigger = cfg.get("google_eventarc_trigger", "data_bucket").body
    assert trigger["for_each"] == "${var.data_buckets}"
    assert trigger["location"] == "${lower(each.value)}"
    assert trigger["service_account"] == "${google_service_account.trigger.email}"
    criteria = {c["attribute"]: c["value"] for c in trigger["matching_criteria"]}
    assert criteria == {"type": FINALIZED, "bucket": "${each.key}"}
    service = one(one(trigger, "destination"), "cloud_run_service")
    assert service["service"] == "${google_cloudfunctions2_function.upload.name}"
    assert "retry_policy" not in trigger, "max_attempts = 1 would turn retries off"


def test_reconcile_is_called_by_the_scheduler(cfg):
    job = cfg.get("google_cloud_scheduler_job", "reconcile").body
    target = one(job, "http_target")
    assert target["uri"] == "${google_cloudfunctions2_function.reconcile.service_config[0].uri}"
    assert one(target, "oidc_token")["audience"] == target["uri"]
    assert "event_trigger" not in cfg.get("google_cloudfunctions2_function", "reconcile").body


# ---- settings: the environment variables the code reads -------------------------------------------------------

def _cloud_names() -> set[str]:
    return {v.name for v in VARIABLES if not v.local_only}


def test_function_environment_is_exactly_what_the_code_reads(cfg):
    env = set(cfg.locals["submitter_env"])
    defaults = set(cfg.locals["submitter_env_left_to_code_defaults"])
    assert not env & defaults, f"both set and left to defaults: {env & defaults}"
    unknown = env - _cloud_names()
    assert not unknown, f"set in Terraform but not read by the code (settings.VARIABLES): {sorted(unknown)}"
    forgotten = _cloud_names() - env - defaults
    assert not forgotten, (f"read by the code but neither set in local.submitter_env nor listed in "
                           f"local.submitter_env_left_to_code_defaults (infra/settings.tf): {sorted(forgotten)}")


def test_required_variables_are_set_and_local_only_ones_are_not(cfg):
    env = set(cfg.locals["submitter_env"])
    required = {v.name for v in VARIABLES if v.required}
    assert required <= env, f"required but not set: {sorted(required - env)}"
    local_only = {v.name for v in VARIABLES if v.local_only}
    assert not local_only & (env | set(cfg.locals["submitter_env_left_to_code_defaults"]))


def test_planned_variables_are_not_yet_read_by_the_code(cfg):
    planned = set(cfg.locals["submitter_env_planned"])
    assert all(name.startswith("SUBMITTER_") for name in planned)
    landed = planned & {v.name for v in VARIABLES}
    assert not landed, (f"{sorted(landed)} now in settings.VARIABLES: move them from local.submitter_env_planned "
                        "into local.submitter_env (infra/settings.tf)")
    assert not planned & set(cfg.locals["submitter_env"])


def test_both_functions_get_the_same_settings(cfg):
    for block in cfg.of_type("google_cloudfunctions2_function"):
        assert one(block.body, "service_config")["environment_variables"] == "${local.submitter_env}"


def test_backend_is_vertex_in_the_cloud(cfg):
    assert cfg.variables["backend"]["default"] == "vertex"
    assert cfg.locals["submitter_env"]["SUBMITTER_BACKEND"] == "${var.backend}"


def test_claim_lease_outlives_the_function_timeout(cfg):
    upload = one(cfg.get("google_cloudfunctions2_function", "upload").body, "service_config")
    assert upload["timeout_seconds"] == "${var.function_timeout_seconds}"
    lease = ref(cfg.locals["claim_lease_seconds"])
    match = re.fullmatch(r"var\.function_timeout_seconds\s*\+\s*(\d+)", lease)
    assert match and int(match.group(1)) > 0, f"the lease must be the timeout plus a margin, got {lease}"
    assert cfg.locals["submitter_env"]["SUBMITTER_CLAIM_LEASE_SECONDS"] == "${tostring(local.claim_lease_seconds)}"
    timeout = cfg.variables["function_timeout_seconds"]
    assert "var.function_timeout_seconds <= 540" in timeout["validation"][0]["condition"]


def test_reconcile_timeout_stays_below_the_tick_lease(cfg):
    reconcile = one(cfg.get("google_cloudfunctions2_function", "reconcile").body, "service_config")
    assert reconcile["timeout_seconds"] == "${var.reconcile_timeout_seconds}"
    variable = cfg.variables["reconcile_timeout_seconds"]
    assert variable["default"] < TICK_LEASE_S
    assert f"var.reconcile_timeout_seconds < {int(TICK_LEASE_S)}" in variable["validation"][0]["condition"]


def test_one_reconcile_invocation_ticks_for_most_of_its_minute_and_outlives_its_window(cfg):
    env = cfg.locals["submitter_env"]
    assert env["SUBMITTER_RECONCILE_WINDOW_SECONDS"] == "${tostring(var.reconcile_window_seconds)}"
    assert env["SUBMITTER_RECONCILE_INTERVAL_SECONDS"] == "${tostring(var.reconcile_interval_seconds)}"
    window, interval = cfg.variables["reconcile_window_seconds"], cfg.variables["reconcile_interval_seconds"]
    timeout = cfg.variables["reconcile_timeout_seconds"]["default"]
    # With the one-minute schedule, a change waits at most one interval for a tick (p95 <= 10 s in the design).
    assert window["default"] <= 55 and interval["default"] <= 10
    assert window["default"] + 30 <= timeout
    function = cfg.get("google_cloudfunctions2_function", "reconcile").body
    conditions = [p["condition"] for p in one(function, "lifecycle")["precondition"]]
    assert "${var.reconcile_window_seconds + 30 <= var.reconcile_timeout_seconds}" in conditions


def test_state_prefix_is_shared_by_settings_and_lifecycle(cfg):
    default = next(v.default for v in VARIABLES if v.name == "SUBMITTER_STATE_PREFIX")
    assert cfg.locals["state_prefix"] == default
    state = cfg.get("google_storage_bucket", "state").body
    prefixes = [rule["condition"][0].get("matches_prefix") for rule in state["lifecycle_rule"]]
    assert ["${local.state_prefix}status/"] in prefixes


# ---- buckets, topic, source -----------------------------------------------------------------------------------

def test_buckets_are_private_and_uniform(cfg):
    buckets = {b.name: b.body for b in cfg.of_type("google_storage_bucket")}
    assert {"drop", "outputs", "state", "staging", "sources"} <= set(buckets)
    for name, body in buckets.items():
        assert body["uniform_bucket_level_access"] is True, name
        assert body["public_access_prevention"] == "enforced", name
        assert body["location"] == "${var.region}", name


def test_versioning_only_where_it_protects_users(cfg):
    versioned = {b.name for b in cfg.of_type("google_storage_bucket")
                 if b.body.get("versioning") and b.body["versioning"][0]["enabled"] is True}
    assert versioned == {"outputs"}, "the drop bucket must not be versioned (stale generations must 404)"


def test_staging_bucket_expires_copies(cfg):
    rules = cfg.get("google_storage_bucket", "staging").body["lifecycle_rule"]
    conditions = [rule["condition"][0] for rule in rules]
    assert all(rule["action"][0]["type"] == "Delete" for rule in rules)
    assert {"days_since_custom_time", "age"} == {k for c in conditions for k in c}


def test_dead_letters_are_routed_and_kept(cfg):
    example = cfg.get("google_pubsub_subscription", "example").body
    policy = one(example, "dead_letter_policy")
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert 5 <= policy["max_delivery_attempts"] <= 100
    assert example["enable_message_ordering"] is True
    keeper = cfg.get("google_pubsub_subscription", "dead_letters").body
    assert keeper["topic"] == "${google_pubsub_topic.dead_letter.id}", "a topic without subscription loses messages"
    agent_grants = {(b.type, b.body["role"]) for b in cfg.iam_members()
                    if b.body.get("member") == "${local.pubsub_service_agent}"}
    assert ("google_pubsub_topic_iam_member", "roles/pubsub.publisher") in agent_grants
    assert ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber") in agent_grants


def test_function_source_is_named_by_content_hash(cfg):
    obj = cfg.get("google_storage_bucket_object", "function_source").body
    assert obj["name"] == "function-source/${local.source_sha256}.zip"
    assert ref(cfg.locals["source_sha256"]) == "filesha256(local.source_archive_path)"
    assert obj["source"] == "${local.source_archive_path}"
    for block in cfg.of_type("google_cloudfunctions2_function"):
        storage = one(one(one(block.body, "build_config"), "source"), "storage_source")
        assert storage["object"] == "${google_storage_bucket_object.function_source.name}"


# ---- operations -----------------------------------------------------------------------------------------------

def _logged_rejection() -> str:
    """The JSON log line the submitter writes when it rejects a drop (through its own log formatter)."""
    import json
    import logging

    from submitter.logs import JsonFormatter

    from conftest import World

    lines: list[dict] = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(JsonFormatter().format(record)))

    logger = logging.getLogger("submitter")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        World().drop("incoming/run-bad", spec=b"trainingInput: {scaleTier: HUGE}\n")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [line] = [entry for entry in lines if entry["message"].startswith("published REJECTED")]
    assert line["severity"] == "INFO" and line["reason"] == "SPEC_INVALID"
    return line["message"]


def test_log_metrics_match_what_the_code_logs(cfg):
    metrics = {b.name: b.body for b in cfg.of_type("google_logging_metric")}
    assert set(metrics) == {"function_errors", "rejected_drops", "reconcile_ticks"}
    assert "severity>=ERROR" in metrics["function_errors"]["filter"]
    assert 'jsonPayload.message=~"^published REJECTED"' in metrics["rejected_drops"]["filter"]
    # The code logs exactly that prefix, with a `reason` field, when it publishes a REJECTED verdict.
    assert _logged_rejection().startswith("published REJECTED")
    assert metrics["rejected_drops"]["label_extractors"] == {"reason": "EXTRACT(jsonPayload.reason)"}
    assert "run.googleapis.com%2Frequests" in metrics["reconcile_ticks"]["filter"]


def test_alerts_cover_errors_rejections_staleness_and_dead_letters(cfg):
    policies = {b.name: b.body for b in cfg.of_type("google_monitoring_alert_policy")}
    assert set(policies) == {"function_errors", "rejected_drops", "reconciler_stale", "dead_letters"}
    stale = one(policies["reconciler_stale"]["conditions"][0], "condition_absent")
    assert stale["duration"] == "${var.reconcile_stale_minutes * 60}s"
    assert "reconcile_ticks" in stale["filter"]
    dead = one(policies["dead_letters"]["conditions"][0], "condition_threshold")
    assert "google_pubsub_topic.dead_letter.name" in dead["filter"]
    for name, body in policies.items():
        assert body["notification_channels"] == "${local.notification_channels}", name
        assert one(body, "documentation")["content"].strip(), name


# ---- variables, outputs, example ------------------------------------------------------------------------------

def test_variables_have_descriptions_types_and_validation(cfg):
    for name, body in cfg.variables.items():
        assert len(body.get("description", "")) > 20, f"variable {name} needs a description"
        assert "type" in body, f"variable {name} needs a type"
        if body["type"] not in ("bool", "${bool}"):
            assert body.get("validation"), f"variable {name} needs a validation block"


def test_outputs_have_descriptions(cfg):
    assert {"drop_bucket", "state_bucket", "status_prefix", "events_topic", "drop_prefix"} <= set(cfg.outputs)
    for name, body in cfg.outputs.items():
        assert body.get("description"), f"output {name} needs a description"


def test_tfvars_example_sets_exactly_the_required_variables():
    required = {name for name, body in load().variables.items() if "default" not in body}
    text = (INFRA / "terraform.tfvars.example").read_text()
    assigned = set(re.findall(r"^([a-z_]+)\s*=", text, flags=re.M))
    assert assigned == required
    commented = set(re.findall(r"^#\s*([a-z_]+)\s*=", text, flags=re.M))
    assert commented <= set(load().variables), f"unknown variables in the example: {commented - set(load().variables)}"


def test_policy_file_parses_with_the_code_and_allows_the_default_region(cfg):
    from submitter.policy import Policy

    policy = Policy.from_yaml((INFRA / "policy.yaml").read_text(), source="infra/policy.yaml")
    assert cfg.variables["region"]["default"] in policy.allowed_regions
    assert cfg.locals["policy_path_in_function"].endswith("/policy.yaml")


@pytest.mark.stack  # starts the terraform binary
@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fmt_is_clean():
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(INFRA)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- variable validations, evaluated by the real Terraform (variables need no provider) --------------------------

GOOD_VARS = {"project_id": "my-ml-project", "region": "europe-west4",
             "uploaders": ["group:ml-team@example.com", "user:alice@example.com"],
             "notification_emails": ["oncall@example.com"], "backend": "vertex", "drop_prefix": "incoming/",
             "data_buckets": {"vision.data": "US"},
             "deployer_member": "serviceAccount:drop-submitter-deployer@my-ml-project.iam.gserviceaccount.com"}

BAD_VARS = [
    ("project_id", "My Project"),
    ("region", "us-central1-a"),
    ("uploaders", ["allUsers"]),
    ("uploaders", ["ml-team@example.com"]),
    ("backend", "sagemaker"),
    ("drop_prefix", "incoming"),
    ("data_buckets", {"gs://vision-data": "us"}),
    ("notification_emails", ["oncall"]),
    ("function_timeout_seconds", 600),
    ("reconcile_timeout_seconds", 300),
    ("reconcile_stale_minutes", 1),
    ("staging_max_age_days", 1),
    ("deployer_member", "drop-submitter-deployer"),
]


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory):
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    work = tmp_path_factory.mktemp("variables")
    shutil.copy(INFRA / "variables.tf", work / "variables.tf")
    env = {"PATH": os.environ["PATH"], "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1",
           "HOME": str(work)}
    init = subprocess.run(["terraform", "init", "-input=false", "-no-color"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert init.returncode == 0, init.stdout + init.stderr
    return work, env


def _plan(variables_only, values: dict) -> subprocess.CompletedProcess:
    work, env = variables_only
    (work / "test.auto.tfvars.json").write_text(json.dumps(values))
    return subprocess.run(["terraform", "plan", "-input=false", "-no-color", "-lock=false"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.stack  # starts the terraform binary
def test_good_values_pass_the_validations(variables_only):
    result = _plan(variables_only, GOOD_VARS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.stack  # starts the terraform binary
def test_only_project_and_uploaders_are_needed(variables_only):
    result = _plan(variables_only, {"project_id": "my-ml-project", "uploaders": []})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.stack  # starts the terraform binary
@pytest.mark.parametrize("name,value", BAD_VARS, ids=[f"{n}={v}" for n, v in BAD_VARS])
def test_bad_values_are_refused(variables_only, name, value):
    result = _plan(variables_only, {**GOOD_VARS, name: value})
    assert result.returncode != 0
    assert "Invalid value for variable" in result.stderr, result.stderr
