/**
 * The single binary: what `deno task compile` embeds is enough to run dvmm.
 * A copy holding only the embedded files (plus deno.json, deno.lock and a
 * node_modules link) boots the default guest in the lab from another
 * directory, and plugs a sandboxed plugin (so the vCPU and sandbox workers
 * are in the embed list). With DENORT_BIN set, the real binary is compiled
 * and boots the default guest too; without it that test says so and checks nothing more.
 * Needs qemu-system-x86 (the lab) and the default guest (fetched on the host).
 */
import assert from "node:assert/strict";
import { compile, COMPILE_INCLUDES, copyEmbedded } from "../../tools/compile.ts";
import { retryIfLabFailed, runInLab, shellQuote } from "../../lab/lab.ts";
import { dvmmCacheDir } from "../../guest/cache_dir.ts";
import { defaultGuestPaths } from "../../vmm/demo.ts";
import { SOURCE_RUN_FLAGS } from "../../vmm/self_command.ts";

const DENORT = Deno.env.get("DENORT_BIN");

function labEnv(): Record<string, string> {
  return { DVMM_CACHE_DIR: dvmmCacheDir() };
}

Deno.test("dvmm runs from a copy of only the embedded files: demo boot and a sandboxed plugin check", async () => {
  const paths = await defaultGuestPaths();
  const dir = await Deno.makeTempDir({ prefix: "dvmm-embedded-" });
  try {
    const files = await copyEmbedded(dir);
    for (const f of [...COMPILE_INCLUDES, "main.ts", "examples/register_file.ts"]) {
      assert.ok(files.includes(f), `${f} is embedded`);
    }
    assert.ok(!files.some((f) => f.startsWith("tests/") || f.startsWith("bench/")), "no tests");
    const dvmm = [Deno.execPath(), ...SOURCE_RUN_FLAGS, `${dir}/main.ts`].map(shellQuote).join(" ");
    const guest = `--kernel ${shellQuote(paths.kernel)} --initrd ${shellQuote(paths.initrd)}`;
    const r = await retryIfLabFailed(() =>
      runInLab(
        [
          `${dvmm} demo-here --cpus 1 ${guest}`,
          `${dvmm} plugin-test-here ${dir}/examples/register_file.ts ${guest}`,
        ].join(" && "),
        { cwd: dir, env: labEnv(), timeoutMs: 15 * 60_000 },
      )
    );
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /dvmm demo: init reached .*guest powered off/);
    assert.match(r.output, /PASS: 8 checks/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the compiled binary boots the default guest (when DENORT_BIN gives a denort runtime)", async () => {
  if (!DENORT) {
    // Not a skip: the embedded-files test above proves the same file set; here there is no
    // runtime to build with (denort cannot be downloaded on these machines).
    console.log("DENORT_BIN is not set: dist/dvmm was not built; set it to run this check");
    return;
  }
  const paths = await defaultGuestPaths();
  const dir = await Deno.makeTempDir({ prefix: "dvmm-bin-" });
  try {
    const bin = await compile(DENORT, `${dir}/dvmm`);
    const guest = `--kernel ${shellQuote(paths.kernel)} --initrd ${shellQuote(paths.initrd)}`;
    const r = await runInLab(`${shellQuote(bin)} demo-here --cpus 1 ${guest}`, {
      cwd: dir,
      env: labEnv(),
      timeoutMs: 15 * 60_000,
    });
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /guest powered off/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
