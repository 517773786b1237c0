#!/usr/bin/env bash
# Deploy function/ to Cloud Functions (gen2) with gcloud: model bucket, the
# function's own service account (read access to its model only), publish the
# seed's model with `python -m train`, then `gcloud functions deploy`.
# The same resources as infra/*.tf, for those who do not use Terraform.
#
#   infra/deploy-gcloud.sh --project my-project --region europe-west1 --dry-run
#
# Run from anywhere; commands run from the repo root. --dry-run prints every
# command, one per line, instead of running it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: infra/deploy-gcloud.sh --project PROJECT [options]

  --project ID               Google Cloud project (required)
  --region REGION            function and bucket region (default: us-central1)
  --bucket NAME              model bucket (default: PROJECT-sklearn-models)
  --prefix PATH              store prefix in the bucket (default: models)
  --model NAME               model name (default: default)
  --function NAME            function name (default: sklearn-predict)
  --service-account ID       account the function runs as (default: sklearn-predict)
  --memory SIZE              memory per instance (default: 1Gi)
  --cpu N                    vCPUs per instance (default: 1)
  --timeout DURATION         request timeout (default: 60s)
  --max-instances N          upper bound on instances (default: 10)
  --concurrency N            requests per instance; THREADS matches it (default: 4)
  --env NAME=VALUE           another setting: MODEL_REFRESH_SECONDS, MAX_BODY_BYTES,
                             MAX_ROWS, CORS_ALLOW_ORIGINS, ALLOW_SKLEARN_VERSION_MISMATCH
  --secret NAME=SECRET[:VERSION]
                             API_KEYS or MODEL_SIGNING_KEY from Secret Manager
  --skip-train               deploy what the store already holds (no publish)
  --allow-unauthenticated    public URL (default: callers need roles/run.invoker)
  --dry-run                  print the commands instead of running them
EOF
}

die() {
  echo "deploy-gcloud.sh: $*" >&2
  exit 2
}

ENV_SETTINGS=(MODEL_REFRESH_SECONDS MAX_BODY_BYTES MAX_ROWS CORS_ALLOW_ORIGINS ALLOW_SKLEARN_VERSION_MISMATCH)
SECRET_SETTINGS=(API_KEYS MODEL_SIGNING_KEY)

project="" region="us-central1" bucket="" prefix="models" model="default"
function_name="sklearn-predict" account="sklearn-predict"
memory="1Gi" cpu="1" timeout="60s" max_instances="10" concurrency="4"
extra_env=() secrets=() train=1 public=0 dry_run=0

while (($#)); do
  case "$1" in
    --project | --region | --bucket | --prefix | --model | --function | --service-account | \
      --memory | --cpu | --timeout | --max-instances | --concurrency | --env | --secret)
      (($# >= 2)) || die "$1 needs a value"
      value="$2"
      case "$1" in
        --project) project="$value" ;;
        --region) region="$value" ;;
        --bucket) bucket="$value" ;;
        --prefix)
          prefix="${value#/}"
          prefix="${prefix%/}"
          ;;
        --model) model="$value" ;;
        --function) function_name="$value" ;;
        --service-account) account="$value" ;;
        --memory) memory="$value" ;;
        --cpu) cpu="$value" ;;
        --timeout) timeout="$value" ;;
        --max-instances) max_instances="$value" ;;
        --concurrency) concurrency="$value" ;;
        --env)
          [[ "$value" == *=* ]] || die "--env takes NAME=VALUE, got '$value'"
          [[ " ${ENV_SETTINGS[*]} " == *" ${value%%=*} "* ]] ||
            die "--env ${value%%=*}: not one of ${ENV_SETTINGS[*]}" \
              "(MODEL_URI comes from --bucket/--prefix/--model, THREADS from --concurrency)"
          extra_env+=("$value")
          ;;
        --secret)
          [[ "$value" == *=?* ]] || die "--secret takes NAME=SECRET[:VERSION], got '$value'"
          [[ " ${SECRET_SETTINGS[*]} " == *" ${value%%=*} "* ]] ||
            die "--secret ${value%%=*}: not one of ${SECRET_SETTINGS[*]}"
          secrets+=("$value")
          ;;
      esac
      shift 2
      ;;
    --skip-train) train=0 && shift ;;
    --allow-unauthenticated) public=1 && shift ;;
    --dry-run) dry_run=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && die "unknown argument '$1'" ;;
  esac
done

