# Cloud Scheduler calls the reconcile function on a schedule (every minute by default: Cloud Scheduler's smallest
# period), authenticated with an OIDC token of the scheduler account.

resource "google_cloud_scheduler_job" "reconcile" {
  name        = "drop-submitter-reconcile"
  region      = var.region
  description = "Tick of the drop-submitter reconciler."
  schedule    = var.reconcile_schedule
  time_zone   = "Etc/UTC"

  # A tick that outlives the function's timeout has failed anyway.
  attempt_deadline = "${var.reconcile_timeout_seconds + 30}s"

  # No retries: the next tick is the retry, and ticks never overlap.
  retry_config {
    retry_count = 0
  }

  http_target {
    uri         = google_cloudfunctions2_function.reconcile.service_config[0].uri
    http_method = "POST"

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.reconcile.service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.scheduler_invokes_reconcile,
    google_service_account_iam_member.deployer_acts_as,
  ]
}
