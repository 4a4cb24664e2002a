/**
 * An address space (port I/O or MMIO) that routes guest accesses to devices.
 *
 * Ranges are registered and removed at run time (a PCI BAR moves, a device is
 * unplugged). An overlapping registration is refused. Addresses are `bigint`
 * so that 64-bit BARs anywhere in the address space stay exact; offsets handed
 * to devices are `number` (a region is far smaller than 2^53).
 *
 * @module
 */

/** A device model mapped on a {@linkcode Bus}. `data.length` is the access width (1, 2, 4 or 8). */
export interface BusDevice {
  /** Fill `data` with the value read at `offset` from the start of the region. */
  read(offset: number, data: Uint8Array): void;
  /** Accept `data` written at `offset` from the start of the region. */
  write(offset: number, data: Uint8Array): void;
}

/** A registered range, as returned by {@linkcode Bus.register}. */
export interface BusRange {
  /** First address of the range. */
  readonly base: bigint;
  /** Length in bytes (> 0). */
  readonly size: bigint;
  /** Who owns it, for messages (`[1af4:1042] BAR 1`, `serial COM1`). */
  readonly name: string;
  /** The device that answers accesses to it. */
  readonly device: BusDevice;
}

/** Thrown when a registration overlaps an existing range or is malformed. */
export class BusError extends Error {
  /**
   * A registration error.
   * @param message what went wrong, naming the ranges involved
   */
  constructor(message: string) {
    super(message);
    this.name = "BusError";
  }
}

/** Format an address for messages: `0x` and lower-case hex. */
export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}

/** Told of every range as it is mapped (`true`) or unmapped (`false`). */
export type BusWatcher = (range: BusRange, mapped: boolean) => void;

/** A sorted set of non-overlapping ranges with lookup by address. */
export class Bus {
  #ranges: BusRange[] = [];
  #watchers: BusWatcher[] = [];

  /**
   * An empty bus.
   * @param kind name of the address space for messages ("pio" or "mmio")
   */
  constructor(readonly kind: string) {}

  /** Every registered range, sorted by base address. */
  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /** Call `watcher` for every range mapped from now on (and unmapped), after the change. */
  watch(watcher: BusWatcher): void {
    this.#watchers.push(watcher);
  }

  /**
   * Map `device` at `[base, base + size)`. Throws {@linkcode BusError} if the
   * range is empty, wraps past 2^64, or overlaps a registered range.
   */
  register(base: bigint, size: bigint, device: BusDevice, name: string): BusRange {
    if (size <= 0n) throw new BusError(`${this.kind}: ${name}: empty range at ${hex(base)}`);
    if (base < 0n || base + size > 1n << 64n) {
      throw new BusError(
        `${this.kind}: ${name}: range ${hex(base)}+${hex(size)} leaves the address space`,
      );
    }
    const i = this.#insertionIndex(base);
    const prev = this.#ranges[i - 1];
    const next = this.#ranges[i];
    for (const other of [prev, next]) {
      if (other && base < other.base + other.size && other.base < base + size) {
        throw new BusError(
          `${this.kind}: ${name} at ${hex(base)}+${hex(size)} overlaps ${other.name} at ${
            hex(other.base)
          }+${hex(other.size)}`,
        );
      }
    }
    const range: BusRange = { base, size, name, device };
    this.#ranges.splice(i, 0, range);
    for (const w of this.#watchers) w(range, true);
    return range;
  }

  /** Remove a range returned by {@linkcode register}. Returns false if it was not registered. */
  unregister(range: BusRange): boolean {
    const i = this.#ranges.indexOf(range);
    if (i < 0) return false;
    this.#ranges.splice(i, 1);
    for (const w of this.#watchers) w(range, false);
    return true;
  }

  /** The range containing `address`, if any. */
  find(address: bigint): BusRange | undefined {
    const i = this.#insertionIndex(address + 1n) - 1;
    const r = this.#ranges[i];
    return r && address >= r.base && address < r.base + r.size ? r : undefined;
  }

  /** Dispatch a read. Returns false (and leaves `data` all-ones) when nothing is mapped there. */
  read(address: bigint, data: Uint8Array): boolean {
    const r = this.find(address);
    if (!r) {
      data.fill(0xff);
      return false;
    }
    r.device.read(Number(address - r.base), data);
    return true;
  }

  /** Dispatch a write. Returns false when nothing is mapped there (the write is dropped). */
  write(address: bigint, data: Uint8Array): boolean {
    const r = this.find(address);
    if (!r) return false;
    r.device.write(Number(address - r.base), data);
    return true;
  }

  /** Index of the first range whose base is >= `address`. */
  #insertionIndex(address: bigint): number {
    let lo = 0, hi = this.#ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#ranges[mid].base < address) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
