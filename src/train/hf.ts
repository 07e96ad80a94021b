/**
 * Interop with the Hugging Face / PyTorch world: a model as a Llama-style folder (`config.json`
 * + `model.safetensors`) with the standard parameter names (`model.embed_tokens.weight`,
 * `model.layers.N.self_attn.q_proj.weight`, `model.layers.N.mlp.gate_proj.weight`,
 * `model.norm.weight`, `lm_head.weight`, …) in PyTorch's `[out, in]` layout. MoE models use
 * Mixtral's names (`block_sparse_moe.gate`, `experts.E.w1/w2/w3`). The Q-Sparse settings the
 * Llama config has no field for (sparsity per site, block, sparsifier, STE, rescale, BitNet)
 * go in an extra `qsparse` object; a folder without it (one PyTorch wrote) loads as a dense
 * model, ready for continued Q-Sparse training, fine-tuning or post-hoc top-K.
 *
 * Both layouts use rotate-half RoPE (HF's `LlamaRotaryEmbedding`), so no permutation of q/k
 * is needed. `hidden_act` is `silu` (SwiGLU) or `relu2` (Q-Sparse's ReLU²-GLU; HF's `ACT2FN`
 * knows it).
 *
 * @module
 */
import { type ModelConfig, modelConfig, type SiteSparsity } from "../nn/config.ts";
import { TransformerLM } from "../nn/transformer.ts";
import type { Device } from "../tensor/device.ts";
import { CheckpointError, KitError } from "../core/errors.ts";
import { type HostTensor, loadSafetensors, saveSafetensors } from "./safetensors.ts";

/** The Q-Sparse fields stored next to the Llama ones in `config.json`. */
export interface QSparseHfFields {
  /** S per site. */
  sparsity: SiteSparsity;
  /** Block size M of Block Q-Sparse, or null. */
  block: number | null;
  /** `topk` or `relu`. */
  sparsifier: "topk" | "relu";
  /** Straight-through estimator. */
  ste: boolean;
  /** Norm-preserving rescale. */
  rescale: boolean;
  /** BitNet b1.58. */
  bitnet: boolean;
  /** The kit's config name. */
  name: string;
}

/**
 * The Llama-style `config.json` of a model config (Mixtral-style fields for MoE).
 *
 * @param c The model config.
 * @returns A JSON object.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { hfConfig } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const j = hfConfig(modelConfig("tiny", { sparsity: 0.5 }));
 * assert.equal(j.hidden_size, 64);
 * assert.equal(j.hidden_act, "relu2");
 * assert.equal((j.qsparse as { sparsity: { down: number } }).sparsity.down, 0.5);
 * ```
 */
export function hfConfig(c: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    architectures: [c.moe ? "MixtralForCausalLM" : "LlamaForCausalLM"],
    model_type: c.moe ? "mixtral" : "llama",
    vocab_size: c.vocab,
    hidden_size: c.dModel,
    intermediate_size: c.dFF,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nHeads,
    head_dim: c.dModel / c.nHeads,
    hidden_act: c.ffn === "swiglu" ? "silu" : "relu2",
    max_position_embeddings: c.seqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    initializer_range: c.initStd,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    torch_dtype: "float32",
  };
  if (c.moe) {
    out.num_local_experts = c.moe.experts;
    out.num_experts_per_tok = c.moe.topK;
    out.router_aux_loss_coef = c.moe.auxLossCoef ?? 0.01;
    out.qsparse_moe = c.moe;
  }
  const q: QSparseHfFields = {
    sparsity: c.sparsity,
    block: c.block,
    sparsifier: c.sparsifier,
    ste: c.ste,
    rescale: c.rescale,
    bitnet: c.bitnet,
    name: c.name,
  };
  out.qsparse = q;
  return out;
}

/**
 * A model config from a Llama/Mixtral `config.json` (Q-Sparse fields when present, else dense).
 *
 * @param j The parsed JSON.
 * @param source Where it came from, for errors.
 * @returns The validated config.
 * @throws {CheckpointError} When a required field is missing or the architecture is unsupported.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { configFromHf, hfConfig } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const c = modelConfig("tiny", { sparsity: 0.4, ffn: "swiglu" });
 * assert.deepEqual(configFromHf(hfConfig(c)), c);
 * ```
 */
