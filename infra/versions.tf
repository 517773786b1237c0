terraform {
  required_version = ">= 1.5, < 2.0"

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
  }
}
