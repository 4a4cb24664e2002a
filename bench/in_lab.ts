/**
 * The benchmarks that need /dev/kvm, run in one process (inside the lab, or
 * natively). Usage: `in_lab.ts <artifacts dir> <kernel> <initrd>`; the
 * directory holds what bench/main.ts built on the host. Prints `RESULT: ...`
 * lines.
 *
 * @module
 */

import { benchPioExits } from "./pio_exits.ts";
import { benchBootTime } from "./boot_time.ts";

const [dir, kernel, initrd] = Deno.args;
const rounds = Number(Deno.env.get("DVMM_BENCH_ROUNDS") ?? 5);
console.log(`RESULT: ${await benchPioExits(`${dir}/pio_loop.bin`, `${dir}/c_reference`, rounds)}`);
for (const line of await benchBootTime(kernel, initrd, Math.min(rounds, 3))) {
  console.log(`RESULT: ${line}`);
}
