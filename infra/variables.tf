variable "project_id" {
  type        = string
  description = "The Google Cloud project to deploy into."
}

variable "region" {
  type        = string
  description = "Region of the function (and of the buckets, unless bucket_location is set)."
  default     = "us-central1"
}

variable "enable_apis" {
  type        = bool
  description = "Enable the APIs the deployment needs (Cloud Functions, Cloud Run, Cloud Build, Artifact Registry, Cloud Storage, IAM, Cloud Resource Manager, and Secret Manager when secrets are used); every resource waits for them."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels for the buckets and the function."
  default     = {}
}

# --- Model store --------------------------------------------------------------

variable "model_bucket_name" {
  type        = string
  description = "Name of the bucket holding published models. Default: <project_id>-sklearn-models."
  default     = null

  validation {
    condition     = var.model_bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.model_bucket_name))
    error_message = "model_bucket_name must be a bucket name: 3 to 222 lowercase letters, digits, '.', '_' and '-'."
  }
}

variable "bucket_location" {
  type        = string
  description = "Location of the buckets. Default: the function's region."
  default     = null
}

variable "model_prefix" {
  type        = string
  description = "Store prefix inside the model bucket: `python -m train --store gs://<bucket>/<model_prefix>`."
  default     = "models"

  # It ends up inside the IAM condition's CEL string: a quote or a comma
  # would break it. infra/deploy-gcloud.sh --prefix keeps the same rule.
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.model_prefix)) && !can(regex("(^|/)\\.\\.?(/|$)", var.model_prefix))
    error_message = "model_prefix must be a relative path of letters, digits, '.', '_' and '-', without leading or trailing slashes or '.' and '..' segments."
  }
}

variable "model_name" {
  type        = string
  description = "Model name inside the store (`python -m train --name`). The function reads gs://<bucket>/<model_prefix>/<model_name>."
  default     = "default"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.model_name))
    error_message = "model_name must be a single path segment."
  }
}

variable "model_version" {
  type        = string
  description = "Pin one published version (MODEL_URI .../versions/<version>). Empty: follow LATEST."
  default     = ""
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete the model bucket even when it still holds models."
  default     = false
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "Days a replaced object version (an old LATEST) is kept before deletion. Published versions are never replaced."
  default     = 30

  # The provider drops days_since_noncurrent_time = 0, which leaves a Delete
  # rule without that condition.
  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days, at least 1."
  }
}

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket holding the function's source archives. Default: <project_id>-gcf-source."
  default     = null
}

# --- Function -----------------------------------------------------------------

variable "function_name" {
  type        = string
  description = "Name of the Cloud Function (gen2) and of its Cloud Run service."
  default     = "sklearn-predict"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", var.function_name))
    error_message = "function_name must be lowercase letters, digits and hyphens, 2 to 63 characters."
  }
}

variable "service_account_id" {
  type        = string
  description = "Account id of the service account the function runs as (created here; it may only read the model)."
  default     = "sklearn-predict"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "service_account_id must be 6 to 30 lowercase letters, digits and hyphens."
  }
}

variable "build_service_account_id" {
  type        = string
  description = "Account id of the service account Cloud Build builds the function as (created here, with the roles a function build needs)."
  default     = "sklearn-predict-build"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.build_service_account_id))
    error_message = "build_service_account_id must be 6 to 30 lowercase letters, digits and hyphens."
  }

  validation {
    condition     = var.build_service_account_id != var.service_account_id
    error_message = "build_service_account_id must differ from service_account_id: the builder may write to Artifact Registry and Cloud Storage, the function may only read its model."
  }
}

