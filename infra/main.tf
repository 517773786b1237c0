provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  # The deployable unit: function/ exactly as `gcloud functions deploy` uploads it.
  source_dir = "${path.module}/../function"
  # function/.gcloudignore, as fileset() patterns: a folder's rule matches every
  # file under it (tests check that both keep the same files).
  source_excludes = [
    "**/.gcloudignore",
    "**/.git/**",
    "**/.gitignore",
    "**/__pycache__/**",
    "**/*.py[cod]",
    "**/.pytest_cache/**",
    "**/.ruff_cache/**",
    "**/.mypy_cache/**",
    "**/.hypothesis/**",
    "**/tests/**",
    "**/test_*.py",
    "**/*_test.py",
    "**/conftest.py",
    "**/.venv/**",
    "**/venv/**",
    "**/.env",
    "**/model-store/**",
    "**/*.pkl",
    "**/*.joblib",
    "**/lambda_main.py",
    "**/requirements-*.txt",
  ]
  source_files = setsubtract(
    fileset(local.source_dir, "**"),
    flatten([for pattern in local.source_excludes : fileset(local.source_dir, pattern)]),
  )
  # Cloud Functions installs the archive's requirements.txt: the profile's pins.
  profile_requirements = {
    full = "requirements.txt"
    slim = "requirements-slim.txt"
  }

  model_bucket  = coalesce(var.model_bucket_name, "${var.project_id}-sklearn-models")
  source_bucket = coalesce(var.source_bucket_name, "${var.project_id}-gcf-source")
  location      = coalesce(var.bucket_location, var.region)
  # <store>/<name> follows LATEST; the function may read nothing else.
  model_root = "${var.model_prefix}/${var.model_name}"
  model_uri = (
    var.model_version == ""
    ? "gs://${local.model_bucket}/${local.model_root}"
    : "gs://${local.model_bucket}/${local.model_root}/versions/${var.model_version}"
  )
  # slim has no scikit-learn, so it serves twins only (runtime_profile's
  # validation refuses model_runtime = "sklearn" with it).
  model_runtime = var.runtime_profile == "slim" ? "onnx" : var.model_runtime

  environment = {
    MODEL_URI                      = local.model_uri
    MODEL_REFRESH_SECONDS          = tostring(var.model_refresh_seconds)
    MAX_BODY_BYTES                 = tostring(var.max_body_bytes)
    MAX_ROWS                       = tostring(var.max_rows)
    MAX_MODEL_BYTES                = tostring(var.max_model_bytes)
    MODEL_RUNTIME                  = local.model_runtime
    CORS_ALLOW_ORIGINS             = join(",", var.cors_allow_origins)
    ALLOW_SKLEARN_VERSION_MISMATCH = tostring(var.allow_sklearn_version_mismatch)
    # functions-framework serves with this many gunicorn threads: one per request
    # the instance is allowed to hold (max_instance_request_concurrency).
    THREADS = tostring(var.concurrency)
    # Gen2 runtimes do not set it; the logs need it to link entries to traces.
    GOOGLE_CLOUD_PROJECT = var.project_id
  }

  # What each resource below calls: a new project has few of them enabled (IAM
  # and Resource Manager, which project IAM members go through, among the
  # missing), and every resource depends on google_project_service.apis, so
  # none races its API's enablement.
  apis = concat(
    [
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudfunctions.googleapis.com",
      "cloudresourcemanager.googleapis.com",
      "iam.googleapis.com",
      "run.googleapis.com",
      "storage.googleapis.com",
    ],
    length(var.secret_environment_variables) > 0 ? ["secretmanager.googleapis.com"] : [],
  )
  function_member = "serviceAccount:${google_service_account.function.email}"
  build_member    = "serviceAccount:${google_service_account.build.email}"
  # What Google documents for a custom build service account
  # (https://cloud.google.com/run/docs/configuring/services/build-service-account):
  # logs, images, and roles/storage.objectAdmin to fetch the source, granted
  # below on every bucket but the model bucket. roles/cloudbuild.builds.builder
  # is what Google suggests adding to the default Compute Engine account
  # instead; a custom build account does not need it, and it would let the
  # build write any bucket, published models included.
  build_roles = [
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
  ]
  # IAM condition (CEL): any bucket or object but the model bucket and what it
  # holds, so the build can never write or delete LATEST or a version.
  build_storage_condition = join(" && ", [
    "resource.name != \"projects/_/buckets/${local.model_bucket}\"",
    "!resource.name.startsWith(\"projects/_/buckets/${local.model_bucket}/\")",
  ])
}