export function configFromHf(j: Record<string, unknown>, source = "config.json"): ModelConfig {
  const op = "configFromHf";
  const int = (k: string): number => {
    const v = j[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new CheckpointError(op, `${source}: ${k} must be a positive integer, got ${v}`);
    }
    return v;
  };
  const d = int("hidden_size"), h = int("num_attention_heads");
  const kv = j.num_key_value_heads ?? h;
  if (kv !== h) {
    throw new CheckpointError(
      op,
      `${source}: grouped-query attention (num_key_value_heads ${kv} ≠ ${h}) is not supported`,
    );
  }
  if (j.head_dim !== undefined && j.head_dim !== d / h) {
    throw new CheckpointError(op, `${source}: head_dim ${j.head_dim} ≠ hidden_size / heads`);
  }
  const act = j.hidden_act ?? "silu";
  if (act !== "silu" && act !== "relu2") {
    throw new CheckpointError(op, `${source}: hidden_act ${act} is not silu or relu2`);
  }
  if (j.attention_bias === true || j.mlp_bias === true) {
    throw new CheckpointError(op, `${source}: biases are not supported (attention_bias/mlp_bias)`);
  }
  const q = (j.qsparse ?? {}) as Partial<QSparseHfFields>;
  const moe = j.num_local_experts
    ? ((j.qsparse_moe as ModelConfig["moe"]) ?? {
      experts: Number(j.num_local_experts),
      topK: Number(j.num_experts_per_tok ?? 2),
      auxLossCoef: Number(j.router_aux_loss_coef ?? 0.01),
    })
    : null;
  try {
    return modelConfig(q.name ?? "hf", {
      vocab: int("vocab_size"),
      dModel: d,
      nLayers: int("num_hidden_layers"),
      nHeads: h,
      dFF: int("intermediate_size"),
      seqLen: typeof j.max_position_embeddings === "number" ? j.max_position_embeddings : 2048,
      ffn: act === "silu" ? "swiglu" : "relu2glu",
      sparsity: q.sparsity ?? 0,
      block: q.block ?? null,
      sparsifier: q.sparsifier ?? "topk",
      ste: q.ste ?? true,
      rescale: q.rescale ?? false,
      bitnet: q.bitnet ?? false,
      moe,
      normEps: typeof j.rms_norm_eps === "number" ? j.rms_norm_eps : 1e-6,
      ropeTheta: typeof j.rope_theta === "number" ? j.rope_theta : 10000,
      initStd: typeof j.initializer_range === "number" ? j.initializer_range : 0.02,
    });
  } catch (e) {
    if (e instanceof KitError) throw new CheckpointError(op, `${source}: ${e.message}`);
    throw e;
  }
}

/** `[r, c]` → `[c, r]` on the host. */
function transposed(data: Float32Array, r: number, c: number): Float32Array {
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < c; j++) out[j * r + i] = data[i * c + j]!;
  }
  return out;
}

/** Kit name → HF name and whether the kit's `[in, out]` matrix is stored transposed. */
function hfNames(c: ModelConfig): Map<string, { hf: string; linear: boolean }> {
  const m = new Map<string, { hf: string; linear: boolean }>();
  m.set("embed.weight", { hf: "model.embed_tokens.weight", linear: false });
  for (let i = 0; i < c.nLayers; i++) {
    const k = `layers.${i}`, h = `model.layers.${i}`;
    m.set(`${k}.attn_norm.weight`, { hf: `${h}.input_layernorm.weight`, linear: false });
    m.set(`${k}.ffn_norm.weight`, { hf: `${h}.post_attention_layernorm.weight`, linear: false });
    for (const p of ["q", "k", "v", "o"]) {
      m.set(`${k}.attn.${p}_proj.weight`, { hf: `${h}.self_attn.${p}_proj.weight`, linear: true });
    }
    if (c.moe) {
      m.set(`${k}.ffn.router.weight`, { hf: `${h}.block_sparse_moe.gate.weight`, linear: true });
    } else {
      for (const p of ["gate", "up", "down"]) {
        m.set(`${k}.ffn.${p}_proj.weight`, { hf: `${h}.mlp.${p}_proj.weight`, linear: true });
      }
    }
  }
  m.set("norm.weight", { hf: "model.norm.weight", linear: false });
  m.set("lm_head.weight", { hf: "lm_head.weight", linear: true });
  return m;
}

const EXPERT_NAMES: Record<string, string> = { gate_proj: "w1", down_proj: "w2", up_proj: "w3" };

/**
 * Writes a model as a Llama-style folder: `config.json` and `model.safetensors` (f32, HF names,
 * `[out, in]` matrices).
 *
 * @param model The model.
 * @param dir The folder (created if missing).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { exportHf } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("xxs"), 1);
 * const dir = await Deno.makeTempDir();
 * await exportHf(m, dir);
 * const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
 * assert.equal(cfg.model_type, "llama");
 * ```
 */