# CPU and memory follow Cloud Run's rules (a gen2 function is a Cloud Run
# service), which Cloud Run applies only when it creates the function, after
# the buckets, the accounts and the model publish; infra/deploy-gcloud.sh
# --cpu/--memory keeps the same rules and messages. In the conditions below c is
# the CPU in millicores (0.583 and 583m are 583) and m the memory in MiB (-1
# when the shape is wrong); the pair's rule skips a value its own validation
# refuses, so one bad value gets one message.
variable "memory" {
  type        = string
  description = "Memory of one instance: a whole number with unit k, M, G, Mi or Gi (512Mi, 1Gi, 2G), from 128Mi to 32Gi."
  default     = "1Gi"

  validation {
    condition = alltrue([
      for m in [try(tonumber(regex("^([0-9]{1,9})(k|M|G|Mi|Gi)$", var.memory)[0]) * { k = 1000, M = 1000000, G = 1000000000, Mi = 1048576, Gi = 1073741824 }[regex("^([0-9]{1,9})(k|M|G|Mi|Gi)$", var.memory)[1]] / 1048576, -1)] :
      m >= 128 && m <= 32768
    ])
    error_message = "memory must be a whole number (at most 9 digits) with unit k, M, G, Mi or Gi, from 128Mi to 32Gi (Cloud Run's range), e.g. 512Mi, 1Gi, 4Gi."
  }

  # Cloud Run's CPU and memory table: https://cloud.google.com/run/docs/configuring/services/cpu
  # and .../services/memory-limits.
  validation {
    condition = alltrue(flatten([
      for c in [can(regex("^([0-9]{1,9}(\\.[0-9]{1,3})?|\\.[0-9]{1,3}|[0-9]{1,9}m)$", var.cpu)) ? tonumber(trimsuffix(var.cpu, "m")) * (endswith(var.cpu, "m") ? 1 : 1000) : -1] : [
        for m in [try(tonumber(regex("^([0-9]{1,9})(k|M|G|Mi|Gi)$", var.memory)[0]) * { k = 1000, M = 1000000, G = 1000000000, Mi = 1048576, Gi = 1073741824 }[regex("^([0-9]{1,9})(k|M|G|Mi|Gi)$", var.memory)[1]] / 1048576, -1)] :
        !((c >= 80 && c < 1000) || contains([1000, 2000, 4000, 6000, 8000], c)) || m < 128 || m > 32768 || (
          (c >= 500 || m <= 512) && (c >= 1000 || m <= 1024) &&
          (m <= 4096 || c >= 2000) && (m <= 8192 || c >= 4000) &&
          (m <= 16384 || c >= 6000) && (m <= 24576 || c >= 8000) &&
          (c < 4000 || m >= 2048) && (c < 6000 || m >= 4096)
        )
      ]
    ]))
    error_message = "cpu and memory must be a pair Cloud Run accepts: below 0.5 vCPU at most 512Mi, below 1 vCPU at most 1Gi; more than 4Gi needs 2 vCPUs, more than 8Gi 4, more than 16Gi 6, more than 24Gi 8; 4 vCPUs need at least 2Gi, 6 or 8 at least 4Gi."
  }
}

variable "cpu" {
  type        = string
  description = "vCPUs of one instance: 0.08 to 1 in steps of 0.001 (0.583, or millicores: 583m), or 1, 2, 4, 6 or 8. Concurrency above 1 needs at least 1."
  default     = "1"

  validation {
    condition = alltrue([
      for c in [can(regex("^([0-9]{1,9}(\\.[0-9]{1,3})?|\\.[0-9]{1,3}|[0-9]{1,9}m)$", var.cpu)) ? tonumber(trimsuffix(var.cpu, "m")) * (endswith(var.cpu, "m") ? 1 : 1000) : -1] :
      (c >= 80 && c < 1000) || contains([1000, 2000, 4000, 6000, 8000], c)
    ])
    error_message = "cpu must be 0.08 to 1 vCPU in steps of 0.001 (0.583, or millicores: 583m), or 1, 2, 4, 6 or 8 (Cloud Run's values: above 1, whole numbers only)."
  }
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout in seconds (the first request also loads the model)."
  default     = 60
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm (0: scale to zero, and pay a cold start)."
  default     = 0
}

variable "max_instances" {
  type        = number
  description = "Upper bound on instances."
  default     = 10
}

variable "concurrency" {
  type        = number
  description = "Requests one instance serves at once. THREADS (functions-framework's gunicorn threads) is set to the same number."
  default     = 4

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000 && floor(var.concurrency) == var.concurrency
    error_message = "concurrency must be an integer from 1 to 1000."
  }

  # Cloud Run refuses it only at deploy time, after every other resource.
  validation {
    condition     = var.concurrency == 1 || try(tonumber(trimsuffix(var.cpu, "m")) * (endswith(var.cpu, "m") ? 1 : 1000), 0) >= 1000
    error_message = "concurrency above 1 needs cpu of at least 1 (Cloud Run serves one request at a time below one vCPU): raise cpu or set concurrency = 1."
  }
}

variable "ingress_settings" {
  type        = string
  description = "Who can reach the URL at the network level: ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  default     = "ALLOW_ALL"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress_settings)
    error_message = "ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "allow_unauthenticated" {
  type        = bool
  description = "Let anyone invoke the function (roles/run.invoker for allUsers); then API keys are required (secret_environment_variables.API_KEYS) unless public_without_api_keys is true. Default: only invoker_members, with an identity token."
  default     = false

  # A forgotten API_KEYS would leave the URL open to anyone on the internet.
  validation {
    condition     = !var.allow_unauthenticated || contains(keys(var.secret_environment_variables), "API_KEYS") || var.public_without_api_keys
    error_message = "allow_unauthenticated = true without API keys lets anyone on the internet call the function: add secret_environment_variables = { API_KEYS = { secret = \"...\" } }, or set public_without_api_keys = true if it is meant to be open."
  }
}