resource "google_project_service" "apis" {
  for_each = toset(var.enable_apis ? local.apis : [])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- Model store ----------------------------------------------------------------

resource "google_storage_bucket" "models" {
  project                     = var.project_id
  name                        = local.model_bucket
  location                    = local.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  # Published versions are immutable; versioning keeps every LATEST a
  # promotion replaced, and guards the artifacts against deletion.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# --- Identity: the function runs as its own account, reading its model only ------

resource "google_service_account" "function" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = "${var.function_name} Cloud Function"
  description  = "Runs ${var.function_name}; reads ${local.model_uri} and nothing else."

  depends_on = [google_project_service.apis]
}

# Cloud Build's identity: since mid-2024 a new project's default build account
# may lack the permissions a function build needs.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = var.build_service_account_id
  display_name = "${var.function_name} Cloud Build"
  description  = "Builds ${var.function_name} from its source archive; may not write ${local.model_bucket}."

  depends_on = [google_project_service.apis]
}

# A service account is eventually consistent: binding one created a moment ago
# can fail with "does not exist". Every binding waits for this.
resource "time_sleep" "accounts_propagate" {
  create_duration = "30s"

  triggers = {
    function = google_service_account.function.email
    build    = google_service_account.build.email
  }
}

resource "google_project_iam_member" "build" {
  for_each = toset(local.build_roles)

  project = var.project_id
  role    = each.value
  member  = local.build_member

  depends_on = [google_project_service.apis, time_sleep.accounts_propagate]
}

resource "google_project_iam_member" "build_storage" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = local.build_member

  condition {
    title       = "not-the-model-bucket"
    description = "Every bucket but gs://${local.model_bucket}: the build never writes published models"
    expression  = local.build_storage_condition
  }

  depends_on = [google_project_service.apis, time_sleep.accounts_propagate]
}

resource "google_storage_bucket_iam_member" "model_reader" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = local.function_member

  condition {
    title       = "model-prefix-only"
    description = "Objects under gs://${local.model_bucket}/${local.model_root}/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.model_bucket}/objects/${local.model_root}/\")"
  }

  depends_on = [google_project_service.apis, time_sleep.accounts_propagate]
}

resource "google_secret_manager_secret_iam_member" "function" {
  for_each = var.secret_environment_variables

  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = local.function_member

  depends_on = [google_project_service.apis, time_sleep.accounts_propagate]
}

# --- Source: function/ zipped with its profile's requirements, named by its hash ----

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = local.source_bucket
  location                    = local.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = var.labels

  depends_on = [google_project_service.apis]
}

# One `source` block per file (source_dir cannot rename a file), each file's
# content but requirements.txt's, which is the profile's. The provider writes
# source blocks with Go's zip.Writer.Create: no timestamp and no mode from the
# checkout (output_file_mode applies only to files read from disk, so it is not
# set), and the checksum, hence the object name, changes only with the
# content. file() reads UTF-8 text: function/ holds code, JSON and pins only.
data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/.build/${var.function_name}-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content = file(
        "${local.source_dir}/${source.value == "requirements.txt" ? local.profile_requirements[var.runtime_profile] : source.value}"
      )
    }
  }
}

resource "google_storage_bucket_object" "source" {
  # A new name for new content: the function is rebuilt exactly when its code
  # or requirements change.
  name   = "${var.function_name}/${data.archive_file.source.output_sha256}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# --- The function -------------------------------------------------------------------

resource "google_cloudfunctions2_function" "predict" {
  project     = var.project_id
  location    = var.region
  name        = var.function_name
  description = "Serves the scikit-learn model at ${local.model_uri}"
  labels      = var.labels

  build_config {
    runtime         = "python312"
    entry_point     = "predict"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    timeout_seconds                  = var.timeout_seconds
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    ingress_settings                 = var.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function.email
    # Empty settings are left out: the function then uses its defaults.
    environment_variables = { for name, value in local.environment : name => value if value != "" }

    dynamic "secret_environment_variables" {
      for_each = var.secret_environment_variables
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.build,
    google_project_iam_member.build_storage,
    google_storage_bucket_iam_member.model_reader,
    google_secret_manager_secret_iam_member.function,
  ]
}

# --- Who may call it ----------------------------------------------------------------
# A gen2 function is a Cloud Run service: invoking it takes roles/run.invoker.

resource "google_cloud_run_service_iam_member" "public" {
  count = var.allow_unauthenticated ? 1 : 0

  project  = var.project_id
  location = google_cloudfunctions2_function.predict.location
  service  = google_cloudfunctions2_function.predict.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_service_iam_member" "invokers" {
  for_each = toset(var.invoker_members)

  project  = var.project_id
  location = google_cloudfunctions2_function.predict.location
  service  = google_cloudfunctions2_function.predict.name
  role     = "roles/run.invoker"
  member   = each.value
}
