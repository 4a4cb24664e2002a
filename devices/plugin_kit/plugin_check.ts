/**
 * `dvmm plugin test PATH`: boot the default guest with one plugin attached
 * and check it from inside Linux:
 * 1. the guest lists the device in /sys/bus/pci/devices with the plugin's
 *    vendor/device IDs, and each BAR's resource matches where dvmm decodes it
 *    (`machine.pci.assignments()`);
 * 2. busybox `devmem` reads the first memory BAR at offset 0 and sees what
 *    the host reads through its MMIO bus; a 32-bit write at
 *    {@linkcode PluginCheckOptions.writeOffset} reads back the same in the
 *    guest and on the host;
 * 3. the guest moves that BAR (new address written to config space through
 *    sysfs, then `remove` + `rescan`), and the device answers at the new
 *    address, which matches dvmm's assignment.
 *
 * Needs /dev/kvm (the CLI runs it in the lab otherwise).
 *
 * @module
 */

import { createMachine } from "../../vmm/launch.ts";
import { GuestConsole } from "../../vmm/guest_console.ts";
import { GUEST_INIT_MARKER } from "../../guest/initramfs.ts";
import { SHELL_PROMPT } from "../../vmm/demo.ts";
import { RecordingLogger } from "../logger.ts";
import type { BarAssignment } from "../../pci/pci_root.ts";
import { PCI_MMIO32 } from "../../x86/layout.ts";

/** What to check. */
export interface PluginCheckOptions {
  /** Plugin path, URL or built-in name. */
  readonly plugin: string;
  /** Its options. */
  readonly options?: Record<string, string>;
  /** Run it in-process instead of sandboxed. */
  readonly trusted?: boolean;
  /** Extra read grants for the sandbox. */
  readonly pluginRead?: string[];
  /** Kernel and initramfs (default: dvmm's default guest). */
  readonly kernel?: string;
  /** initramfs. */
  readonly initrd?: string;
  /** BAR offset of the 32-bit write/readback check (default 0x40, or 0 for BARs <= 0x40). */
  readonly writeOffset?: number;
  /** Progress lines (default: none). */
  readonly progress?: (line: string) => void;
}

/** One check's outcome. */
export interface CheckResult {
  /** What was checked. */
  readonly name: string;
  /** Did it pass? */
  readonly ok: boolean;
  /** Details (values seen). */
  readonly detail: string;
}

/** The whole report. */
export interface PluginCheckReport {
  /** Every check passed. */
  readonly ok: boolean;
  /** The checks, in order. */
  readonly checks: CheckResult[];
  /** `00:01.0` of the device, if it was plugged. */
  readonly bdf?: string;
  /** What the VMM logged at warn level or above. */
  readonly warnings: string[];
}

