# The two Cloud Functions (2nd gen), built from the same source, each with its own runtime account and the same
# settings (settings.tf): both build the submitter from every SUBMITTER_* variable.

# on_object_finalized: one storage finalize event -> at most one training job and its verdict event.
resource "google_cloudfunctions2_function" "upload" {
  name        = "drop-submitter-upload"
  location    = var.region
  description = "Turns a complete drop (job.yaml + packages) into a training job; publishes its verdict."

  build_config {
    runtime           = "python311"
    entry_point       = "on_object_finalized"
    service_account   = google_service_account.function_build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.upload.email
    environment_variables = local.submitter_env
    # The claim lease is derived from this same variable (settings.tf): a claim outlives its invocation.
    timeout_seconds                  = var.function_timeout_seconds
    available_memory                 = var.function_memory
    max_instance_count               = var.upload_max_instances
    max_instance_request_concurrency = 1
    # Only Eventarc (internal traffic) calls it; nothing on the internet can reach it.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
  }

  # Every object finalized in the drop bucket (a Cloud Storage trigger filters by bucket only; the function ignores
  # what is not part of a drop). The trigger must be in the bucket's location. Retries on: the function raises only
  # for transient faults, and Eventarc redelivers those with backoff for up to 24 hours.
  event_trigger {
    trigger_region        = lower(google_storage_bucket.drop.location)
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.drop.name
    }
  }

  lifecycle {
    # The region filled into job specs must be one the deployment policy allows, or every drop without a region
    # would be rejected. (A policy without allowed_regions uses the code's default list.)
    precondition {
      condition     = contains(try(local.staged_policy.allowed_regions, [var.region]), var.region)
      error_message = "The deployment policy (infra/policy.yaml, staged into .build/function-source/) does not allow var.region in allowed_regions."
    }
    # A trigger rule on a bucket without an Eventarc trigger (triggers.tf) would never fire.
    precondition {
      condition     = alltrue([for rule in local.staged_trigger_rules : contains(keys(var.data_buckets), try(rule.bucket, ""))])
      error_message = "A rule in infra/triggers.yaml watches a bucket that is not in var.data_buckets: add the bucket (name = location) to data_buckets."
    }
  }

  depends_on = [
    google_project_iam_member.gcs_agent_publishes_events,
    google_project_iam_member.trigger_receives_events,
    google_project_iam_member.function_build_writes_logs,
    google_artifact_registry_repository_iam_member.function_build_pushes_images,
    google_storage_bucket_iam_member.function_build_reads_sources,
    google_service_account_iam_member.deployer_acts_as,
  ]
}

# reconcile: one scheduled tick -> every newly observed job state published once; incomplete drops swept.
resource "google_cloudfunctions2_function" "reconcile" {
  # checkov:skip=CKV_GCP_124:Cloud Scheduler must reach it; only the scheduler account holds run.invoker on it (iam.tf), so unauthenticated calls are refused before the code runs.
  name        = "drop-submitter-reconcile"
  location    = var.region
  description = "Publishes the state changes of submitted jobs; rejects drops that never completed."

  build_config {
    runtime           = "python311"
    entry_point       = "reconcile"
    service_account   = google_service_account.function_build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.function_source.name
      }
    }
  }

  service_config {
    service_account_email = google_service_account.reconcile.email
    environment_variables = local.submitter_env
    # Below the reconciler's 300 s tick lease (variables.tf), so a running tick is never taken over; above the
    # ticking window plus a tick, checked by the precondition below.
    timeout_seconds  = var.reconcile_timeout_seconds
    available_memory = var.function_memory
    # Ticks never overlap (a leased lock in the state bucket); one instance is all a tick needs.
    max_instance_count               = 1
    max_instance_request_concurrency = 1
    # Reachable over HTTPS, but only the scheduler account may invoke it (iam.tf): IAM, not the network, is the
    # gate, because Cloud Scheduler's calls are not guaranteed to count as internal traffic.
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
  }

  lifecycle {
    precondition {
      # The invocation must outlive its ticking window plus a last tick, or the tick would be cut off mid-way.
      condition     = var.reconcile_window_seconds + 30 <= var.reconcile_timeout_seconds
      error_message = "reconcile_timeout_seconds must be at least reconcile_window_seconds + 30."
    }
  }

  depends_on = [
    google_project_iam_member.function_build_writes_logs,
    google_artifact_registry_repository_iam_member.function_build_pushes_images,
    google_storage_bucket_iam_member.function_build_reads_sources,
    google_service_account_iam_member.deployer_acts_as,
  ]
}
