/**
 * The bytes of one function's configuration space with a per-byte mask of
 * guest-writable bits and a per-byte mask of write-1-to-clear bits. The core
 * sets values directly (`set*`); the guest goes through {@linkcode ConfigSpace.write},
 * which only changes what the masks allow.
 *
 * @module
 */

import { CONFIG_SPACE_SIZE } from "./config_regs.ts";

/** Config space storage with write masks. */
export class ConfigSpace {
  /** Current values. */
  readonly bytes: Uint8Array = new Uint8Array(CONFIG_SPACE_SIZE);
  /** Bits the guest may set or clear by writing. */
  readonly writable: Uint8Array = new Uint8Array(CONFIG_SPACE_SIZE);
  /** Bits the guest clears by writing 1 (and cannot set). */
  readonly w1c: Uint8Array = new Uint8Array(CONFIG_SPACE_SIZE);
  readonly #view = new DataView(this.bytes.buffer);

  /** Read a byte. */
  u8(offset: number): number {
    return this.bytes[offset];
  }
  /** Read a little-endian u16. */
  u16(offset: number): number {
    return this.#view.getUint16(offset, true);
  }
  /** Read a little-endian u32. */
  u32(offset: number): number {
    return this.#view.getUint32(offset, true);
  }
  /** Set a byte (core side, ignores the masks). */
  setU8(offset: number, value: number): void {
    this.#view.setUint8(offset, value);
  }
  /** Set a little-endian u16 (core side). */
  setU16(offset: number, value: number): void {
    this.#view.setUint16(offset, value, true);
  }
  /** Set a little-endian u32 (core side). */
  setU32(offset: number, value: number): void {
    this.#view.setUint32(offset, value >>> 0, true);
  }

  /** Mark `mask` bits of the `width`-byte register at `offset` guest-writable. */
  setWritable(offset: number, width: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < width; i++) this.writable[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Mark `mask` bits of the `width`-byte register at `offset` write-1-to-clear. */
  setW1c(offset: number, width: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < width; i++) this.w1c[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Copy the stored bytes at `offset` into `data`. */
  read(offset: number, data: Uint8Array): void {
    data.set(this.bytes.subarray(offset, offset + data.length));
  }

  /** Apply a guest write: writable bits take the new value, W1C bits written as 1 clear. */
  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      const wm = this.writable[at];
      const v = (this.bytes[at] & ~wm) | (data[i] & wm);
      this.bytes[at] = v & ~(data[i] & this.w1c[at]);
    }
  }

  /** A copy of `[offset, offset + length)`, to undo a write. */
  snapshot(offset: number, length: number): Uint8Array {
    return this.bytes.slice(offset, offset + length);
  }

  /** Put back bytes taken by {@linkcode snapshot}. */
  restore(offset: number, saved: Uint8Array): void {
    this.bytes.set(saved, offset);
  }
}
