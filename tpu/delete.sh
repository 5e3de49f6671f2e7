#!/usr/bin/env bash
# Deletes the TPU VM / slice (and, with --queued, its queued resource). Checkpoints on shared
# storage survive; anything on the workers' disks (venv, logs) is lost.
#
#   tpu/delete.sh [--queued] [--yes] [config flags] [--dry-run]
#
#   --queued      the slice was created with tpu/create.sh --queued: delete the queued resource
#                 with --force, which deletes its TPU VM too
#   --yes         do not ask for confirmation
#   config flags  --project --zone --name (see tpu/common.sh; env TPU_*)

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

QUEUED=0
CONFIRM=()
while (($#)); do
  case "$1" in
    --queued) QUEUED=1; shift ;;
    --yes) CONFIRM=(--quiet); shift ;;
    *) common_flag "$@"; shift "$COMMON_SHIFT" ;;
  esac
done
((LOCAL == 0)) || die "--local simulates workers; there is nothing to delete locally"
location_flags
show_config ""

if ((QUEUED)); then
  run gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOCATION[@]}" --force "${CONFIRM[@]}"
else
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" "${CONFIRM[@]}"
fi
