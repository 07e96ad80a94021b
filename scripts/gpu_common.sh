# Sourced by the GPU scripts (scripts/gpu_runs.sh, scripts/gpu_runs_v2.sh): unpacks what
# scripts/pack_gpu.sh put in .gpu/ (Deno, the Vulkan loader and GL dispatch .debs, a DENO_DIR),
# probes the adapter (exit 3 when there is none), and defines `step NAME CAP CMD...` (run CMD for
# at most CAP seconds and never past DEADLINE) and `pack` (results into $OUT/results.tgz, after
# every step, so a call cut short still returns what finished). Set DRY=1 to print the commands
# instead (nothing is unpacked or run).
T0=$(date +%s)
DEADLINE=${DEADLINE:-470}
OUT=${OUT:-/tmp/out}
DRY=${DRY:-0}
PROFILE=${PROFILE:-full} # the studies' profile (smoke only to try the script out)
GPU_LOG=${GPU_LOG:-runs_gpu.log}
left() { echo $((DEADLINE - ($(date +%s) - T0))); }
log() {
  if [ "$DRY" = 1 ]; then echo "== $*"; else
    echo "== $(date -u +%T) [$(($(date +%s) - T0))s] $*" | tee -a "$GPU_LOG"
  fi
}
pack() {
  [ "$DRY" = 1 ] && return 0
  # Workers pack concurrently: each through its own temporary file, renamed atomically.
  tar -czf "$OUT/results.tgz.$BASHPID" results/*.jsonl results/*.json results/h200 2>/dev/null
  mv "$OUT/results.tgz.$BASHPID" "$OUT/results.tgz"
  cp "$GPU_LOG" "$OUT/" 2>/dev/null
}
step() {
  local name=$1 cap=$2
  shift 2
  if [ "$DRY" = 1 ]; then echo "$name: $*" && return 0; fi
  local t
  t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -le 5 ]; then log "skip $name (deadline)" && return 0; fi
  log "start $name (≤ ${t}s)"
  timeout "$t" "$@" 2>&1 | tee -a "$GPU_LOG" | grep -v '^\[.*start' | tail -n 40
  log "end $name (status ${PIPESTATUS[0]})"
  pack
}

if [ "$DRY" = 1 ]; then
  RUN="deno run -A --cached-only"
elif [ "${LOCAL:-0}" = 1 ]; then # try the script out here: this Deno, this adapter, nothing unpacked
  mkdir -p "$OUT"
  RUN="${DENO:-deno} run -A"
else
  mkdir -p "$OUT"
  for f in .gpu/*.deb; do dpkg -x "$f" /; done # the Vulkan loader; GL dispatch for the ICD
  ldconfig
  xz -dc .gpu/deno.xz >/tmp/deno && chmod +x /tmp/deno
  tar -xJf .gpu/denodir.tar.xz -C /tmp
  export DENO_DIR=/tmp/denodir NO_COLOR=1
  export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
  # Vulkan only (docs/gpu.md, "Known issue"); NVIDIA's driver is a Vulkan ICD anyway.
  export DENO_WEBGPU_BACKEND=${DENO_WEBGPU_BACKEND:-vulkan}
  XDG_RUNTIME_DIR=$(mktemp -d)
  export XDG_RUNTIME_DIR
  RUN="/tmp/deno run -A --cached-only"
  (nvidia-smi -L || true) | tee -a "$GPU_LOG"
  log probe
  $RUN - <<'PROBE' 2>&1 | tee -a "$GPU_LOG"
const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
if (!a) { console.log("no WebGPU adapter"); Deno.exit(3); }
console.log(JSON.stringify(a.info), JSON.stringify({ maxBuf: a.limits.maxStorageBufferBindingSize,
  features: [...a.features] }));
PROBE
  [ "${PIPESTATUS[0]}" = 0 ] || exit 3
fi
