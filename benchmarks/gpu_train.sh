#!/usr/bin/env bash
# Accelerator-length training runs of the small models, through the real trainer, on a lent GPU:
# the tiny VAE (`experiments/vae.py:tiny`, whose 30 dB held-out target is hours away on 2 CPU
# cores) and the tiny captioner (`experiments/caption.py:tiny`), side by side on one GPU for
# T_TRAIN seconds each, on SOURCE (default: Shapes World `tiny` rendered on demand). The captioner
# runs in two stages (CAP_CURRICULUM=1, the default): T_CAP1 seconds (CAP1_STEPS-step schedule)
# on SOURCE's first frames, ~8 multi-object images per 512-token row, where binding shape to a
# colour is learnt (docs/caption.md, "Multi-object images from scratch"), then the rest of T_TRAIN
# on SOURCE's whole clips (motion), started from the first stage's preemption save. Workdirs
# (metrics.jsonl with held-out PSNR / caption agreement, config, the last checkpoint) come back
# as OUT_DIR/<name>.tgz.* for evaluation on this machine:
#
#   OUT_DIR=/tmp/gpu bash benchmarks/gpu_train.sh
#   DRY=1 OUT_DIR=/tmp/gpu bash benchmarks/gpu_train.sh   # a few steps on CPU: checks the script
#
# The machine's image lacks the data stack (Grain, TFDS, ArrayRecord, ml_collections, PyAV,
# tensorboardX): wheels of our pins for its Python (3.12) go in .whl/data/ (git-ignored) and are
# installed when missing. Fetch them on a machine with the package registry:
#
#   for p in array-record==0.8.6 av==18.1.0 dm-tree==0.1.10 docstring-parser==0.18.0 \
#       googleapis-common-protos==1.76.0 grain==0.2.18 immutabledict==4.3.1 importlib-resources==7.1.0 \
#       ml-collections==1.1.0 portpicker==1.6.0 simple-parsing==0.1.9 tensorboardx==2.6.5 \
#       tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0 termcolor==3.3.0 toml==0.10.2; do
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl/data $p; done
#   pip wheel --no-deps -w .whl/data promise==2.3   # sdist only
set -u
OUT_DIR=${OUT_DIR:-${OUT:-/tmp/gpu_train}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/gpu_train_work}
# Clips rendered on demand (never repeated): with 2,000 stored clips the captioner memorised them.
SOURCE=${SOURCE:-shapes_world_live:tiny}
# Extra captioner overrides: the conv stem, frame positions and identity-started blocks (docs/caption.md).
CAP_ARGS=${CAP_ARGS:---config.model.stem=conv --config.model.stem_widths=(16,32,64,128) --config.model.frame_position=True --config.model.identity_init=True}
CAP_CURRICULUM=${CAP_CURRICULUM:-1}
export SORA_JAX_DATA=${SORA_JAX_DATA:-/tmp/sora_data}
if [ "${DRY:-0}" = 1 ]; then
  T_TRAIN=${T_TRAIN:-300} VAE_STEPS=20 VAE_BATCH=8 VAE_EVERY=10 CAP_STEPS=20 CAP_BATCH=4 CAP_EVERY=10 WORKERS=0 WARMUP=5
  T_CAP1=${T_CAP1:-150} CAP1_STEPS=10
else
  T_TRAIN=${T_TRAIN:-270} VAE_STEPS=${VAE_STEPS:-20000} VAE_BATCH=${VAE_BATCH:-32} VAE_EVERY=2000
  CAP_STEPS=${CAP_STEPS:-8000} CAP_BATCH=${CAP_BATCH:-16} CAP_EVERY=2000 WORKERS=${WORKERS:-6} WARMUP=200
  T_CAP1=${T_CAP1:-110} CAP1_STEPS=${CAP1_STEPS:-5000}
fi

