# Inputs. Only `project_id` and `uploaders` have no default: they are the values a user must supply
# (see terraform.tfvars.example and README.md). Everything else has a default that works.

variable "project_id" {
  description = "Google Cloud project to deploy into (it also prefixes every bucket name, which must be globally unique)."
  type        = string

  validation {
    # https://cloud.google.com/resource-manager/docs/creating-managing-projects: 6-30 characters, lowercase
    # letters, digits and hyphens, starting with a letter, not ending with a hyphen (same rule as settings.py).
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project id (6-30 lowercase letters, digits and hyphens, starting with a letter), not a project name or number."
  }
}

variable "region" {
  description = "Region of the functions, the drop/outputs/state/staging buckets, the Eventarc trigger and the default region of training jobs."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a region name such as us-central1 or europe-west4 (not a zone, not a multi-region)."
  }
}

variable "uploaders" {
  description = "Who may upload drops: IAM members (e.g. [\"group:ml-team@example.com\"]). They get object creation on the drop bucket and nothing else. [] means nobody but project administrators."
  type        = list(string)

  validation {
    condition     = alltrue([for m in var.uploaders : can(regex("^(group|user|serviceAccount|domain|principalSet|principal):.+", m))])
    error_message = "Each uploader must be an IAM member such as group:ml-team@example.com, user:alice@example.com or serviceAccount:ci@p.iam.gserviceaccount.com."
  }

  validation {
    condition     = !contains(var.uploaders, "allUsers") && !contains(var.uploaders, "allAuthenticatedUsers")
    error_message = "The drop bucket starts training jobs on this project's bill: it can never be public."
  }
}

variable "backend" {
  description = "Training API the submitter calls: \"vertex\" (Vertex AI custom training, the cloud default) or \"ml_v1\" (AI Platform Training, shut down by Google on 2025-01-31; kept for the local stack)."
  type        = string
  default     = "vertex"

  validation {
    condition     = contains(["vertex", "ml_v1"], var.backend)
    error_message = "backend must be \"vertex\" or \"ml_v1\"."
  }
}

variable "drop_prefix" {
  description = "Where drop folders live in the drop bucket (\"\" = the whole bucket, or a prefix ending in \"/\" such as \"incoming/\")."
  type        = string
  default     = ""

  validation {
    condition     = var.drop_prefix == "" || (endswith(var.drop_prefix, "/") && !startswith(var.drop_prefix, "/"))
    error_message = "drop_prefix must be \"\" or a prefix such as \"incoming/\" (ending in \"/\", not starting with it)."
  }
}

variable "data_buckets" {
  description = "Existing buckets whose new objects should also reach the upload function (map of bucket name => bucket location, e.g. {\"vision-data\" = \"us-central1\"}). The function may read them; it never writes there."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name, location in var.data_buckets : can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", name)) && can(regex("^[a-z0-9-]+$", lower(location)))])
    error_message = "data_buckets maps bucket names (not gs:// URLs) to their locations (e.g. us-central1, us, eu)."
  }
}

variable "notification_emails" {
  description = "Email addresses that receive the alerts (function errors, rejected drops, a silent reconciler, dead-lettered messages). [] creates the alerts without notifications."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.notification_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "notification_emails must be plain email addresses."
  }
}

variable "function_timeout_seconds" {
  description = "Timeout of the upload function. The claim lease (SUBMITTER_CLAIM_LEASE_SECONDS) is derived from it so that a claim always outlives the invocation that holds it."
  type        = number
  default     = 300

  validation {
    # 540 s is the maximum for event-driven Cloud Functions (2nd gen).
    condition     = var.function_timeout_seconds >= 60 && var.function_timeout_seconds <= 540
    error_message = "function_timeout_seconds must be between 60 and 540 (the limit for event-driven functions)."
  }
}

variable "reconcile_timeout_seconds" {
  description = "Timeout of the reconcile function. Must stay below the reconciler's tick lease (TICK_LEASE_S = 300 s in functions/submitter/reconciler.py), or a tick still running could be taken over."
  type        = number
  default     = 120

  validation {
    condition     = var.reconcile_timeout_seconds >= 30 && var.reconcile_timeout_seconds < 300
    error_message = "reconcile_timeout_seconds must be between 30 and 299 (below the reconciler's 300 s tick lease)."
  }
}

variable "reconcile_schedule" {
  description = "Cloud Scheduler cron schedule of the reconcile function (its smallest period is one minute)."
  type        = string
  default     = "* * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.reconcile_schedule))) == 5
    error_message = "reconcile_schedule must be a 5-field cron expression such as \"* * * * *\"."
  }
}

