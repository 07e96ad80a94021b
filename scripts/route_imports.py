#!/usr/bin/env python3
"""Routes imports of the kit's public names to the entry point that exports each one.

The kit has several entry points (deno.json "exports"): "." (mod.ts), "./nn", "./train", "./plot",
"./studies". When a name moves between them, every consumer must change its import. This script
rewrites, in place:

- imports of an entry file by relative path (`from "../mod.ts"`, `from "../src/nn/mod.ts"`, ...)
  in tests/, examples/, bench/ and the notebooks' code cells: each name goes to the entry that
  exports it, or (tests and bench only) to the file that declares it when no entry does;
- `import { ... } from "@qsparse/kit..."` lines of the JSDoc @example blocks in mod.ts, src/,
  studies/ and kernels/: each name goes to its subpath; a name no entry exports is imported from
  its declaring file by a path relative to the documented file (examples of internals stay
  runnable under `deno test --doc`).

Usage: python3 scripts/route_imports.py [--check]  (--check: report what would change, exit 1 if
anything would). Run it from the repository root, then `deno fmt`.
"""
import json
import os
import re
import sys

ROOT = os.getcwd()
# Entry points in priority order (a name exported by two goes to the first).
ENTRIES = [
    (".", "mod.ts"),
    ("./nn", "src/nn/mod.ts"),
    ("./train", "src/train/mod.ts"),
    ("./plot", "src/plot/mod.ts"),
    ("./studies", "studies/mod.ts"),
]
PACKAGE = "@qsparse/kit"
DECL_RE = re.compile(
    r"^export\s+(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"
    r"(function\*?|class|const|let|var|interface|type|enum)\s+([A-Za-z_$][\w$]*)",
    re.M,
)
REEXPORT_RE = re.compile(r"^export\s+(type\s+)?\{([^}]*)\}\s*from\s*\"([^\"]+)\"", re.M)
STAR_RE = re.compile(r"^export\s+(type\s+)?\*\s+from\s*\"([^\"]+)\"", re.M)
LOCAL_EXPORT_RE = re.compile(r"^export\s*\{([^}]*)\}\s*;", re.M)
IMPORT_RE = re.compile(r"import\s+(type\s+)?\{([^}]*)\}\s*from\s*\"([^\"]+)\";?")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def norm(path):
    return os.path.normpath(path).replace(os.sep, "/")


def declared(path):
    """Names declared with `export` in a file: name -> is_type."""
    out = {}
    src = read(path)
    for m in DECL_RE.finditer(src):
        out[m.group(2)] = m.group(1) in ("interface", "type")
    for m in LOCAL_EXPORT_RE.finditer(src):  # export { a as b };
        for part in m.group(1).split(","):
            part = part.strip()
            if part:
                out[part.split(" as ")[-1].strip()] = part.startswith("type ")
    return out


def entry_names(path, seen=None):
    """Names an entry (or re-exporting file) exports: name -> is_type."""
    seen = seen or set()
    if path in seen or not os.path.exists(os.path.join(ROOT, path)):
        return {}
    seen.add(path)
    src = read(path)
    out = dict(declared(path))
    here = os.path.dirname(path)
    for m in REEXPORT_RE.finditer(src):
        whole_type = m.group(1) is not None
        for part in m.group(2).split(","):
            part = part.strip()
            if not part:
                continue
            is_type = whole_type or part.startswith("type ")
            part = part.removeprefix("type ").strip()
            name = part.split(" as ")[-1].strip()
            out[name] = is_type
    for m in STAR_RE.finditer(src):
        target = norm(os.path.join(here, m.group(2)))
        for name, is_type in entry_names(target, seen).items():
            out.setdefault(name, is_type or m.group(1) is not None)
    return out


def source_files(dirs):
    for d in dirs:
        full = os.path.join(ROOT, d)
        if os.path.isfile(full):
            yield d
            continue
        for dp, dns, fns in os.walk(full):
            dns[:] = [x for x in dns if not x.startswith(".")]
            for fn in fns:
                if fn.endswith(".ts") and not fn.endswith("_test.ts"):
                    yield norm(os.path.relpath(os.path.join(dp, fn), ROOT))


ROUTE = {}  # name -> subpath
for sub, path in ENTRIES:
    for name in entry_names(path):
        ROUTE.setdefault(name, sub)
ENTRY_FILES = {path: sub for sub, path in ENTRIES}
DECLARED = {}  # name -> declaring file (internals only need this)
for f in source_files(["src", "kernels", "studies"]):
    if f in ENTRY_FILES:
        continue
    for name in declared(f):
        DECLARED.setdefault(name, f)


def parse_names(clause, whole_type):
    names = []
    for part in clause.split(","):
        part = " ".join(part.split())
        if not part:
            continue
        is_type = whole_type or part.startswith("type ")
        names.append((part.removeprefix("type ").strip(), is_type))
    return names


def fmt_import(names, spec, prefix, width=100):
    """One import statement, wrapped deno-fmt style when it is too long."""
    all_type = all(t for _, t in names)
    key = lambda nt: nt[0].split(" as ")[0].lower()
    items = [n if all_type or not t else f"type {n}" for n, t in sorted(names, key=key)]
    head = "import type " if all_type else "import "
    line = f"{head}{{ {', '.join(items)} }} from \"{spec}\";"
    if len(prefix) + len(line) <= width:
        return [line]
    return [f"{head}{{"] + [f"  {i}," for i in items] + [f"}} from \"{spec}\";"]


