# Operations: log-based metrics from the functions' structured logs (functions/submitter/logs.py writes one JSON
# object per line: severity, message, jobId, drop, reason, outcome, ...), alert policies, a dashboard.
# A 2nd gen function logs as the Cloud Run service of the same name (resource.type="cloud_run_revision").

locals {
  function_services = [google_cloudfunctions2_function.upload.name, google_cloudfunctions2_function.reconcile.name]
  functions_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(\"${local.function_services[0]}\" OR \"${local.function_services[1]}\")",
  ])

  metric_prefix = "logging.googleapis.com/user"

  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.notification_emails)

  display_name = "drop-submitter alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------------------------------
# Log-based metrics
# ---------------------------------------------------------------------------------------------------------------

# Every ERROR (or worse) line of either function: a transient failure that will be redelivered, a malformed
# event, a job the API stopped knowing, an uncaught exception, a crashed instance, a 5xx answer.
resource "google_logging_metric" "function_errors" {
  name        = "drop_submitter/function_errors"
  description = "Log entries with severity >= ERROR from the drop-submitter functions."
  filter      = "${local.functions_log_filter} AND severity>=ERROR"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "service"
      description = "the function (Cloud Run service) that logged the error"
    }
  }
  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.apis]
}

# Every drop the submitter rejected (invalid spec or package, policy violation, incomplete drop): each REJECTED it
# publishes is logged as "published REJECTED: ..." with the reason in jsonPayload.reason.
resource "google_logging_metric" "rejected_drops" {
  name        = "drop_submitter/rejected_drops"
  description = "Drops rejected by the submitter (REJECTED events published), by reason."
  filter      = "${local.functions_log_filter} AND jsonPayload.message=~\"^published REJECTED\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "reason"
      description = "why the drop was rejected (e.g. INVALID_SPEC, POLICY_VIOLATION, INCOMPLETE_DROP)"
    }
  }
  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
  }

  depends_on = [google_project_service.apis]
}

# Every successful reconcile tick. A quiet tick logs nothing of its own, so this counts the platform's request log
# entries of the reconcile function that answered 2xx.
resource "google_logging_metric" "reconcile_ticks" {
  name        = "drop_submitter/reconcile_ticks"
  description = "Successful (2xx) calls of the drop-submitter reconcile function."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${google_cloudfunctions2_function.reconcile.name}\"",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Frequests\"",
    "httpRequest.status>=200",
    "httpRequest.status<300",
  ])

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------------------------------
# Alert policies
# ---------------------------------------------------------------------------------------------------------------

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "drop-submitter: function errors"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "ERROR log lines from a drop-submitter function"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}/${google_logging_metric.function_errors.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service"]
      }
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A drop-submitter function logged an error. Transient failures are redelivered by Eventarc for up to 24 h;
      repeated ones mean a dependency is down or a permission is missing. Read them with:

      `gcloud logging read '${local.functions_log_filter} AND severity>=ERROR' --project ${var.project_id} --freshness 1h`
    EOT
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

resource "google_monitoring_alert_policy" "rejected_drops" {
  display_name          = "drop-submitter: many rejected drops"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "More than ${var.rejected_drops_alert_threshold} drops rejected in an hour"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_prefix}/${google_logging_metric.rejected_drops.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.rejected_drops_alert_threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Many drops were rejected (each uploader got a REJECTED event and a status document with every violation).
      A burst usually means a broken submission tool, a policy change or a new team. Reasons:

      `gcloud logging read '${local.functions_log_filter} AND jsonPayload.message=~"^published REJECTED"' --project ${var.project_id} --freshness 1h --format 'value(jsonPayload.reason, jsonPayload.message)'`
    EOT
  }

  alert_strategy {
    auto_close = "7200s"
  }
}

