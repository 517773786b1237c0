# Operating the function on Google Cloud: log-based metrics read from the
# function's own request and load log lines (function/skserve/metrics.py and
# docs/operating.md documents every field), one dashboard, two alert
# policies. Nothing here reads main.tf's resources, so a function deployed
# with infra/deploy-gcloud.sh gets the same with `terraform apply -target`
# (docs/operating.md). Its variables (notification_channels, alert_*,
# log_metrics_wait) are in variables.tf with the others.
#
# Costs: a log-based metric is billed by the samples Cloud Monitoring ingests
# (one point per active time series per minute); labels below stay few and
# bounded for that reason. Versions label the latency distributions only: the
# dashboard draws latency by version, and a version's series stop costing once
# it stops serving. Request ids are never labels.

locals {
  # The function's own stdout lines: a gen2 function is a Cloud Run service of
  # the same name, and Cloud Run's request log (run.googleapis.com/requests)
  # has an httpRequest too, so the log name is part of every filter.
  function_logs = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${var.function_name}"
    logName="projects/${var.project_id}/logs/run.googleapis.com%2Fstdout"
  EOT

  request_lines = <<-EOT
    ${local.function_logs}
    jsonPayload.event="request"
  EOT

  # Requests the model was asked (model_ms is there): the latency population,
  # as on Lambda and in `python -m skserve.metrics`.
  prediction_lines = <<-EOT
    ${local.request_lines}
    jsonPayload.model_ms:*
  EOT

  load_lines = <<-EOT
    ${local.function_logs}
    jsonPayload.event="load"
  EOT

  # Cloud Monitoring's name of each log-based metric.
  metric_type = {
    prediction_latencies = "logging.googleapis.com/user/${var.function_name}/prediction_latencies"
    model_latencies      = "logging.googleapis.com/user/${var.function_name}/model_latencies"
    requests             = "logging.googleapis.com/user/${var.function_name}/requests"
    model_loads          = "logging.googleapis.com/user/${var.function_name}/model_loads"
    cold_starts          = "logging.googleapis.com/user/${var.function_name}/cold_starts"
  }
}