[[ -n "$project" ]] || { usage >&2 && die "--project is required"; }
[[ "$concurrency" =~ ^[1-9][0-9]*$ ]] || die "--concurrency must be a positive integer"
[[ "$model" =~ ^[A-Za-z0-9._-]+$ ]] || die "--model must be a single path segment"
bucket="${bucket:-$project-sklearn-models}"
email="$account@$project.iam.gserviceaccount.com"
store="gs://$bucket/$prefix"
model_uri="$store/$model"
python="${PYTHON:-python}"

# Print a command the way a shell reads it back; run it unless --dry-run.
quote() {
  local flag="" value="$1"
  if [[ "$value" =~ ^(--[a-z-]+=)(.*)$ ]]; then
    flag="${BASH_REMATCH[1]}" value="${BASH_REMATCH[2]}"
  fi
  if [[ "$value" =~ ^[A-Za-z0-9_./:=@%+,-]*$ ]]; then
    printf '%s%s' "$flag" "$value"
  else
    printf "%s'%s'" "$flag" "${value//\'/\'\\\'\'}"
  fi
}
run() {
  local arg line=""
  for arg in "$@"; do
    line+="${line:+ }$(quote "$arg")"
  done
  echo "$line"
  ((dry_run)) || "$@"
}
# Create-if-missing steps: always printed; skipped when the resource exists.
exists() {
  ((dry_run)) && return 1
  "$@" >/dev/null 2>&1
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

apis=(artifactregistry.googleapis.com cloudbuild.googleapis.com cloudfunctions.googleapis.com
  run.googleapis.com storage.googleapis.com)
((${#secrets[@]})) && apis+=(secretmanager.googleapis.com)
run gcloud services enable "${apis[@]}" --project="$project"

# Model bucket: uniform access, no public access, versioning on.
exists gcloud storage buckets describe "gs://$bucket" --project="$project" ||
  run gcloud storage buckets create "gs://$bucket" --project="$project" --location="$region" \
    --uniform-bucket-level-access --public-access-prevention
run gcloud storage buckets update "gs://$bucket" --project="$project" --versioning

# The function's own identity: it may read objects under its model, nothing else.
exists gcloud iam service-accounts describe "$email" --project="$project" ||
  run gcloud iam service-accounts create "$account" --project="$project" \
    --display-name="$function_name Cloud Function"
condition="expression=resource.name.startsWith(\"projects/_/buckets/$bucket/objects/$prefix/$model/\")"
run gcloud storage buckets add-iam-policy-binding "gs://$bucket" --project="$project" \
  --member="serviceAccount:$email" --role=roles/storage.objectViewer \
  --condition="$condition,title=model-prefix-only"

set_secrets=()
for secret in "${secrets[@]+"${secrets[@]}"}"; do
  name="${secret%%=*}" ref="${secret#*=}"
  [[ "$ref" == *:* ]] || ref="$ref:latest"
  run gcloud secrets add-iam-policy-binding "${ref%%:*}" --project="$project" \
    --member="serviceAccount:$email" --role=roles/secretmanager.secretAccessor
  set_secrets+=("$name=$ref")
done

if ((train)); then
  run "$python" -m train --store "$store" --name "$model"
fi

# gcloud splits --set-env-vars on commas; a value with commas (a CORS list)
# needs gcloud's alternate delimiter syntax, ^|^NAME=a,b|NAME=c.
# GOOGLE_CLOUD_PROJECT: gen2 runtimes leave it unset; the logs use it for trace ids.
env_vars=("MODEL_URI=$model_uri" "THREADS=$concurrency" "GOOGLE_CLOUD_PROJECT=$project"
  "${extra_env[@]+"${extra_env[@]}"}")
if [[ "${env_vars[*]}" == *,* ]]; then
  joined="^|^$(IFS='|' && echo "${env_vars[*]}")"
else
  joined="$(IFS=, && echo "${env_vars[*]}")"
fi

deploy=(gcloud functions deploy "$function_name" --gen2 --project="$project" --region="$region"
  --runtime=python312 --source=function --entry-point=predict --trigger-http
  --service-account="$email" --memory="$memory" --cpu="$cpu" --timeout="$timeout"
  --max-instances="$max_instances" --concurrency="$concurrency" --set-env-vars="$joined")
if ((${#set_secrets[@]})); then
  deploy+=(--set-secrets="$(IFS=, && echo "${set_secrets[*]}")")
fi
if ((public)); then
  deploy+=(--allow-unauthenticated)
else
  deploy+=(--no-allow-unauthenticated)
fi
run "${deploy[@]}"

run gcloud functions describe "$function_name" --gen2 --project="$project" --region="$region" \
  --format='value(serviceConfig.uri)'
