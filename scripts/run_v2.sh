#!/usr/bin/env bash
# The v2 grids (issue 13; studies/v2_grid.ts, docs/studies-v2.md) on the native backend, in the
# background, at the lowest CPU priority, resuming whatever is already done: a killed run resumes
# from its checkpoint (runs/<study>/<id>/), a finished one is skipped (results/<study>.jsonl),
# and a run whose config another study already finished is recorded from it. Safe to kill and
# re-run at any time.
#
# Order (what the verdicts need first):
#   1. lr_tuning, size by size; after each size, scripts/pick_lr.ts writes its best LR to
#      results/lr_tuning_best.json. A size whose tuning is incomplete stops the script, so no
#      main-grid cell ever trains at an untuned rate.
#   2. scaling_v2 for the smallest sizes, all seeds (cheap: hours).
#   3. fixed_na, seed by seed (the law-free S* test; its S = 0 and S = .6 arms are main-grid
#      cells of xs and n853k, trained once).
#   4. scaling_v2 for xs, then n853k, seed by seed (days). Every cell of a size trains on this
#      adapter, so its gaps to dense are paired within seed; the four n853k cells an H200 ran on
#      2026-11-30 are kept apart (results/h200/scaling_v2_n853k.jsonl), since a GPU is lent to
#      few sessions and this CPU reaches n853k in about 11 hours.
#
#   The large sizes run as a queue of single-run cells (seed by seed, S by S) worked by WORKERS
#   processes at once, each on one thread (QSPARSE_THREADS=1 and OpenBLAS's own pool at 1): on
#   the 2-core machine on 2026-11-30, xs at batch 32 trained at ~4,850 tokens/s as one process
#   on 2 threads and ~5,200 on 1, and two 1-thread processes together at ~10,300 (the same
#   losses bit for bit at every thread count). The small sizes keep one process on every core.
#
# Usage: scripts/run_v2.sh [--smoke] [--device KIND] [--workers N] [--dry-run]
#   --smoke    the smoke profile into a temporary folder (the whole pipeline in minutes; nothing in
#              the repository changes)
#   --device   native (default), cpu or webgpu
#   --workers  processes for the large sizes' cells (default: the core count; 1 runs them as
#              one sweep per seed on every core)
#   --dry-run  print the sweeps without running them
# Start the full grid in the background:
#   nohup scripts/run_v2.sh > /dev/null 2>&1 &      (log: runs/run_v2.log)
set -uo pipefail
cd "$(dirname "$0")/.."
PROFILE=full DEVICE=native DRY=0 WORKERS=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
  --smoke) PROFILE=smoke ;;
  --device) DEVICE=$2 && shift ;;
  --workers) WORKERS=$2 && shift ;;
  --dry-run) DRY=1 ;;
  *) echo "unknown option $1" >&2 && exit 2 ;;
  esac
  shift
done
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
if [ "$PROFILE" = smoke ]; then
  if [ "$DRY" = 1 ]; then TMP=${TMPDIR:-/tmp}/qsparse-v2-smoke-DRYRUN; else
    TMP=$(mktemp -d -t qsparse-v2-smoke-XXXX)
  fi
  RESULTS=$TMP/results RUNS=$TMP/runs LOG=$TMP/run_v2.log
  export QSPARSE_LR_TABLE=$RESULTS/lr_tuning_best.smoke.json
  SMALL=(xxs) LARGE=(tiny) SEEDS=(1)
else
  RESULTS=results RUNS=runs LOG=${LOG:-runs/run_v2.log}
  SMALL=(xxs tiny) LARGE=(xs n853k) SEEDS=(1 2 3)
fi
if [ "$DRY" = 0 ]; then
  mkdir -p "$RESULTS" "$RUNS" "$(dirname "$LOG")"
  exec > >(tee -a "$LOG") 2>&1
fi
echo "== $(date -u +%FT%TZ) run_v2 profile $PROFILE device $DEVICE results $RESULTS runs $RUNS"

# sweep STUDY [k=v ...]: the runs of STUDY whose tags match every k=v.
sweep() {
  local study=$1 where=()
  shift
  for kv in "$@"; do where+=(--where "$kv"); done
  echo "== $(date -u +%FT%TZ) sweep $study $*"
  local cmd=(nice -n 19 deno run -A cli.ts sweep --study "$study" --profile "$PROFILE"
    --device "$DEVICE" --results "$RESULTS/$study.jsonl" --runs "$RUNS" "${where[@]}")
  if [ "$DRY" = 1 ]; then echo "${cmd[*]}" && return 0; fi
  "${cmd[@]}" || echo "sweep $study $* stopped with status $?"
}
# pick SIZE: write the tuned LRs; fail when SIZE has none yet.
pick() {
  local cmd=(deno run -A scripts/pick_lr.ts --profile "$PROFILE" --results "$RESULTS/lr_tuning.jsonl"
    --require "$1")
  if [ "$DRY" = 1 ]; then echo "${cmd[*]}" && return 0; fi
  "${cmd[@]}"
}

for z in "${SMALL[@]}" "${LARGE[@]}"; do
  sweep lr_tuning "size=$z"
  pick "$z" || { echo "== tuning of $z is incomplete: stopping (re-run to resume)"; exit 1; }
done
for z in "${SMALL[@]}"; do sweep scaling_v2 "size=$z"; done
for s in "${SEEDS[@]}"; do sweep fixed_na "seed=$s"; done
if [ "$WORKERS" -le 1 ]; then
  for z in "${LARGE[@]}"; do
    for s in "${SEEDS[@]}"; do sweep scaling_v2 "size=$z" "seed=$s"; done
  done
else
  # One line per run, "size=Z seed=N S=X", in the order above; a worker takes the next line when
  # its run ends, so seed 1 of a size finishes first and no worker waits for another.
  SPARSITIES=$(deno eval --quiet "import { V2_PROFILES } from './studies/v2_grid.ts';
console.log(V2_PROFILES['$PROFILE'].sparsities.join(' '))")
  cells() {
    for z in "${LARGE[@]}"; do
      for s in "${SEEDS[@]}"; do
        for x in $SPARSITIES; do echo "size=$z seed=$s S=$x"; done
      done
    done
  }
  export -f sweep
  export PROFILE DEVICE RESULTS RUNS DRY
  echo "== $(date -u +%FT%TZ) large sizes: $(cells | wc -l) cells, $WORKERS at once, 1 thread each"
  P=$WORKERS && [ "$DRY" = 1 ] && P=1 # a dry run lists the cells in order
  cells | QSPARSE_THREADS=1 OPENBLAS_NUM_THREADS=1 xargs -P "$P" -L 1 \
    bash -c 'sweep scaling_v2 "$@"' _
fi
echo "== $(date -u +%FT%TZ) run_v2 done (results in $RESULTS, log $LOG)"
