/**
 * `deno task bench`: builds the benchmark guests and the C reference on the
 * host, then runs every KVM benchmark in one lab boot (or natively where
 * /dev/kvm exists) and prints medians and ratios measured in that same run.
 *
 * @module
 */

import { ensureHostPackages } from "../lab/host_packages.ts";
import { labDenoCommand, runInLab } from "../lab/lab.ts";
import { hasKvm } from "../kvm/kvm.ts";

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
  const args = ["run", "-A", "--no-check", `${here}in_lab.ts`, dir];
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
    const r = await runInLab(labDenoCommand(args), {
      cwd: root,
      shares: [dir],
      onOutput: collect,
      timeoutMs: 30 * 60_000,
    });
    if (r.status !== 0) Deno.exit(r.status);
  }
  console.log("\n== dvmm benchmarks ==");
  for (const line of output.split("\n")) {
    if (line.startsWith("RESULT: ")) console.log(line.slice(8));
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