def route(names, where, to_spec, allow_internal, problems):
    """Groups names by target specifier, in entry order, internals last."""
    groups = {}
    for name, is_type in names:
        base = name.split(" as ")[0].strip()
        sub = ROUTE.get(base)
        if sub is not None:
            spec = to_spec(sub, None)
        elif base in DECLARED and allow_internal:
            spec = to_spec(None, DECLARED[base])
        else:
            problems.append(f"{where}: {base} is exported by no entry point")
            spec = to_spec(None, DECLARED[base]) if base in DECLARED else to_spec(".", None)
        groups.setdefault(spec, []).append((name, is_type))
    order = [to_spec(sub, None) for sub, _ in ENTRIES]
    return sorted(groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)


def relative(from_file, target):
    r = norm(os.path.relpath(os.path.join(ROOT, target), os.path.dirname(os.path.join(ROOT, from_file))))
    return r if r.startswith(".") else "./" + r


def rewrite_code(path, src, allow_internal, problems):
    """Splits relative imports of entry files in a consumer's code."""
    here = os.path.dirname(path)

    def to_spec(sub, file):
        if sub is not None:
            return relative(path, dict(ENTRIES)[sub])
        return relative(path, file)

    def sub(m):
        target = norm(os.path.join(here, m.group(3)))
        if target not in ENTRY_FILES:
            return m.group(0)
        names = parse_names(m.group(2), m.group(1) is not None)
        groups = route(names, f"{path}: import from {m.group(3)}", to_spec, allow_internal, problems)
        if len(groups) == 1 and groups[0][0] == m.group(3):
            return m.group(0)  # already routed: keep the author's order and layout
        indent = ""
        lines = []
        for spec, ns in groups:
            lines += fmt_import(ns, spec, indent)
        return "\n".join(lines)

    return IMPORT_RE.sub(sub, src)


DOC_IMPORT_RE = re.compile(
    r"^(?P<pre>[ \t]*\*[ \t]?)import\s+(?P<type>type\s+)?\{(?P<names>[^}\n]*)\}\s*from\s*"
    r"\"(?P<spec>@qsparse/kit(?:/[a-z]+)?)\";?[ \t]*$",
    re.M,
)
DOC_MULTI_RE = re.compile(
    r"^(?P<pre>[ \t]*\*[ \t]?)import\s+(?P<type>type\s+)?\{[ \t]*\n(?P<body>(?:[ \t]*\*[^\n]*\n)*?)"
    r"[ \t]*\*[ \t]?\}\s*from\s*\"(?P<spec>@qsparse/kit(?:/[a-z]+)?)\";?[ \t]*$",
    re.M,
)


def rewrite_docs(path, src, problems):
    """Routes the JSDoc example imports of `@qsparse/kit` to the right subpath."""

    def to_spec(sub, file):
        if sub is not None:
            return PACKAGE if sub == "." else PACKAGE + sub[1:]
        return relative(path, file)

    def emit(pre, names, whole_type, where, original=None, spec=None):
        groups = route(parse_names(names, whole_type), where, to_spec, True, problems)
        if original is not None and len(groups) == 1 and groups[0][0] == spec:
            return original  # already routed: keep the author's order and layout
        lines = []
        for spec, ns in groups:
            lines += [pre + l for l in fmt_import(ns, spec, pre)]
        return "\n".join(lines)

    def one(m):
        return emit(m.group("pre"), m.group("names"), m.group("type") is not None, path,
                    m.group(0), m.group("spec"))

    def multi(m):
        body = "\n".join(re.sub(r"^[ \t]*\*[ \t]?", "", l) for l in m.group("body").splitlines())
        return emit(m.group("pre"), body, m.group("type") is not None, path, m.group(0),
                    m.group("spec"))

    return DOC_IMPORT_RE.sub(one, DOC_MULTI_RE.sub(multi, src))


def notebook(path, problems):
    nb = json.loads(read(path))
    changed = False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        out = rewrite_code(path, src, False, problems)
        if out != src:
            lines = out.split("\n")
            cell["source"] = [l + "\n" for l in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
            changed = True
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n" if changed else None


def main():
    check = "--check" in sys.argv
    problems = []
    changed = []
    consumers = []
    for d in ["tests", "examples", "bench"]:
        for dp, dns, fns in os.walk(os.path.join(ROOT, d)):
            for fn in fns:
                if fn.endswith(".ts"):
                    consumers.append(norm(os.path.relpath(os.path.join(dp, fn), ROOT)))
    for f in sorted(consumers):
        src = read(f)
        out = rewrite_code(f, src, not f.startswith("examples/"), problems)
        if out != src:
            changed.append(f)
            if not check:
                open(os.path.join(ROOT, f), "w", encoding="utf-8").write(out)
    for f in sorted(source_files(["mod.ts", "cli.ts", "src", "studies", "kernels"])):
        src = read(f)
        out = rewrite_docs(f, src, problems)
        if out != src:
            changed.append(f)
            if not check:
                open(os.path.join(ROOT, f), "w", encoding="utf-8").write(out)
    nbdir = os.path.join(ROOT, "notebooks")
    for fn in sorted(os.listdir(nbdir)) if os.path.isdir(nbdir) else []:
        if fn.endswith(".ipynb"):
            f = "notebooks/" + fn
            out = notebook(f, problems)
            if out is not None:
                changed.append(f)
                if not check:
                    open(os.path.join(ROOT, f), "w", encoding="utf-8").write(out)
    for p in problems:
        print("problem:", p, file=sys.stderr)
    print(f"{len(changed)} files {'would change' if check else 'changed'}", file=sys.stderr)
    for f in changed:
        print(f)
    sys.exit(1 if (check and changed) or problems else 0)


if __name__ == "__main__":
    main()
