#!/usr/bin/env bash
# Deploy function/ to Cloud Functions (gen2) with gcloud: model bucket, the
# function's own service account (read access to its model only), a build
# service account for Cloud Build, publish the seed's model with
# `python -m train`, then `gcloud functions deploy`.
# The same resources and the same input rules as infra/*.tf, for those who do
# not use Terraform.
#
# --profile slim deploys without scikit-learn, scipy, joblib and pandas: Cloud Functions
# installs the uploaded folder's requirements.txt, so the script stages the
# upload (function/ filtered by its .gcloudignore, plus that file) in the
# gitignored infra/.build/<function>-slim/ with function/requirements-slim.txt
# as its requirements.txt, deploys from there and sets MODEL_RUNTIME=onnx.
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
  --profile full|slim        dependencies to deploy (default: full): full serves every
                             version (scikit-learn and onnxruntime), slim only versions
                             with a verified ONNX twin (onnxruntime, no scikit-learn;
                             MODEL_RUNTIME=onnx)
  --service-account ID       account the function runs as (default: sklearn-predict)
  --build-service-account ID account Cloud Build builds the function as
                             (default: sklearn-predict-build)
  --memory SIZE              memory per instance: a whole number with unit k, M, G, Mi
                             or Gi, from 128Mi to 32Gi (default: 1Gi)
  --cpu N                    vCPUs per instance: 0.08 to 1 in steps of 0.001 (or
                             millicores, 583m), or 1, 2, 4, 6 or 8 (default: 1);
                             the pair must be one Cloud Run accepts
  --timeout DURATION         request timeout (default: 60s)
  --max-instances N          upper bound on instances (default: 10)
  --concurrency N            requests per instance; THREADS matches it (default: 4);
                             above 1 needs --cpu of at least 1
  --ingress-settings VALUE   all, internal-only or internal-and-gclb (default: all)
  --noncurrent-days N        days a replaced object version is kept (default: 30)
  --env NAME=VALUE           another setting: MODEL_REFRESH_SECONDS, MAX_BODY_BYTES,
                             MAX_ROWS, MAX_MODEL_BYTES, MODEL_RUNTIME, CORS_ALLOW_ORIGINS,
                             ALLOW_SKLEARN_VERSION_MISMATCH
  --secret NAME=SECRET[:VERSION]
                             API_KEYS or MODEL_SIGNING_KEY from Secret Manager
  --skip-train               deploy what the store already holds (no publish)
  --allow-unauthenticated    public URL (default: callers need roles/run.invoker);
                             needs --secret API_KEYS=... or --public-without-api-keys
  --public-without-api-keys  say that the public URL is meant to serve anyone, no key
  --dry-run                  print the commands instead of running them
EOF
}

die() {
  echo "deploy-gcloud.sh: $*" >&2
  exit 2
}

ENV_SETTINGS=(MODEL_REFRESH_SECONDS MAX_BODY_BYTES MAX_ROWS MAX_MODEL_BYTES MODEL_RUNTIME
  CORS_ALLOW_ORIGINS ALLOW_SKLEARN_VERSION_MISMATCH)
SECRET_SETTINGS=(API_KEYS MODEL_SIGNING_KEY)

project="" region="us-central1" bucket="" prefix="models" model="default"
function_name="sklearn-predict" account="sklearn-predict" build_account="sklearn-predict-build"
profile="full"
memory="1Gi" cpu="1" timeout="60s" max_instances="10" concurrency="4"
ingress="all" noncurrent_days="30"
extra_env=() secrets=() train=1 public=0 open=0 dry_run=0

while (($#)); do
  case "$1" in
    --project | --region | --bucket | --prefix | --model | --function | --service-account | \
      --build-service-account | --memory | --cpu | --timeout | --max-instances | --concurrency | \
      --ingress-settings | --noncurrent-days | --env | --secret | --profile)
      (($# >= 2)) || die "$1 needs a value"
      value="$2"
      case "$1" in
        --project) project="$value" ;;
        --region) region="$value" ;;
        --bucket) bucket="$value" ;;
        --prefix) prefix="$value" ;;
        --model) model="$value" ;;
        --function) function_name="$value" ;;
        --profile) profile="$value" ;;
        --service-account) account="$value" ;;
        --build-service-account) build_account="$value" ;;
        --memory) memory="$value" ;;
        --cpu) cpu="$value" ;;
        --timeout) timeout="$value" ;;
        --max-instances) max_instances="$value" ;;
        --concurrency) concurrency="$value" ;;
        --ingress-settings) ingress="$value" ;;
        --noncurrent-days) noncurrent_days="$value" ;;
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
    --public-without-api-keys) open=1 && shift ;;
    --dry-run) dry_run=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && die "unknown argument '$1'" ;;
  esac
