#!/usr/bin/env bash
# What ran on the lent GPU machine (one H200, reached through the workplace's device tool, which
# copies this working tree there, runs one command and brings back what lands in $OUT). That
# machine has no network and no Deno: scripts/pack_gpu.sh packs into .gpu/ (git-ignored) this
# Deno binary, the Vulkan/GL loader .debs and a DENO_DIR with the npm packages and the Brown
# corpus. Call it with `.gpu` carried: `DEADLINE=520 bash scripts/gpu_runs.sh`; then
# `python3 scripts/merge_gpu_results.py DIR...` (each DIR holds an unpacked results.tgz).
#
# Superseded for issues 12 and 13 by scripts/gpu_runs_v2.sh; kept as the record of the v1 runs.
#
# Order: adapter probe (fail fast) → two llvmpipe runs re-trained here (does the adapter change
# the numbers?) → kernel and training benches → the rest of the full grid → larger sizes (m, l,
# xl) of the sparsity-vs-loss grid. Every step is cut at DEADLINE seconds, and results are packed
# into $OUT/results.tgz after each, so a call that runs out of time still returns what finished;
# the run directories (runs_h200/) stay on a warm machine, so a second call resumes.
#
# On 2026-11-28 one call (560 s) got through the benches, the seed-2 runs and sizes m and l up to
# l-S0.7; a second (186 s) finished l and trained xl at S 0 and 0.2 before the lease ran out.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=gpu_common.sh
. scripts/gpu_common.sh
mkdir -p results/h200/bench runs_h200

sweep() { # sweep STUDY [k=v | --flag value ...]
  local s=$1 label="$*" w=()
  shift
  while [ $# -gt 0 ]; do
    case $1 in
    --*) w+=("$1" "$2") && shift ;;
    *) w+=(--where "$1") ;;
    esac
    shift
  done
  step "$label" 9999 $RUN cli.ts sweep --study "$s" --profile full --results "results/$s.jsonl" \
    --runs runs_h200 "${w[@]}"
}

for S in 0 0.6; do
  step "check S=$S" 75 $RUN cli.ts sweep --study sparsity_vs_loss --profile full --sizes s --seeds 1 \
    --where S=$S --results results/h200/check.jsonl --runs runs_h200 --fresh
done
[ "$DRY" = 1 ] || rm -f results/bench/*.json
step bench-matmul 45 $RUN bench/matmul_table.ts
step bench-sparsity 75 $RUN bench/sparsity_table.ts --no-peers --quick
step bench-train 45 $RUN bench/train_speed.ts tiny:0 tiny:0.5 s:0 s:0.5 m:0 m:0.5 l:0 l:0.5
[ "$DRY" = 1 ] || cp results/bench/*.json results/h200/bench/ 2>/dev/null
pack
sweep sparsity_vs_loss seed=2 size=s
for s in moe ablation block; do sweep "$s" seed=2; done
sweep sparsity_vs_loss --sizes m,l,xl --seeds 1
sweep token_budget
sweep bitnet size=xs
sweep sparsity_vs_loss --sizes m,l,xl --seeds 2
log done
pack
