# The APIs the deployment uses. Services are left enabled on destroy: other workloads in the project may
# depend on them, and disabling an API is not needed to stop spending.

locals {
  # The training API follows the backend: Vertex AI in the cloud; `ml` only for the legacy backend.
  training_api = var.backend == "vertex" ? "aiplatform.googleapis.com" : "ml.googleapis.com"

  apis = toset([
    "artifactregistry.googleapis.com", # the functions' container images
    "cloudbuild.googleapis.com",       # Cloud Functions builds the function source with Cloud Build
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com", # the reconcile tick
    "eventarc.googleapis.com",       # Cloud Storage finalize events to the upload function
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com", # the state-event topic (and Eventarc's transport)
    "run.googleapis.com",    # Cloud Functions 2nd gen run on Cloud Run
    "storage.googleapis.com",
    local.training_api,
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  service            = each.value
  disable_on_destroy = false
}
