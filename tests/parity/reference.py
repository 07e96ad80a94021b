#!/usr/bin/env python3
"""PyTorch reference of the kit's TransformerLM family, for the parity test.

Usage: reference.py DIR
  DIR/config.json       the kit's ModelConfig
  DIR/weights.safetensors  parameters (kit names, W stored [in, out]) and the batch
                        (`batch.ids`, `batch.targets`, u32 [B, T])
Writes DIR/reference.safetensors with `loss` and `grad.<param name>` for every parameter.

Semantics mirrored from the kit (see the TypeScript sources named in each function):
- RMSNorm y = x / sqrt(mean(x^2) + eps) * w                       (src/ops/rmsnorm.ts)
- RoPE rotate-half with HF inv_freq, angle = f32(pos) * inv_freq   (src/ops/rope.ts)
- Q-Sparse site: top-K by |x| per row (ties -> lower index), or top-n in blocks of m,
  STE (identity gradient) or masked gradient; ReLU sparsifier for the ablation
                                                                   (src/nn/sparsify.ts, src/ops/topk.ts)
- BitNet b1.58: parameter-free RMSNorm -> mask -> int8 absmax per token (STE);
  ternary absmean weights (STE)                                    (src/ops/quant.ts)
- FFN: down(topk(up(u) * act(gate(u)))), act = relu^2 or silu     (src/nn/ffn.ts)
- MoE FFN: router, top-k, capacity, experts, load-balancing + z loss (src/nn/moe.ts)
Computed in float32 like the kit (rounding decisions of the quantisers then match).
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U32": np.uint32}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a : base + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = arr.copy()
    return out


def write_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def rms_norm(x, w, eps):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def topk_mask(x, k):
    # Stable descending sort of |x|: among equal magnitudes the lower index comes first.
    idx = torch.sort(x.abs(), dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def kept(s, width):
    return int(math.floor((1 - s) * width + 1e-9))


def site(x, s, cfg):
    """One Q-Sparse site (src/nn/sparsify.ts)."""
    h = x
    if cfg["bitnet"]:
        h = rms_norm(h, None, cfg["normEps"])
    if s > 0:
        if cfg["sparsifier"] == "relu":
            h = F.relu(h)
        else:
            if cfg["block"] is None:
                mask = topk_mask(h, kept(s, h.shape[-1]))
            else:
                m = cfg["block"]
                hb = h.unflatten(-1, (-1, m))
                mask = topk_mask(hb, kept(s, m)).flatten(-2)
            hs = h * mask
            if cfg["rescale"]:
                norm = h.norm(dim=-1, keepdim=True)
                kn = hs.norm(dim=-1, keepdim=True)
                hs = hs * torch.where(kn > 0, norm / kn.clamp_min(1e-30), torch.ones_like(kn))
            h = h + (hs - h).detach() if cfg["ste"] else hs
    if cfg["bitnet"]:
        h = h + (act_quant(h) - h).detach()
    return h


def act_quant(x):
    """int8 absmax per token (src/ops/quant.ts): x * s rounded and clamped, divided back."""
    gamma = x.abs().amax(dim=-1, keepdim=True)
    scale = 127.0 / (gamma + ACT_EPS)
    return torch.clamp(torch.round(x * scale), -128, 127) / scale


def weight_quant(w):
    """Ternary absmean per tensor (src/ops/quant.ts)."""
    alpha = w.abs().mean()
    q = torch.clamp(torch.round(w / (alpha + WEIGHT_EPS)), -1, 1)
    return q * (alpha + WEIGHT_EPS)


def weight(p, name, cfg):
    w = p[name]
    if cfg["bitnet"] and name != "lm_head.weight":
        return w + (weight_quant(w) - w).detach()
    return w


def rope(x, base):
    # x [B, T, H, hd]
    t, hd = x.shape[1], x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    pos = torch.arange(t, dtype=torch.float32)
    ang = torch.outer(pos, inv)  # [T, hd/2]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
    h = hd // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


def forward(p, ids, targets, cfg):
    d, nh = cfg["dModel"], cfg["nHeads"]
    hd = d // nh
    sp = cfg["sparsity"]
    x = F.embedding(ids, p["embed.weight"])
    b, t = ids.shape
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    aux = torch.zeros(())
    for i in range(cfg["nLayers"]):
        pre = f"layers.{i}"
        h = rms_norm(x, p[f"{pre}.attn_norm.weight"], cfg["normEps"])
        xs = site(h, sp["qkv"], cfg)
        q = (xs @ weight(p, f"{pre}.attn.q_proj.weight", cfg)).view(b, t, nh, hd)
        k = (xs @ weight(p, f"{pre}.attn.k_proj.weight", cfg)).view(b, t, nh, hd)
        v = (xs @ weight(p, f"{pre}.attn.v_proj.weight", cfg)).view(b, t, nh, hd)
        q = rope(q, cfg["ropeTheta"]).permute(0, 2, 1, 3)
        k = rope(k, cfg["ropeTheta"]).permute(0, 2, 1, 3)
        v = v.permute(0, 2, 1, 3)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
        scores = scores.masked_fill(~causal, float("-inf"))
        ctx = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(b, t, d)
        x = x + site(ctx, sp["o"], cfg) @ weight(p, f"{pre}.attn.o_proj.weight", cfg)
        h = rms_norm(x, p[f"{pre}.ffn_norm.weight"], cfg["normEps"])
        if cfg.get("moe"):
            y, a = moe_ffn(h, p, pre, cfg)
            x = x + y
            aux = aux + a
            continue
        u = site(h, sp["gateUp"], cfg)
        g = u @ weight(p, f"{pre}.ffn.gate_proj.weight", cfg)
        act = F.relu(g).pow(2) if cfg["ffn"] == "relu2glu" else F.silu(g)
        hh = (u @ weight(p, f"{pre}.ffn.up_proj.weight", cfg)) * act
        x = x + site(hh, sp["down"], cfg) @ weight(p, f"{pre}.ffn.down_proj.weight", cfg)
    x = rms_norm(x, p["norm.weight"], cfg["normEps"])
    logits = x @ p["lm_head.weight"]
    return F.cross_entropy(logits.reshape(-1, cfg["vocab"]), targets.reshape(-1)) + aux


def expert_weights(p, name, cfg):
    """Stacked expert matrices [E, in, out]; BitNet quantises each expert on its own scale."""
    w = p[name]
    if not cfg["bitnet"]:
        return w
    return torch.stack([we + (weight_quant(we) - we).detach() for we in w.unbind(0)])


def moe_ffn(h, p, pre, cfg):
    """Mixture-of-experts FFN (src/nn/moe.ts): router on the dense input, top-k (ties -> lower
    expert), gates renormalised over the k (default when k > 1), capacity dropping in token
    order, experts on the Q-Sparse-masked input, Switch load-balancing loss + router z-loss."""
    moe, sp = cfg["moe"], cfg["sparsity"]
    n_exp, k = moe["experts"], moe["topK"]
    norm = moe.get("normalizeGates")
    norm = k > 1 if norm is None else norm
    aux_c, z_c = moe.get("auxLossCoef", 0.01), moe.get("zLossCoef", 0.0)
    cf = moe.get("capacityFactor")
    b, t, d = h.shape
    x = h.reshape(-1, d)
    n = x.shape[0]
    logits = x @ p[f"{pre}.ffn.router.weight"]
    probs = logits.softmax(-1)
    idx = torch.sort(probs, dim=-1, descending=True, stable=True).indices[:, :k]
    chosen = probs.gather(1, idx)
    gates = (chosen / chosen.sum(-1, keepdim=True) if norm else chosen).reshape(-1)
    flat = idx.reshape(-1)  # assignment a = token * k + slot
    keep = torch.ones(n * k, dtype=torch.bool)
    if cf is not None:
        cap = max(1, math.ceil(cf * k * n / n_exp - 1e-9))
        seen = [0] * n_exp
        for a in range(n * k):
            e = int(flat[a])
            keep[a] = seen[e] < cap
            seen[e] += 1
    u = site(x, sp["gateUp"], cfg)
    wg = expert_weights(p, f"{pre}.ffn.experts.gate_proj.weight", cfg)
    wu = expert_weights(p, f"{pre}.ffn.experts.up_proj.weight", cfg)
    wd = expert_weights(p, f"{pre}.ffn.experts.down_proj.weight", cfg)
    y = torch.zeros_like(x)
    for e in range(n_exp):
        a = torch.nonzero((flat == e) & keep).reshape(-1)
        if a.numel() == 0:
            continue
        tok = a // k
        ue = u[tok]
        g = ue @ wg[e]
        act = F.relu(g).pow(2) if cfg["ffn"] == "relu2glu" else F.silu(g)
        out = site((ue @ wu[e]) * act, sp["down"], cfg) @ wd[e]
        y = y.index_add(0, tok, gates[a][:, None] * out)
    aux = torch.zeros(())
    if aux_c > 0:
        f = torch.bincount(flat, minlength=n_exp).float() / (n * k)
        aux = aux + aux_c * n_exp * (f * probs.mean(0)).sum()
    if z_c > 0:
        aux = aux + z_c * (torch.logsumexp(logits, -1) ** 2).mean()
    return y.reshape(b, t, d), aux


ACT_EPS = 1e-5
WEIGHT_EPS = 1e-5


def main():
    global ACT_EPS, WEIGHT_EPS
    d = sys.argv[1]
    with open(f"{d}/config.json") as f:
        meta = json.load(f)
    cfg = meta["model"]
    ACT_EPS = meta.get("actEps", ACT_EPS)
    WEIGHT_EPS = meta.get("weightEps", WEIGHT_EPS)
    torch.set_grad_enabled(True)
    raw = read_safetensors(f"{d}/weights.safetensors")
    ids = torch.from_numpy(raw.pop("batch.ids").astype(np.int64))
    targets = torch.from_numpy(raw.pop("batch.targets").astype(np.int64))
    p = {k: torch.from_numpy(v.astype(np.float32)).requires_grad_(True) for k, v in raw.items()}
    loss = forward(p, ids, targets, cfg)
    loss.backward()
    out = {"loss": loss.detach().reshape(1).numpy()}
    for k, v in p.items():
        out[f"grad.{k}"] = v.grad.numpy() if v.grad is not None else np.zeros_like(v.detach().numpy())
    write_safetensors(f"{d}/reference.safetensors", out)


if __name__ == "__main__":
    main()
