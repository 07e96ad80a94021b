#!/usr/bin/env python3
"""Execute a Deno-kernel notebook headless, papermill-style (papermill is not in Debian and has
no TypeScript translator).

  run_notebook.py NOTEBOOK OUT [--param NAME=JSON]... [--timeout S] [--kernel deno]
                  [--min-figures N]

- In the code cell tagged `parameters`, the declarations of the injected names are commented
  out (one declaration per line), and a cell tagged `injected-parameters` with
  `const NAME = <JSON>;` lines is inserted after it. The parameters cell keeps its other
  defaults, and each name is declared once, as a type-checked script needs.
- The notebook runs with nbclient in its own folder (the kernel's cwd), so `../mod.ts` imports
  and `../results` paths resolve as they do interactively.
- Any cell error fails the run (exit 1); the executed notebook is written to OUT either way.
- Figures are display outputs carrying a plotly bundle (`application/vnd.plotly.v1+json`, or
  the kit's HTML fragment) or a static PNG. The run fails when there are fewer than `--min-figures`, or than the
  notebook's own `metadata.qsparse.expected_figures`, so a notebook whose figures silently
  vanished (e.g. outputs dropped after the kernel went idle) does not pass.
- A JSON summary (cells, seconds, figures, the slowest cells) is printed on the last line.
"""
import argparse
import json
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def inject_parameters(nb, params):
    """Comment out the `parameters` cell and insert the injected values after it."""
    index = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            index = i
            break
    if not params:
        return
    lines = [f"const {name} = {json.dumps(value)};" for name, value in params.items()]
    injected = nbformat.v4.new_code_cell(
        "// Injected by tests/notebooks/run_notebook.py\n" + "\n".join(lines),
        metadata={"tags": ["injected-parameters"]},
    )
    if index is None:
        nb.cells.insert(0, injected)
        return
    cell = nb.cells[index]
    # Only the declarations being overridden are commented out (one declaration per line, as
    # the notebooks write their parameters); the other defaults stay in force.
    declares = re.compile(r"^\s*(?:const|let|var)\s+(%s)\b" % "|".join(map(re.escape, params)))
    cell.source = "\n".join(
        "// " + line if declares.match(line) else line for line in cell.source.split("\n")
    )
    nb.cells.insert(index + 1, injected)


def is_figure(output):
    if output.get("output_type") not in ("display_data", "execute_result"):
        return False
    data = output.get("data", {})
    # Interactive plotly, or a static PNG (QSPARSE_STATIC_FIGURES=1, as render_full.sh runs).
    if PLOTLY_MIME in data or "image/png" in data:
        return True
    html = data.get("text/html", "")
    if isinstance(html, list):
        html = "".join(html)
    return "qsparse-plot" in html or "Plotly.newPlot" in html


def cell_seconds(cell):
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    from datetime import datetime

    def parse(ts):
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("out")
    ap.add_argument("--param", action="append", default=[], help="NAME=JSON (a bare word is a string)")
    ap.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    ap.add_argument("--kernel", default="deno")
    ap.add_argument("--min-figures", type=int, default=None)
    args = ap.parse_args()

    params = {}
    for p in args.param:
        name, _, raw = p.partition("=")
        if not name.isidentifier():
            ap.error(f"bad --param {p!r}: want NAME=JSON")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw

    nb = nbformat.read(args.notebook, as_version=4)
    expected = nb.metadata.get("qsparse", {}).get("expected_figures", 0)
    if args.min_figures is not None:
        expected = args.min_figures
    inject_parameters(nb, params)

    folder = os.path.dirname(os.path.abspath(args.notebook))
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name=args.kernel,
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": folder}},
    )
    t0 = time.monotonic()
    error = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        error = str(e)
    seconds = time.monotonic() - t0
    nbformat.write(nb, args.out)

    code = [c for c in nb.cells if c.cell_type == "code"]
    figures = sum(1 for c in code for o in c.get("outputs", []) if is_figure(o))
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    slow = sorted(
        ((cell_seconds(c) or 0.0, i) for i, c in enumerate(nb.cells) if c.cell_type == "code"),
        reverse=True,
    )[:3]
    summary = {
        "notebook": os.path.basename(args.notebook),
        "cells": len(code),
        "seconds": round(seconds, 1),
        "figures": figures,
        "expected_figures": expected,
        "slowest_cells": [{"cell": i, "seconds": round(s, 1)} for s, i in slow],
        "output": args.out,
    }
    failed = False
    if error or errors:
        print(error or "\n".join(
            f"{o.get('ename')}: {o.get('evalue')}" for o in errors
        ), file=sys.stderr)
        failed = True
    if figures < expected:
        print(f"{summary['notebook']}: {figures} figure(s), expected at least {expected}", file=sys.stderr)
        failed = True
    summary["ok"] = not failed
    print(json.dumps(summary))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
