#!/usr/bin/env bash
# Runs every study's full grid in order on this machine's default device, resuming whatever is
# already done. Results land in results/<study>.jsonl, checkpoints in runs/<study>/<id>/.
# Safe to kill and re-run at any time. Usage: scripts/run_full_studies.sh [study ...]
set -uo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
studies=("$@")
if [ ${#studies[@]} -eq 0 ]; then
  studies=(sparsity_vs_loss ablation block continue_finetune bitnet moe)
fi
for s in "${studies[@]}"; do
  echo "== $(date -u +%FT%TZ) study $s"
  deno run -A cli.ts sweep --study "$s" --profile full --results "results/$s.jsonl" --runs runs || echo "study $s stopped with status $?"
done
echo "== $(date -u +%FT%TZ) all done"
