/**
 * The benchmarks that need /dev/kvm, run in one process (inside the lab, or
 * natively). Usage: `in_lab.ts <artifacts dir> <kernel> <initrd> [<blk initrd> <blk MiB>]`;
 * the directory holds what bench/main.ts built on the host. Prints `RESULT: ...`
 * lines. `DVMM_BENCH_ONLY` (comma-separated `pio,boot,blk`; bench/main.ts also `access`) picks a subset.
 *
 * @module
 */

import { benchPioExits } from "./pio_exits.ts";
import { benchBootTime } from "./boot_time.ts";
import { benchApiLatency } from "./api_latency.ts";
import { benchBlkThroughput } from "./blk_throughput.ts";

const [dir, kernel, initrd, blkInitrd, blkMib] = Deno.args;
const rounds = Number(Deno.env.get("DVMM_BENCH_ROUNDS") ?? 5);
const only = Deno.env.get("DVMM_BENCH_ONLY")?.split(",");
const wanted = (name: string) => !only || only.includes(name);
if (wanted("pio")) {
  console.log(
    `RESULT: ${await benchPioExits(`${dir}/pio_loop.bin`, `${dir}/c_reference`, rounds)}`,
  );
}
if (wanted("boot")) {
  for (const line of await benchBootTime(kernel, initrd, Math.min(rounds, 3))) {
    console.log(`RESULT: ${line}`);
  }
}
if (wanted("blk") && blkInitrd) {
  const lines = await benchBlkThroughput({
    kernel,
    initrd: blkInitrd,
    mib: Number(blkMib),
    rounds: Math.min(rounds, 3),
  });
  for (const line of lines) console.log(`RESULT: ${line}`);
}
for (const line of await benchApiLatency(kernel, initrd, Math.min(rounds, 3))) {
  console.log(`RESULT: ${line}`);
}
