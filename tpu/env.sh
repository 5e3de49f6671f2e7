# shellcheck shell=bash
# Runtime environment of sora_jax on TPU VMs.
#
#   source tpu/env.sh
#
# tpu/run.sh sources this on every worker before the command it launches. Source it too before
# `python tpu/aot_compile.py --topology ...` so an ahead-of-time compile sees the same compiler
# flags as training (they change scheduling, hence peak memory). Add flags for one run without
# editing this file: LIBTPU_EXTRA_ARGS="--xla_tpu_scoped_vmem_limit_kib=98304" tpu/run.sh -- ...
#
# Every flag below was accepted by libtpu 0.0.42 (the version jax[tpu]==0.10.2 pins) when
# compiling the tiny config for v5p:2x2x2 on a CPU host (libtpu aborts on unknown flags). Their
# speed effect was not measured: no TPU was attached. See tpu/README.md.

SORA_LIBTPU_FLAGS=(
  # Order the program by estimated latency so communication overlaps independent compute (the
  # scheduler the async flags below rely on).
  --xla_tpu_enable_latency_hiding_scheduler=true
  # Turn collectives into asynchronous fusions that start early and finish late, so FSDP's
  # per-layer weight all-gathers and gradient reduce-scatters hide behind matmuls.
  --xla_tpu_enable_async_collective_fusion=true
  # ... all-gathers included (the FSDP parameter gathers are the bulk of our communication).
  --xla_tpu_enable_async_collective_fusion_fuse_all_gather=true
  # ... and let one async collective stay in flight across several scheduled steps.
  --xla_tpu_enable_async_collective_fusion_multiple_steps=true
  # Run those collectives on the TensorCore concurrently with compute instead of in between.
  --xla_tpu_overlap_compute_collective_tc=true
  # Asynchronous all-gather at the XLA level (start/done pairs the scheduler can move apart).
  --xla_enable_async_all_gather=true
  # Asynchronous collective-permute, for ring exchanges (sequence-parallel attention).
  --xla_enable_async_collective_permute=true
  # With a data axis > 1: optimise the gradient all-reduce across replicas and overlap it with
  # the backward pass ...
  --xla_tpu_enable_data_parallel_all_reduce_opt=true
  # ... also when the reduced tensors differ in size (they do: kernels, norm scales, tables).
  --xla_tpu_data_parallel_opt_different_sized_ops=true
)

export LIBTPU_INIT_ARGS="${SORA_LIBTPU_FLAGS[*]}${LIBTPU_EXTRA_ARGS:+ ${LIBTPU_EXTRA_ARGS}}"
# Fail at start-up when the TPU is unusable (held by another process, driver missing) instead of
# falling back to the CPU and "training" at a thousandth of the speed.
export JAX_PLATFORMS="${JAX_PLATFORMS:-tpu}"
# Compiled programs are cached on the worker's disk: a restart after preemption skips the
# minutes-long compile of a pod-scale step.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-${HOME}/.cache/sora_jax/xla}"
# Log lines reach the per-worker log file as they are printed, not when a buffer fills.
export PYTHONUNBUFFERED=1
