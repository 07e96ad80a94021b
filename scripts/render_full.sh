#!/usr/bin/env bash
# Executes notebooks in the full profile against the committed results/ (no training), which
# writes results/figures/*.png and results/findings/*.md for the README, and commits the outputs
# into notebooks/*.ipynb as a report: markdown tables, text and static PNG figures (display()
# renders figures to PNG when QSPARSE_STATIC_FIGURES=1), no plotly bundle. The sources keep their
# smoke defaults, so CI still runs them cheaply on a copy. Executed copies go to
# ${OUT:-/tmp/qsparse-full}. Usage: scripts/render_full.sh [notebook ...]
# MIN_FIGURES=N lowers the figure count a notebook must show (its metadata.qsparse.expected_figures,
# which the smoke profile meets): 07_studies_v2 draws a figure only once its grid has the runs for
# it, so while the v2 grid is partial render it with e.g. MIN_FIGURES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export QSPARSE_STATIC_FIGURES=1
out="${OUT:-/tmp/qsparse-full}"
mkdir -p "$out"
nbs=("$@")
if [ ${#nbs[@]} -eq 0 ]; then nbs=(notebooks/*.ipynb); fi
for nb in "${nbs[@]}"; do
  echo "== $nb"
  /usr/bin/python3 tests/notebooks/run_notebook.py "$nb" "$out/$(basename "$nb")" \
    --param profile=full --timeout 1800 ${MIN_FIGURES:+--min-figures "$MIN_FIGURES"}
  /usr/bin/python3 scripts/finalize_render.py "$out/$(basename "$nb")" "$nb"
done
