# What a user, a consumer or the smoke check needs after a deployment.

output "drop_bucket" {
  description = "Upload drops here: gs://<drop_bucket>/<drop_prefix><folder>/ (packages first, then job.yaml)."
  value       = google_storage_bucket.drop.name
}

output "drop_prefix" {
  description = "Where drop folders live in the drop bucket (\"\" = the whole bucket)."
  value       = var.drop_prefix
}

output "outputs_bucket" {
  description = "Default jobDirs: gs://<outputs_bucket>/<drop folder>/<jobId>."
  value       = google_storage_bucket.outputs.name
}

output "state_bucket" {
  description = "The submitter's records; a drop's status is gs://<state_bucket>/<status_prefix><drop bucket>/<folder>.json."
  value       = google_storage_bucket.state.name
}

output "status_prefix" {
  description = "Prefix of the per-drop status documents in the state bucket."
  value       = "${local.state_prefix}status/"
}

output "staging_bucket" {
  description = "Per-job package copies (used once the code reads SUBMITTER_STAGING_BUCKET)."
  value       = google_storage_bucket.staging.name
}

output "events_topic" {
  description = "Topic of the job state events (CloudEvents in the Pub/Sub binding); give each consumer its own subscription."
  value       = google_pubsub_topic.events.id
}

output "example_subscription" {
  description = "Example consumer subscription (dead-letters to dead_letter_topic after 10 failed deliveries)."
  value       = google_pubsub_subscription.example.id
}

output "dead_letter_topic" {
  description = "Where undeliverable job events go; kept on the dead_letter_subscription."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Holds dead-lettered job events for inspection."
  value       = google_pubsub_subscription.dead_letters.id
}

output "upload_function" {
  description = "The function that turns drops into training jobs."
  value       = google_cloudfunctions2_function.upload.id
}

output "reconcile_function_uri" {
  description = "HTTPS endpoint of the reconcile function (only the scheduler account may call it)."
  value       = google_cloudfunctions2_function.reconcile.service_config[0].uri
}

output "training_service_account" {
  description = "The account training jobs run as."
  value       = google_service_account.training.email
}

output "function_source_object" {
  description = "The deployed source archive, named by its SHA-256."
  value       = "gs://${google_storage_bucket.sources.name}/${google_storage_bucket_object.function_source.name}"
}

output "function_settings" {
  description = "The SUBMITTER_* environment of both functions."
  value       = local.submitter_env
}

output "dashboard" {
  description = "Cloud Monitoring dashboard of the deployment."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.submitter.id), 3)}?project=${var.project_id}"
}