has_stack() { $PY -c "import grain, tensorflow_datasets, array_record, ml_collections, av, tensorboardX, tree" 2>/dev/null; }
if ! has_stack; then
  echo "installing the carried data stack"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site_data .whl/data/*.whl
  export PYTHONPATH=/tmp/site_data${PYTHONPATH:+:$PYTHONPATH}
  has_stack || { $PY -c "import grain, tensorflow_datasets, array_record, ml_collections, av, tensorboardX, tree"; exit 1; }
fi

start=$SECONDS
SOURCE=$SOURCE $PY - <<'EOF' || exit 1
import os
from sora_jax.caption.data import resolve_caption_source
print(resolve_caption_source(os.environ["SOURCE"]))  # builds a finite dataset once; a live one is a spec
EOF
echo "=== data built in $((SECONDS - start))s"

rm -rf "$WORK"; mkdir -p "$WORK"
# Two small models share the GPU: no preallocation, so each takes what it uses.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
train() {  # [SECONDS=...] train NAME CONFIG [overrides...]
  local name=$1 config=$2; shift 2
  timeout -k 10 "${SECONDS_LIMIT:-$T_TRAIN}" $PY -m sora_jax.cli train --config "$config" --workdir "$WORK/$name" \
    --config.progress=False --config.keep_checkpoints=1 "$@" > "$OUT_DIR/$name.log" 2>&1
  echo "=== $name rc=$? after $((SECONDS - start))s"
}
start=$SECONDS
train vae_tiny experiments/vae.py:tiny --config.steps=$VAE_STEPS --config.global_batch_size=$VAE_BATCH \
  --config.log_every=$((VAE_EVERY / 10)) --config.eval_every=$VAE_EVERY --config.checkpoint_every=$VAE_EVERY \
  --config.sample_every=0 --config.data.worker_count=$WORKERS "--config.data.sources=['$SOURCE']" &
captioner() {  # [SECONDS_LIMIT=...] captioner NAME STEPS [overrides...]
  local name=$1 steps=$2 every=$CAP_EVERY; shift 2
  [ "$every" -gt "$steps" ] && every=$steps
  train "$name" experiments/caption.py:tiny --config.steps="$steps" --config.global_batch_size=$CAP_BATCH \
    --config.log_every=$((every / 10 > 0 ? every / 10 : 1)) --config.eval_every=$every \
    --config.checkpoint_every=$every --config.sample_every=$every --config.optim.warmup_steps=$WARMUP \
    --config.data.worker_count=$WORKERS $CAP_ARGS "$@"
}
if [ "$CAP_CURRICULUM" = 1 ]; then  # multi-object first frames, then whole clips from their weights
  {
    SECONDS_LIMIT=$T_CAP1 captioner captioner_images "$CAP1_STEPS" "--config.data.sources=['$SOURCE']" \
      --config.data.max_frames=1 --config.data.seq_len=512 --config.data.max_tokens_per_clip=128 \
      --config.data.max_segments_per_row=8
    # A 3e-4 peak on clips keeps more of the first stage's shapes than the variant's 1e-3
    # (docs/caption.md, "The clip stage: a gentler rate"); the word-detection head at weight 5,
    # started fresh, is what gets falls named (docs/caption.md, "Falls named"). Not in the first
    # stage: there it held shape at chance (docs/caption.md, "The word-detection head in the image stage").
    SECONDS_LIMIT=$((T_TRAIN - T_CAP1)) captioner captioner_tiny "$CAP_STEPS" \
      "--config.data.sources=['$SOURCE']" --config.data.seq_len=1024 --config.optim.learning_rate=3e-4 \
      --config.data.max_tokens_per_clip=512 --config.init_from="$WORK/captioner_images" \
      --config.model.concept_weight=${CAP2_CONCEPT_WEIGHT:-5.0} --config.init_new_params=True
  } &
else
  captioner captioner_tiny "$CAP_STEPS" "--config.data.sources=['$SOURCE']" --config.data.seq_len=1024 \
    --config.data.max_tokens_per_clip=512 &
fi
wait
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null | tail -1
for name in vae_tiny captioner_images captioner_tiny; do
  [ -d "$WORK/$name" ] || continue
  tail -n 3 "$WORK/$name/metrics.jsonl" 2>/dev/null | cut -c1-400
  # Files back from a lent machine are at most 16 MiB each: split the archive.
  tar czf - -C "$WORK" --exclude=tensorboard "$name" | split -b 15m -d - "$OUT_DIR/$name.tgz."
done
ls -la "$OUT_DIR"
