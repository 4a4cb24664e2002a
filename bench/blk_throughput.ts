/**
 * virtio-blk throughput benchmark (runs where /dev/kvm is): the guest
 * streams `dd` with O_DIRECT and 1 MiB blocks over the whole of a raw image
 * (sequential write, then sequential read), timing each pass with its own
 * clock, for dvmm (the virtio-blk plugin, `--disk`) and QEMU with KVM
 * (`-M pc`, virtio-blk-pci, `aio=threads`), on the same image, kernel and
 * initramfs, alternating (who goes first alternates too), several rounds.
 * Prints medians in MB/s and the ratios dvmm/QEMU (target >= 1).
 *
 * The guest initramfs ({@linkcode blkBenchInitramfs}) is built on the host
 * (the lab's asset cache is read-only); its /init loads the virtio modules,
 * runs both passes on /dev/vda, prints {@linkcode BLK_RESULT_PREFIX} lines
 * and powers off.
 *
 * @module
 */

import { ensureGuestInitramfs } from "../guest/initramfs.ts";
import type { KernelAssets } from "../guest/debian_kernel.ts";
import { ratioLine } from "./stats.ts";
import { consoleUntil, dvmmRunArgs, qemuKvmArgs } from "./boot_time.ts";

/** Prefix of the guest's result lines: `dvmm-blk: write 268435456 bytes in 123 cs`. */
export const BLK_RESULT_PREFIX = "dvmm-blk:";

/** Printed by the guest after both passes. */
export const BLK_DONE_MARKER = "dvmm-blk: done";

/** Default transfer size per pass, in MiB (`DVMM_BENCH_BLK_MIB` overrides). */
export const DEFAULT_BLK_MIB = 256;

/** One pass's measurement, from the guest's console. */
export interface BlkPass {
  /** `read` or `write`. */
  readonly op: "read" | "write";
  /** Bytes transferred. */
  readonly bytes: number;
  /** Guest seconds it took (/proc/uptime, 10 ms resolution). */
  readonly seconds: number;
}

/**
 * The guest's /init snippet: load the modules, wait for /dev/vda, write then
 * read `mib` MiB with 1 MiB O_DIRECT blocks, print the timings, power off.
 */
export function blkGuestSnippet(mib: number): string {
  return `dvmm-load-modules 2>/dev/null
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do usleep 50000; i=$((i + 1)); done
cs() { read up _ </proc/uptime; echo \${up%.*}\${up#*.}; }
pass() {
  t0=$(cs); dd "$@" bs=1M count=${mib} 2>/dev/null; rc=$?; t1=$(cs)
  echo "${BLK_RESULT_PREFIX} $op $((${mib} * 1048576)) bytes in $((t1 - t0)) cs rc $rc"
}
op=write pass if=/dev/zero of=/dev/vda oflag=direct
op=read pass if=/dev/vda of=/dev/null iflag=direct
echo "${BLK_DONE_MARKER}"
poweroff -f`;
}

/** Build (on the host, cached) the benchmark initramfs for `mib` MiB passes. */
export function blkBenchInitramfs(kernel: KernelAssets, mib = DEFAULT_BLK_MIB): Promise<string> {
  return ensureGuestInitramfs({
    kernel,
    loadModules: true,
    powerButton: false,
    initSnippet: blkGuestSnippet(mib),
  });
}

/** Parse the guest's result lines; throws if a pass failed or is missing. */
export function parseBlkPasses(console: string): BlkPass[] {
  const passes: BlkPass[] = [];
  const re = /dvmm-blk: (read|write) (\d+) bytes in (\d+) cs rc (\d+)/g;
  for (const m of console.matchAll(re)) {
    if (m[4] !== "0") throw new Error(`guest dd ${m[1]} failed (status ${m[4]})`);
    passes.push({ op: m[1] as BlkPass["op"], bytes: Number(m[2]), seconds: Number(m[3]) / 100 });
  }
  for (const op of ["write", "read"] as const) {
    if (!passes.some((p) => p.op === op)) {
      throw new Error(`no ${op} result on the console:\n${console.slice(-1500)}`);
    }
  }
  return passes;
}

/** MB/s (10^6 bytes per second) of a pass. */
export function mbPerSecond(p: BlkPass): number {
  return p.bytes / 1e6 / Math.max(p.seconds, 0.01);
}

/** Options of {@linkcode benchBlkThroughput}. */
export interface BlkBenchOptions {
  /** Kernel image. */
  readonly kernel: string;
  /** The initramfs from {@linkcode blkBenchInitramfs}. */
  readonly initrd: string;
  /** MiB per pass (must match the initramfs). */
  readonly mib: number;
  /** Rounds (each boots dvmm once and QEMU once). */
  readonly rounds: number;
  /** Directory for the image (default TMPDIR: a tmpfs inside the lab). */
  readonly dir?: string;
}

/** Run the benchmark; returns the `RESULT:` lines (without the prefix). */
export async function benchBlkThroughput(opts: BlkBenchOptions): Promise<string[]> {
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "dvmm-blk-bench-" });
  const image = `${dir}/blk-bench.img`;
  // A fully allocated image (no sparse holes), 1 MiB larger than the passes.
  const file = await Deno.open(image, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1 << 20).fill(0x5a);
  for (let i = 0; i <= opts.mib; i++) await file.write(chunk);
  file.close();
  const dvmmArgs = dvmmRunArgs(opts.kernel, opts.initrd, ["--disk", image]);
  const qemuArgs = qemuKvmArgs("pc", opts.kernel, opts.initrd, [
    ...["-drive", `file=${image},if=none,id=disk0,format=raw,cache=writeback,aio=threads`],
    ...["-device", "virtio-blk-pci,drive=disk0"],
  ]);
  const timeoutMs = 600_000;
  const results = {
    dvmm: { read: [] as number[], write: [] as number[] },
    qemu: { read: [] as number[], write: [] as number[] },
  };
  const record = (who: "dvmm" | "qemu", text: string) => {
    for (const p of parseBlkPasses(text)) results[who][p.op].push(mbPerSecond(p));
  };
  try {
    const runs = {
      dvmm: () => consoleUntil(Deno.execPath(), dvmmArgs, BLK_DONE_MARKER, timeoutMs),
      qemu: () => consoleUntil("qemu-system-x86_64", qemuArgs, BLK_DONE_MARKER, timeoutMs),
    };
    for (let round = 0; round < opts.rounds; round++) {
      // Who goes first alternates, so neither always meets what the other left behind.
      const order = round % 2 === 0 ? ["dvmm", "qemu"] as const : ["qemu", "dvmm"] as const;
      for (const who of order) record(who, (await runs[who]()).text);
      const last = (xs: number[]) => xs.at(-1)!.toFixed(1);
      console.log(
        `blk round ${round + 1}: write dvmm ${last(results.dvmm.write)} MB/s, QEMU ${
          last(results.qemu.write)
        } MB/s; read dvmm ${last(results.dvmm.read)} MB/s, QEMU ${last(results.qemu.read)} MB/s`,
      );
    }
  } finally {
    await Deno.remove(image).catch(() => {});
    if (!opts.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const line = (op: "read" | "write") =>
    ratioLine(
      `virtio-blk sequential ${op} (O_DIRECT, 1 MiB blocks, ${opts.mib} MiB)`,
      { label: "dvmm", values: results.dvmm[op] },
      { label: "QEMU-pc", values: results.qemu[op] },
      "MB/s",
      { op: ">=", value: 1 },
    );
  return [line("write"), line("read")];
}
