# shellcheck shell=bash
# Shared by the tpu/*.sh scripts (sourced, not run): configuration, flags, dry-run and gcloud calls.
#
# Configuration, each from an environment variable or the flag next to it (flags win):
#   TPU_PROJECT   --project   GCP project (default: gcloud's configured project)
#   TPU_ZONE      --zone      zone (default us-east5-a, a v5p zone)
#   TPU_NAME      --name      TPU VM / slice name, also the queued-resource id (default sora-jax)
#   TPU_TYPE      --type      accelerator type: v5p-64, v5litepod-16, v6e-16, v4-32 (default v5p-64)
#   TPU_RUNTIME   --runtime   TPU software version (default: by type, see runtime_for_type)
#   TPU_REPO_DIR  --repo-dir  checkout on each worker, relative to its home (default sora_jax)
#   TPU_LOG_DIR   --log-dir   per-worker logs, relative to its home (default sora_jax_logs)
#   --dry-run     print the gcloud commands instead of running them
#   --local       run the worker-side script here, as one simulated worker (no gcloud, no TPU):
#                 for trying the scripts; TPU_REPO_DIR/TPU_LOG_DIR are then local paths
# Worker-side code is written in single quotes on purpose: it expands on the worker, not here.
# shellcheck disable=SC2016,SC1003
set -euo pipefail

TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(dirname "$TPU_DIR")"
TPU_PROJECT="${TPU_PROJECT:-}"
TPU_ZONE="${TPU_ZONE:-us-east5-a}"
TPU_NAME="${TPU_NAME:-sora-jax}"
TPU_TYPE="${TPU_TYPE:-v5p-64}"
TPU_RUNTIME="${TPU_RUNTIME:-}"
TPU_REPO_DIR="${TPU_REPO_DIR:-sora_jax}"
TPU_LOG_DIR="${TPU_LOG_DIR:-sora_jax_logs}"
DRY_RUN=0
LOCAL=0

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

note() {
  echo "$(basename "$0"): $*" >&2
}

# Prints the usage header: the script's leading comment block, without the '#'.
usage() {
  sed -n '2,/^$/{/^#/!q;s/^# \{0,1\}//;p}' "$0"
  exit "${1:-0}"
}

# Parses one common flag at "$@"; sets COMMON_SHIFT to the number of words it used.
# shellcheck disable=SC2034  # COMMON_SHIFT is read by the caller's `shift "$COMMON_SHIFT"`
common_flag() {
  local flag="$1" value=""
  COMMON_SHIFT=1
  case "$flag" in
    --dry-run) DRY_RUN=1; return ;;
    --local) LOCAL=1; return ;;
    -h | --help) usage 0 ;;
    --project* | --zone* | --name* | --type* | --runtime* | --repo-dir* | --log-dir*) ;;
    *) die "unknown argument '$flag' (see --help)" ;;
  esac
  if [[ "$flag" == *=* ]]; then
    value="${flag#*=}"
    flag="${flag%%=*}"
  else
    [[ $# -ge 2 ]] || die "$flag needs a value"
    value="$2"
    COMMON_SHIFT=2
  fi
  case "$flag" in
    --project) TPU_PROJECT="$value" ;;
    --zone) TPU_ZONE="$value" ;;
    --name) TPU_NAME="$value" ;;
    --type) TPU_TYPE="$value" ;;
    --runtime) TPU_RUNTIME="$value" ;;
    --repo-dir) TPU_REPO_DIR="$value" ;;
    --log-dir) TPU_LOG_DIR="$value" ;;
    *) die "unknown argument '$flag' (see --help)" ;;
  esac
}

# The TPU software version Google documents for JAX on each generation (Ubuntu 22.04 images).
runtime_for_type() {
  case "$1" in
    v4-*) echo tpu-ubuntu2204-base ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "no default runtime for accelerator type '$1'; pass --runtime (gcloud compute tpus tpu-vm versions list)" ;;
  esac
}

# Location flags every gcloud call takes.
location_flags() {
  LOCATION=(--zone="$TPU_ZONE")
  if [[ -n "$TPU_PROJECT" ]]; then
    LOCATION+=(--project="$TPU_PROJECT")
  fi
}

# Runs a command, or prints it with --dry-run: one shell-quoted line, except that a multi-line
# argument (a worker-side script) is printed as a quoted here-document, readable and pastable.
run() {
  if ((DRY_RUN == 0)); then
    "$@"
    return
  fi
  local arg words=()
  for arg in "$@"; do
    if [[ "$arg" == *$'\n'* ]]; then
      local prefix=""
      if [[ "$arg" == --*=* ]]; then
        prefix="${arg%%=*}="
        arg="${arg#*=}"
      fi
      words+=("$prefix\"\$(cat <<'WORKER'"$'\n'"$arg"$'\n'"WORKER"$'\n'")\"")
    else
      words+=("$(printf '%q' "$arg")")
    fi
  done
  echo "${words[*]}"
}

# Shell code, for the worker side, that sets $repo and $logs to absolute paths (home-relative
# unless given absolute) and $worker to this worker's index in the slice.
worker_prelude() {
  printf 'set -euo pipefail\n'
  printf 'repo=%q; logs=%q\n' "$TPU_REPO_DIR" "$TPU_LOG_DIR"
  printf '%s\n' \
    'case "$repo" in /*) ;; *) repo="$HOME/$repo" ;; esac' \
    'case "$logs" in /*) ;; *) logs="$HOME/$logs" ;; esac' \
    '# The slice-local worker index, as jax.distributed reads it; the host name where there is no TPU metadata.' \
    'worker=$(curl -sf --max-time 2 -H "Metadata-Flavor: Google" \' \
    '  http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || hostname)'
}

# Runs worker-side shell code on the given workers ("all", "3", "0-3"), over ssh; with --local here.
on_workers() {
  local workers="$1" script="$2"
  if ((LOCAL)); then
    if ((DRY_RUN)); then
      run bash -c "$script"
    else
      bash -c "$script"
    fi
    return
  fi
  location_flags
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker="$workers" --command="$script"
}

# Shows the resolved configuration on stderr, so a run's log says what it acted on.
show_config() {
  note "name=$TPU_NAME zone=$TPU_ZONE project=${TPU_PROJECT:-<gcloud default>} type=$TPU_TYPE$*"
}
