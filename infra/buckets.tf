# Buckets. All of them: uniform bucket-level access (IAM only, no object ACLs), public access prevention
# enforced, in var.region. Bucket names start with the project id, so they are unique to this project.
#
#   drop     watched by the upload function; uploaders create objects here
#   outputs  default jobDirs (gs://<outputs>/<drop folder>/<jobId>); written by training jobs
#   state    the submitter's own records: claims, verdicts, followed jobs, one status document per drop
#   staging  per-job immutable, content-addressed copies of packages (SUBMITTER_STAGING_BUCKET)
#   sources  the function source archives Cloud Functions builds from

locals {
  bucket_names = {
    drop    = "${var.project_id}-drops"
    outputs = "${var.project_id}-outputs"
    state   = "${var.project_id}-submitter-state"
    staging = "${var.project_id}-staging"
    sources = "${var.project_id}-function-sources"
  }
}

# The watched bucket. Not versioned on purpose: the submitter reads each object pinned to the generation of its
# event and treats "that generation no longer exists" as "overwritten, ignore this stale event"
# (functions/submitter/gcs.py). With versioning, an overwritten job.yaml generation would stay readable and a
# late event could still submit it. A drop (job.yaml + packages) is small and can be uploaded again.
resource "google_storage_bucket" "drop" {
  # checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Admin Activity always; Data Access for storage.googleapis.com where the project enables it, see README.md) rather than legacy usage-log objects in yet another bucket.
  # checkov:skip=CKV_GCP_78:Versioning would keep overwritten job.yaml generations readable and let a late event submit them; the submitter relies on GCS answering 404 for an overwritten generation (comment above).
  name                        = local.bucket_names.drop
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  # Half-finished multipart uploads of large packages are billed until removed.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

# Training outputs (models, checkpoints, metrics). Versioned: a trainer or a person that overwrites or deletes a
# trained model can get it back for var.outputs_noncurrent_retention_days.
resource "google_storage_bucket" "outputs" {
  # checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Admin Activity always; Data Access for storage.googleapis.com where the project enables it, see README.md) rather than legacy usage-log objects in yet another bucket.
  name                        = local.bucket_names.outputs
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.outputs_noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

# The submitter's records (functions/submitter/ledger.py). A bucket of its own, so the functions can write here
# without any write access to the drop bucket. Not versioned: records are small documents rewritten with
# generation preconditions; old copies have no use and would only accumulate (soft delete still keeps deleted
# objects for 7 days).
resource "google_storage_bucket" "state" {
  # checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Admin Activity always; Data Access for storage.googleapis.com where the project enables it, see README.md) rather than legacy usage-log objects in yet another bucket.
  # checkov:skip=CKV_GCP_78:Records are small documents rewritten under generation preconditions; noncurrent copies have no use (soft delete keeps deleted objects 7 days).
  name                        = local.bucket_names.state
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  # Status documents are for the uploader to read soon after a drop; each update rewrites the object, so the age
  # counts from the last update.
  lifecycle_rule {
    condition {
      age            = var.status_retention_days
      matches_prefix = ["${local.state_prefix}status/"]
    }
    action {
      type = "Delete"
    }
  }

  # Claims now live at their input's verdict key (drops/..., triggers/batches/...) and become the verdict; this
  # rule only ages out claims/ documents left by earlier versions. A claim only mattered while events for its
  # job.yaml generation could still arrive (24 h, see local.max_event_age_seconds); a week leaves a wide margin.
  # Verdicts (drops/), followed jobs (jobs/, done/, lost/), the due index and the tick lock are never aged out:
  # the reconciler and redeliveries rely on them. (An incomplete drop's record is its WAITING status document,
  # which the sweep decides long before the status rule above could age it out: days vs. incomplete_drop_s.)
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["${local.state_prefix}claims/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Per-job immutable copies of packages, named by content hash (planned in the code: SUBMITTER_STAGING_BUCKET).
# A job reads its packages when it starts, so a copy must live until the job ends. The submitter stamps a copy's
# customTime when the last job using it ends (customTime can only move forward, so a reused copy is simply
# stamped again); it is deleted var.staging_retention_days later. The age rule is a safety net for copies never
# stamped; a copy reused after that age must be copied again (content addressing makes that idempotent).
# Not versioned: objects are never overwritten.
resource "google_storage_bucket" "staging" {
  # checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Admin Activity always; Data Access for storage.googleapis.com where the project enables it, see README.md) rather than legacy usage-log objects in yet another bucket.
  # checkov:skip=CKV_GCP_78:Content-addressed copies are never overwritten; the lifecycle rules delete them on purpose.
  name                        = local.bucket_names.staging
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  lifecycle_rule {
    condition {
      days_since_custom_time = var.staging_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = var.staging_max_age_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Function source archives, one object per content hash (source.tf). Small; kept so any deployed version can be
# inspected or redeployed. Always deletable on teardown: the repository is their source of truth.
resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (Admin Activity always; Data Access for storage.googleapis.com where the project enables it, see README.md) rather than legacy usage-log objects in yet another bucket.
  # checkov:skip=CKV_GCP_78:Archives are named by content hash and never overwritten; the repository is their source of truth.
  name                        = local.bucket_names.sources
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}
