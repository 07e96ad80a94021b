/**
 * The notebooks under real Jupyter: each runs headless with the Deno kernel in the smoke
 * profile (tests/notebooks/run_notebook.py: nbclient, fail on any cell error, fail when its
 * figures are missing), and their code type-checks (`jupyter nbconvert --to script`, then
 * `deno check`: cells are not type-checked when they run).
 *
 * Needs Debian's jupyter-nbconvert, python3-nbclient, jupyter-client, python3-ipykernel and the
 * Deno kernelspec (`deno jupyter --install`). Without them these tests are skipped with a
 * message, unless QSPARSE_REQUIRE_JUPYTER=1 (CI), which makes a missing piece a failure.
 * QSPARSE_NOTEBOOKS=02,04 runs only the notebooks whose names start with those prefixes.
 */
import assert from "node:assert/strict";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const RUNNER = `${ROOT}/tests/notebooks/run_notebook.py`;
const REQUIRE = Deno.env.get("QSPARSE_REQUIRE_JUPYTER") === "1";
// Debian's python has the Debian Jupyter packages; a pyenv python on PATH usually does not.
const PYTHON = await Deno.stat("/usr/bin/python3").then(() => "/usr/bin/python3", () => "python3");

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      cwd: opts.cwd ?? ROOT,
      env: opts.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return { code: 127, stdout: "", stderr: `${cmd}: not found` };
    }
    throw e;
  }
}

/** Why notebooks cannot run here, or null when everything is installed. */
async function missingJupyter(): Promise<string | null> {
  const py = await run(PYTHON, ["-c", "import nbclient, nbformat, nbconvert, jupyter_client"]);
  if (py.code !== 0) {
    return `${PYTHON} cannot import nbclient/nbformat/nbconvert/jupyter_client (apt-get install ` +
      `jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel)`;
  }
  const specs = await run("jupyter", ["kernelspec", "list", "--json"]);
  if (specs.code !== 0) return "`jupyter kernelspec list` failed (is jupyter-client installed?)";
  try {
    if (!JSON.parse(specs.stdout).kernelspecs?.deno) {
      return "no Deno kernelspec (run `deno jupyter --install`)";
    }
  } catch {
    return "`jupyter kernelspec list --json` printed no JSON";
  }
  return null;
}

async function notebooks(): Promise<string[]> {
  const only = Deno.env.get("QSPARSE_NOTEBOOKS")?.split(",").map((s) => s.trim()).filter(Boolean);
  const names: string[] = [];
  for await (const e of Deno.readDir(`${ROOT}/notebooks`)) {
    if (e.isFile && e.name.endsWith(".ipynb")) names.push(e.name);
  }
  return names.sort().filter((n) => !only || only.some((p) => n.startsWith(p)));
}

/**
 * Runs `fn` with the environment of a kernel: Mesa wants a private runtime dir, or it complains
 * on stderr. A temporary one is made (and removed) when the caller has none.
 */