variable "reconcile_window_seconds" {
  description = "How long one reconcile invocation keeps ticking. Cloud Scheduler fires once a minute at best; an invocation that ticks for most of its minute publishes a job's state change within one tick interval instead of up to a minute late. 0: one tick per invocation."
  type        = number
  default     = 55

  validation {
    condition     = var.reconcile_window_seconds >= 0 && var.reconcile_window_seconds <= 55
    error_message = "reconcile_window_seconds must be between 0 and 55: the window must end before the next scheduled invocation (one minute)."
  }
}

variable "reconcile_interval_seconds" {
  description = "Seconds between the ticks of one reconcile invocation (each tick lists the active jobs: ceil(N/100) calls for N jobs)."
  type        = number
  default     = 5

  validation {
    condition     = var.reconcile_interval_seconds >= 1 && var.reconcile_interval_seconds <= 60
    error_message = "reconcile_interval_seconds must be between 1 and 60."
  }
}

variable "reconcile_stale_minutes" {
  description = "Alert when the reconcile function has had no successful run for this many minutes."
  type        = number
  default     = 10

  validation {
    condition     = var.reconcile_stale_minutes >= 3 && var.reconcile_stale_minutes <= 1380
    error_message = "reconcile_stale_minutes must be between 3 and 1380 (Cloud Monitoring's absence window is 2 min to 23 h)."
  }
}

variable "rejected_drops_alert_threshold" {
  description = "Alert when more drops than this are rejected within one hour (a rejected drop is a user error; many point to a broken tool or policy)."
  type        = number
  default     = 10

  validation {
    condition     = var.rejected_drops_alert_threshold >= 0
    error_message = "rejected_drops_alert_threshold must be 0 or more."
  }
}

variable "upload_max_instances" {
  description = "Maximum instances of the upload function. Vertex AI accepts 60 job creations per minute per region: more instances only meet quota errors sooner."
  type        = number
  default     = 20

  validation {
    condition     = var.upload_max_instances >= 1 && var.upload_max_instances <= 100
    error_message = "upload_max_instances must be between 1 and 100."
  }
}

variable "function_memory" {
  description = "Memory of each function instance (package inspection streams tar headers, so this does not grow with package size)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.function_memory))
    error_message = "function_memory must look like 256Mi, 512Mi or 1Gi."
  }
}

variable "status_retention_days" {
  description = "Days a drop's status document (gs://<state bucket>/submitter/status/...) is kept after its last update."
  type        = number
  default     = 30

  validation {
    condition     = var.status_retention_days >= 2
    error_message = "status_retention_days must be at least 2 (events are redelivered for up to 24 h)."
  }
}

variable "staging_retention_days" {
  description = "Days a staged package copy is kept after the submitter stamps its customTime (when the job that uses it ends)."
  type        = number
  default     = 3

  validation {
    condition     = var.staging_retention_days >= 1
    error_message = "staging_retention_days must be at least 1."
  }
}

variable "staging_max_age_days" {
  description = "Safety net: days after which any staged package copy is deleted, stamped or not. Must exceed the longest job (the policy's max_running_time_s, 2 days by default) plus its queueing time."
  type        = number
  default     = 14

  validation {
    condition     = var.staging_max_age_days >= 3
    error_message = "staging_max_age_days must be at least 3 (longer than the default 2-day job cap)."
  }
}

variable "outputs_noncurrent_retention_days" {
  description = "Days an overwritten or deleted training output stays recoverable (the outputs bucket is versioned)."
  type        = number
  default     = 30

  validation {
    condition     = var.outputs_noncurrent_retention_days >= 1
    error_message = "outputs_noncurrent_retention_days must be at least 1."
  }
}

variable "force_destroy_buckets" {
  description = "Allow `terraform destroy` to delete buckets that still hold objects (drops, outputs, records). Keep false except for teardown."
  type        = bool
  default     = false
}

variable "source_archive" {
  description = "Function source archive written by `infra/stage_source.py` (path relative to infra/)."
  type        = string
  default     = ".build/function-source.zip"

  validation {
    condition     = endswith(var.source_archive, ".zip")
    error_message = "source_archive must be the .zip written by stage_source.py (its staging directory is the same path without .zip)."
  }
}

variable "deployer_member" {
  description = "IAM member running Terraform (e.g. serviceAccount:drop-submitter-deployer@P.iam.gserviceaccount.com); it gets actAs on the accounts it deploys with. Set by cloudbuild.yaml and the Makefile; \"\" looks it up from the credentials."
  type        = string
  default     = ""

  validation {
    condition     = var.deployer_member == "" || can(regex("^(user|serviceAccount):[^@]+@.+$", var.deployer_member))
    error_message = "deployer_member must be \"\" or user:EMAIL / serviceAccount:EMAIL."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = { app = "drop-submitter" }

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "Label keys and values must be lowercase letters, digits, '_' and '-' (keys start with a letter)."
  }
}