resource "google_project_service" "monitoring" {
  for_each = toset(var.enable_apis ? ["logging.googleapis.com", "monitoring.googleapis.com"] : [])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- Log-based metrics ----------------------------------------------------------
# Names are <function>/<metric>: two functions in one project keep their own.

resource "google_logging_metric" "prediction_latencies" {
  project     = var.project_id
  name        = "${var.function_name}/prediction_latencies"
  description = "Latency of the requests the model was asked (log field latency_ms), by model version and API protocol."
  filter      = local.prediction_lines

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "${var.function_name} prediction latency"

    labels {
      key         = "model_version"
      value_type  = "STRING"
      description = "The version that answered."
    }
    labels {
      key         = "protocol"
      value_type  = "STRING"
      description = "The API: v1 (/predict) or v2 (Open Inference Protocol)."
    }
  }

  value_extractor = "EXTRACT(jsonPayload.latency_ms)"
  label_extractors = {
    "model_version" = "EXTRACT(jsonPayload.model_version)"
    "protocol"      = "EXTRACT(jsonPayload.protocol)"
  }

  # 0.1 ms to ~5 minutes in steps of 25%: a percentile read from these
  # buckets is within 12.5% of the true one (an ONNX twin answers warm
  # requests in under a millisecond).
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 67
      growth_factor      = 1.25
      scale              = 0.1
    }
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_logging_metric" "model_latencies" {
  project     = var.project_id
  name        = "${var.function_name}/model_latencies"
  description = "Time inside the runtime's predict (log field model_ms), by model version and runtime: the model's share of the latency."
  filter      = local.prediction_lines

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "${var.function_name} model latency"

    labels {
      key         = "model_version"
      value_type  = "STRING"
      description = "The version that answered."
    }
    labels {
      key         = "runtime"
      value_type  = "STRING"
      description = "The runtime that answered: sklearn or onnx."
    }
  }

  value_extractor = "EXTRACT(jsonPayload.model_ms)"
  label_extractors = {
    "model_version" = "EXTRACT(jsonPayload.model_version)"
    "runtime"       = "EXTRACT(jsonPayload.runtime)"
  }

  # 0.01 ms to ~4 minutes: an ONNX twin answers a row in hundredths of a ms.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 77
      growth_factor      = 1.25
      scale              = 0.01
    }
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_logging_metric" "requests" {
  project     = var.project_id
  name        = "${var.function_name}/requests"
  description = "Requests, by HTTP status, error code (ok when it succeeded) and API protocol."
  filter      = local.request_lines

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.function_name} requests"

    labels {
      key         = "status"
      value_type  = "INT64"
      description = "The HTTP status."
    }
    labels {
      key         = "code"
      value_type  = "STRING"
      description = "ok, or the error code of the answer (docs/http-api.md)."
    }
    labels {
      key         = "protocol"
      value_type  = "STRING"
      description = "The API: v1 or v2."
    }
  }

  label_extractors = {
    "status"   = "EXTRACT(httpRequest.status)"
    "code"     = "EXTRACT(jsonPayload.code)"
    "protocol" = "EXTRACT(jsonPayload.protocol)"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_logging_metric" "model_loads" {
  project     = var.project_id
  name        = "${var.function_name}/model_loads"
  description = "Attempts to load a model version (first load or refresh), by outcome and runtime."
  filter      = local.load_lines

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.function_name} model loads"

    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "ok or failed."
    }
    labels {
      key         = "runtime"
      value_type  = "STRING"
      description = "The runtime built (empty when the load failed)."
    }
  }

  label_extractors = {
    "outcome" = "EXTRACT(jsonPayload.outcome)"
    "runtime" = "EXTRACT(jsonPayload.runtime)"
  }

  depends_on = [google_project_service.monitoring]
}

resource "google_logging_metric" "cold_starts" {
  project     = var.project_id
  name        = "${var.function_name}/cold_starts"
  description = "Instances' first requests."
  filter      = <<-EOT
    ${local.request_lines}
    jsonPayload.cold_start=true
  EOT

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.function_name} cold starts"
  }

  depends_on = [google_project_service.monitoring]
}

# A log-based metric is unknown to Cloud Monitoring for a while after it is
# created: an alert policy on it created at once fails with 404.
resource "time_sleep" "log_metrics_ready" {
  create_duration = var.log_metrics_wait

  triggers = {
    prediction_latencies = google_logging_metric.prediction_latencies.id
    requests             = google_logging_metric.requests.id
  }
}

# --- Alert policies ---------------------------------------------------------------

resource "google_monitoring_alert_policy" "error_ratio" {
  project      = var.project_id
  display_name = "${var.function_name}: server errors above ${var.alert_error_ratio} of requests"
  combiner     = "OR"

  conditions {
    display_name = "5xx answers / all answers, over 5 minutes"

    condition_threshold {
      filter             = "metric.type=\"${local.metric_type.requests}\" AND resource.type=\"cloud_run_revision\" AND metric.label.status>=500"
      denominator_filter = "metric.type=\"${local.metric_type.requests}\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_error_ratio
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  notification_channels = var.notification_channels

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.function_name}: server errors"
    content   = "More than a share of ${var.alert_error_ratio} of the answers of ${var.function_name} were 5xx for five minutes. The dashboard's \"Errors by code\" says which: `model_unavailable` and the store codes (the model cannot be loaded: see the load lines, `jsonPayload.event=\"load\"`), `internal_error` (a bug: the traceback is in the log next to the request id)."
  }

  depends_on = [time_sleep.log_metrics_ready]
}