export async function exportHf(model: TransformerLM, dir: string): Promise<void> {
  const c = model.config;
  const names = hfNames(c);
  const tensors = new Map<string, HostTensor>();
  for (const [name, p] of model.namedParameters()) {
    const data = (await p.data()) as Float32Array;
    const map = names.get(name);
    if (map) {
      if (map.linear) {
        const [r, cols] = p.shape as [number, number];
        tensors.set(map.hf, { dtype: "f32", shape: [cols, r], data: transposed(data, r, cols) });
      } else tensors.set(map.hf, { dtype: "f32", shape: [...p.shape], data });
      continue;
    }
    // MoE experts: kit `[E, in, out]` stacks → Mixtral's per-expert `[out, in]`.
    const ex = /^layers\.(\d+)\.ffn\.experts\.(gate_proj|up_proj|down_proj)\.weight$/.exec(name);
    if (!ex) throw new CheckpointError("exportHf", `no Hugging Face name for ${name}`);
    const [e, r, cols] = p.shape as [number, number, number];
    for (let k = 0; k < e; k++) {
      const slice = data.subarray(k * r * cols, (k + 1) * r * cols);
      tensors.set(
        `model.layers.${ex[1]}.block_sparse_moe.experts.${k}.${EXPERT_NAMES[ex[2]!]}.weight`,
        { dtype: "f32", shape: [cols, r], data: transposed(slice, r, cols) },
      );
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(hfConfig(c), null, 2) + "\n");
  await saveSafetensors(`${dir}/model.safetensors`, tensors, { format: "pt" });
}

function asF32(t: HostTensor, name: string, source: string): Float32Array {
  if (t.dtype === "f32") return t.data as Float32Array;
  if (t.dtype === "f16") return Float32Array.from(t.data as Float16Array);
  throw new CheckpointError("importHf", `${source}: ${name} is ${t.dtype}, expected F32 or F16`);
}

/**
 * Loads a Llama-style folder (written by {@link exportHf} or by PyTorch / transformers:
 * `config.json` + `model.safetensors`, F32 or F16) as a kit model.
 *
 * @param device The device.
 * @param dir The folder.
 * @returns The model.
 * @throws {CheckpointError} For a missing file, an unsupported config, or a tensor that is
 *   missing or has the wrong shape.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { exportHf, importHf } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using a = new TransformerLM(dev, modelConfig("xxs", { sparsity: 0.5 }), 1);
 * const dir = await Deno.makeTempDir();
 * await exportHf(a, dir);
 * using b = await importHf(dev, dir);
 * assert.deepEqual(b.config, a.config);
 * assert.deepEqual([...await b.lmHead.weight.data()], [...await a.lmHead.weight.data()]);
 * ```
 */
export async function importHf(device: Device, dir: string): Promise<TransformerLM> {
  const op = "importHf";
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  } catch (e) {
    throw new CheckpointError(op, `${dir}/config.json: ${(e as Error).message}`);
  }
  const config = configFromHf(json, `${dir}/config.json`);
  const file = `${dir}/model.safetensors`;
  const { tensors } = await loadSafetensors(file);
  const model = new TransformerLM(device, config, 0);
  try {
    const names = hfNames(config);
    for (const [name, p] of model.namedParameters()) {
      const map = names.get(name);
      const want = [...p.shape];
      if (map) {
        let t = tensors.get(map.hf);
        if (!t && name === "lm_head.weight" && json.tie_word_embeddings === true) {
          t = tensors.get("model.embed_tokens.weight");
        }
        if (!t) throw new CheckpointError(op, `${file} has no tensor ${map.hf}`);
        const shape = map.linear ? [want[1]!, want[0]!] : want;
        if (t.shape.join() !== shape.join()) {
          throw new CheckpointError(
            op,
            `${file}: ${map.hf} is [${t.shape}] but the model needs [${shape}]`,
          );
        }
        const data = asF32(t, map.hf, file);
        model.setParameter(name, map.linear ? transposed(data, shape[0]!, shape[1]!) : data);
        continue;
      }
      const ex = /^layers\.(\d+)\.ffn\.experts\.(gate_proj|up_proj|down_proj)\.weight$/.exec(name)!;
      const [e, r, cols] = want as [number, number, number];
      const all = new Float32Array(e * r * cols);
      for (let k = 0; k < e; k++) {
        const hf = `model.layers.${ex[1]}.block_sparse_moe.experts.${k}.${
          EXPERT_NAMES[ex[2]!]
        }.weight`;
        const t = tensors.get(hf);
        if (!t || t.shape.join() !== [cols, r].join()) {
          throw new CheckpointError(op, `${file}: ${hf} is missing or not [${cols}, ${r}]`);
        }
        all.set(transposed(asF32(t, hf, file), cols, r), k * r * cols);
      }
      model.setParameter(name, all);
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
