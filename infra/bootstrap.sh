#!/usr/bin/env bash
# One-time bootstrap of a project for drop-submitter (idempotent: running it again changes nothing).
#
#   infra/bootstrap.sh PROJECT_ID [REGION]        (or: make bootstrap PROJECT=... REGION=...)
#
# Run it as a person who can administer the project (roles/owner, or roles/resourcemanager.projectIamAdmin +
# roles/iam.serviceAccountAdmin + roles/storage.admin + roles/serviceusage.serviceUsageAdmin). It creates:
#   1. gs://PROJECT_ID-tfstate: the Terraform state bucket (versioned, so a bad apply's state can be recovered);
#   2. the deployer service account drop-submitter-deployer@PROJECT_ID.iam.gserviceaccount.com, which Cloud Build
#      runs cloudbuild.yaml as, with the roles listed in DEPLOYER_ROLES below and nothing else;
#   3. your right to start builds as that account (roles/iam.serviceAccountUser on it, for you only).
# After this, `make deploy` is the one command (README.md).
set -euo pipefail

PROJECT="${1:?usage: infra/bootstrap.sh PROJECT_ID [REGION]}"
REGION="${2:-us-central1}"
STATE_BUCKET="${PROJECT}-tfstate"
DEPLOYER_ID="drop-submitter-deployer"
DEPLOYER="${DEPLOYER_ID}@${PROJECT}.iam.gserviceaccount.com"

# What the deployer needs to create and update everything in infra/, and why. Nothing here grants data access
# beyond what creating those resources implies; no primitive role (owner/editor/viewer).
DEPLOYER_ROLES=(
  roles/serviceusage.serviceUsageAdmin     # enable the APIs listed in infra/apis.tf
  roles/storage.admin                      # buckets, their lifecycle and IAM; Terraform state; source upload; smoke drop
  roles/pubsub.admin                       # topics, subscriptions and their IAM
  roles/iam.serviceAccountAdmin            # the six service accounts and the grants on them (actAs)
  roles/iam.roleAdmin                      # the custom roles in infra/iam.tf
  roles/cloudfunctions.admin               # the two functions
  roles/run.admin                          # run.invoker on the functions' Cloud Run services (setIamPolicy)
  roles/eventarc.admin                     # the functions' storage trigger and the data-bucket triggers
  roles/cloudscheduler.admin               # the reconcile tick
  roles/artifactregistry.admin             # the image repository and its IAM
  roles/logging.configWriter               # log-based metrics
  roles/logging.logWriter                  # Cloud Build writes this build's logs as the deployer
  roles/monitoring.alertPolicyEditor       # alert policies
  roles/monitoring.dashboardEditor         # the dashboard
  roles/monitoring.notificationChannelEditor # alert emails
)

# Project-level grants Terraform makes (infra/iam.tf). projectIamAdmin is given with a condition: the deployer may
# grant or revoke these roles at project level and no others (it cannot make itself owner).
PROJECT_GRANTABLE_ROLES=(
  roles/eventarc.eventReceiver
  roles/pubsub.publisher
  roles/logging.logWriter
  "projects/${PROJECT}/roles/dropSubmitterJobSubmitter"
  "projects/${PROJECT}/roles/dropSubmitterJobReader"
)

say() { printf '\n== %s\n' "$*"; }
# A service account just created can take a few seconds to be visible to IAM: retry grants a few times.
retry() { local i; for i in 1 2 3 4 5 6; do "$@" && return 0; echo "  (retrying in 10 s)" >&2; sleep 10; done; "$@"; }

command -v gcloud >/dev/null || { echo "bootstrap: gcloud is required (https://cloud.google.com/sdk/docs/install)" >&2; exit 1; }
ME="$(gcloud config get-value account 2>/dev/null)"
[ -n "$ME" ] || { echo "bootstrap: no active gcloud account: run 'gcloud auth login'" >&2; exit 1; }
case "$ME" in *.gserviceaccount.com) ME_MEMBER="serviceAccount:$ME" ;; *) ME_MEMBER="user:$ME" ;; esac

say "Enabling the APIs the bootstrap and Cloud Build need in $PROJECT"
gcloud services enable cloudbuild.googleapis.com storage.googleapis.com iam.googleapis.com \
  cloudresourcemanager.googleapis.com serviceusage.googleapis.com --project "$PROJECT"

say "Terraform state bucket gs://$STATE_BUCKET"
if ! gcloud storage buckets describe "gs://$STATE_BUCKET" --project "$PROJECT" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://$STATE_BUCKET" --project "$PROJECT" --location "$REGION" \
    --uniform-bucket-level-access --public-access-prevention
fi
gcloud storage buckets update "gs://$STATE_BUCKET" --versioning --project "$PROJECT" >/dev/null

say "Deployer service account $DEPLOYER"
if ! gcloud iam service-accounts describe "$DEPLOYER" --project "$PROJECT" >/dev/null 2>&1; then
  gcloud iam service-accounts create "$DEPLOYER_ID" --project "$PROJECT" \
    --display-name "drop-submitter deployer (Cloud Build runs cloudbuild.yaml as this account)"
fi

say "Roles of the deployer"
for role in "${DEPLOYER_ROLES[@]}"; do
  retry gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$DEPLOYER" --role "$role" \
    --condition None --quiet >/dev/null
  echo "  $role"
done

condition_file="$(mktemp)"
trap 'rm -f "$condition_file"' EXIT
roles_list=$(printf "'%s', " "${PROJECT_GRANTABLE_ROLES[@]}")
cat >"$condition_file" <<EOF
title: drop-submitter grants only
description: The deployer may grant or revoke only the project-level roles that infra/iam.tf uses.
expression: "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([${roles_list%, }])"
EOF
retry gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$DEPLOYER" \
  --role roles/resourcemanager.projectIamAdmin --condition-from-file "$condition_file" --quiet >/dev/null
echo "  roles/resourcemanager.projectIamAdmin (only for: ${PROJECT_GRANTABLE_ROLES[*]})"

say "Letting $ME_MEMBER start builds as the deployer"
retry gcloud iam service-accounts add-iam-policy-binding "$DEPLOYER" --project "$PROJECT" \
  --member "$ME_MEMBER" --role roles/iam.serviceAccountUser --quiet >/dev/null

say "Done. Deploy with:"
echo "  make deploy PROJECT=$PROJECT REGION=$REGION UPLOADERS=group:your-team@example.com"
