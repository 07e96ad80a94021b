/**
 * PyTorch parity: the kit and tests/parity/reference.py compute the loss and every parameter
 * gradient of the same tiny model on the same batch; they must agree within 1e-4 (relative L2
 * error per tensor). Runs for each variant of the model family.
 *
 * Needs Debian's python3-torch (`/usr/bin/python3`). Without it the test is skipped with a message,
 * unless QSPARSE_REQUIRE_TORCH=1 (CI sets it), which turns a missing torch into a failure.
 */
import assert from "node:assert/strict";
import { backward, type Device } from "../../mod.ts";
import { modelConfig, type ModelOverrides, TransformerLM } from "../../src/nn/mod.ts";
import { loadSafetensors, saveSafetensors } from "../../src/train/safetensors.ts";
import type { HostTensor } from "../../src/train/safetensors.ts";
import { ACT_QUANT_EPS, WEIGHT_QUANT_EPS } from "../../src/ops/quant_ste.ts";
import { cpu, gpu, native } from "../helpers.ts";

const PYTHON = "/usr/bin/python3";
const REFERENCE = new URL("./reference.py", import.meta.url).pathname;

async function hasTorch(): Promise<boolean> {
  try {
    const r = await new Deno.Command(PYTHON, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    return r.success;
  } catch {
    return false;
  }
}

const torchOk = await hasTorch();
if (!torchOk && Deno.env.get("QSPARSE_REQUIRE_TORCH") === "1") {
  throw new Error(`parity: ${PYTHON} cannot import torch (apt-get install python3-torch)`);
}
if (!torchOk) console.warn("parity: python3-torch not found; skipping the PyTorch parity tests");

/** Relative L2 error ‖a − b‖ / max(‖b‖, tiny). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-20);
}

const VARIANTS: Record<string, ModelOverrides> = {
  dense: {},
  "dense-swiglu": { ffn: "swiglu" },
  "qsparse-ste": { sparsity: 0.5 },
  "qsparse-per-site": { sparsity: { qkv: 0.4, o: 0.5, gateUp: 0.3, down: 0.6 } },
  "qsparse-no-ste": { sparsity: 0.5, ste: false },
  "qsparse-rescale": { sparsity: 0.5, rescale: true },
  "relu-sparsifier": { sparsity: 0.5, sparsifier: "relu" },
  "block-8of16": { sparsity: 0.5, block: 16 },
  bitnet: { bitnet: true },
  "bitnet-qsparse": { bitnet: true, sparsity: 0.5 },
  "moe-4x1": { moe: { experts: 4, topK: 1 } },
  "moe-8x2-qsparse": { sparsity: 0.5, moe: { experts: 8, topK: 2 } },
  "moe-4x2-capacity-zloss": {
    sparsity: { qkv: 0.4, o: 0.5, gateUp: 0.3, down: 0.6 },
    moe: { experts: 4, topK: 2, capacityFactor: 1, zLossCoef: 1e-3, auxLossCoef: 0.05 },
  },
  "moe-swiglu-raw-gates": { ffn: "swiglu", moe: { experts: 4, topK: 2, normalizeGates: false } },
  "moe-bitnet-qsparse": { bitnet: true, sparsity: 0.5, moe: { experts: 4, topK: 2 } },
};

async function parity(dev: Device, name: string, overrides: ModelOverrides): Promise<void> {
  const cfg = modelConfig("tiny", {
    seqLen: 16,
    ...overrides,
    dModel: 32,
    nHeads: 2,
    nLayers: 2,
    dFF: 48,
    vocab: 64,
  });
  const model = new TransformerLM(dev, cfg, 7);
  const b = 2, t = 16;
  const ids = new Uint32Array(b * t), targets = new Uint32Array(b * t);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = (i * 37 + 11) % 64;
    targets[i] = (i * 53 + 5) % 64;
  }
  const loss = model.loss(dev.tensor(ids, [b, t], "u32"), dev.tensor(targets, [b, t], "u32"));
  backward(loss);
  const dir = await Deno.makeTempDir({ prefix: `parity-${name}-` });
  try {
    const tensors = new Map<string, HostTensor>();
    for (const [n, p] of model.namedParameters()) {
      tensors.set(n, { dtype: "f32", shape: [...p.shape], data: await p.data() });
    }
    tensors.set("batch.ids", { dtype: "u32", shape: [b, t], data: ids });
    tensors.set("batch.targets", { dtype: "u32", shape: [b, t], data: targets });
    await saveSafetensors(`${dir}/weights.safetensors`, tensors);
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ model: cfg, actEps: ACT_QUANT_EPS, weightEps: WEIGHT_QUANT_EPS }),
    );
    const r = await new Deno.Command(PYTHON, { args: [REFERENCE, dir] }).output();
    if (!r.success) throw new Error(`reference.py failed:\n${new TextDecoder().decode(r.stderr)}`);
    const ref = (await loadSafetensors(`${dir}/reference.safetensors`)).tensors;
    const kitLoss = await loss.item();
    const refLoss = ref.get("loss")!.data[0]!;
    assert.ok(
      Math.abs(kitLoss - refLoss) <= 1e-4 * Math.abs(refLoss),
      `${name}: loss ${kitLoss} vs torch ${refLoss}`,
    );
    for (const [n, p] of model.namedParameters()) {
      const g = ref.get(`grad.${n}`)!.data;
      const mine = p.grad ? await p.grad.data() : new Float32Array(p.size);
      const e = relErr(mine, g);
      assert.ok(e <= 1e-4, `${name}: grad ${n} relative error ${e.toExponential(2)} (> 1e-4)`);
    }
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const [name, overrides] of Object.entries(VARIANTS)) {
  Deno.test({
    name: `parity with PyTorch: ${name} (cpu + native${gpu ? " + webgpu" : ""})`,
    ignore: !torchOk,
    async fn() {
      await parity(cpu, name, overrides);
      await parity(native, name, overrides);
      if (gpu) await parity(gpu, name, overrides);
    },
  });
}