/** Boot the default guest with the plugin and run the checks. Never throws for a failing check. */
export async function runPluginCheck(opts: PluginCheckOptions): Promise<PluginCheckReport> {
  const checks: CheckResult[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    checks.push({ name, ok, detail });
    opts.progress?.(`${ok ? "ok  " : "FAIL"} ${name}: ${detail}`);
  };
  const log = new RecordingLogger();
  // Input goes to the machine created below (nothing is sent before it exists).
  const console: GuestConsole = new GuestConsole((b) => machine.sendInput(b));
  const machine = await createMachine(
    {
      kernel: opts.kernel,
      initrd: opts.initrd,
      cmdline: "quiet",
      memory: 256 * 1024 * 1024,
      cpus: 1,
      devices: [{ plugin: opts.plugin, options: opts.options ?? {}, trusted: opts.trusted }],
      pluginRead: opts.pluginRead,
    },
    (b) => console?.feed(b),
    log,
  );
  console.follow(machine); // stall report in timeouts; its end fails waits at once
  machine.start();
  let bdf: string | undefined;
  try {
    await console.waitFor(GUEST_INIT_MARKER, 180_000);
    await console.waitFor(SHELL_PROMPT, 60_000);
    const sh = async (cmd: string) => (await console.run(cmd)).output.trim();

    const fn = machine.pci.functions.find((f) => f.slot > 0)!;
    bdf = fn.bdf;
    const sys = `/sys/bus/pci/devices/0000:${bdf}`;
    const ids = await sh(`cat ${sys}/vendor ${sys}/device`);
    const want = `${hex(fn.def.vendorId, 4)}\n${hex(fn.def.deviceId, 4)}`;
    check("guest sees the device", ids === want, `${sys}: ${ids.replace("\n", ":")}`);

    const bars = () => machine.pci.assignments().filter((a) => a.bdf === bdf);
    const resources = async () => (await sh(`cat ${sys}/resource`)).split("\n");
    const barsMatch = async (label: string) => {
      const lines = await resources();
      for (const a of bars()) {
        const [start, end] = (lines[a.bar] ?? "").split(" ");
        const host = a.activeAddress;
        const ok = host !== null && BigInt(start) === host && BigInt(end) === host + a.size - 1n;
        check(`${label} BAR ${a.bar}`, ok, `guest ${start}..${end}, dvmm ${fmtBar(a)}`);
      }
    };
    await barsMatch("guest and dvmm agree on");

    const mem = bars().find((a) => a.kind !== "io" && a.activeAddress !== null);
    if (!mem) {
      check("memory BAR", false, "the device has no active memory BAR to drive");
      return finish();
    }
    const hostRead = (address: bigint) => {
      const d = new Uint8Array(4);
      machine.mmio.read(address, d);
      return new DataView(d.buffer).getUint32(0, true);
    };
    const devmem = async (address: bigint, value?: number) => {
      const out = await sh(
        `devmem ${hex(address, 8)} 32${value === undefined ? "" : ` ${hex(value, 8)}`}`,
      );
      return value === undefined ? Number(out) : 0;
    };
    const base = mem.activeAddress!;
    const first = await devmem(base);
    check(
      "devmem read at +0x0",
      first === hostRead(base),
      `guest ${hex(first, 8)}, host ${hex(hostRead(base), 8)}`,
    );
    const off = BigInt(opts.writeOffset ?? (mem.size > 0x44n ? 0x40 : 0));
    const pattern = 0x5a5a_0000 | (Date.now() & 0xffff);
    await devmem(base + off, pattern);
    const back = await devmem(base + off);
    check(
      `devmem write/readback at +${hex(off, 1)}`,
      back === hostRead(base + off),
      `wrote ${hex(pattern, 8)}, guest reads ${hex(back, 8)}, host reads ${
        hex(hostRead(base + off), 8)
      }`,
    );

    // Move the BAR: a free, aligned address in the 32-bit window, written through sysfs config.
    const target = freeAddress(machine.pci.assignments(), mem);
    if (target === null || mem.kind !== "mem32") {
      check("BAR move", false, `no move for a ${mem.kind} BAR (only mem32 is moved)`);
      return finish();
    }
    const le = [0, 8, 16, 24].map((s) =>
      `\\${((Number(target) >>> s) & 0xff).toString(8).padStart(3, "0")}`
    );
    const wrote = await sh(
      `printf '${le.join("")}' | dd of=${sys}/config bs=4 seek=${
        4 + mem.bar
      } count=1 conv=notrunc 2>&1; od -A x -t x4 -j ${16 + 4 * mem.bar} -N 4 ${sys}/config`,
    );
    const afterWrite = bars().find((a) => a.bar === mem.bar)!;
    check(
      "guest writes the BAR register (config space through sysfs)",
      afterWrite.activeAddress === target,
      `dvmm decodes it at ${fmtBar(afterWrite)} (asked for ${hex(target, 8)}); guest: ${
        wrote.replaceAll("\n", " | ")
      }`,
    );
    await sh(`echo 1 > ${sys}/remove; echo 1 > /sys/bus/pci/rescan`);
    const moved = bars().find((a) => a.bar === mem.bar)!;
    check(
      "after remove/rescan the BAR is decoded where Linux put it",
      moved.activeAddress !== null,
      `dvmm decodes it at ${fmtBar(moved)}`,
    );
    await barsMatch("after remove/rescan, guest and dvmm agree on");
    if (moved.activeAddress !== null) {
      const again = await devmem(moved.activeAddress);
      check(
        "devmem read after the moves",
        again === hostRead(moved.activeAddress) && again === first,
        `guest ${hex(again, 8)} (before the move ${hex(first, 8)})`,
      );
    }
    return finish();
  } catch (e) {
    check("guest session", false, e instanceof Error ? e.message : String(e));
    return finish();
  } finally {
    if (machine.state !== "stopped") {
      await console.write("poweroff -f\n").catch(() => {});
      const timer = setTimeout(() => machine.stop("plugin test: guest did not power off"), 30_000);
      await machine.exited;
      clearTimeout(timer);
    }
  }

  function finish(): PluginCheckReport {
    return { ok: checks.every((c) => c.ok), checks, bdf, warnings: log.messages("warn") };
  }
}

/** Format a report for people. */
export function formatPluginCheck(plugin: string, r: PluginCheckReport): string {
  const lines = [`dvmm plugin test ${plugin}${r.bdf ? ` (at ${r.bdf})` : ""}`];
  for (const c of r.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  for (const w of r.warnings) lines.push(`  log: ${w}`);
  const failed = r.checks.filter((c) => !c.ok).length;
  lines.push(
    r.ok
      ? `PASS: ${r.checks.length} checks`
      : `FAIL: ${failed} of ${r.checks.length} checks failed`,
  );
  return lines.join("\n") + "\n";
}

/** An aligned address for `bar` in the upper half of the 32-bit window, clear of every other BAR. */
function freeAddress(all: BarAssignment[], bar: BarAssignment): bigint | null {
  const end = BigInt(PCI_MMIO32.base + PCI_MMIO32.size);
  for (
    let at = BigInt(PCI_MMIO32.base + PCI_MMIO32.size / 2);
    at + bar.size <= end;
    at += bar.size
  ) {
    const clash = all.some((o) =>
      o.kind !== "io" && at < o.address + o.size && o.address < at + bar.size
    );
    if (!clash) return at;
  }
  return null;
}

function hex(v: number | bigint, width: number): string {
  return `0x${v.toString(16).padStart(width, "0")}`;
}

function fmtBar(a: BarAssignment): string {
  return a.activeAddress === null
    ? `inactive (register ${hex(a.address, 8)})`
    : `${hex(a.activeAddress, 8)}+${hex(a.size, 1)}`;
}
