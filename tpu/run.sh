#!/usr/bin/env bash
# Runs one command on every worker of the slice at once, in the repo's venv with tpu/env.sh.
#
#   tpu/run.sh [--run NAME] [--worker all|N] [--foreground] [config flags] [--dry-run | --local] \
#     -- COMMAND [ARG ...]
#
#   --run NAME    name of this run's log and pid files (default: run-<UTC time>)
#   --worker W    workers to start it on (default all: multi-host JAX needs every worker)
#   --foreground  stay attached and stream the output (for short commands); by default the command
#                 runs under setsid+nohup, survives the ssh session, and logs to a file per worker:
#                 <log-dir>/<run>.worker<N>.log (pid in <run>.worker<N>.pid; latest.log links the
#                 log of the latest such run, which tpu/logs.sh follows by default)
#   config flags  --project --zone --name --repo-dir --log-dir (see tpu/common.sh; env TPU_*)
#
# Training on a pod slice (jax.distributed.initialize() finds the other workers itself on TPU;
# `sora-jax train` calls it when --num-processes is given, whose value is then not used):
#   tpu/run.sh --run stage1 -- sora-jax train --config experiments/pretrain.py:stage1_images \
#     --workdir /mnt/shared/stage1 --num-processes 8
#   tpu/logs.sh --run stage1 --worker 0

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_NAME="run-$(date -u +%Y%m%d-%H%M%S)"
WORKERS=all
FOREGROUND=0
COMMAND=()
while (($#)); do
  case "$1" in
    --run) [[ $# -ge 2 ]] || die "--run needs a name"; RUN_NAME="$2"; shift 2 ;;
    --worker) [[ $# -ge 2 ]] || die "--worker needs a value"; WORKERS="$2"; shift 2 ;;
    --foreground) FOREGROUND=1; shift ;;
    --) shift; COMMAND=("$@"); break ;;
    *) common_flag "$@"; shift "$COMMON_SHIFT" ;;
  esac
done
((${#COMMAND[@]})) || die "no command: put it after --, e.g. tpu/run.sh -- sora-jax train --config ..."
[[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run '$RUN_NAME': use letters, digits, '.', '_' and '-'"
if [[ " ${COMMAND[*]} " == *" --workdir gs://"* || " ${COMMAND[*]} " == *" --workdir=gs://"* ]]; then
  note "warning: sora_jax/train writes its workdir with local file APIs today (os.makedirs, open," \
    "os.path.abspath); a gs:// workdir becomes a local 'gs:' directory on each worker. Use a path" \
    "every worker shares (gcsfuse or NFS mount); see tpu/README.md"
fi
show_config " run=$RUN_NAME workers=$WORKERS"

QUOTED="$(printf '%q ' "${COMMAND[@]}")"
QUOTED="${QUOTED% }"
if ((FOREGROUND)); then
  LAUNCH="$QUOTED 2>&1 | tee \"\$log\"; exit \"\${PIPESTATUS[0]}\""
else
  # setsid + nohup + no inherited descriptors: the process outlives the ssh session, and ssh
  # returns at once instead of waiting on the command's output.
  LAUNCH="setsid nohup $QUOTED > \"\$log\" 2>&1 < /dev/null &
pid=\$!
echo \"\$pid\" > \"\$logs/\$run.worker\$worker.pid\"
ln -sfn \"\$run.worker\$worker.log\" \"\$logs/latest.log\"
echo \"worker \$worker: started pid \$pid, logging to \$log\""
fi

on_workers "$WORKERS" "$(worker_prelude)
run=$(printf '%q' "$RUN_NAME")
mkdir -p \"\$logs\"
log=\"\$logs/\$run.worker\$worker.log\"
cd \"\$repo\"
source .venv/bin/activate
source tpu/env.sh
$LAUNCH"
