/**
 * The E820 memory map dvmm hands the guest in the zero page: which physical
 * ranges are RAM, reserved or ACPI tables.
 *
 * Built by painting ranges with priorities (ACPI over reserved over RAM), so the
 * result is sorted, non-overlapping and merged whatever the inputs:
 *
 * - RAM `[0, EBDA)`, `[1 MiB, top of low RAM)`, `[4 GiB, 4 GiB + rest)`;
 * - reserved: the EBDA, VGA and BIOS area `[0x9fc00, 1 MiB)`, the PCI ECAM, and
 *   `[IOAPIC, 4 GiB)` (IOAPIC, LAPIC, the flash area real PCs have below 4 GiB);
 * - ACPI (type 3): the ACPI tables inside the BIOS area.
 *
 * The PCI 32-bit BAR window is left out (a gap, not RAM) by default: Linux clips
 * the ACPI host bridge windows against every E820 entry (`pci_use_e820`, on when
 * the firmware has no DMI date of 2023 or later), so reserving the window would
 * leave PCI with no room for BARs. Pass `reservePciWindows` to reserve the whole
 * MMIO hole instead.
 *
 * @module
 */

import {
  type AddressRange,
  FOUR_GIB,
  IOAPIC,
  MiB,
  MMIO_HOLE,
  PCI_ECAM,
  ramRegions,
} from "./layout.ts";
import { BIOS_END, EBDA_START } from "./boot_layout.ts";

/** E820 range types (struct boot_e820_entry.type). */
export const E820_TYPE = {
  /** Usable RAM. */
  RAM: 1,
  /** Reserved: not RAM, do not use. */
  RESERVED: 2,
  /** ACPI tables (reclaimable after they are read). */
  ACPI: 3,
  /** ACPI non-volatile storage. */
  NVS: 4,
} as const;

/** One of {@linkcode E820_TYPE}. */
export type E820Type = typeof E820_TYPE[keyof typeof E820_TYPE];

/** One E820 entry: `[addr, addr + size)` of `type`. */
export interface E820Entry {
  /** First address. */
  readonly addr: number;
  /** Length in bytes. */
  readonly size: number;
  /** Range type. */
  readonly type: E820Type;
}

/** Options of {@linkcode buildE820Map}. */
export interface E820Options {
  /** The ACPI tables region, typed ACPI (3); it must lie outside RAM handed to the guest. */
  readonly acpi?: AddressRange;
  /** Reserve the whole MMIO hole including the PCI 32-bit window (default false, see module doc). */
  readonly reservePciWindows?: boolean;
}

/** The zero page holds at most this many entries. */
export const E820_MAX_ENTRIES = 128;

/**
 * The E820 map for a guest with `memorySize` bytes of RAM (laid out by `ramRegions`).
 *
 * @throws {RangeError} when memory is below 1 MiB (the kernel cannot be loaded)
 */
export function buildE820Map(memorySize: number, opts: E820Options = {}): E820Entry[] {
  if (!Number.isSafeInteger(memorySize) || memorySize < 2 * MiB) {
    throw new RangeError(`E820: memory size ${memorySize} is below the 2 MiB minimum`);
  }
  const painted: Painted[] = [];
  for (const r of ramRegions(memorySize)) painted.push({ ...r, type: E820_TYPE.RAM, rank: 0 });
  const reserve = (base: number, end: number) =>
    painted.push({ base, size: end - base, type: E820_TYPE.RESERVED, rank: 1 });
  reserve(EBDA_START, BIOS_END);
  if (opts.reservePciWindows) {
    reserve(MMIO_HOLE.base, MMIO_HOLE.base + MMIO_HOLE.size);
  } else {
    reserve(PCI_ECAM.base, PCI_ECAM.base + PCI_ECAM.size);
    reserve(IOAPIC.base, FOUR_GIB);
  }
  if (opts.acpi) painted.push({ ...opts.acpi, type: E820_TYPE.ACPI, rank: 2 });
  return flatten(painted);
}

/** Throws unless `entries` are sorted, non-empty and non-overlapping (a sanity check for callers). */
export function checkE820Map(entries: readonly E820Entry[]): void {
  if (entries.length > E820_MAX_ENTRIES) {
    throw new Error(`E820: ${entries.length} entries, the zero page holds ${E820_MAX_ENTRIES}`);
  }
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.size <= 0) throw new Error(`E820: empty entry at 0x${e.addr.toString(16)}`);
    if (i > 0) {
      const p = entries[i - 1];
      if (p.addr + p.size > e.addr) {
        throw new Error(
          `E820: entry 0x${p.addr.toString(16)}+0x${p.size.toString(16)} overlaps 0x${
            e.addr.toString(16)
          }`,
        );
      }
    }
  }
}

interface Painted extends AddressRange {
  readonly type: E820Type;
  readonly rank: number;
}

/** Resolve overlaps (highest rank wins) and merge adjacent ranges of the same type. */
function flatten(painted: readonly Painted[]): E820Entry[] {
  const points = [...new Set(painted.flatMap((p) => [p.base, p.base + p.size]))].sort((a, b) =>
    a - b
  );
  const out: E820Entry[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const [lo, hi] = [points[i], points[i + 1]];
    let best: Painted | undefined;
    for (const p of painted) {
      if (p.base <= lo && hi <= p.base + p.size && (!best || p.rank > best.rank)) best = p;
    }
    if (!best) continue;
    const last = out[out.length - 1];
    if (last && last.type === best.type && last.addr + last.size === lo) {
      out[out.length - 1] = { addr: last.addr, size: hi - last.addr, type: last.type };
    } else {
      out.push({ addr: lo, size: hi - lo, type: best.type });
    }
  }
  return out;
}
