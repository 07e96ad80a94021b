#!/usr/bin/env bash
# What ran on the lent GPU machine (one H200, reached through the workplace's device tool, which
# copies this working tree there, runs one command and brings back what lands in $OUT). That
# machine has no network and no Deno: scripts/pack_gpu.sh packs into .gpu/ (git-ignored) this
# Deno binary, the Vulkan/GL loader .debs and a DENO_DIR with the npm packages and the Brown
# corpus. Call it with `.gpu` carried: `DEADLINE=520 bash scripts/gpu_runs.sh`; then
# `python3 scripts/merge_gpu_results.py DIR...` (each DIR holds an unpacked results.tgz).
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
T0=$(date +%s)
DEADLINE=${DEADLINE:-470}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
pack() {
  tar -czf "$OUT/results.tgz.tmp" results/*.jsonl results/h200 2>/dev/null &&
    mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"
  cp runs_gpu.log "$OUT/" 2>/dev/null
}
log() { echo "== $(date -u +%T) [$(($(date +%s) - T0))s] $*" | tee -a runs_gpu.log; }

for f in .gpu/*.deb; do dpkg -x "$f" /; done # the Vulkan loader; GL dispatch for the ICD
ldconfig
xz -dc .gpu/deno.xz >/tmp/deno && chmod +x /tmp/deno
tar -xJf .gpu/denodir.tar.xz -C /tmp
export DENO_DIR=/tmp/denodir NO_COLOR=1
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=$(mktemp -d)
RUN="/tmp/deno run -A --cached-only"
(nvidia-smi -L || true) | tee -a runs_gpu.log

log probe
$RUN - <<'EOF' 2>&1 | tee -a runs_gpu.log || exit 3
const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
if (!a) { console.log("no WebGPU adapter"); Deno.exit(3); }
console.log(JSON.stringify(a.info), JSON.stringify({ maxBuf: a.limits.maxStorageBufferBindingSize,
  features: [...a.features] }));
EOF
[ "${PIPESTATUS[0]}" = 0 ] || exit 3
mkdir -p results/h200/bench runs_h200

step() { # step NAME CAP CMD... : run CMD for at most CAP s and never past the deadline
  local name=$1 cap=$2
  shift 2
  local t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -le 5 ]; then log "skip $name (deadline)"; return; fi
  log "start $name (≤ ${t}s)"
  timeout "$t" "$@" 2>&1 | tee -a runs_gpu.log | grep -v '^\[.*start' | tail -n 40
  log "end $name (status ${PIPESTATUS[0]})"
  pack
}
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
rm -f results/bench/*.json
step bench-matmul 45 $RUN bench/matmul_table.ts
step bench-sparsity 75 $RUN bench/sparsity_table.ts --no-peers --quick
step bench-train 45 $RUN bench/train_speed.ts tiny:0 tiny:0.5 s:0 s:0.5 m:0 m:0.5 l:0 l:0.5
cp results/bench/*.json results/h200/bench/ 2>/dev/null
pack
sweep sparsity_vs_loss seed=2 size=s
for s in moe ablation block; do sweep "$s" seed=2; done
sweep sparsity_vs_loss --sizes m,l,xl --seeds 1
sweep token_budget
sweep bitnet size=xs
sweep sparsity_vs_loss --sizes m,l,xl --seeds 2
log done
pack
