/**
 * The port map: two bitmaps over the 64 Ki I/O ports, shared by the VMM
 * thread (which writes them) and the vCPU threads (which read them on every
 * port exit, before deciding whether to involve the VMM thread at all):
 *
 * - POSTED: a write may be posted (the vCPU does not wait for the device);
 * - CLAIMED: a device is mapped there. A vCPU answers an access to an
 *   unclaimed port itself, as the bus would (reads all-ones, writes dropped),
 *   with no round trip: Linux probes a few dozen absent legacy ports (COM2-4,
 *   Super I/O config) at every boot.
 *
 * - LATCHED: an index register (the CMOS index at 0x70, say). A vCPU stores a
 *   byte written there in the port's byte of LATCHES and goes on: nothing
 *   reaches the VMM thread, where the device reads the byte when the guest
 *   next touches its data port. Such an index is only ever used by a data
 *   port access, which is synchronous, so storing it at once is exact.
 *
 * After them comes PCI configuration mechanism #1's shared state
 * (pci/conf1_shared.ts): with it, a vCPU also serves CONFIG_ADDRESS writes and
 * config reads of absent PCI functions itself.
 *
 * @module
 */

import { CONF1_SHARED_BYTES } from "../pci/conf1_shared.ts";

/** Number of I/O ports. */
export const PORT_COUNT = 0x1_0000;

/** Byte offsets of the bitmaps, the latched bytes and mechanism #1's state in the map. */
export const PORT_MAP = {
  POSTED: 0,
  CLAIMED: PORT_COUNT / 8,
  LATCHED: 2 * PORT_COUNT / 8,
  /** One byte per port: the last byte written to a LATCHED port. */
  LATCHES: 3 * PORT_COUNT / 8,
  CONF1: 3 * PORT_COUNT / 8 + PORT_COUNT,
} as const;

/** Size of the map in bytes. */
export const PORT_MAP_BYTES = PORT_MAP.CONF1 + CONF1_SHARED_BYTES;

/** Is `port`'s bit set in the bitmap at byte offset `bitmap` of `map`? */
export function portBit(map: Uint8Array, bitmap: number, port: number): boolean {
  return (map[bitmap + (port >> 3)] & (1 << (port & 7))) !== 0;
}

/** Set (or clear) the bits of ports `[base, base + count)` (clipped to the port space). */
export function setPortBits(
  map: Uint8Array,
  bitmap: number,
  base: number,
  count: number,
  on: boolean,
): void {
  const end = Math.min(base + count, PORT_COUNT);
  for (let p = Math.max(base, 0); p < end; p++) {
    const at = bitmap + (p >> 3), bit = 1 << (p & 7);
    if (on) Atomics.or(map, at, bit);
    else Atomics.and(map, at, ~bit & 0xff);
  }
}

/**
 * The byte of a LATCHED port: what the guest last wrote there, whichever
 * thread took the write. A device keeps its index register in it.
 */
export class PortLatch {
  readonly #map: Uint8Array;
  readonly #at: number;

  /** Port `port`'s latch in `map` (the bit in LATCHED is the dispatcher's to set). */
  constructor(map: Uint8Array, readonly port: number) {
    if (!Number.isInteger(port) || port < 0 || port >= PORT_COUNT) {
      throw new RangeError(`port 0x${port.toString(16)} is not an I/O port`);
    }
    this.#map = map;
    this.#at = PORT_MAP.LATCHES + port;
  }

  /** The byte last written. */
  get value(): number {
    return Atomics.load(this.#map, this.#at);
  }

  set value(v: number) {
    Atomics.store(this.#map, this.#at, v & 0xff);
  }
}
