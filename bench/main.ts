/**
 * `deno task bench`: builds the benchmark guests and the C reference on the
 * host, then runs every KVM benchmark in one lab boot (or natively where
 * /dev/kvm exists) and prints medians and ratios measured in that same run.
 *
 * @module
 */

import { ensureHostPackages } from "../lab/host_packages.ts";
import { labDenoCommand, retryIfLabFailed, runInLab } from "../lab/lab.ts";
import { hasKvm } from "../kvm/kvm.ts";
import { defaultGuestPaths } from "../vmm/demo.ts";
import { dvmmCacheDir } from "../guest/cache_dir.ts";
import { benchPluginAccess } from "./plugin_access.ts";
import { blkBenchInitramfs, DEFAULT_BLK_MIB } from "./blk_throughput.ts";
import { ensureKernel } from "../guest/debian_kernel.ts";

const here = new URL(".", import.meta.url).pathname;
const root = new URL("..", import.meta.url).pathname;

async function run(cmd: string, args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stderr: "inherit", stdout: "inherit" }).output();
  if (!r.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
}

await ensureHostPackages();
const dir = await Deno.makeTempDir({ prefix: "dvmm-bench-" });
try {
  await run("gcc", ["-O2", "-o", `${dir}/c_reference`, `${here}c_reference.c`]);
  await run("nasm", ["-f", "bin", "-o", `${dir}/pio_loop.bin`, `${here}guests/pio_loop.asm`]);
  const guest = await defaultGuestPaths(); // also fills dvmm's kernel cache
  const blkMib = Number(Deno.env.get("DVMM_BENCH_BLK_MIB") ?? DEFAULT_BLK_MIB);
  const blkInitrd = await blkBenchInitramfs(await ensureKernel(), blkMib);
  const args = [
    "run",
    "-A",
    "--no-check",
    `${here}in_lab.ts`,
    dir,
    guest.kernel,
    guest.initrd,
    blkInitrd,
    String(blkMib),
  ];
  let output = "";
  const collect = (chunk: Uint8Array) => {
    Deno.stdout.writeSync(chunk);
    output += new TextDecoder().decode(chunk);
  };
  if (hasKvm()) {
    const r = await new Deno.Command(Deno.execPath(), { args, cwd: root, stdout: "piped" })
      .output();
    collect(r.stdout);
    if (!r.success) Deno.exit(1);
  } else {
    const env: Record<string, string> = { DVMM_CACHE_DIR: dvmmCacheDir() };
    for (const key of ["DVMM_BENCH_ROUNDS", "DVMM_BENCH_ONLY"]) {
      const v = Deno.env.get(key);
      if (v) env[key] = v;
    }
    const r = await retryIfLabFailed(() => {
      output = ""; // a retry starts the results over
      return runInLab(labDenoCommand(args), {
        env,
        cwd: root,
        shares: [dir],
        onOutput: collect,
        timeoutMs: 30 * 60_000,
      });
    });
    if (r.status !== 0) Deno.exit(r.status);
  }
  // Host-side (no KVM): plugin BAR access cost, in-process vs sandboxed.
  const only = Deno.env.get("DVMM_BENCH_ONLY")?.split(",");
  if (!only || only.includes("access")) {
    const access = await benchPluginAccess();
    output +=
      `RESULT: plugin BAR access: in-process ${access.inProcessNs.toFixed(0)} ns, sandboxed ` +
      `${access.sandboxedNs.toFixed(0)} ns, ratio sandboxed/in-process = ${
        (access.sandboxedNs / access.inProcessNs).toFixed(1)
      }\n`;
  }
  console.log("\n== dvmm benchmarks ==");
  for (const line of output.split("\n")) {
    if (line.startsWith("RESULT: ")) console.log(line.slice(8));
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