resource "google_monitoring_alert_policy" "latency_p99" {
  project      = var.project_id
  display_name = "${var.function_name}: p99 prediction latency above ${var.alert_latency_p99_ms} ms"
  combiner     = "OR"

  conditions {
    display_name = "p99 of prediction latency, every minute for 5 minutes"

    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.prediction_latencies}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_latency_p99_ms
      # Five minutes in a row: one cold start (a model load inside a request)
      # lifts one minute's p99, not five.
      duration = "300s"

      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_99"
      }

      trigger {
        count = 1
      }
    }
  }

  notification_channels = var.notification_channels

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.function_name}: slow predictions"
    content   = "The 99th percentile of ${var.function_name}'s prediction latency stayed above ${var.alert_latency_p99_ms} ms for five minutes. Compare the dashboard's total and model-only latency by version: if the model's share rose, a new version is slower (`python -m train promote` the previous one); if not, look at instances (CPU, concurrency) and cold starts."
  }

  depends_on = [time_sleep.log_metrics_ready]
}

# --- Dashboard --------------------------------------------------------------------
# Written in the form the Monitoring API returns (no zero, false or empty
# values, durations as "60s", group-by fields quoted as the console writes
# them), so a plan after apply shows no change.

resource "google_monitoring_dashboard" "function" {
  project = var.project_id

  dashboard_json = <<-EOT
    {
      "displayName": "${var.function_name}: predictions",
      "mosaicLayout": {
        "columns": 48,
        "tiles": [
          {
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Prediction latency by model version (ms): p50, p95, p99",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p50 $${metric.labels.model_version}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.prediction_latencies}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_50",
                          "groupByFields": ["metric.label.\"model_version\""]
                        }
                      }
                    }
                  },
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p95 $${metric.labels.model_version}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.prediction_latencies}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_95",
                          "groupByFields": ["metric.label.\"model_version\""]
                        }
                      }
                    }
                  },
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p99 $${metric.labels.model_version}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.prediction_latencies}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_99",
                          "groupByFields": ["metric.label.\"model_version\""]
                        }
                      }
                    }
                  }
                ],
                "thresholds": [
                  {"label": "p99 alert", "value": ${var.alert_latency_p99_ms}}
                ],
                "yAxis": {"label": "ms", "scale": "LINEAR"}
              }
            }
          },
          {
            "xPos": 24,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Model-only latency by model version (ms): p50, p99",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p50 $${metric.labels.model_version} $${metric.labels.runtime}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.model_latencies}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_50",
                          "groupByFields": ["metric.label.\"model_version\"", "metric.label.\"runtime\""]
                        }
                      }
                    }
                  },
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p99 $${metric.labels.model_version} $${metric.labels.runtime}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.model_latencies}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_99",
                          "groupByFields": ["metric.label.\"model_version\"", "metric.label.\"runtime\""]
                        }
                      }
                    }
                  }
                ],
                "yAxis": {"label": "ms", "scale": "LINEAR"}
              }
            }
          },
          {
            "yPos": 16,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Requests per minute by status and code",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "STACKED_BAR",
                    "legendTemplate": "$${metric.labels.status} $${metric.labels.code}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.requests}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_SUM",
                          "groupByFields": ["metric.label.\"status\"", "metric.label.\"code\""]
                        }
                      }
                    }
                  }
                ],
                "yAxis": {"label": "requests", "scale": "LINEAR"}
              }
            }
          },
          {
            "xPos": 24,
            "yPos": 16,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Server error ratio (5xx / all requests)",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "LINE",
                    "legendTemplate": "5xx ratio",
                    "timeSeriesQuery": {
                      "timeSeriesFilterRatio": {
                        "numerator": {
                          "filter": "metric.type=\"${local.metric_type.requests}\" resource.type=\"cloud_run_revision\" metric.label.status>=500",
                          "aggregation": {
                            "alignmentPeriod": "300s",
                            "perSeriesAligner": "ALIGN_DELTA",
                            "crossSeriesReducer": "REDUCE_SUM"
                          }
                        },
                        "denominator": {
                          "filter": "metric.type=\"${local.metric_type.requests}\" resource.type=\"cloud_run_revision\"",
                          "aggregation": {
                            "alignmentPeriod": "300s",
                            "perSeriesAligner": "ALIGN_DELTA",
                            "crossSeriesReducer": "REDUCE_SUM"
                          }
                        }
                      }
                    }
                  }
                ],
                "thresholds": [
                  {"label": "alert", "value": ${var.alert_error_ratio}}
                ],
                "yAxis": {"label": "ratio", "scale": "LINEAR"}
              }
            }
          },
          {
            "yPos": 32,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Errors per minute by code (status 400 and above)",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "STACKED_BAR",
                    "legendTemplate": "$${metric.labels.code}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.requests}\" resource.type=\"cloud_run_revision\" metric.label.status>=400",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_SUM",
                          "groupByFields": ["metric.label.\"code\""]
                        }
                      }
                    }
                  }
                ],
                "yAxis": {"label": "errors", "scale": "LINEAR"}
              }
            }
          },
          {
            "xPos": 24,
            "yPos": 32,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Model loads by outcome, and cold starts",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "STACKED_BAR",
                    "legendTemplate": "loads $${metric.labels.outcome}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.model_loads}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_SUM",
                          "groupByFields": ["metric.label.\"outcome\""]
                        }
                      }
                    }
                  },
                  {
                    "plotType": "LINE",
                    "legendTemplate": "cold starts",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"${local.metric_type.cold_starts}\" resource.type=\"cloud_run_revision\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_SUM"
                        }
                      }
                    }
                  }
                ],
                "yAxis": {"label": "per minute", "scale": "LINEAR"}
              }
            }
          },
          {
            "yPos": 48,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Instances (Cloud Run) by state",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "STACKED_AREA",
                    "legendTemplate": "$${metric.labels.state}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"run.googleapis.com/container/instance_count\" resource.type=\"cloud_run_revision\" resource.label.\"service_name\"=\"${var.function_name}\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_MAX",
                          "crossSeriesReducer": "REDUCE_SUM",
                          "groupByFields": ["metric.label.\"state\""]
                        }
                      }
                    }
                  }
                ],
                "yAxis": {"label": "instances", "scale": "LINEAR"}
              }
            }
          },
          {
            "xPos": 24,
            "yPos": 48,
            "width": 24,
            "height": 16,
            "widget": {
              "title": "Memory utilization (Cloud Run): p50, p99 across instances",
              "xyChart": {
                "dataSets": [
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p50 $${resource.labels.revision_name}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"run.googleapis.com/container/memory/utilizations\" resource.type=\"cloud_run_revision\" resource.label.\"service_name\"=\"${var.function_name}\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_50",
                          "groupByFields": ["resource.label.\"revision_name\""]
                        }
                      }
                    }
                  },
                  {
                    "plotType": "LINE",
                    "legendTemplate": "p99 $${resource.labels.revision_name}",
                    "timeSeriesQuery": {
                      "timeSeriesFilter": {
                        "filter": "metric.type=\"run.googleapis.com/container/memory/utilizations\" resource.type=\"cloud_run_revision\" resource.label.\"service_name\"=\"${var.function_name}\"",
                        "aggregation": {
                          "alignmentPeriod": "60s",
                          "perSeriesAligner": "ALIGN_DELTA",
                          "crossSeriesReducer": "REDUCE_PERCENTILE_99",
                          "groupByFields": ["resource.label.\"revision_name\""]
                        }
                      }
                    }
                  }
                ],
                "yAxis": {"label": "share of the memory limit", "scale": "LINEAR"}
              }
            }
          }
        ]
      }
    }
  EOT

  # Its charts read these (and `terraform apply -target` of the dashboard
  # brings them along: docs/operating.md).
  depends_on = [
    google_project_service.monitoring,
    google_logging_metric.prediction_latencies,
    google_logging_metric.model_latencies,
    google_logging_metric.requests,
    google_logging_metric.model_loads,
    google_logging_metric.cold_starts,
  ]
}
