terraform {
  # 1.9: a variable's validation may refer to other variables (concurrency
  # checks cpu).
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    # 2.5 added glob patterns to archive_file's `excludes`.
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.5, < 3.0"
    }
    # time_sleep: new service accounts are eventually consistent.
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}
