# Who may do what. Every grant is additive (`*_iam_member`), names the narrowest role on the narrowest
# resource, and says why. No primitive role (owner, editor, viewer) is granted anywhere; tests/infra/ checks it.
#
# Custom roles hold exactly the permissions the code uses, where the predefined roles would give more.

locals {
  # Training-job permissions per backend: create for the upload function (and get/list, to adopt a job it
  # created before a redelivery), get/list only for the reconciler. Cancelling is a person's action (the CLI),
  # never the functions'.
  job_permissions = {
    vertex = {
      submit = [
        "aiplatform.customJobs.create",
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.list",
        "aiplatform.hyperparameterTuningJobs.create",
        "aiplatform.hyperparameterTuningJobs.get",
        "aiplatform.hyperparameterTuningJobs.list",
      ]
      read = [
        "aiplatform.customJobs.get",
        "aiplatform.customJobs.list",
        "aiplatform.hyperparameterTuningJobs.get",
        "aiplatform.hyperparameterTuningJobs.list",
      ]
    }
    ml_v1 = {
      submit = ["ml.jobs.create", "ml.jobs.get", "ml.jobs.list"]
      read   = ["ml.jobs.get", "ml.jobs.list"]
    }
  }

  # Service accounts a job may run as besides the training account: those the deployment policy allows
  # (allowed_service_accounts in the policy staged with the function source, see source.tf). Built from values
  # known at plan time (the training email is spelled out, not read back), as for_each requires.
  policy_service_accounts = toset([
    for email in try(coalescelist(local.staged_policy.allowed_service_accounts, []), []) : email
    if email != "${google_service_account.training.account_id}@${var.project_id}.iam.gserviceaccount.com"
  ])

  # The identity running Terraform (Cloud Build's deployer account, or a person): it must be allowed to act as
  # the accounts it deploys functions, triggers and jobs with. cloudbuild.yaml and the Makefile pass it; without
  # it, the identity of the credentials is looked up.
  deployer_email  = var.deployer_member != "" ? "" : one(data.google_client_openid_userinfo.deployer[*].email)
  deployer_member = var.deployer_member != "" ? var.deployer_member : (endswith(local.deployer_email, ".gserviceaccount.com") ? "serviceAccount:${local.deployer_email}" : "user:${local.deployer_email}")

  # Google-managed service agents.
  gcs_service_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

data "google_project" "this" {}

data "google_client_openid_userinfo" "deployer" {
  count = var.deployer_member == "" ? 1 : 0
}

data "google_storage_project_service_account" "gcs" {
  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------------------------------
# Custom roles
# ---------------------------------------------------------------------------------------------------------------

resource "google_project_iam_custom_role" "bucket_reader" {
  role_id     = "dropSubmitterBucketReader"
  title       = "drop-submitter bucket reader"
  description = "List and read objects, and read the bucket's location (the submitter warns when a job's region differs from the data's)."
  permissions = ["storage.buckets.get", "storage.objects.get", "storage.objects.list"]
}

resource "google_project_iam_custom_role" "state_writer" {
  role_id     = "dropSubmitterStateWriter"
  title       = "drop-submitter record writer"
  description = "Create, read, list and delete the submitter's records (overwriting an object needs delete)."
  permissions = ["storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list"]
}

resource "google_project_iam_custom_role" "staging_writer" {
  role_id     = "dropSubmitterStagingWriter"
  title       = "drop-submitter package stager"
  description = "Create content-addressed package copies (never overwritten), check they exist and stamp their customTime."
  permissions = ["storage.objects.create", "storage.objects.get", "storage.objects.update"]
}

resource "google_project_iam_custom_role" "staging_stamper" {
  role_id     = "dropSubmitterStagingStamper"
  title       = "drop-submitter package copy stamper"
  description = "Stamp the customTime of a package copy when the job that used it ends."
  permissions = ["storage.objects.get", "storage.objects.update"]
}

resource "google_project_iam_custom_role" "job_submitter" {
  role_id     = "dropSubmitterJobSubmitter"
  title       = "drop-submitter training job submitter"
  description = "Create training jobs and read them back (narrower than roles/aiplatform.user)."
  permissions = local.job_permissions[var.backend].submit

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_custom_role" "job_reader" {
  role_id     = "dropSubmitterJobReader"
  title       = "drop-submitter training job reader"
  description = "Read training jobs to follow their states (narrower than roles/aiplatform.viewer)."
  permissions = local.job_permissions[var.backend].read

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------------------------------
# Upload function runtime (google_service_account.upload)
# ---------------------------------------------------------------------------------------------------------------

# Read drops: list a drop folder and read job.yaml and packages pinned to a generation. Never writes there.
resource "google_storage_bucket_iam_member" "upload_reads_drop" {
  bucket = google_storage_bucket.drop.name
  role   = google_project_iam_custom_role.bucket_reader.id
  member = google_service_account.upload.member
}

# Read the data buckets whose events it receives (triggers.tf). Never writes there.
resource "google_storage_bucket_iam_member" "upload_reads_data" {
  for_each = var.data_buckets

  bucket = each.key
  role   = google_project_iam_custom_role.bucket_reader.id
  member = google_service_account.upload.member
}

# Write its records: create-only claims, verdicts, followed jobs, status documents.
resource "google_storage_bucket_iam_member" "upload_writes_state" {
  bucket = google_storage_bucket.state.name
  role   = google_project_iam_custom_role.state_writer.id
  member = google_service_account.upload.member
}

# Write the per-job immutable package copies (planned: SUBMITTER_STAGING_BUCKET).
resource "google_storage_bucket_iam_member" "upload_writes_staging" {
  bucket = google_storage_bucket.staging.name
  role   = google_project_iam_custom_role.staging_writer.id
  member = google_service_account.upload.member
}

# Publish SUBMITTED / REJECTED / SUBMIT_FAILED to the state-event topic, and nothing else on Pub/Sub.
resource "google_pubsub_topic_iam_member" "upload_publishes" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.upload.member
}

# Create training jobs. Jobs are project resources: the project is the narrowest level this can be granted at.
resource "google_project_iam_member" "upload_submits_jobs" {
  project = var.project_id
  role    = google_project_iam_custom_role.job_submitter.id
  member  = google_service_account.upload.member
}

# Run jobs as the training account: actAs on that one account only, not on the project's accounts.
resource "google_service_account_iam_member" "upload_acts_as_training" {
  service_account_id = google_service_account.training.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.upload.member
}

# Run jobs as the other accounts the deployment policy allows (allowed_service_accounts), and only those.
resource "google_service_account_iam_member" "upload_acts_as_policy_accounts" {
  for_each = local.policy_service_accounts

  service_account_id = "projects/-/serviceAccounts/${each.value}"
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.upload.member
}

# ---------------------------------------------------------------------------------------------------------------
# Reconcile function runtime (google_service_account.reconcile)
# ---------------------------------------------------------------------------------------------------------------

# List drop folders that never completed, to reject them with what is missing (the sweep). Never writes there.
resource "google_storage_bucket_iam_member" "reconcile_reads_drop" {
  bucket = google_storage_bucket.drop.name
  role   = google_project_iam_custom_role.bucket_reader.id
  member = google_service_account.reconcile.member
}

# The sweep also lists incomplete drops that arrived through a data bucket.
resource "google_storage_bucket_iam_member" "reconcile_reads_data" {
  for_each = var.data_buckets

  bucket = each.key
  role   = google_project_iam_custom_role.bucket_reader.id
  member = google_service_account.reconcile.member
}

# Read and advance followed jobs, take the tick lock, write verdicts and status documents of swept drops.
resource "google_storage_bucket_iam_member" "reconcile_writes_state" {
  bucket = google_storage_bucket.state.name
  role   = google_project_iam_custom_role.state_writer.id
  member = google_service_account.reconcile.member
}

# Stamp package copies when their job ends, so the lifecycle rule can delete them (planned).
resource "google_storage_bucket_iam_member" "reconcile_stamps_staging" {
  bucket = google_storage_bucket.staging.name
  role   = google_project_iam_custom_role.staging_stamper.id
  member = google_service_account.reconcile.member
}

# The scheduled sweep submits jobs too: a drop that completed but was never decided (its invocation died and the
# event was not redelivered), and trigger batches that start from the sweep (quiet-period windows, queued batches).
# So the reconcile function may create jobs (project resources, as for the upload function), stage their packages,
# and run them as the training account, exactly as the upload function does.
resource "google_project_iam_member" "reconcile_submits_jobs" {
  project = var.project_id
  role    = google_project_iam_custom_role.job_submitter.id
  member  = google_service_account.reconcile.member
}

# The sweep's jobs run copies of their packages, as every job does (see upload_writes_staging).
resource "google_storage_bucket_iam_member" "reconcile_writes_staging" {
  bucket = google_storage_bucket.staging.name
  role   = google_project_iam_custom_role.staging_writer.id
  member = google_service_account.reconcile.member
}

# The sweep's jobs run as the training account: actAs on that one account only.
resource "google_service_account_iam_member" "reconcile_acts_as_training" {
  service_account_id = google_service_account.training.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.reconcile.member
}

# ... or as another account the deployment policy allows, if a drop or a rule's template names one.
resource "google_service_account_iam_member" "reconcile_acts_as_policy_accounts" {
  for_each = local.policy_service_accounts

  service_account_id = "projects/-/serviceAccounts/${each.value}"
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.reconcile.member
}

# Publish each newly observed job state (and REJECTED for swept drops).
resource "google_pubsub_topic_iam_member" "reconcile_publishes" {
  topic  = google_pubsub_topic.events.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.reconcile.member
}

# List and get training jobs. Jobs are project resources: the project is the narrowest level.
resource "google_project_iam_member" "reconcile_reads_jobs" {
  project = var.project_id
  role    = google_project_iam_custom_role.job_reader.id
  member  = google_service_account.reconcile.member
}

# ---------------------------------------------------------------------------------------------------------------
# Eventarc trigger (google_service_account.trigger) and the service agents behind storage events
# ---------------------------------------------------------------------------------------------------------------

# Receive events as a trigger identity. Eventarc only offers this role at project level (Google's documented
# setup for Cloud Storage triggers); it carries no data access.
resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# Invoke the upload function, and no other service.
resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_upload" {
  name     = google_cloudfunctions2_function.upload.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# Cloud Storage publishes finalize events into a Pub/Sub topic that Eventarc creates, with a generated name, when
# the trigger is created: the topic does not exist yet, so this cannot be granted on it. Project level is how
# Google documents it for Cloud Storage triggers.
resource "google_project_iam_member" "gcs_agent_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.gcs_service_agent
}

# Pub/Sub pushes events to the function with an OIDC token of the trigger account. Projects whose Pub/Sub service
# agent dates from before April 2021 need this explicitly; granted on the trigger account only.
resource "google_service_account_iam_member" "pubsub_agent_signs_for_trigger" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# ---------------------------------------------------------------------------------------------------------------
# Cloud Scheduler (google_service_account.scheduler)
# ---------------------------------------------------------------------------------------------------------------

# Invoke the reconcile function, and no other service.
resource "google_cloud_run_v2_service_iam_member" "scheduler_invokes_reconcile" {
  name     = google_cloudfunctions2_function.reconcile.name
  location = var.region
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

# ---------------------------------------------------------------------------------------------------------------
# Training jobs (google_service_account.training)
# ---------------------------------------------------------------------------------------------------------------

# Install the job's packages: packageUris point into the drop bucket.
resource "google_storage_bucket_iam_member" "training_reads_drop" {
  bucket = google_storage_bucket.drop.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.training.member
}

# Install the job's packages from their immutable copies (planned: SUBMITTER_STAGING_BUCKET).
resource "google_storage_bucket_iam_member" "training_reads_staging" {
  bucket = google_storage_bucket.staging.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.training.member
}

# Read the training data in the data buckets.
resource "google_storage_bucket_iam_member" "training_reads_data" {
  for_each = var.data_buckets

  bucket = each.key
  role   = "roles/storage.objectViewer"
  member = google_service_account.training.member
}

# Write models, checkpoints and metrics under the jobDir (trainers overwrite checkpoints, hence objectUser rather
# than objectCreator).
resource "google_storage_bucket_iam_member" "training_writes_outputs" {
  bucket = google_storage_bucket.outputs.name
  role   = "roles/storage.objectUser"
  member = google_service_account.training.member
}

# ---------------------------------------------------------------------------------------------------------------
# Function image builds (google_service_account.function_build)
# ---------------------------------------------------------------------------------------------------------------

# Write build logs. Log writing is granted at project level only.
resource "google_project_iam_member" "function_build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.function_build.member
}

# Push the functions' images to their own repository, and no other.
resource "google_artifact_registry_repository_iam_member" "function_build_pushes_images" {
  repository = google_artifact_registry_repository.functions.name
  location   = google_artifact_registry_repository.functions.location
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.function_build.member
}

# Read the function source archive.
resource "google_storage_bucket_iam_member" "function_build_reads_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function_build.member
}