async function withKernelEnv<T>(fn: (env: Record<string, string>) => Promise<T>): Promise<T> {
  if (Deno.env.get("XDG_RUNTIME_DIR")) return await fn({});
  const dir = await Deno.makeTempDir({ prefix: "qsparse-xdg-" });
  try {
    await Deno.chmod(dir, 0o700);
    return await fn({ XDG_RUNTIME_DIR: dir });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const missing = await missingJupyter();
const NOTEBOOKS = await notebooks();

if (missing && !REQUIRE) {
  console.warn(`notebooks: skipped, ${missing} (set QSPARSE_REQUIRE_JUPYTER=1 to fail instead)`);
}

Deno.test({
  name: "notebooks: Jupyter and the Deno kernel are installed",
  ignore: !REQUIRE && missing !== null,
  fn() {
    assert.equal(missing, null, `QSPARSE_REQUIRE_JUPYTER=1 but ${missing}`);
    assert.ok(NOTEBOOKS.length > 0, "no notebooks found under notebooks/");
  },
});

Deno.test({
  name: "notebooks: code type-checks (nbconvert --to script, deno check)",
  ignore: missing !== null || NOTEBOOKS.length === 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qsparse-nbcheck-" });
    try {
      const conv = await run("jupyter", [
        "nbconvert",
        "--to",
        "script",
        "--output-dir",
        dir,
        ...NOTEBOOKS.map((n) => `notebooks/${n}`),
      ]);
      assert.equal(conv.code, 0, `nbconvert failed:\n${conv.stderr}`);
      const scripts: string[] = [];
      for (const n of NOTEBOOKS) {
        const path = `${dir}/${n.replace(/\.ipynb$/, ".ts")}`;
        // The scripts live in a temp dir; point their `../` imports back at the repository, as
        // they resolve from notebooks/ when the kernel runs them.
        const src = await Deno.readTextFile(path);
        await Deno.writeTextFile(
          path,
          src.replace(/(from\s+|import\s*\(\s*)(["'])\.\.\//g, `$1$2file://${ROOT}/`),
        );
        scripts.push(path);
      }
      const check = await run(Deno.execPath(), [
        "check",
        "--config",
        `${ROOT}/deno.json`,
        ...scripts,
      ]);
      assert.equal(
        check.code,
        0,
        `deno check of the notebooks' code failed:\n${check.stdout}\n${check.stderr}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const nb of NOTEBOOKS) {
  Deno.test({
    name: `notebook ${nb} runs under Jupyter in the smoke profile`,
    ignore: missing !== null,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "qsparse-nbrun-" });
      try {
        const out = `${dir}/${nb}`;
        const r = await withKernelEnv((env) =>
          run(PYTHON, [
            RUNNER,
            `notebooks/${nb}`,
            out,
            "--param",
            "profile=smoke",
            "--timeout",
            "900",
          ], { env })
        );
        const summary = r.stdout.trim().split("\n").at(-1) ?? "";
        console.log(summary);
        assert.equal(
          r.code,
          0,
          `${nb} failed (executed copy: ${out}):\n${r.stderr.split("\n").slice(-40).join("\n")}`,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "notebook runner: a cell error or missing figures fail the run; parameters are injected",
  ignore: missing !== null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qsparse-nbrunner-" });
    try {
      const notebook = (cells: { source: string; tags?: string[] }[], expected: number) =>
        JSON.stringify({
          nbformat: 4,
          nbformat_minor: 5,
          metadata: {
            kernelspec: { name: "deno", display_name: "Deno", language: "typescript" },
            qsparse: { expected_figures: expected },
          },
          cells: cells.map((c, i) => ({
            id: `c${i}`,
            cell_type: "code",
            metadata: c.tags ? { tags: c.tags } : {},
            execution_count: null,
            outputs: [],
            source: c.source,
          })),
        });
      const params = {
        source: 'const profile: string = "full";\nconst other = 7;',
        tags: ["parameters"],
      };
      const check = {
        source:
          'if (profile !== "smoke" || other !== 7) throw new Error(`got ${profile} ${other}`);',
      };
      const cases: [string, string, boolean][] = [
        ["ok", notebook([params, check], 0), true],
        ["error", notebook([params, { source: 'throw new Error("boom");' }], 0), false],
        ["nofig", notebook([params, check], 1), false],
      ];
      await withKernelEnv(async (env) => {
        for (const [name, text, ok] of cases) {
          await Deno.writeTextFile(`${dir}/${name}.ipynb`, text);
          const r = await run(PYTHON, [
            RUNNER,
            `${dir}/${name}.ipynb`,
            `${dir}/${name}.out.ipynb`,
            "--param",
            "profile=smoke",
            "--timeout",
            "120",
          ], { env });
          assert.equal(r.code === 0, ok, `${name}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
          if (name === "error") assert.match(r.stderr, /boom/);
          if (name === "nofig") assert.match(r.stderr, /0 figure\(s\), expected at least 1/);
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
