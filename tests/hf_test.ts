/**
 * Llama-style folders: export → import round trip, and parity with PyTorch both ways (the kit's
 * export loaded by the PyTorch reference; a folder PyTorch wrote loaded by the kit). The PyTorch
 * half needs /usr/bin/python3 with torch; QSPARSE_REQUIRE_TORCH=1 makes it mandatory.
 */
import assert from "node:assert/strict";
import { CheckpointError, type Device } from "../mod.ts";
import { modelConfig, type ModelOverrides, TransformerLM } from "../src/nn/mod.ts";
import {
  exportHf,
  importHf,
  loadModel,
  saveCheckpoint,
  train,
  trainConfig,
} from "../src/train/mod.ts";
import { loadSafetensors } from "../src/train/safetensors.ts";
import { assertClose, cpu, gpu } from "./helpers.ts";

const PYTHON = "/usr/bin/python3";
const SCRIPT = new URL("./parity/hf_reference.py", import.meta.url).pathname;

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
  throw new Error(`hf: ${PYTHON} cannot import torch (apt-get install python3-torch)`);
}

const VARIANTS: Record<string, ModelOverrides> = {
  dense: {},
  swiglu: { ffn: "swiglu" },
  qsparse: { sparsity: 0.5 },
  "qsparse-per-site": { sparsity: { qkv: 0.4, o: 0.5, gateUp: 0.3, down: 0.6 } },
  "block-8of16": { sparsity: 0.5, block: 16 },
  "bitnet-qsparse": { bitnet: true, sparsity: 0.5 },
};

function tiny(dev: Device, over: ModelOverrides, seed = 7): TransformerLM {
  const cfg = modelConfig("tiny", {
    seqLen: 16,
    initStd: 0.2,
    ...over,
    dModel: 32,
    nHeads: 2,
    nLayers: 2,
    dFF: 48,
    vocab: 64,
  });
  return new TransformerLM(dev, cfg, seed);
}

const IDS = [
  Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % 64),
  Array.from({ length: 12 }, (_, i) => (i * 11 + 1) % 64),
];

async function logits(m: TransformerLM, ids: number[][]): Promise<Float32Array> {
  using t = m.device.tensor(Uint32Array.from(ids.flat()), [ids.length, ids[0]!.length], "u32");
  using y = m.forward(t);
  return (await y.data()).slice();
}

async function torchLogits(dir: string, mode: "logits" | "write"): Promise<Float32Array> {
  const r = await new Deno.Command(PYTHON, { args: [SCRIPT, mode, dir] }).output();
  if (!r.success) throw new Error(`hf_reference.py failed:\n${new TextDecoder().decode(r.stderr)}`);
  return (await loadSafetensors(`${dir}/logits.safetensors`)).tensors.get("logits")!
    .data as Float32Array;
}

for (const dev of [cpu, ...(gpu ? [gpu] : [])]) {
  Deno.test(`export → import gives identical logits (${dev.kind})`, async () => {
    for (
      const [name, over] of Object.entries({ ...VARIANTS, moe: { moe: { experts: 4, topK: 2 } } })
    ) {
      using a = tiny(dev, over as ModelOverrides);
      const dir = await Deno.makeTempDir({ prefix: `hf-${name}-` });
      try {
        await exportHf(a, dir);
        using b = await loadModel(dev, dir);
        assert.deepEqual(b.config, a.config, name);
        const la = await logits(a, IDS), lb = await logits(b, IDS);
        assert.deepEqual(lb, la, `${name}: logits differ after the round trip`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  });
}

Deno.test({
  name: "exported folders load into the PyTorch reference with the same logits",
  ignore: !torchOk,
  fn: async () => {
    for (const [name, over] of Object.entries(VARIANTS)) {
      using m = tiny(cpu, over);
      const dir = await Deno.makeTempDir({ prefix: `hf-torch-${name}-` });
      try {
        await exportHf(m, dir);
        const st = await loadSafetensors(`${dir}/model.safetensors`);
        assert.deepEqual(st.tensors.get("model.layers.0.self_attn.q_proj.weight")!.shape, [32, 32]);
        assert.deepEqual(st.tensors.get("model.layers.1.mlp.down_proj.weight")!.shape, [32, 48]);
        assert.deepEqual(st.tensors.get("lm_head.weight")!.shape, [64, 32]);
        await Deno.writeTextFile(`${dir}/ids.json`, JSON.stringify(IDS));
        const ref = await torchLogits(dir, "logits");
        assertClose(await logits(m, IDS), ref, { atol: 1e-4, rtol: 1e-4 }, name);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
});

Deno.test({
  name: "a folder PyTorch wrote loads, generates, and takes post-hoc top-K",
  ignore: !torchOk,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "hf-from-torch-" });
    try {
      const ref = await torchLogits(dir, "write");
      using m = await importHf(cpu, dir);
      assert.equal(m.config.ffn, "swiglu");
      assert.equal(m.config.sparsity.qkv, 0);
      const ids = JSON.parse(await Deno.readTextFile(`${dir}/ids.json`)) as number[][];
      assertClose(await logits(m, ids), ref, { atol: 1e-4, rtol: 1e-4 }, "torch-written folder");
      const [g] = await m.generate([ids[0]!], { maxNewTokens: 4, sparsity: 0.5, sparse: true });
      assert.equal(g!.tokens.length, 4);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("malformed folders get a CheckpointError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => importHf(cpu, dir), CheckpointError);
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1 }),
    );
    await assert.rejects(() => importHf(cpu, dir), /grouped-query attention/);
    using m = tiny(cpu, {});
    await exportHf(m, dir);
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...cfg, hidden_size: 64, head_dim: 32 }),
    );
    await assert.rejects(() => importHf(cpu, dir), /needs \[64/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train initFrom accepts a Llama-style folder (a dense export seeds Q-Sparse training)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using dense = new TransformerLM(cpu, modelConfig("xxs", { seqLen: 16 }), 5);
    await exportHf(dense, `${dir}/hf`);
    const state = {
      step: 0,
      sampler: { seed: 0, step: 0 },
      generator: { seed: 0, offset: 0 },
      tokens: 0,
      elapsed: 0,
    };
    await saveCheckpoint(`${dir}/kit.safetensors`, dense, null, state, { model: dense.config });
    // Evaluation-only runs (steps 0) of a Q-Sparse config started from each copy of the weights.
    const evalFrom = async (initFrom: string) =>
      (await train(
        cpu,
        trainConfig(modelConfig("xxs", { seqLen: 16, sparsity: 0.5 }), {
          steps: 0,
          initFrom,
          evalWindows: 4,
          categories: ["news"],
        }),
      )).valLoss;
    const fromHf = await evalFrom(`${dir}/hf`);
    assert.ok(Number.isFinite(fromHf));
    assert.equal(fromHf, await evalFrom(`${dir}/kit.safetensors`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