# Metric absence: no successful tick for var.reconcile_stale_minutes means job states are no longer published
# (the scheduler is paused or failing, the function crashes, or a permission was removed).
resource "google_monitoring_alert_policy" "reconciler_stale" {
  display_name          = "drop-submitter: reconciler has not run"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.notification_channels

  conditions {
    display_name = "No successful reconcile tick for ${var.reconcile_stale_minutes} minutes"
    condition_absent {
      filter   = "metric.type=\"${local.metric_prefix}/${google_logging_metric.reconcile_ticks.name}\" AND resource.type=\"cloud_run_revision\""
      duration = "${var.reconcile_stale_minutes * 60}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The reconcile function has not answered 2xx for ${var.reconcile_stale_minutes} minutes: job state changes
      are not being published. Check the scheduler job and the function's errors:

      `gcloud scheduler jobs describe ${google_cloud_scheduler_job.reconcile.name} --location ${var.region} --project ${var.project_id}`

      `gcloud logging read 'resource.type="cloud_run_revision" AND resource.labels.service_name="${google_cloudfunctions2_function.reconcile.name}" AND severity>=WARNING' --project ${var.project_id} --freshness 1h`
    EOT
  }
}

# Dead-lettered messages: a consumer could not process an event 10 times. The message is kept on the
# drop-submitter-dead-letters subscription (pubsub.tf).
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "drop-submitter: dead-lettered job events"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "Messages published to the dead-letter topic"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.type=\"pubsub_topic\" AND resource.label.topic_id=\"${google_pubsub_topic.dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      evaluation_missing_data = "EVALUATION_MISSING_DATA_INACTIVE"
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      A consumer subscription gave up on job events; they were moved to the dead-letter topic. Inspect them without
      acknowledging:

      `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letters.name} --project ${var.project_id} --limit 10`
    EOT
  }

  alert_strategy {
    auto_close = "7200s"
  }
}

# ---------------------------------------------------------------------------------------------------------------
# Dashboard
# ---------------------------------------------------------------------------------------------------------------

resource "google_monitoring_dashboard" "submitter" {
  dashboard_json = jsonencode({
    displayName = "drop-submitter"
    gridLayout = {
      columns = "2"
      widgets = [
        {
          title = "Function errors (by function)"
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.metric_prefix}/${google_logging_metric.function_errors.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.service"]
                  }
                }
              }
            }]
          }
        },
        {
          title = "Rejected drops (by reason)"
          xyChart = {
            dataSets = [{
              plotType = "STACKED_BAR"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.metric_prefix}/${google_logging_metric.rejected_drops.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "3600s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                    groupByFields      = ["metric.label.reason"]
                  }
                }
              }
            }]
          }
        },
        {
          title = "Successful reconcile ticks"
          xyChart = {
            dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = "metric.type=\"${local.metric_prefix}/${google_logging_metric.reconcile_ticks.name}\" AND resource.type=\"cloud_run_revision\""
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = "ALIGN_SUM"
                    crossSeriesReducer = "REDUCE_SUM"
                  }
                }
              }
            }]
          }
        },
        {
          title = "Job events published / dead-lettered"
          xyChart = {
            dataSets = [
              for topic in [google_pubsub_topic.events.name, google_pubsub_topic.dead_letter.name] : {
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"pubsub.googleapis.com/topic/send_message_operation_count\" AND resource.type=\"pubsub_topic\" AND resource.label.topic_id=\"${topic}\""
                    aggregation = {
                      alignmentPeriod  = "300s"
                      perSeriesAligner = "ALIGN_SUM"
                    }
                  }
                }
              }
            ]
          }
        },
        {
          title = "Undelivered messages on the example and dead-letter subscriptions"
          xyChart = {
            dataSets = [
              for sub in [google_pubsub_subscription.example.name, google_pubsub_subscription.dead_letters.name] : {
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${sub}\""
                    aggregation = {
                      alignmentPeriod  = "300s"
                      perSeriesAligner = "ALIGN_MEAN"
                    }
                  }
                }
              }
            ]
          }
        },
        {
          title = "Where to look"
          text = {
            format  = "MARKDOWN"
            content = "Status of a drop: `gs://${google_storage_bucket.state.name}/${local.state_prefix}status/<bucket>/<folder>.json`. Errors: Logs Explorer with `${local.functions_log_filter} AND severity>=ERROR`. Dead letters: `gcloud pubsub subscriptions pull ${google_pubsub_subscription.dead_letters.name}`."
          }
        },
      ]
    }
  })
}
