#!/usr/bin/env bash
# Creates a TPU VM or pod slice: directly, or through a queued resource (waits for capacity).
#
#   tpu/create.sh [--queued [--valid-until 6h] [--wait]] [--spot | --reserved] [config flags]
#                 [--dry-run] [-- extra gcloud flags]
#
#   --queued         request through `gcloud compute tpus queued-resources create` (the way to get
#                    large slices and spot capacity); the node id is the TPU name
#   --valid-until D  give up on a queued request not granted within D (e.g. 6h; --queued only)
#   --wait           poll the queued request until it is ACTIVE (or fails)
#   --spot           spot (preemptible) capacity; training resumes from checkpoints after preemption
#   --reserved       use the project's reservation
#   config flags     --project --zone --name --type --runtime (see tpu/common.sh; env TPU_*)
#
# Examples:
#   tpu/create.sh --type v5p-64 --zone us-east5-a --queued --spot --wait
#   TPU_TYPE=v5litepod-16 TPU_ZONE=us-west4-a tpu/create.sh --dry-run

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

QUEUED=0
WAIT=0
VALID_UNTIL=""
CAPACITY=()
EXTRA=()
while (($#)); do
  case "$1" in
    --queued) QUEUED=1; shift ;;
    --wait) WAIT=1; shift ;;
    --valid-until) [[ $# -ge 2 ]] || die "--valid-until needs a duration"; VALID_UNTIL="$2"; shift 2 ;;
    --valid-until=*) VALID_UNTIL="${1#*=}"; shift ;;
    --spot) CAPACITY+=(--spot); shift ;;
    --reserved) CAPACITY+=(--reserved); shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) common_flag "$@"; shift "$COMMON_SHIFT" ;;
  esac
done
((${#CAPACITY[@]} <= 1)) || die "--spot and --reserved exclude each other"
[[ -z "$VALID_UNTIL" || $QUEUED -eq 1 ]] || die "--valid-until needs --queued"
((WAIT == 0 || QUEUED == 1)) || die "--wait needs --queued (a direct create already waits)"
((LOCAL == 0)) || die "--local simulates workers; there is nothing to create locally"
RUNTIME="${TPU_RUNTIME:-$(runtime_for_type "$TPU_TYPE")}"
location_flags
MODE="$( ((QUEUED)) && echo queued || echo direct)"
show_config " runtime=$RUNTIME mode=$MODE capacity=${CAPACITY[*]:-on-demand}"

if ((QUEUED)); then
  LIMIT=()
  [[ -z "$VALID_UNTIL" ]] || LIMIT=(--valid-until-duration="$VALID_UNTIL")
  run gcloud compute tpus queued-resources create "$TPU_NAME" "${LOCATION[@]}" --node-id="$TPU_NAME" \
    --accelerator-type="$TPU_TYPE" --runtime-version="$RUNTIME" "${CAPACITY[@]}" "${LIMIT[@]}" "${EXTRA[@]}"
else
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}" \
    --accelerator-type="$TPU_TYPE" --version="$RUNTIME" "${CAPACITY[@]}" "${EXTRA[@]}"
fi

if ((WAIT)); then
  describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOCATION[@]}" --format="value(state.state)")
  if ((DRY_RUN)); then
    echo "# --wait: repeats every 60 s until the state is ACTIVE:"
    run "${describe[@]}"
    exit 0
  fi
  while true; do
    state="$("${describe[@]}")"
    note "queued resource $TPU_NAME: $state"
    case "$state" in
      ACTIVE) break ;;
      FAILED | SUSPENDED) die "queued resource $TPU_NAME is $state; see: ${describe[*]% --format*}" ;;
    esac
    sleep 60
  done
fi
((DRY_RUN)) || note "next: tpu/setup.sh --name $TPU_NAME --zone $TPU_ZONE"
