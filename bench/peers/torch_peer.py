"""PyTorch CPU peer for bench/native_table.ts: the same kernels and the same model (the parity
reference, tests/parity/reference.py) timed in one process, with the thread count and the BLAS
PyTorch loaded stated in the output.

Usage: /usr/bin/python3 bench/peers/torch_peer.py SPEC.json OUT.json
SPEC: {"threads": 2, "kernels": true, "train": [{"name": "s", "dir": "/tmp/x", "steps": 4}]}
where each train dir holds weights.safetensors + config.json as the parity test writes them.
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "parity"))
import reference  # noqa: E402


def fast_topk_mask(x, k):
    # The eager formulation a PyTorch user would write (torch.topk), not the reference's stable
    # sort: the peer gets its fastest path. Ties may break differently; speed is what is compared.
    idx = torch.topk(x.abs(), k, dim=-1, sorted=False).indices
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, idx, True)


def timed(fn, reps=7, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def blas_info():
    cfg = torch.__config__.show()
    lines = [l.strip() for l in cfg.splitlines() if "BLAS" in l or "LAPACK" in l]
    try:
        import ctypes

        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        lines.append("runtime: " + lib.openblas_get_config().decode())
    except OSError:
        lines.append("runtime: libopenblas.so.0 not loadable")
    return "; ".join(lines)


def kernels():
    out = {}
    g = torch.Generator().manual_seed(1)
    for n in (256, 1024):
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        ms = timed(lambda: torch.mm(a, b))
        out[f"matmul {n}^3"] = {"ms": ms, "gflops": 2 * n**3 / ms / 1e6}
    x = torch.randn(1, 4096, generator=g)
    w = torch.randn(4096, 4096, generator=g)
    ms = timed(lambda: torch.mm(x, w), reps=15)
    out["gemv 4096^2"] = {"ms": ms, "gbps": 4096 * 4096 * 4 / ms / 1e6}
    xt = torch.randn(256, 4096, generator=g)
    out["topk 256x4096 k=1638"] = {"ms": timed(lambda: torch.topk(xt.abs(), 1638, dim=-1, sorted=False))}
    return out


def train(case):
    d = case["dir"]
    with open(f"{d}/config.json") as f:
        meta = json.load(f)
    cfg = meta["model"]
    raw = reference.read_safetensors(f"{d}/weights.safetensors")
    ids = torch.from_numpy(raw.pop("batch.ids").astype("int64"))
    targets = torch.from_numpy(raw.pop("batch.targets").astype("int64"))
    p = {k: torch.from_numpy(v.astype("float32")).requires_grad_(True) for k, v in raw.items()}
    opt = torch.optim.AdamW(list(p.values()), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = reference.forward(p, ids, targets, cfg)
        loss.backward()
        opt.step()

    ms = timed(step, reps=case.get("steps", 4), warmup=1)
    tokens = ids.numel()
    return {"name": case["name"], "sparsity": case.get("sparsity", 0), "stepMs": ms,
            "tokensPerSecond": tokens / (ms / 1000)}


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    reference.topk_mask = fast_topk_mask
    torch.set_grad_enabled(True)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas_info()}
    if spec.get("kernels"):
        with torch.no_grad():
            out["kernels"] = kernels()
    out["train"] = [train(c) for c in spec.get("train", [])]
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
