/**
 * Shared fixtures for the PCI unit tests: a root on fresh buses, config
 * access helpers, and an instrumented probe device whose hooks record every
 * call and can be told to fail.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Bus } from "../../devices/bus.ts";
import { RecordingIrqLine } from "../../devices/irq.ts";
import { RecordingLogger } from "../../devices/logger.ts";
import {
  type AnyPciDeviceDefinition,
  definePciDevice,
  type PciBarSpec,
  type PciCapabilitySpec,
  type PciDeviceInstance,
} from "../../devices/pci_device.ts";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { PciRoot, type PciRootOptions } from "../../pci/pci_root.ts";

/** A root plus everything around it. */
export interface Rig {
  readonly root: PciRoot;
  readonly pio: Bus;
  readonly mmio: Bus;
  readonly log: RecordingLogger;
  readonly lines: Map<number, RecordingIrqLine>;
}

/** A root with a host bridge on fresh buses, 1 MiB of RAM and recording IRQ lines. */
export function makeRig(extra: Partial<PciRootOptions> = {}): Rig {
  const pio = new Bus("pio");
  const mmio = new Bus("mmio");
  const log = new RecordingLogger();
  const lines = new Map<number, RecordingIrqLine>();
  const root = new PciRoot({
    pio,
    mmio,
    memory: GuestMemory.ofSize(1 << 20),
    log,
    irqLine: (gsi) => {
      const line = new RecordingIrqLine();
      lines.set(gsi, line);
      return line;
    },
    ...extra,
  });
  return { root, pio, mmio, log, lines };
}

/** Read a `width`-byte config register of 00:slot.0 through the core. */
export function cfgRead(root: PciRoot, slot: number, offset: number, width: 1 | 2 | 4): number {
  const data = new Uint8Array(width);
  root.configRead(0, slot, 0, offset, data);
  return le(data);
}

/** Write a `width`-byte config register of 00:slot.0 through the core. */
export function cfgWrite(
  root: PciRoot,
  slot: number,
  offset: number,
  width: 1 | 2 | 4,
  value: number,
): void {
  root.configWrite(0, slot, 0, offset, bytes(value, width));
}

/** Little-endian bytes of `value`. */
export function bytes(value: number, width: number): Uint8Array {
  const out = new Uint8Array(width);
  for (let i = 0; i < width; i++) out[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  return out;
}

/** Little-endian value of `data` (up to 6 bytes exactly). */
export function le(data: Uint8Array): number {
  let v = 0;
  for (let i = data.length - 1; i >= 0; i--) v = v * 256 + data[i];
  return v;
}

/** Read `width` bytes at `address` on `bus` (all-ones where nothing is mapped). */
export function busRead(bus: Bus, address: bigint, width = 4): number {
  const data = new Uint8Array(width);
  bus.read(address, data);
  return le(data);
}

/** One recorded hook call. */
export interface HookCall {
  readonly hook: "activate" | "deactivate";
  readonly bar: number;
  readonly address: bigint;
}

/** Controls and records for a probe device. */
export interface Probe {
  /** Successful and failed hook calls, in order (`ok` false when it threw). */
  readonly calls: (HookCall & { ok: boolean })[];
  /** BAR index -> address the plugin believes it is mapped at. */
  readonly mapped: Map<number, bigint>;
  /** Protocol violations seen (a hook fired twice in the same direction). */
  readonly violations: string[];
  /** Make the next matching hook call throw (checked on every call). */
  fail: { activate?: (bar: number) => boolean; deactivate?: (bar: number) => boolean };
  /** Accesses that reached a BAR handler. */
  readonly accesses: { bar: number; offset: number; write: boolean }[];
  /** Make BAR handlers throw. */
  failAccess: boolean;
  /** Times reset ran. */
  resets: number;
  /** Doorbell kicks received, by BAR index. */
  readonly kicks: number[];
}

/** Options for {@linkcode probeDevice}. */
export interface ProbeOptions {
  readonly name?: string;
  readonly vendorId?: number;
  readonly deviceId?: number;
  readonly bars: readonly PciBarSpec[];
  readonly capabilities?: readonly PciCapabilitySpec[];
  readonly extra?: Partial<PciDeviceInstance>;
  /** Register a doorbell (ioeventfd) at offset 0 of every BAR from `create`. */
  readonly doorbells?: boolean;
}

/**
 * A device whose BAR handlers answer `signature + bar` in every byte read, and
 * whose hooks record calls, track what the plugin thinks is mapped, flag a
 * hook firing twice in one direction, and throw on demand.
 */
export function probeDevice(opts: ProbeOptions): { def: AnyPciDeviceDefinition; probe: Probe } {
  const probe: Probe = {
    calls: [],
    mapped: new Map(),
    violations: [],
    fail: {},
    accesses: [],
    failAccess: false,
    resets: 0,
    kicks: [],
  };
  const signature = opts.deviceId ?? 0x0001;
  const def = definePciDevice({
    name: opts.name ?? "probe",
    vendorId: opts.vendorId ?? 0x1234,
    deviceId: signature,
    classCode: 0xff0000,
    bars: opts.bars,
    capabilities: opts.capabilities,
    create: (ctx) => {
      if (opts.doorbells) {
        for (const spec of opts.bars) {
          ctx.ioeventfd(spec.index, 0, spec.kind === "io" ? 1 : 4, () => {
            probe.kicks[spec.index] = (probe.kicks[spec.index] ?? 0) + 1;
          });
        }
      }
      const bars: Record<number, { read(o: number, d: Uint8Array): void; write(): void }> = {};
      for (const spec of opts.bars) {
        bars[spec.index] = {
          read(offset, data) {
            probe.accesses.push({ bar: spec.index, offset, write: false });
            if (probe.failAccess) throw new Error("probe access failure");
            data.fill((signature + spec.index) & 0xff);
          },
          write() {
            if (probe.failAccess) throw new Error("probe access failure");
          },
        };
      }
      return {
        bars,
        activate(bar, address) {
          if (probe.fail.activate?.(bar)) {
            probe.calls.push({ hook: "activate", bar, address, ok: false });
            throw new Error(`injected activate failure on BAR ${bar}`);
          }
          if (probe.mapped.has(bar)) probe.violations.push(`activate twice on BAR ${bar}`);
          probe.mapped.set(bar, address);
          probe.calls.push({ hook: "activate", bar, address, ok: true });
        },
        deactivate(bar, address) {
          if (probe.fail.deactivate?.(bar)) {
            probe.calls.push({ hook: "deactivate", bar, address, ok: false });
            throw new Error(`injected deactivate failure on BAR ${bar}`);
          }
          if (!probe.mapped.has(bar)) probe.violations.push(`deactivate twice on BAR ${bar}`);
          else if (probe.mapped.get(bar) !== address) {
            probe.violations.push(`deactivate BAR ${bar} at wrong address`);
          }
          probe.mapped.delete(bar);
          probe.calls.push({ hook: "deactivate", bar, address, ok: true });
        },
        reset() {
          probe.resets++;
        },
        ...opts.extra,
      };
    },
  });
  return { def, probe };
}

/** Config offset of BAR `i`. */
export function barOffset(i: number): number {
  return 0x10 + 4 * i;
}

/** Deep strict equality (node:assert). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  assert.deepStrictEqual(actual, expected, message);
}

/** `text` matches `re` (node:assert). */
export function assertMatch(text: string, re: RegExp, message?: string): void {
  assert.match(text, re, message);
}
