#!/usr/bin/env bash
# Runs the full-profile grids on this machine's default device, resuming whatever is already
# done. Results land in results/<study>.jsonl, checkpoints in runs/<study>/<id>/. Safe to kill
# and re-run at any time.
#
# Order: the first seed of every study first, the second seeds last, so that if the compute
# budget runs out the committed results still cover every study with one seed.
# Usage: scripts/run_full_studies.sh            (everything, in that order)
#        scripts/run_full_studies.sh STUDY ...  (just these studies, all seeds)
set -uo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
sweep() {
  echo "== $(date -u +%FT%TZ) study $1 ${2:-}"
  deno run -A cli.ts sweep --study "$1" --profile full --results "results/$1.jsonl" --runs runs ${2:+--where "$2"} ||
    echo "study $1 stopped with status $?"
}
if [ $# -gt 0 ]; then
  for s in "$@"; do sweep "$s"; done
else
  for s in sparsity_vs_loss posthoc moe ablation block bitnet continue_finetune token_budget; do
    sweep "$s" seed=1
  done
  for s in sparsity_vs_loss ablation block moe; do sweep "$s" seed=2; done
fi
echo "== $(date -u +%FT%TZ) all done"
