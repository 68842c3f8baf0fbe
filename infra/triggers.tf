# One Eventarc trigger per data bucket (var.data_buckets), delivering its finalize events to the upload function
# (a function has a single built-in trigger, used for the drop bucket in functions.tf). The function routes by
# bucket. Each trigger lives in its bucket's location, as Cloud Storage triggers must.
#
# Retries are on: a Cloud Run destination is retried with backoff for up to 24 hours unless
# retry_policy.max_attempts = 1, which is deliberately not set.

resource "google_eventarc_trigger" "data_bucket" {
  for_each = var.data_buckets

  # Trigger names allow lowercase letters, digits and hyphens: a hash keeps any bucket name (dots, underscores)
  # valid and unique.
  name            = "drop-submitter-data-${substr(sha256(each.key), 0, 12)}"
  location        = lower(each.value)
  service_account = google_service_account.trigger.email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }

  matching_criteria {
    attribute = "bucket"
    value     = each.key
  }

  destination {
    cloud_run_service {
      # A 2nd gen function runs as the Cloud Run service of the same name.
      service = google_cloudfunctions2_function.upload.name
      region  = var.region
    }
  }

  labels = { data-bucket = substr(replace(each.key, ".", "_"), 0, 63) }

  depends_on = [
    google_project_iam_member.gcs_agent_publishes_events,
    google_project_iam_member.trigger_receives_events,
    google_cloud_run_v2_service_iam_member.trigger_invokes_upload,
  ]
}
