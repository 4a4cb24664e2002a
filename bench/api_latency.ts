/**
 * Scripting-API latencies (runs where /dev/kvm is): the time for `startVm`
 * to boot the default guest and get an answer from its shell, and the
 * pause → resume round trip (pause until every vCPU is held, resume until the
 * guest answers again). No reference exists for these: they are recorded.
 *
 * @module
 */

import { startVm } from "../vmm/api.ts";
import { GUEST_INIT_MARKER } from "../guest/initramfs.ts";
import { SHELL_PROMPT } from "../vmm/demo.ts";
import { median } from "./stats.ts";

/** Measure with `kernel` and `initrd`; returns RESULT lines. */
export async function benchApiLatency(
  kernel: string,
  initrd: string,
  rounds = 3,
): Promise<string[]> {
  const toShell: number[] = [], pauseMs: number[] = [], resumeMs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const t0 = performance.now();
    await using vm = await startVm({
      kernel,
      initrd,
      memory: "256M",
      cmdline: "quiet",
      api: { enabled: false },
    });
    await vm.console.waitFor(GUEST_INIT_MARKER, 120_000);
    await vm.console.waitFor(SHELL_PROMPT, 60_000);
    await vm.console.run("echo ready");
    toShell.push((performance.now() - t0) / 1000);
    for (let i = 0; i < 5; i++) {
      const p0 = performance.now();
      await vm.pause();
      const p1 = performance.now();
      await vm.resume();
      await vm.console.run("true");
      pauseMs.push(p1 - p0);
      resumeMs.push(performance.now() - p1);
    }
    console.log(`round ${round + 1}: start to shell answer ${toShell.at(-1)!.toFixed(2)} s`);
  }
  return [
    `API start to shell answer: median ${median(toShell).toFixed(2)} s over ${rounds} boots`,
    `API pause: median ${median(pauseMs).toFixed(1)} ms; resume to next shell answer: median ${
      median(resumeMs).toFixed(1)
    } ms`,
  ];
}
