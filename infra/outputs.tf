output "function_uri" {
  description = "The function's URL: POST <uri>/predict, GET <uri>/health, GET <uri>/metadata."
  value       = google_cloudfunctions2_function.predict.service_config[0].uri
}

output "function_name" {
  description = "Name of the Cloud Function (and of its Cloud Run service)."
  value       = google_cloudfunctions2_function.predict.name
}

output "service_account_email" {
  description = "The account the function runs as."
  value       = google_service_account.function.email
}

output "model_bucket" {
  description = "The bucket holding published models."
  value       = google_storage_bucket.models.name
}

output "model_uri" {
  description = "MODEL_URI the function serves."
  value       = local.model_uri
}

output "publish_command" {
  description = "Publishes (and promotes) the seed's model where the function reads it; run from the repo root."
  value       = "python -m train --store gs://${google_storage_bucket.models.name}/${var.model_prefix} --name ${var.model_name}"
}

output "source_object" {
  description = "The uploaded source archive, gs://<bucket>/<function>/<sha256>.zip."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
}