variable "public_without_api_keys" {
  type        = bool
  description = "Say that a public function (allow_unauthenticated) is meant to serve anyone without API keys."
  default     = false
}

variable "invoker_members" {
  type        = list(string)
  description = "IAM members allowed to invoke the function, e.g. [\"serviceAccount:caller@p.iam.gserviceaccount.com\"]."
  default     = []
}

# --- Function settings (environment variables, see docs/configuration.md) ------

variable "model_refresh_seconds" {
  type        = number
  description = "MODEL_REFRESH_SECONDS: how often an instance re-reads LATEST (0: never)."
  default     = 60
}

variable "max_body_bytes" {
  type        = number
  description = "MAX_BODY_BYTES: larger request bodies get 413."
  default     = 10485760
}

variable "max_rows" {
  type        = number
  description = "MAX_ROWS: larger batches get 413."
  default     = 10000
}

variable "max_model_bytes" {
  type        = number
  description = "MAX_MODEL_BYTES: model artifacts larger than this are refused before download (default 256 MiB)."
  default     = 268435456

  validation {
    condition     = var.max_model_bytes >= 1024 && floor(var.max_model_bytes) == var.max_model_bytes
    error_message = "max_model_bytes must be a whole number of bytes, at least 1024."
  }
}

variable "model_runtime" {
  type        = string
  description = "MODEL_RUNTIME: auto (the verified ONNX twin when present, else the pickle), sklearn or onnx. runtime_profile slim always sets onnx."
  default     = "auto"

  validation {
    condition     = contains(["auto", "sklearn", "onnx"], var.model_runtime)
    error_message = "model_runtime must be auto, sklearn or onnx."
  }
}

variable "runtime_profile" {
  type        = string
  description = "Dependencies deployed: full (function/requirements.txt: scikit-learn and onnxruntime, serves every version) or slim (function/requirements-slim.txt: onnxruntime without scikit-learn, serves only versions with a verified ONNX twin; MODEL_RUNTIME=onnx)."
  default     = "full"

  validation {
    condition     = contains(["full", "slim"], var.runtime_profile)
    error_message = "runtime_profile must be full or slim."
  }

  # The same rule as infra/deploy-gcloud.sh --profile slim --env MODEL_RUNTIME=...
  validation {
    condition     = var.runtime_profile != "slim" || var.model_runtime != "sklearn"
    error_message = "runtime_profile slim has no scikit-learn and serves ONNX twins only (MODEL_RUNTIME=onnx): leave model_runtime at auto or onnx, or use runtime_profile = \"full\"."
  }
}

variable "cors_allow_origins" {
  type        = list(string)
  description = "CORS_ALLOW_ORIGINS: origins allowed to call the function from a browser ([\"*\"] for any; empty: CORS off)."
  default     = []
}

variable "allow_sklearn_version_mismatch" {
  type        = bool
  description = "ALLOW_SKLEARN_VERSION_MISMATCH: load models pickled with another scikit-learn version (at your own risk)."
  default     = false
}

variable "secret_environment_variables" {
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  description = "Secret Manager secrets exposed as API_KEYS and/or MODEL_SIGNING_KEY, e.g. { API_KEYS = { secret = \"sklearn-api-keys\" } }. The function's service account gets secretAccessor on each."
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.secret_environment_variables) : contains(["API_KEYS", "MODEL_SIGNING_KEY"], name)])
    error_message = "secret_environment_variables keys must be API_KEYS or MODEL_SIGNING_KEY."
  }
}

# Dashboards and alerts (monitoring.tf).
variable "notification_channels" {
  type        = list(string)
  description = "Notification channels the alert policies notify, as ids: projects/<project>/notificationChannels/<id> (gcloud beta monitoring channels list). Empty: incidents open in the console only."
  default     = []
}

variable "alert_error_ratio" {
  type        = number
  description = "The server error (5xx) share of requests above which the error ratio policy opens an incident, from 0 to 1."
  default     = 0.05

  validation {
    condition     = var.alert_error_ratio > 0 && var.alert_error_ratio < 1
    error_message = "alert_error_ratio must be between 0 and 1 (0.05 is 5% of requests)."
  }
}

variable "alert_latency_p99_ms" {
  type        = number
  description = "Prediction latency, in milliseconds, that the 99th percentile must stay under; five minutes above it opens an incident."
  default     = 1000

  validation {
    condition     = var.alert_latency_p99_ms > 0
    error_message = "alert_latency_p99_ms must be a positive number of milliseconds."
  }
}

variable "log_metrics_wait" {
  type        = string
  description = "How long the alert policies wait after the log-based metrics are created: Cloud Monitoring answers 404 for a new log-based metric for a while."
  default     = "120s"
}
