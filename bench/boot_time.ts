/**
 * Boot-to-init benchmark (runs where /dev/kvm is): the time from starting
 * the VMM process to the guest's init printing its marker on the serial
 * console, for dvmm and for QEMU with KVM (`-M microvm,rtc=on` and `-M pc`),
 * on the same kernel, initramfs and command line, alternating, several
 * rounds, after one untimed warm-up boot of each. Prints medians and the
 * ratios.
 *
 * dvmm boots the bzImage through its kernel cache (the decompressed vmlinux,
 * see guest/vmlinux.ts), as it does by default; the bench fills the cache
 * before timing (defaultGuestPaths, on the host) so every round measures the
 * steady state. It also times `dvmm --no-kernel-cache`, where the guest
 * decompresses itself as under QEMU, and prints that ratio too.
 *
 * @module
 */

import { GUEST_INIT_MARKER } from "../guest/initramfs.ts";
import { ratioLine } from "./stats.ts";

/** Kernel arguments every contender gets (dvmm adds `console=ttyS0 panic=-1` itself). */
export const BENCH_CMDLINE = "quiet reboot=t";

/** What {@linkcode consoleUntil} saw. */
export interface MarkerRun {
  /** Everything the process printed on stdout up to and including the marker. */
  text: string;
  /** Seconds from the spawn to the marker showing up. */
  seconds: number;
}

/**
 * Spawn `cmd`, collect its stdout until `marker` shows up, then kill it.
 * Throws (with the tail of stdout and stderr) if it ends or times out first; a
 * dvmm that times out is asked for its stall report (SIGUSR1) before it is killed.
 */
export async function consoleUntil(
  cmd: string,
  args: string[],
  marker: string,
  timeoutMs = 120_000,
): Promise<MarkerRun> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const errText = new Response(child.stderr).text();
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let seconds = NaN;
  let timedOut = false;
  let kill: ReturnType<typeof setTimeout> | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    // dvmm prints its stall report on SIGUSR1 (on stderr, quoted below); then it is killed.
    const dvmm = cmd === Deno.execPath();
    if (dvmm) signal(child, "SIGUSR1");
    kill = setTimeout(() => signal(child, "SIGKILL"), dvmm ? 2000 : 0);
  }, timeoutMs);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (text.includes(marker)) {
        seconds = (performance.now() - t0) / 1000;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
    clearTimeout(kill);
    signal(child, "SIGKILL");
    await reader.cancel().catch(() => {});
    await child.status;
  }
  if (Number.isNaN(seconds)) {
    const why = timedOut
      ? `did not show '${marker}' within ${timeoutMs} ms`
      : `ended before '${marker}'`;
    throw new Error(`${cmd} ${why}:\n${text.slice(-1500)}\n${await errText}`);
  }
  return { text, seconds };
}

/** Send `sig` to `child` unless it is gone already. */
function signal(child: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    child.kill(sig);
  } catch { /* already gone */ }
}

/** Seconds from spawning `cmd` until `marker` shows on its stdout (it is killed then). */
export async function timeToMarker(
  cmd: string,
  args: string[],
  marker: string,
  timeoutMs = 120_000,
): Promise<number> {
  return (await consoleUntil(cmd, args, marker, timeoutMs)).seconds;
}

/**
 * Arguments for `deno` that run dvmm on the benchmark guest: 256 MiB, 1 vCPU,
 * {@linkcode BENCH_CMDLINE}, no control socket, plus `extra` flags.
 */
export function dvmmRunArgs(kernel: string, initrd: string, extra: string[] = []): string[] {
  const main = new URL("../main.ts", import.meta.url).pathname;
  return [
    ...["run", "-A", "--no-check", "--cached-only", main, "run", "--no-api"],
    ...["--kernel", kernel, "--initrd", initrd, "--mem", "256M", "--cpus", "1"],
    ...["--cmdline", BENCH_CMDLINE, ...extra],
  ];
}

/** Arguments for QEMU with KVM on the same guest (machine type `machine`), plus `extra`. */
export function qemuKvmArgs(
  machine: string,
  kernel: string,
  initrd: string,
  extra: string[] = [],
): string[] {
  return [
    ...["-accel", "kvm", "-M", machine, "-cpu", "host", "-m", "256", "-smp", "1"],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"],
    ...["-kernel", kernel, "-initrd", initrd, "-append", `console=ttyS0 panic=-1 ${BENCH_CMDLINE}`],
    ...extra,
  ];
}

/** Run the boot benchmark with `kernel` and `initrd`. */
export async function benchBootTime(kernel: string, initrd: string, rounds = 3): Promise<string[]> {
  const dvmmArgs = dvmmRunArgs(kernel, initrd);
  const uncachedArgs = dvmmRunArgs(kernel, initrd, ["--no-kernel-cache"]);
  const qemu = (machine: string) => qemuKvmArgs(machine, kernel, initrd);
  const times = {
    dvmm: [] as number[],
    uncached: [] as number[],
    microvm: [] as number[],
    pc: [] as number[],
  };
  // One untimed boot of each first: every round then starts with warm caches (Deno's compiled
  // code, the host's page cache), as every launch but the first does on a user's machine.
  await timeToMarker(Deno.execPath(), dvmmArgs, GUEST_INIT_MARKER);
  await timeToMarker(Deno.execPath(), uncachedArgs, GUEST_INIT_MARKER);
  await timeToMarker("qemu-system-x86_64", qemu("microvm,rtc=on"), GUEST_INIT_MARKER);
  await timeToMarker("qemu-system-x86_64", qemu("pc"), GUEST_INIT_MARKER);
  for (let round = 0; round < rounds; round++) {
    times.dvmm.push(await timeToMarker(Deno.execPath(), dvmmArgs, GUEST_INIT_MARKER));
    times.uncached.push(await timeToMarker(Deno.execPath(), uncachedArgs, GUEST_INIT_MARKER));
    times.microvm.push(
      await timeToMarker("qemu-system-x86_64", qemu("microvm,rtc=on"), GUEST_INIT_MARKER),
    );
    times.pc.push(await timeToMarker("qemu-system-x86_64", qemu("pc"), GUEST_INIT_MARKER));
    console.log(
      `round ${round + 1}: dvmm ${times.dvmm.at(-1)!.toFixed(2)} s (--no-kernel-cache ${
        times.uncached.at(-1)!.toFixed(2)
      } s), QEMU microvm ${times.microvm.at(-1)!.toFixed(2)} s, ` +
        `QEMU pc ${times.pc.at(-1)!.toFixed(2)} s`,
    );
  }
  return [
    ratioLine(
      "boot to init",
      { label: "dvmm", values: times.dvmm },
      { label: "QEMU-microvm", values: times.microvm },
      "s",
      {
        op: "<=",
        value: 0.84,
      },
    ),
    ratioLine("boot to init", { label: "dvmm", values: times.dvmm }, {
      label: "QEMU-pc",
      values: times.pc,
    }, "s"),
    ratioLine(
      "boot to init, bzImage decompressed by the guest",
      {
        label: "dvmm --no-kernel-cache",
        values: times.uncached,
      },
      { label: "QEMU-microvm", values: times.microvm },
      "s",
    ),
  ];
}
