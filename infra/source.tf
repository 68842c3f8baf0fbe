# The function source. `infra/stage_source.py` (run by `make stage` and by cloudbuild.yaml before Terraform)
# copies functions/main.py, the functions/submitter package, the top-level requirements.txt (Cloud Functions wants
# it beside main.py; the top-level file stays the one source of truth) and the deployment policy into
# .build/function-source/, and zips that directory reproducibly (sorted entries, fixed timestamps) into
# .build/function-source.zip. Same content, same bytes: the object is named by the archive's SHA-256, so a changed
# source is a new object and a new deployment, and an unchanged one deploys nothing.

locals {
  source_archive_path = "${path.module}/${var.source_archive}"
  source_staged_dir   = trimsuffix(local.source_archive_path, ".zip")
  source_sha256       = filesha256(local.source_archive_path)

  # The deployment policy exactly as staged into the function (policy.yaml in the archive); iam.tf lets the upload
  # function act as the service accounts it allows.
  staged_policy = yamldecode(file("${local.source_staged_dir}/policy.yaml"))

  # The data-trigger rules exactly as staged (triggers.yaml in the archive): functions.tf checks that each rule's
  # bucket is a data bucket.
  staged_trigger_rules = try(coalescelist(yamldecode(file("${local.source_staged_dir}/triggers.yaml")).rules, []), [])
}

resource "google_storage_bucket_object" "function_source" {
  name   = "function-source/${local.source_sha256}.zip"
  bucket = google_storage_bucket.sources.name
  source = local.source_archive_path
}

# Container images of the two functions, built by Cloud Functions with the function_build account.
resource "google_artifact_registry_repository" "functions" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption for images built from this public source; CMEK adds a KMS key for no confidentiality gain.
  repository_id = "drop-submitter-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images of the drop-submitter functions (built by Cloud Functions)."

  # Keep the images of the last few deployments (for rollback), delete the rest after 30 days.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}