done

# Every value below ends up inside a gcloud flag or an IAM condition expression,
# where a comma or a quote would change its meaning: each follows the rule (and
# the message) of the Terraform variable it mirrors in infra/variables.tf.
[[ -n "$project" ]] || { usage >&2 && die "--project is required"; }
[[ "$concurrency" =~ ^[1-9][0-9]*$ ]] && ((10#$concurrency <= 1000)) ||
  die "--concurrency must be a positive integer from 1 to 1000"
[[ "$model" =~ ^[A-Za-z0-9._-]+$ ]] || die "--model must be a single path segment"
[[ "$prefix" =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ && ! "/$prefix/" =~ /\.\.?/ ]] ||
  die "--prefix must be a relative path of letters, digits, '.', '_' and '-'," \
    "without leading or trailing slashes or '.' and '..' segments, got '$prefix'"
bucket="${bucket:-$project-sklearn-models}"
[[ "$bucket" =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] ||
  die "--bucket must be a bucket name: 3 to 222 lowercase letters, digits, '.', '_' and '-'"
[[ "$function_name" =~ ^[a-z][a-z0-9-]{0,61}[a-z0-9]$ ]] ||
  die "--function must be lowercase letters, digits and hyphens, 2 to 63 characters"
for id in "$account" "$build_account"; do
  [[ "$id" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "service account ids must be 6 to 30 lowercase letters, digits and hyphens, got '$id'"
done
[[ "$account" != "$build_account" ]] ||
  die "--build-service-account must differ from --service-account: the builder may write" \
    "to Artifact Registry and Cloud Storage, the function may only read its model"
# CPU and memory follow Cloud Run's rules (a gen2 function is a Cloud Run
# service), which it applies only at deploy time, after the bucket, accounts and
# publish: refuse what it would refuse before any of them. cpu_millis is the CPU
# in millicores (0.583 and 583m are 583), memory_bytes the memory in bytes.
# The same shapes as the Terraform variable's regex: 1, 0.583, .583, 583m.
cpu_millis=-1
if [[ "$cpu" =~ ^([0-9]{1,9})(\.([0-9]{1,3}))?$ ]]; then
  fraction="${BASH_REMATCH[3]}000"
  cpu_millis=$((10#${BASH_REMATCH[1]} * 1000 + 10#${fraction:0:3}))
elif [[ "$cpu" =~ ^\.([0-9]{1,3})$ ]]; then
  fraction="${BASH_REMATCH[1]}000"
  cpu_millis=$((10#${fraction:0:3}))
elif [[ "$cpu" =~ ^([0-9]{1,9})m$ ]]; then
  cpu_millis=$((10#${BASH_REMATCH[1]}))
fi
case "$cpu_millis" in
  1000 | 2000 | 4000 | 6000 | 8000) ;;
  *)
    ((cpu_millis >= 80 && cpu_millis < 1000)) ||
      die "--cpu must be 0.08 to 1 vCPU in steps of 0.001 (0.583, or millicores: 583m)," \
        "or 1, 2, 4, 6 or 8 (Cloud Run's values: above 1, whole numbers only), got '$cpu'"
    ;;
esac
MiB=1048576
if [[ "$memory" =~ ^([0-9]{1,9})(k|M|G|Mi|Gi)$ ]]; then
  case "${BASH_REMATCH[2]}" in
    k) unit=1000 ;;
    M) unit=1000000 ;;
    G) unit=1000000000 ;;
    Mi) unit=$MiB ;;
    Gi) unit=$((1024 * MiB)) ;;
  esac
  memory_bytes=$((10#${BASH_REMATCH[1]} * unit))
else
  memory_bytes=-1
fi
((memory_bytes >= 128 * MiB && memory_bytes <= 32768 * MiB)) ||
  die "--memory must be a whole number (at most 9 digits) with unit k, M, G, Mi or Gi," \
    "from 128Mi to 32Gi (Cloud Run's range), e.g. 512Mi, 1Gi, 4Gi, got '$memory'"
c=$cpu_millis m=$memory_bytes
((c >= 500 || m <= 512 * MiB)) && ((c >= 1000 || m <= 1024 * MiB)) &&
  ((m <= 4096 * MiB || c >= 2000)) && ((m <= 8192 * MiB || c >= 4000)) &&
  ((m <= 16384 * MiB || c >= 6000)) && ((m <= 24576 * MiB || c >= 8000)) &&
  ((c < 4000 || m >= 2048 * MiB)) && ((c < 6000 || m >= 4096 * MiB)) ||
  die "--cpu $cpu with --memory $memory: cpu and memory must be a pair Cloud Run accepts:" \
    "below 0.5 vCPU at most 512Mi, below 1 vCPU at most 1Gi; more than 4Gi needs 2 vCPUs," \
    "more than 8Gi 4, more than 16Gi 6, more than 24Gi 8; 4 vCPUs need at least 2Gi," \
    "6 or 8 at least 4Gi"
((concurrency == 1 || cpu_millis >= 1000)) ||
  die "--concurrency $concurrency needs --cpu of at least 1 (Cloud Run serves one" \
    "request at a time below one vCPU): raise --cpu or set --concurrency 1"
case "$ingress" in
  all | internal-only | internal-and-gclb) ;;
  *) die "--ingress-settings must be all, internal-only or internal-and-gclb, got '$ingress'" ;;
esac
# Terraform's provider drops days_since_noncurrent_time = 0 (the rule would
# lose its condition), so both paths start at 1.
[[ "$noncurrent_days" =~ ^[1-9][0-9]*$ ]] ||
  die "--noncurrent-days must be a whole number of days, at least 1"
# A forgotten --secret API_KEYS would leave the URL open to anyone.
if ((public && !open)); then
  [[ " ${secrets[*]-} " == *" API_KEYS="* ]] ||
    die "--allow-unauthenticated without --secret API_KEYS=SECRET lets anyone on the" \
      "internet call the function: add API keys, or pass --public-without-api-keys" \
      "if it is meant to be open"
fi
case "$profile" in
  full | slim) ;;
  *) die "--profile must be full or slim, got '$profile'" ;;
esac
# slim has no scikit-learn: it serves twins only, so MODEL_RUNTIME is onnx
# (auto, the default, means the same there); sklearn could never load.
if [[ "$profile" == slim ]]; then
  kept_env=()
  for setting in "${extra_env[@]+"${extra_env[@]}"}"; do
    case "$setting" in
      MODEL_RUNTIME=onnx | MODEL_RUNTIME=auto) ;;
      MODEL_RUNTIME=*)
        die "--profile slim has no scikit-learn and serves ONNX twins only" \
          "(MODEL_RUNTIME=onnx): drop --env $setting or deploy --profile full"
        ;;
      *) kept_env+=("$setting") ;;
    esac
  done
  extra_env=("${kept_env[@]+"${kept_env[@]}"}" MODEL_RUNTIME=onnx)
  command -v git >/dev/null ||
    die "--profile slim needs git: it applies function/.gcloudignore to stage the upload"
