/**
 * Byte-wise handling of port accesses for legacy devices whose registers are
 * all 8 bits wide. A 16- or 32-bit access is split into byte accesses at
 * consecutive offsets, lowest address first, the way an ISA bus splits a
 * wide cycle; bytes that fall outside the device read as 0xff and are
 * dropped on write. Nothing here throws on any offset or width.
 *
 * @module
 */

/** Reads one 8-bit register at `offset` (already known to be inside the device). */
export type ByteReader = (offset: number) => number;

/** Writes one 8-bit register at `offset` (already known to be inside the device). */
export type ByteWriter = (offset: number, value: number) => void;

/**
 * Fill `data` by reading the byte registers `offset`, `offset + 1`, ... of a
 * device `size` bytes long; bytes outside `[0, size)` read as 0xff.
 */
export function readBytewise(offset: number, data: Uint8Array, size: number, read: ByteReader) {
  for (let i = 0; i < data.length; i++) {
    const at = offset + i;
    data[i] = Number.isInteger(at) && at >= 0 && at < size ? read(at) & 0xff : 0xff;
  }
}

/**
 * Write `data` to the byte registers `offset`, `offset + 1`, ... of a device
 * `size` bytes long; bytes outside `[0, size)` are ignored.
 */
export function writeBytewise(offset: number, data: Uint8Array, size: number, write: ByteWriter) {
  for (let i = 0; i < data.length; i++) {
    const at = offset + i;
    if (Number.isInteger(at) && at >= 0 && at < size) write(at, data[i]);
  }
}
