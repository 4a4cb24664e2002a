/**
 * `deno task compile`: build the single binary `dist/dvmm` with `deno compile`.
 *
 * Embedded: main.ts and its whole module graph (built-in plugins included),
 * plus the worker modules that are started with `new Worker(new URL(...))`
 * and so are not in the static graph: the vCPU worker, the ioeventfd poller
 * and the plugin sandbox worker ({@linkcode COMPILE_INCLUDES}). Permissions
 * (`-A`) and Deno's worker options (sandboxed plugins) are baked in.
 *
 * Not embedded: the default guest (Debian kernel, generated initramfs). Like
 * a source run, the binary fetches and builds it into the cache
 * (`$DVMM_CACHE_DIR`, default `~/.cache/dvmm`) on first use; copy that cache
 * to machines without network.
 *
 * `deno compile` needs the `denort` runtime of the same Deno version; it is
 * normally downloaded, which this environment cannot do. Point `DENORT_BIN`
 * at a `denort` 2.9.6 binary (x86_64-unknown-linux-gnu); without it the
 * script stops with a clear message instead of trying the network.
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** The entry module, relative to the repository root. */
export const COMPILE_ENTRY = "main.ts";

/** Modules loaded as workers (not in main.ts's static graph), relative to the root. */
export const COMPILE_INCLUDES: readonly string[] = [
  "kvm/vcpu_worker.ts",
  "kvm/ioeventfd_poller_worker.ts",
  "devices/sandbox/worker.ts",
];

/** Where the binary goes, relative to the root. */
export const COMPILE_OUTPUT = "dist/dvmm";

/** Thrown when the binary cannot be built (no denort, deno compile failed). */
export class CompileError extends Error {
  /**
   * A build error.
   * @param message what is missing or failed
   */
  constructor(message: string) {
    super(message);
    this.name = "CompileError";
  }
}

/** The repository root (this file is tools/compile.ts; a build tool, never compiled itself). */
export function repoRoot(): string {
  return dirname(dirname(fileURLToPath(import.meta.url)));
}

/** Arguments for `deno compile` producing `output`. */
export function compileArgs(output: string = COMPILE_OUTPUT): string[] {
  return [
    "compile",
    "-A",
    "--unstable-worker-options",
    "--no-check",
    "--output",
    output,
    ...COMPILE_INCLUDES.flatMap((m) => ["--include", m]),
    COMPILE_ENTRY,
  ];
}

/**
 * Every local file the binary embeds (relative paths, sorted): the module
 * graphs of the entry and of each include, as `deno info --json` reports them.
 */
export async function embeddedFiles(root: string = repoRoot()): Promise<string[]> {
  const files = new Set<string>();
  for (const module of [COMPILE_ENTRY, ...COMPILE_INCLUDES]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", module],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    if (!out.success) {
      throw new CompileError(
        `deno info ${module} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
      );
    }
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string }[];
    };
    for (const m of info.modules) {
      if (!m.specifier.startsWith("file://")) continue;
      const rel = relative(root, fileURLToPath(m.specifier));
      if (!rel.startsWith("..") && !rel.startsWith("node_modules/")) files.add(rel);
    }
  }
  return [...files].sort();
}

/**
 * Copy what the binary embeds (plus deno.json and deno.lock, and a symlink to
 * node_modules) into `dest`: running main.ts from there behaves like the binary
 * as far as source files go (tests/lab/compile_test.ts).
 */
export async function copyEmbedded(dest: string, root: string = repoRoot()): Promise<string[]> {
  const files = [...await embeddedFiles(root), "deno.json", "deno.lock"];
  for (const f of files) {
    await Deno.mkdir(dirname(join(dest, f)), { recursive: true });
    await Deno.copyFile(join(root, f), join(dest, f));
  }
  await Deno.symlink(join(root, "node_modules"), join(dest, "node_modules"));
  return files;
}

/** Build `output` with the denort at `denort`. Throws {@linkcode CompileError}. */
export async function compile(
  denort: string | undefined = Deno.env.get("DENORT_BIN"),
  output: string = COMPILE_OUTPUT,
  root: string = repoRoot(),
): Promise<string> {
  if (!denort) {
    throw new CompileError(
      "deno compile needs the denort runtime (Deno 2.9.6, x86_64-unknown-linux-gnu), and it " +
        "cannot be downloaded here: set DENORT_BIN=/path/to/denort and run again",
    );
  }
  const stat = await Deno.stat(denort).catch(() => null);
  if (!stat?.isFile) throw new CompileError(`DENORT_BIN=${denort}: no such file`);
  await Deno.mkdir(dirname(join(root, output)), { recursive: true });
  const r = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(output),
    cwd: root,
    env: { DENORT_BIN: denort },
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!r.success) throw new CompileError(`deno compile failed (exit ${r.code})`);
  return join(root, output);
}

if (import.meta.main) {
  try {
    console.log(`built ${await compile()}`);
  } catch (e) {
    console.error(`compile: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
