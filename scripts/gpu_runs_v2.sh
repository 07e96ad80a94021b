#!/usr/bin/env bash
# The GPU script of issues 12 and 13, for a lent GPU machine (same route as scripts/gpu_runs.sh:
# run scripts/pack_gpu.sh here first, then through the device tool, with `.gpu` carried:
# `DEADLINE=520 bash scripts/gpu_runs_v2.sh`; merge what comes back with
# `python3 scripts/merge_gpu_results.py DIR`). `DRY=1 bash scripts/gpu_runs_v2.sh` prints the
# steps without running anything (tests/gpu_script_test.ts checks the order).
#
# Order, each step capped so one call does everything it can in time:
#   1. benches, about 2 minutes: engine overheads (dispatch µs, the 1,000-op chain, dispatches per
#      step), decode tokens/s at batch 1 and 16, matmul and sparse GEMV tables, every matmul
#      kernel variant per shape with autotune's pick (bench/matmul_variants.ts), training
#      tokens/s tiny…l, captured against ordinary training steps at batch 32 and 256
#      (bench/capture.ts). JSON into results/h200/bench/.
#   2. the v2 cells this CPU machine reaches last (docs/studies-v2.md: ~49 h here): learning-rate
#      tuning of n853k, its pick, then n853k's main grid from seed 3 down (the CPU runner goes
#      from seed 1 up; merged results are skipped by whichever comes second), then the fixed-N_a
#      study from seed 3 down.
# Results carry the adapter in every record; runs resume from runs_h200/ on a warm machine.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_LOG=runs_gpu_v2.log
# shellcheck source=gpu_common.sh
. scripts/gpu_common.sh
[ "$DRY" = 1 ] || mkdir -p results/h200/bench runs_h200

bench() { # bench NAME CAP SCRIPT ARGS...: a bench whose JSON lands in results/h200/bench/
  local name=$1 cap=$2
  shift 2
  step "bench-$name" "$cap" $RUN "$@"
  [ "$DRY" = 1 ] || { cp results/bench/*.json results/h200/bench/ 2>/dev/null && pack; }
}
sweep() { # sweep STUDY k=v...: the study's full-profile runs matching every k=v, on WebGPU
  local study=$1 where=()
  shift
  for kv in "$@"; do where+=(--where "$kv"); done
  step "$study $*" 9999 $RUN cli.ts sweep --study "$study" --profile full --device webgpu \
    --results "results/$study.jsonl" --runs runs_h200 "${where[@]}"
}

[ "$DRY" = 1 ] || rm -f results/bench/*.json
bench engine 30 bench/engine.ts --no-llvmpipe
bench decode 40 bench/decode.ts --device webgpu --batches 1,16 --sparsities 0.5,0.8 --rounds 3
bench matmul 20 bench/matmul_table.ts
bench matmul-variants 90 bench/matmul_variants.ts --big --f16
bench sparsity 25 bench/sparsity_table.ts --no-peers --quick
bench train 45 bench/train_speed.ts tiny:0 tiny:0.5 s:0 s:0.5 l:0 l:0.5
bench capture 60 bench/capture.ts --devices webgpu --cases tiny:32x128,tiny:256x128,s:256x128 \
  --rounds 3

sweep lr_tuning size=n853k
step "pick n853k" 30 $RUN scripts/pick_lr.ts --profile full --require n853k
for s in 3 2 1; do sweep scaling_v2 size=n853k seed=$s; done
for s in 3 2 1; do sweep fixed_na seed=$s; done
log done
pack
