terraform {
  # 1.9: a variable's validation may refer to other variables (concurrency
  # checks cpu).
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    # 2.4 added archive_file's output_sha256, which names the source object.
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
    # time_sleep: new service accounts are eventually consistent.
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}