fi
email="$account@$project.iam.gserviceaccount.com"
build_email="$build_account@$project.iam.gserviceaccount.com"
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
# Like run, but retried with backoff: IAM is eventually consistent, so binding
# an account created a moment ago can fail with "does not exist" at first.
# Each binding is idempotent, which makes a retry safe.
run_retried() {
  local attempt delay=2
  for attempt in 1 2 3 4 5 6; do
    if ((attempt == 1)); then
      run "$@" && return 0
    else
      "$@" && return 0
    fi
    ((attempt < 6)) || break
    echo "deploy-gcloud.sh: attempt $attempt failed; retrying in ${delay}s" >&2
    sleep "$delay"
    delay=$((delay * 2))
  done
  return 1
}
# Create-if-missing steps: always printed; skipped when the resource exists.
exists() {
  ((dry_run)) && return 1
  "$@" >/dev/null 2>&1
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The upload. Cloud Functions installs the requirements.txt of the folder it
# receives, so a slim deploy uploads a staged copy of function/: the files its
# .gcloudignore lets through (matched by git, whose ignore rules are the syntax
# gcloudignore documents), that .gcloudignore itself (gcloud applies it again),
# and requirements-slim.txt as requirements.txt. Staged first, before anything
# reaches the cloud, and in --dry-run too (like the lifecycle file below) so
# that the printed deploy command runs as it is.
source_dir="function"
if [[ "$profile" != full ]]; then
  source_dir="infra/.build/$function_name-$profile"
  index="infra/.build/.$function_name-$profile-index"
  rm -rf "$source_dir" "$index"
  mkdir -p "$source_dir"
  # An empty repository: every file is untracked, so ls-files --others lists
  # function/ as the ignore rules filter it (excluded folders are not entered).
  git init --quiet "$index"
  git --git-dir="$index/.git" --work-tree=function ls-files -z --others \
    --exclude-from=function/.gcloudignore >"$index/files"
  while IFS= read -r -d '' file; do
    mkdir -p "$source_dir/$(dirname "$file")"
    cp "function/$file" "$source_dir/$file"
  done <"$index/files"
  rm -rf "$index"
  cp function/.gcloudignore "$source_dir/.gcloudignore"
  cp "function/requirements-$profile.txt" "$source_dir/requirements.txt"
  echo "deploy-gcloud.sh: staged the $profile upload in $source_dir" >&2
fi

# What the commands below call; a new project has few of them enabled (IAM, and
# Resource Manager, which project IAM bindings go through, among the missing).
apis=(artifactregistry.googleapis.com cloudbuild.googleapis.com cloudfunctions.googleapis.com
  cloudresourcemanager.googleapis.com iam.googleapis.com run.googleapis.com
  storage.googleapis.com)
((${#secrets[@]})) && apis+=(secretmanager.googleapis.com)
run gcloud services enable "${apis[@]}" --project="$project"

# Model bucket: uniform access (bucket IAM conditions need it), no public
# access, versioning on, and replaced versions deleted after --noncurrent-days:
# the same settings as infra/main.tf, applied to an existing bucket as well.
# The lifecycle file is gitignored build output, written in --dry-run too so
# that the printed commands run as they are.
lifecycle="infra/.build/$bucket-lifecycle.json"
mkdir -p "${lifecycle%/*}"
printf '{"rule": [{"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": %d}}]}\n' \
  "$noncurrent_days" >"$lifecycle"
exists gcloud storage buckets describe "gs://$bucket" --project="$project" ||
  run gcloud storage buckets create "gs://$bucket" --project="$project" --location="$region" \
    --uniform-bucket-level-access --public-access-prevention
run gcloud storage buckets update "gs://$bucket" --project="$project" --versioning \
  --uniform-bucket-level-access --public-access-prevention --lifecycle-file="$lifecycle"

# The function's own identity: it may read objects under its model, nothing else.
exists gcloud iam service-accounts describe "$email" --project="$project" ||
  run gcloud iam service-accounts create "$account" --project="$project" \
    --display-name="$function_name Cloud Function"
# Cloud Build's identity: since mid-2024 a new project's default build account
# may lack the permissions a function build needs, so the build gets its own,
# with the roles Google documents for a custom build service account: logs,
# images, and roles/storage.objectAdmin to fetch the source, on every bucket but
# the model bucket, so the build can never write or delete a published model.
# (roles/cloudbuild.builds.builder is Google's advice for the default Compute
# Engine account instead; a custom build account does not need it.)
exists gcloud iam service-accounts describe "$build_email" --project="$project" ||
  run gcloud iam service-accounts create "$build_account" --project="$project" \
    --display-name="$function_name Cloud Build"
build_condition="resource.name != \"projects/_/buckets/$bucket\""
build_condition+=" && !resource.name.startsWith(\"projects/_/buckets/$bucket/\")"
for role in roles/logging.logWriter roles/artifactregistry.writer roles/storage.objectAdmin; do
  # --condition=None: without it gcloud prompts when the project policy
  # already holds conditional bindings.
  condition=None
  [[ "$role" != roles/storage.objectAdmin ]] ||
    condition="expression=$build_condition,title=not-the-model-bucket"
  run_retried gcloud projects add-iam-policy-binding "$project" \
    --member="serviceAccount:$build_email" --role="$role" --condition="$condition"
done
condition="expression=resource.name.startsWith(\"projects/_/buckets/$bucket/objects/$prefix/$model/\")"
run_retried gcloud storage buckets add-iam-policy-binding "gs://$bucket" --project="$project" \
  --member="serviceAccount:$email" --role=roles/storage.objectViewer \
  --condition="$condition,title=model-prefix-only"

set_secrets=()
for secret in "${secrets[@]+"${secrets[@]}"}"; do
  name="${secret%%=*}" ref="${secret#*=}"
  [[ "$ref" == *:* ]] || ref="$ref:latest"
  # --condition=None, as above: gcloud refuses to prompt for it otherwise.
  run_retried gcloud secrets add-iam-policy-binding "${ref%%:*}" --project="$project" \
    --member="serviceAccount:$email" --role=roles/secretmanager.secretAccessor \
    --condition=None
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
  --runtime=python312 --source="$source_dir" --entry-point=predict --trigger-http
  --service-account="$email" --build-service-account="projects/$project/serviceAccounts/$build_email"
  --memory="$memory" --cpu="$cpu" --timeout="$timeout" --max-instances="$max_instances"
  --concurrency="$concurrency" --ingress-settings="$ingress" --set-env-vars="$joined")
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
