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
 * After the bitmaps comes PCI configuration mechanism #1's shared state
 * (pci/conf1_shared.ts): with it, a vCPU also serves CONFIG_ADDRESS writes and
 * config reads of absent PCI functions itself.
 *
 * @module
 */

import { CONF1_SHARED_BYTES } from "../pci/conf1_shared.ts";

/** Number of I/O ports. */
export const PORT_COUNT = 0x1_0000;

/** Byte offsets of the bitmaps and of mechanism #1's state in the map. */
export const PORT_MAP = { POSTED: 0, CLAIMED: PORT_COUNT / 8, CONF1: 2 * PORT_COUNT / 8 } as const;

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
