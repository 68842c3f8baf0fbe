# One service account per role, so each gets only the access it needs (iam.tf).

# Runtime of the upload function (on_object_finalized): reads drops, creates training jobs, writes records,
# publishes events.
resource "google_service_account" "upload" {
  account_id   = "drop-submitter-upload"
  display_name = "drop-submitter upload function runtime"

  depends_on = [google_project_service.apis]
}

# Runtime of the reconcile function: reads training jobs, writes records, publishes events, sweeps drops.
resource "google_service_account" "reconcile" {
  account_id   = "drop-submitter-reconcile"
  display_name = "drop-submitter reconcile function runtime"

  depends_on = [google_project_service.apis]
}

# Identity of the Eventarc triggers: receives storage events and invokes the upload function.
resource "google_service_account" "trigger" {
  account_id   = "drop-submitter-trigger"
  display_name = "drop-submitter Eventarc trigger"

  depends_on = [google_project_service.apis]
}

# Identity of the Cloud Scheduler job: invokes the reconcile function, nothing else.
resource "google_service_account" "scheduler" {
  account_id   = "drop-submitter-scheduler"
  display_name = "drop-submitter reconcile scheduler"

  depends_on = [google_project_service.apis]
}

# Identity the training jobs run as: reads packages, writes outputs. The functions may act as it, nothing more.
resource "google_service_account" "training" {
  account_id   = "drop-submitter-training"
  display_name = "drop-submitter training jobs"

  depends_on = [google_project_service.apis]
}

# Identity of the Cloud Build runs that turn the function source into container images (instead of the
# project's default compute or Cloud Build account, which may hold broad roles).
resource "google_service_account" "function_build" {
  account_id   = "drop-submitter-fn-build"
  display_name = "drop-submitter function image builds"

  depends_on = [google_project_service.apis]
}
