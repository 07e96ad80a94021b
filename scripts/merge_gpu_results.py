#!/usr/bin/env python3
"""Merges results brought back from a GPU machine into results/.

Usage: python3 scripts/merge_gpu_results.py DIR [DIR ...]   (each DIR holds an unpacked
results.tgz of scripts/gpu_runs.sh, i.e. DIR/results/*.jsonl and DIR/results/h200/).

A record is added when its (study, id) is not in the local file yet; the local record wins (runs
are deterministic per adapter, and a run re-recorded on a warm machine is the same run). In the
sparsity-vs-loss grid, a (size, seed) whose S grid did not finish before the lease ran out is kept
aside in results/h200/sparsity_vs_loss_<size>.jsonl, so the notebooks never read a size with half
a sparsity sweep as the largest one. Files are replaced atomically.
"""
import json
import os
import shutil
import sys
from collections import defaultdict

GRID_S = 7  # len(SPARSITIES) in studies/studies.ts


def lines(path):
    return [l for l in open(path) if l.strip()] if os.path.exists(path) else []


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(rows)
    os.replace(tmp, path)


def main(dirs):
    os.makedirs("results/h200", exist_ok=True)
    names = sorted({n for d in dirs for n in os.listdir(f"{d}/results") if n.endswith(".jsonl")})
    for name in names:
        path = f"results/{name}"
        local = lines(path)
        have = {(json.loads(l)["study"], json.loads(l)["id"]) for l in local}
        new = []
        for d in dirs:
            for l in lines(f"{d}/results/{name}"):
                r = json.loads(l)
                if (r["study"], r["id"]) not in have:
                    have.add((r["study"], r["id"]))
                    new.append(l)
        aside = defaultdict(list)
        if name == "sparsity_vs_loss.jsonl":
            count = defaultdict(set)
            for l in local + new:
                r = json.loads(l)
                count[(r["tags"]["size"], r["tags"]["seed"])].add(r["tags"]["S"])
            for l in list(new):
                t = json.loads(l)["tags"]
                if len(count[(t["size"], t["seed"])]) < GRID_S:
                    aside[t["size"]].append(l)
                    new.remove(l)
        write(path, local + new)
        print(f"{name}: {len(new)} added" + "".join(f", {len(v)} of {k} kept aside" for k, v in aside.items()))
        for size, rows in aside.items():
            side = f"results/h200/sparsity_vs_loss_{size}.jsonl"
            old = lines(side)
            ids = {json.loads(l)["id"] for l in old}
            write(side, old + [l for l in rows if json.loads(l)["id"] not in ids])
    for d in dirs:  # the benches and the cross-adapter check: the latest call's copy wins
        src = f"{d}/results/h200"
        if os.path.isdir(src):
            shutil.copytree(src, "results/h200", dirs_exist_ok=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
