/**
 * `dvmm demo`: boot dvmm's default guest (Debian kernel, generated
 * initramfs), wait for its shell, run a few commands through the serial
 * console, show the answers, and power it off. Runs natively where /dev/kvm
 * exists and inside the nested lab where it does not.
 *
 * @module
 */

import { ensureKernel } from "../guest/debian_kernel.ts";
import { fillKernelCache } from "../guest/vmlinux.ts";
import { ensureGuestInitramfs, GUEST_INIT_MARKER } from "../guest/initramfs.ts";
import { createMachine } from "./launch.ts";
import { GuestConsole } from "./guest_console.ts";
import { OutputBatcher } from "./host_console.ts";
import type { Machine, MachineExit } from "./machine.ts";

/** Commands the demo types into the guest's shell. */
export const DEMO_COMMANDS: readonly string[] = [
  "uname -sr",
  "nproc",
  "grep MemTotal /proc/meminfo",
  "for d in /sys/bus/pci/devices/*; do echo $(basename $d) $(cat $d/vendor):$(cat $d/device) class $(cat $d/class); done",
];

/**
 * The prompt of the default guest's shell. Busybox's line editor may follow
 * it with a cursor-position query (ESC [6n) in the same write, as it does on
 * hvc0, where the whole prompt arrives as one chunk.
 */
// deno-lint-ignore no-control-regex
export const SHELL_PROMPT = /[#$] (?:\x1b\[6n)?$/m;

/** Options for {@linkcode runDemo}. */
export interface DemoOptions {
  /** Kernel (default: dvmm's default Debian kernel). */
  kernel?: string;
  /** initramfs (default: dvmm's default initramfs). */
  initrd?: string;
  /** vCPUs (default 2). */
  cpus?: number;
  /** Memory in bytes (default 256 MiB). */
  memory?: number;
}

/** Boot the default guest on this machine's KVM, run {@linkcode DEMO_COMMANDS}, power off. */
export async function runDemo(opts: DemoOptions = {}): Promise<MachineExit> {
  const out = new OutputBatcher();
  // The console needs the machine to send input, the machine the console to feed output.
  const late: { machine?: Machine } = {};
  const console = new GuestConsole((b) => late.machine?.sendInput(b) ?? 0);
  const machine = await createMachine({
    kernel: opts.kernel,
    initrd: opts.initrd,
    cmdline: "quiet",
    memory: opts.memory ?? 256 * 1024 * 1024,
    cpus: opts.cpus ?? 2,
  }, (b) => {
    out.push(b);
    console.feed(b);
  });
  late.machine = machine;
  console.follow(machine); // stall report in timeouts; its end fails waits at once
  const t0 = performance.now();
  machine.start();
  const ended = machine.exited.then((e) => {
    throw new Error(`the guest ended before the demo finished: ${e.message}`);
  });
  ended.catch(() => {}); // the normal power-off at the end also lands here
  await Promise.race([console.waitFor(GUEST_INIT_MARKER, 120_000), ended]);
  const initSeconds = (performance.now() - t0) / 1000;
  await Promise.race([console.waitFor(SHELL_PROMPT, 60_000), ended]);
  for (const cmd of DEMO_COMMANDS) await Promise.race([console.run(cmd), ended]);
  await console.write("poweroff -f\n");
  const exit = await machine.exited;
  out.flush();
  Deno.stderr.writeSync(
    new TextEncoder().encode(
      `\ndvmm demo: init reached in ${initSeconds.toFixed(1)} s; ${exit.message}\n`,
    ),
  );
  return exit;
}

/** Paths of the default guest's kernel and initramfs (fetched/built on first use). */
export async function defaultGuestPaths(): Promise<{ kernel: string; initrd: string }> {
  const kernel = await ensureKernel();
  // Fill the kernel cache here: a lab's view of it is read-only.
  await fillKernelCache(kernel.vmlinuz);
  return { kernel: kernel.vmlinuz, initrd: await ensureGuestInitramfs({ kernel }) };
}
