#!/usr/bin/env bash
# Follows the log of a run started by tpu/run.sh, on one worker or on all of them.
#
#   tpu/logs.sh [--worker N|all] [--run NAME] [--lines K] [--no-follow] [config flags]
#               [--dry-run | --local]
#
#   --worker W    worker to read (default 0); `all` interleaves every worker's lines, each
#                 prefixed with [worker N]
#   --run NAME    the run's name as given to tpu/run.sh --run (default: the latest run)
#   --lines K     lines of history to show first (default 100)
#   --no-follow   print and exit instead of following (tail -F) until Ctrl-C
#   config flags  --project --zone --name --log-dir (see tpu/common.sh; env TPU_*)

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKERS=0
RUN_NAME=""
LINES=100
FOLLOW=1
while (($#)); do
  case "$1" in
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; WORKERS="$2"; shift 2 ;;
    --run) [[ $# -ge 2 ]] || die "--run needs a name"; RUN_NAME="$2"; shift 2 ;;
    --lines) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--lines needs a number"; LINES="$2"; shift 2 ;;
    --no-follow) FOLLOW=0; shift ;;
    *) common_flag "$@"; shift "$COMMON_SHIFT" ;;
  esac
done
show_config " workers=$WORKERS run=${RUN_NAME:-latest}"

TAIL="tail -n $LINES"
((FOLLOW == 0)) || TAIL+=" -F"
PREFIX="cat"
[[ "$WORKERS" != all ]] || PREFIX="sed -u \"s/^/[worker \$worker] /\""
on_workers "$WORKERS" "$(worker_prelude)
run=$(printf '%q' "$RUN_NAME")
file=\"\$logs/latest.log\"
[ -z \"\$run\" ] || file=\"\$logs/\$run.worker\$worker.log\"
[ -e \"\$file\" ] || { echo \"worker \$worker: no log \$file\" >&2; exit 1; }
$TAIL \"\$file\" | $PREFIX"
