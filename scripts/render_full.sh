#!/usr/bin/env bash
# Executes every notebook in the full profile against the committed results/ (no training), which
# writes results/figures/*.png and results/findings/*.md for the README. Executed notebooks go to
# ${OUT:-/tmp/qsparse-full}. Usage: scripts/render_full.sh [notebook ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
out="${OUT:-/tmp/qsparse-full}"
mkdir -p "$out"
nbs=("$@")
if [ ${#nbs[@]} -eq 0 ]; then nbs=(notebooks/*.ipynb); fi
for nb in "${nbs[@]}"; do
  echo "== $nb"
  /usr/bin/python3 tests/notebooks/run_notebook.py "$nb" "$out/$(basename "$nb")" \
    --param profile=full --timeout 1800
done
