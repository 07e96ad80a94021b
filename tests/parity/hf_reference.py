#!/usr/bin/env python3
"""Llama-style folders and PyTorch, for the interop test (tests/hf_test.ts).

Usage:
  hf_reference.py logits DIR   DIR holds config.json + model.safetensors (HF names, [out, in])
                               and ids.json ([B][T] token ids); writes DIR/logits.safetensors
                               with the logits of the PyTorch reference (reference.py's
                               semantics: RoPE, RMSNorm, Q-Sparse sites, BitNet).
  hf_reference.py write DIR    writes a dense SwiGLU Llama folder from PyTorch's own random
                               initialisation (no Q-Sparse fields), ids.json and the logits.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402


def kit_config(j):
    q = j.get("qsparse", {})
    sp = q.get("sparsity", 0)
    if not isinstance(sp, dict):
        sp = {s: sp for s in ("qkv", "o", "gateUp", "down")}
    return {
        "dModel": j["hidden_size"],
        "nHeads": j["num_attention_heads"],
        "nLayers": j["num_hidden_layers"],
        "vocab": j["vocab_size"],
        "ffn": "swiglu" if j.get("hidden_act", "silu") == "silu" else "relu2glu",
        "sparsity": sp,
        "block": q.get("block"),
        "sparsifier": q.get("sparsifier", "topk"),
        "ste": q.get("ste", True),
        "rescale": q.get("rescale", False),
        "bitnet": q.get("bitnet", False),
        "normEps": j.get("rms_norm_eps", 1e-6),
        "ropeTheta": j.get("rope_theta", 10000.0),
    }


def kit_params(hf):
    """HF names, [out, in] -> the reference's kit names, [in, out]."""
    p = {}
    for name, a in hf.items():
        t = torch.from_numpy(a.astype(np.float32))
        if name == "model.embed_tokens.weight":
            p["embed.weight"] = t
        elif name == "model.norm.weight":
            p["norm.weight"] = t
        elif name == "lm_head.weight":
            p["lm_head.weight"] = t.t().contiguous()
        else:
            parts = name.split(".")  # model.layers.N.<module>.<proj>.weight
            i, mod, proj = parts[2], parts[3], parts[4]
            pre = f"layers.{i}"
            if mod == "input_layernorm":
                p[f"{pre}.attn_norm.weight"] = t
            elif mod == "post_attention_layernorm":
                p[f"{pre}.ffn_norm.weight"] = t
            elif mod == "self_attn":
                p[f"{pre}.attn.{proj}.weight"] = t.t().contiguous()
            elif mod == "mlp":
                p[f"{pre}.ffn.{proj}.weight"] = t.t().contiguous()
            else:
                raise ValueError(f"unexpected tensor {name}")
    return p


def logits_of(p, ids, cfg):
    """reference.forward up to the logits (dense FFN)."""
    d, nh = cfg["dModel"], cfg["nHeads"]
    hd = d // nh
    sp = cfg["sparsity"]
    x = F.embedding(ids, p["embed.weight"])
    b, t = ids.shape
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    for i in range(cfg["nLayers"]):
        pre = f"layers.{i}"
        h = R.rms_norm(x, p[f"{pre}.attn_norm.weight"], cfg["normEps"])
        xs = R.site(h, sp["qkv"], cfg)
        q = (xs @ R.weight(p, f"{pre}.attn.q_proj.weight", cfg)).view(b, t, nh, hd)
        k = (xs @ R.weight(p, f"{pre}.attn.k_proj.weight", cfg)).view(b, t, nh, hd)
        v = (xs @ R.weight(p, f"{pre}.attn.v_proj.weight", cfg)).view(b, t, nh, hd)
        q = R.rope(q, cfg["ropeTheta"]).permute(0, 2, 1, 3)
        k = R.rope(k, cfg["ropeTheta"]).permute(0, 2, 1, 3)
        v = v.permute(0, 2, 1, 3)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / (hd ** 0.5))
        scores = scores.masked_fill(~causal, float("-inf"))
        ctx = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(b, t, d)
        x = x + R.site(ctx, sp["o"], cfg) @ R.weight(p, f"{pre}.attn.o_proj.weight", cfg)
        h = R.rms_norm(x, p[f"{pre}.ffn_norm.weight"], cfg["normEps"])
        u = R.site(h, sp["gateUp"], cfg)
        g = u @ R.weight(p, f"{pre}.ffn.gate_proj.weight", cfg)
        act = F.relu(g).pow(2) if cfg["ffn"] == "relu2glu" else F.silu(g)
        hh = (u @ R.weight(p, f"{pre}.ffn.up_proj.weight", cfg)) * act
        x = x + R.site(hh, sp["down"], cfg) @ R.weight(p, f"{pre}.ffn.down_proj.weight", cfg)
    x = R.rms_norm(x, p["norm.weight"], cfg["normEps"])
    return x @ p["lm_head.weight"]


def run_logits(d):
    with open(f"{d}/config.json") as f:
        j = json.load(f)
    with open(f"{d}/ids.json") as f:
        ids = torch.tensor(json.load(f), dtype=torch.int64)
    cfg = kit_config(j)
    # In float64: the kit's CPU twin rounds each op's f64 result to f32, so an f64 reference is
    # the one closest to it on every machine. An f32 one ran on whatever kernels PyTorch picks
    # for the CPU (AVX-512 or not), and a 1-ulp change there can flip a near-tie of a top-K mask
    # or an int8 rounding: on an AMD EPYC (2026-12-01) the BitNet Q-Sparse logits then differed
    # by O(1) while the f64 reference agreed to 1e-4.
    p = {k: v.double() for k, v in kit_params(R.read_safetensors(f"{d}/model.safetensors")).items()}
    with torch.no_grad():
        y = logits_of(p, ids, cfg)
    R.write_safetensors(f"{d}/logits.safetensors", {"logits": y.float().numpy()})


def run_write(d):
    torch.manual_seed(0)
    dm, nh, nl, ff, v = 32, 2, 2, 64, 64
    j = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": v,
        "hidden_size": dm,
        "intermediate_size": ff,
        "num_hidden_layers": nl,
        "num_attention_heads": nh,
        "num_key_value_heads": nh,
        "hidden_act": "silu",
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }
    hf = {
        "model.embed_tokens.weight": torch.randn(v, dm),
        "model.norm.weight": 1 + 0.1 * torch.randn(dm),
        "lm_head.weight": 0.2 * torch.randn(v, dm),
    }
    for i in range(nl):
        pre = f"model.layers.{i}"
        hf[f"{pre}.input_layernorm.weight"] = 1 + 0.1 * torch.randn(dm)
        hf[f"{pre}.post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(dm)
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            hf[f"{pre}.self_attn.{n}.weight"] = 0.2 * torch.randn(dm, dm)
        hf[f"{pre}.mlp.gate_proj.weight"] = 0.2 * torch.randn(ff, dm)
        hf[f"{pre}.mlp.up_proj.weight"] = 0.2 * torch.randn(ff, dm)
        hf[f"{pre}.mlp.down_proj.weight"] = 0.2 * torch.randn(dm, ff)
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/config.json", "w") as f:
        json.dump(j, f)
    R.write_safetensors(f"{d}/model.safetensors", {k: t.numpy() for k, t in hf.items()})
    with open(f"{d}/ids.json", "w") as f:
        json.dump([[(i * 7 + 3) % v for i in range(12)], [(i * 11 + 1) % v for i in range(12)]], f)
    run_logits(d)


if __name__ == "__main__":
    {"logits": run_logits, "write": run_write}[sys.argv[1]](sys.argv[2])
