# The state-event topic (one CloudEvent per job state change, ordering key = jobId), a dead-letter topic, and an
# example consumer subscription that dead-letters what it cannot process.

resource "google_pubsub_topic" "events" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption; CMEK would add a Cloud KMS key, its rotation and grants to service agents, with no consumer that requires it. Add kms_key_name here if your organisation does.
  name = "drop-submitter-job-events"

  depends_on = [google_project_service.apis]
}

# Messages a consumer subscription gave up on (dead_letter_policy below). Watched by an alert (monitoring.tf).
resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption; CMEK would add a Cloud KMS key, its rotation and grants to service agents, with no consumer that requires it. Add kms_key_name here if your organisation does.
  name = "drop-submitter-job-events-dead-letter"

  depends_on = [google_project_service.apis]
}

# An example consumer subscription: examples/consumer.py reads it. Each consumer should have its own
# subscription (a shared one splits messages between readers); copy this block for a new consumer.
resource "google_pubsub_subscription" "example" {
  name  = "drop-submitter-job-events-example"
  topic = google_pubsub_topic.events.id

  # The submitter publishes with ordering key = jobId; this keeps one job's states in order for the consumer.
  enable_message_ordering = true
  ack_deadline_seconds    = 60

  # Unconsumed messages are kept a week; the subscription never expires for lack of readers.
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  # After 10 failed deliveries a message goes to the dead-letter topic instead of blocking its ordering key.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = 10
  }
}

# Messages published to a topic without subscriptions are lost: this one keeps dead letters for inspection
# (`gcloud pubsub subscriptions pull drop-submitter-dead-letters --auto-ack=false`).
resource "google_pubsub_subscription" "dead_letters" {
  name  = "drop-submitter-dead-letters"
  topic = google_pubsub_topic.dead_letter.id

  message_retention_duration = "2678400s" # 31 days, the maximum
  expiration_policy {
    ttl = ""
  }
}