# ---------------------------------------------------------------------------------------------------------------
# Dead-lettering (the Pub/Sub service agent)
# ---------------------------------------------------------------------------------------------------------------

# Pub/Sub moves undeliverable messages to the dead-letter topic on the subscription's behalf.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# ...and acknowledges them on the source subscription once forwarded.
resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_letters" {
  subscription = google_pubsub_subscription.example.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# ---------------------------------------------------------------------------------------------------------------
# Uploaders (var.uploaders)
# ---------------------------------------------------------------------------------------------------------------

# Create objects in the drop bucket, and nothing else: no read, no list, no overwrite, no delete, no other bucket.
# (Overwriting an object needs delete, so each submission goes into a new drop folder, as `submitter submit`
# does.)
resource "google_storage_bucket_iam_member" "uploaders_create_drops" {
  for_each = toset(var.uploaders)

  bucket = google_storage_bucket.drop.name
  role   = "roles/storage.objectCreator"
  member = each.value
}

# ---------------------------------------------------------------------------------------------------------------
# The deployer (whoever runs Terraform)
# ---------------------------------------------------------------------------------------------------------------

# Deploying a function, trigger or scheduler job that runs as an account needs actAs on that account. Granted on
# these five accounts only, so the deployer never needs serviceAccountUser on the whole project.
resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = {
    upload         = google_service_account.upload.name
    reconcile      = google_service_account.reconcile.name
    trigger        = google_service_account.trigger.name
    scheduler      = google_service_account.scheduler.name
    function_build = google_service_account.function_build.name
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = local.deployer_member
}
