/**
 * The exit benchmark (runs where /dev/kvm is: natively or inside the lab):
 * the same 100,000-exit port-I/O guest under dvmm and under the C reference,
 * alternating, several rounds. Prints µs per exit for each and the ratio.
 *
 * @module
 */

import { Bus } from "../devices/bus.ts";
import { runBareGuest } from "../kvm/bare_guest.ts";
import { ratioLine } from "./stats.ts";

/** Exits the guest makes (bench/guests/pio_loop.asm). */
export const EXITS = 100_000;

/** Run the benchmark: `guest` is the assembled pio_loop, `cReference` the compiled c_reference. */
export async function benchPioExits(
  guest: string,
  cReference: string,
  rounds = 5,
): Promise<string> {
  const code = await Deno.readFile(guest);
  const dvmm: number[] = [], c: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const out = await new Deno.Command(cReference, { args: [guest] }).output();
    const text = new TextDecoder().decode(out.stdout);
    const m = /exits=(\d+) ns=(\d+)/.exec(text);
    if (!out.success || !m || Number(m[1]) !== EXITS) {
      throw new Error(`c_reference failed: ${text}${new TextDecoder().decode(out.stderr)}`);
    }
    c.push(Number(m[2]) / 1000 / EXITS);

    let count = 0;
    const pio = new Bus("pio");
    pio.register(0xe9n, 1n, { read: () => {}, write: () => count++ }, "bench sink");
    const r = await runBareGuest({ code, pio, postedPorts: [[0xe9, 1]] });
    if (r.exit.kind !== "hlt" || count !== EXITS || r.pioWriteExits !== EXITS) {
      // Which count is off tells a write applied twice (the worker saw EXITS) from a guest `out`
      // executed twice (the worker saw more).
      throw new Error(
        `dvmm run ended with ${r.exit.kind}: ${count} writes reached the device, the dispatcher ` +
          `applied ${r.accesses}, the vCPU worker saw ${r.pioWriteExits} port-write exits ` +
          `(the guest makes ${EXITS})`,
      );
    }
    dvmm.push(r.runMs * 1000 / EXITS);
    console.log(
      `round ${round + 1}: dvmm ${dvmm.at(-1)!.toFixed(2)} µs/exit, C ${
        c.at(-1)!.toFixed(2)
      } µs/exit`,
    );
  }
  return ratioLine(
    "port-I/O exits (100,000)",
    { label: "dvmm", values: dvmm },
    { label: "C", values: c },
    "µs/exit",
    { op: "<=", value: 1.25 },
  );
}
