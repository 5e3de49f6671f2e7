#!/usr/bin/env bash
# The GPU checks in one short run (an H100/H200 lent for minutes): cuDNN attention correctness, the
# attention kernels' speed, DiT train-step MFU at ~1.3B parameters and 16k tokens per row in bf16,
# sampling latency at 480p x 81 frames, and base-VAE frames/s. Each step has its own time limit and
# appends its JSON line to OUT_DIR/results.jsonl as it finishes (everything else to OUT_DIR/errors.log),
# so a slow or failing step costs only itself.
#
#   OUT_DIR=/tmp/gpu bash benchmarks/gpu_suite.sh
#   DRY=1 OUT_DIR=/tmp/gpu bash benchmarks/gpu_suite.sh   # the same steps at toy sizes, on CPU
#
# Runs under whatever JAX/Flax the machine has; flax/optax wheels in .whl/ (our pins) are used
# instead when the machine's Flax cannot run a tiny model.
set -u
OUT_DIR=${OUT_DIR:-${OUT:-/tmp/gpu_suite}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit}s)"
  echo "=== $name" >> "$OUT_DIR/errors.log"
  timeout -k 5 "$limit" "$@" > /tmp/gpu_suite_step.out 2>> "$OUT_DIR/errors.log"
  local rc=$?
  grep '^{' /tmp/gpu_suite_step.out >> "$OUT_DIR/results.jsonl"  # JSON lines only
  grep -v '^{' /tmp/gpu_suite_step.out >> "$OUT_DIR/errors.log"
  echo "=== $name rc=$rc in $((SECONDS - start))s"
  tail -c 3000 /tmp/gpu_suite_step.out
  [ $rc -eq 0 ] || tail -n 12 "$OUT_DIR/errors.log" | cut -c1-300
}
if [ "${DRY:-0}" = 1 ]; then  # toy sizes and CPU kernels: checks the script, not the GPU
  ATTN="flash_xla,xla" PACKED=flash_xla MASK=xla PRESET=tiny DEPTH=2 VAE=tiny LEN=1024 CHECK=256 HEADS=2 HD=64
  F=4 H=16 W=16 SF=3 SH=8 SW=8 VS=32 GPU_PLATFORM=cpu
else
  ATTN=${ATTN:-cudnn,cudnn_packed,xla} PACKED=cudnn_packed MASK=cudnn PRESET=1B DEPTH=30 VAE=base LEN=16384 CHECK=2048
  HEADS=12 HD=128 F=16 H=64 W=64 SF=21 SH=60 SW=104 VS=256
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
$PY - <<'EOF' 2>&1 | tee -a "$OUT_DIR/gpu.txt"
import importlib
for m in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "numpy"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "missing", e)
import jax
print(jax.devices())
EOF

smoke() {
  $PY - <<'EOF'
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from sora_jax.models.dit.config import get_dit_config
from sora_jax.models.text_to_video import TextToVideo
m = TextToVideo(get_dit_config("tiny"), rngs=nnx.Rngs(0))
print("smoke ok", sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param))))
EOF
}
if ! smoke > /tmp/gpu_suite_smoke.txt 2>&1; then
  echo "machine flax failed the smoke test; using carried wheels"; tail -5 /tmp/gpu_suite_smoke.txt
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  smoke >> /tmp/gpu_suite_smoke.txt 2>&1
fi
tail -2 /tmp/gpu_suite_smoke.txt

[ "${SKIP_ATTN:-0}" = 1 ] || step attention "${T_ATTN:-80}" $PY -m benchmarks.attention --length $LEN --segments 4 \
  --heads $HEADS --head-dim $HD --check-length $CHECK --implementations $ATTN
# A packed-layout kernel that failed its check falls back to the dense-mask cuDNN call below.
if [ "${SKIP_ATTN:-0}" != 1 ] && ! $PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if '\"attention\"' in l][-1]; e=r['implementations']['$PACKED']; sys.exit('error' in e or max(e['max_abs_error'][k] for k in ('out','dq','dk','dv')) > 0.1)" "$OUT_DIR/results.jsonl"; then
  echo "$PACKED failed its check: using $MASK"; PACKED=$MASK
fi
# The repo's conftest.py pins JAX_PLATFORMS=cpu (8 simulated devices) unless it is set: set it to the
# GPU here, or the cuDNN tests skip. Only the cuDNN cases: the float32 XLA cases hold CPU tolerances.
step attention_tests "${T_TESTS:-60}" env JAX_PLATFORMS=${GPU_PLATFORM:-cuda} $PY -m pytest -q -rs -p no:cacheprovider \
  tests/models/test_dit.py -k "cudnn"
# Without remat a 1.4B DiT at 16k tokens needs 166 GiB (measured); "dots" keeps matmul outputs only,
# "dots_attention" the attention kernels' outputs too (no second forward kernel in the backward).
# REMATS: the policies to time, the first with a profile.
REMATS=${REMATS:-dots_attention dots}
REMAT=${REMATS%% *}
dit() {  # dit NAME LIMIT ATTENTION REMAT [extra args]
  local name=$1 limit=$2 attn=$3 remat=$4; shift 4
  step "$name" "$limit" $PY -m benchmarks.dit_step --preset $PRESET --depth $DEPTH --frames $F --height $H --width $W \
    --batch 1 --dtype bfloat16 --attention "$attn" --remat "$remat" --steps 5 --no-diffusers "$@"
}
# `auto`: cudnn_packed self-attention and dense XLA for the short text keys (falls back with PACKED).
DIT_ATTN=auto; [ "$PACKED" = cudnn_packed ] || DIT_ATTN=$PACKED
PROFILE="--profile /tmp/gpu_suite_profile"
for remat in $REMATS; do
  dit dit_auto_$remat "${T_DIT1:-150}" $DIT_ATTN $remat $PROFILE ${DIT_ARGS:-} || true
  PROFILE=""
done
if ! grep -q '"attention": "'$DIT_ATTN'", "remat": "'$REMAT'"' "$OUT_DIR/results.jsonl"; then
  dit dit_auto_full "${T_DIT1:-150}" $DIT_ATTN full
fi
[ "${SKIP_MASK:-0}" = 1 ] || dit dit_mask "${T_DIT2:-110}" $MASK $REMAT
[ "${SKIP_SAMPLE:-0}" = 1 ] || step sample "${T_SAMPLE:-80}" $PY -m benchmarks.sample --preset $PRESET --depth $DEPTH --frames $SF --height $SH --width $SW \
  --steps 4 --repeats 2 --cfg 5.0 --dtype bfloat16 --attention $PACKED --no-diffusers
[ "${SKIP_VAE:-0}" = 1 ] || step vae "${T_VAE:-60}" $PY -m benchmarks.vae --config $VAE --frames 17 --height $VS --width $VS \
  --rounds 1 --repeats 3 --skip-memory --skip-tiling
echo "=== done in ${SECONDS}s"
