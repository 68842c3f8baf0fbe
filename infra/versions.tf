# Terraform and provider versions, and where the state lives.
#
# The state is kept in a Cloud Storage bucket created once by `infra/bootstrap.sh` (see README.md).
# The bucket name is passed at init time (`terraform init -backend-config=bucket=...`), so nothing
# project-specific is written here.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.14, < 8.0"
    }
  }

  backend "gcs" {
    prefix = "drop-submitter"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = var.labels
}
