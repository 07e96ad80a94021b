#!/usr/bin/env bash
# Runs the full-profile grids on this machine's default device, resuming whatever is already
# done. Results land in results/<study>.jsonl, checkpoints in runs/<study>/<id>/. Safe to kill
# and re-run at any time.
#
# Order: what the notebooks need most comes first, so that if the compute budget runs out the
# committed results still cover every study: one seed of each study (BitNet's small sizes
# first), then the second seed of the small sizes of the main grid, then everything else, then
# second seeds beyond the grid. (Runs done on a GPU and merged into results/ are skipped here.)
# Usage: scripts/run_full_studies.sh            (everything, in that order)
#        scripts/run_full_studies.sh STUDY ...  (just these studies, all seeds)
set -uo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# sweep STUDY [k=v | --flag value ...]: the runs of STUDY whose tags match every k=v (flags such
# as --seeds 2 go to the CLI as they are).
sweep() {
  local study=$1 label="$*" where=()
  shift
  while [ $# -gt 0 ]; do
    case $1 in
    --*) where+=("$1" "$2") && shift ;;
    *) where+=(--where "$1") ;;
    esac
    shift
  done
  echo "== $(date -u +%FT%TZ) study $label"
  deno run -A cli.ts sweep --study "$study" --profile full --results "results/$study.jsonl" \
    --runs runs "${where[@]}" || echo "study $study stopped with status $?"
}
if [ $# -gt 0 ]; then
  for s in "$@"; do sweep "$s"; done
  exit 0
fi
sweep sparsity_vs_loss seed=1
sweep posthoc
sweep moe seed=1
sweep ablation seed=1
sweep block seed=1
sweep bitnet size=xxs
sweep bitnet size=tiny
sweep continue_finetune
sweep sparsity_vs_loss seed=2 size=xxs
sweep sparsity_vs_loss seed=2 size=tiny
sweep sparsity_vs_loss seed=2 size=xs
sweep bitnet
sweep token_budget
sweep sparsity_vs_loss seed=2
for s in ablation block moe; do sweep "$s" seed=2; done
# Beyond the grid, with compute left over: a second seed of the token-budget and BitNet studies
# (their grids have one seed), smallest first.
sweep token_budget --seeds 2
for z in xxs tiny xs; do sweep bitnet --seeds 2 size=$z; done
echo "== $(date -u +%FT%TZ) all done"
