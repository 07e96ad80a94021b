#!/usr/bin/env python3
"""Turn an executed full-profile notebook into the committed one.

  finalize_render.py EXECUTED COMMITTED

The committed notebook keeps its own source (the `parameters` cell still defaults to the smoke
profile, so CI runs it cheaply) and takes the executed notebook's outputs: markdown tables, text
and static PNG figures. The run_notebook.py injected-parameters cell is dropped, execution
timings are removed (they only make diffs noisy), and `metadata.qsparse.rendered` records the
profile and date. Refuses (exit 1) when an output still carries a plotly bundle or script: the
committed notebooks must show as a report in any viewer without a 4.8 MB bundle inlined.
"""
import datetime
import json
import sys

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def main():
    executed_path, committed_path = sys.argv[1], sys.argv[2]
    executed = json.load(open(executed_path))
    committed = json.load(open(committed_path))
    cells = [c for c in executed["cells"]
             if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if len(cells) != len(committed["cells"]):
        sys.exit(f"{executed_path}: {len(cells)} cells, {committed_path} has {len(committed['cells'])}")
    for src, dst in zip(cells, committed["cells"]):
        if dst["cell_type"] != "code":
            continue
        outputs = src.get("outputs", [])
        for o in outputs:
            data = o.get("data", {})
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            if PLOTLY_MIME in data or "Plotly.newPlot" in html or "plotly" in html.lower():
                sys.exit(f"{executed_path}: an output carries plotly (render with QSPARSE_STATIC_FIGURES=1)")
            o.get("metadata", {}).pop("execution", None)
        dst["outputs"] = outputs
        dst["execution_count"] = src.get("execution_count")
        dst.get("metadata", {}).pop("execution", None)
    committed.setdefault("metadata", {}).setdefault("qsparse", {})["rendered"] = {
        "profile": "full",
        "by": "scripts/render_full.sh",
        "date": datetime.date.today().isoformat(),
    }
    for key in ("kernelspec", "language_info"):
        if key in executed.get("metadata", {}):
            committed["metadata"][key] = executed["metadata"][key]
    with open(committed_path, "w") as f:
        f.write(json.dumps(committed, indent=1, ensure_ascii=False) + "\n")
    figures = sum(1 for c in committed["cells"] for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {}))
    print(f"{committed_path}: outputs from {executed_path} ({figures} PNG figures)")


if __name__ == "__main__":
    main()
