/**
 * Boots dvmm's default guest for KVM tests and gives the test its console.
 * The default kernel and initramfs are prepared on the host by the test
 * runner (DVMM_CACHE_DIR points at them inside the lab).
 *
 * @module
 */

import { createMachine, type LaunchOptions } from "../../vmm/launch.ts";
import { GuestConsole } from "../../vmm/guest_console.ts";
import { GUEST_INIT_MARKER } from "../../guest/initramfs.ts";
import { type Machine, PROBE_AFTER_S } from "../../vmm/machine.ts";
import { SHELL_PROMPT } from "../../vmm/demo.ts";
import { RecordingLogger } from "../../devices/logger.ts";

/** A booted test guest. */
export interface TestGuest {
  /** The machine. */
  machine: Machine;
  /** Its serial console. */
  console: GuestConsole;
  /** What the VMM logged. */
  log: RecordingLogger;
}

/** Boot the default guest (quiet kernel) and wait for its shell prompt. */
export async function bootShell(opts: Partial<LaunchOptions> = {}): Promise<TestGuest> {
  // The console needs the machine to send input, the machine the console to feed output.
  const late: { machine?: Machine } = {};
  const console = new GuestConsole((b) => late.machine?.sendInput(b) ?? 0);
  const log = new RecordingLogger();
  const machine = await createMachine({
    memory: 256 * 1024 * 1024,
    cpus: 1,
    ...opts,
    cmdline: ["quiet", opts.cmdline ?? ""].join(" ").trim(),
  }, (b) => {
    console.feed(b);
    if (Deno.env.get("DVMM_DEBUG")) Deno.stdout.writeSync(b);
  }, log);
  late.machine = machine;
  console.follow(machine); // stall report in timeouts; its end fails waits at once
  machine.start();
  // A guest that ends before its shell (a panic, say) fails the boot at once, with its console.
  const ended = machine.exited.then((exit) => {
    throw new Error(
      `guest ended before its shell: ${exit.message}; console:\n${oops(console.output)}`,
    );
  });
  ended.catch(() => {}); // only awaited in the race below
  try {
    await Promise.race([console.waitFor(GUEST_INIT_MARKER, 180_000), ended]);
    await Promise.race([console.waitFor(SHELL_PROMPT, 60_000), ended]);
  } catch (e) {
    // Two reports a second apart tell a slow guest from a stuck one; a third, once a silent
    // vCPU may be probed again, tells a guest spinning in one place from one moving slowly.
    const first = machine.describe();
    await new Promise((r) => setTimeout(r, 1000));
    const second = machine.describe();
    await new Promise((r) => setTimeout(r, (PROBE_AFTER_S + 1) * 1000));
    const report = `${first}\n-- 1 s later --\n${second}\n-- ${
      PROBE_AFTER_S + 1
    } s later --\n${machine.describe()}`;
    await machine.stop();
    throw new Error(`${e instanceof Error ? e.message : e}\n${report}`, { cause: e });
  }
  return { machine, console, log };
}

/** The guest's console from the start of its first oops (or its tail), for a failure message. */
function oops(text: string): string {
  const at = text.search(/BUG:|Oops|double fault|general protection fault|Kernel panic/);
  return at >= 0 ? text.slice(Math.max(at - 500, 0), at + 6000) : text.slice(-3000);
}

/** A guest kernel's own crash report, as it shows in a failure message. */
const GUEST_CRASH = /Kernel panic - not syncing|Oops:|BUG:|double fault/;

/**
 * Run an SMP test body, and once more if the guest kernel itself crashed
 * (its panic or oops is in the failure). Now and then an SMP guest in the
 * nested lab (KVM on QEMU's TCG SVM) dies of a corrupted exception frame or a
 * double fault at a random place, which is an open problem (see
 * docs/architecture.md, "Known problems"); the retry is logged with the
 * guest's report, and a second crash, or any other failure, fails the test.
 * `body` gets the machines it boots stopped by `track`.
 */
export async function retryIfGuestCrashed(
  body: (track: (m: Machine) => Machine) => Promise<void>,
): Promise<void> {
  for (let attempt = 1;; attempt++) {
    const machines: Machine[] = [];
    try {
      return await body((m) => {
        machines.push(m);
        return m;
      });
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      if (attempt > 1 || !GUEST_CRASH.test(text)) throw e;
      globalThis.console.warn(`GUEST KERNEL CRASHED, retrying once:\n${oops(text)}`);
    } finally {
      for (const m of machines) if (m.state !== "stopped") await m.stop();
    }
  }
}

/** Wait for the machine to end, with a deadline. */
export async function waitExit(machine: Machine, timeoutMs = 60_000) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`guest did not end within ${timeoutMs} ms\n${machine.describe()}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([machine.exited, timeout]);
  } finally {
    clearTimeout(timer);
    if (machine.state !== "stopped") await machine.stop();
  }
}
