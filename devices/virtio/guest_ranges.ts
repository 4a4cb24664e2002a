/**
 * A reusable list of guest memory ranges held in typed arrays: the
 * scatter-gather list of one side of a descriptor chain on the virtio-blk hot
 * path, filled by {@linkcode Virtqueue.popInto} and handed to preadv/pwritev
 * without an object per buffer. The list can be trimmed at either end (the
 * request header in front, the status byte at the back) without copying.
 *
 * @module
 */

import type { GuestBuffer } from "./virtqueue.ts";

/** Guest ranges `[gpa, gpa+len)`, in order. */
export class GuestRanges {
  #gpa: Float64Array;
  #len: Float64Array;
  #first = 0;
  #end = 0;
  #total = 0;

  /** An empty list with room for `capacity` entries (it grows as needed). */
  constructor(capacity = 16) {
    this.#gpa = new Float64Array(Math.max(1, capacity));
    this.#len = new Float64Array(Math.max(1, capacity));
  }

  /** A list of `buffers`. */
  static of(buffers: readonly GuestBuffer[]): GuestRanges {
    const out = new GuestRanges(buffers.length);
    for (const b of buffers) out.push(b.gpa, b.len);
    return out;
  }

  /** Number of entries. */
  get count(): number {
    return this.#end - this.#first;
  }

  /** Total bytes. */
  get total(): number {
    return this.#total;
  }

  /** Guest address of entry `k` (0-based, `k < count`). */
  gpa(k: number): number {
    return this.#gpa[this.#first + k];
  }

  /** Length of entry `k` (0-based, `k < count`). */
  len(k: number): number {
    return this.#len[this.#first + k];
  }

  /** Empty the list. */
  clear(): void {
    this.#first = this.#end = this.#total = 0;
  }

  /** Append `len` bytes at `gpa` (an empty range is kept as an entry). */
  push(gpa: number, len: number): void {
    if (this.#end === this.#gpa.length) this.#grow();
    this.#gpa[this.#end] = gpa;
    this.#len[this.#end] = len;
    this.#end++;
    this.#total += len;
  }

  /**
   * Extend the last entry by `len` bytes (the caller checked that they follow
   * it in guest memory, inside the same region).
   */
  extendLast(len: number): void {
    this.#len[this.#end - 1] += len;
    this.#total += len;
  }

  /** Guest address just past the last entry, or -1 when empty. */
  get lastEnd(): number {
    const k = this.#end - 1;
    return k >= this.#first ? this.#gpa[k] + this.#len[k] : -1;
  }

  /** Remove the first `n` bytes (at most {@linkcode total}). */
  dropFront(n: number): void {
    n = Math.min(n, this.#total);
    this.#total -= n;
    while (n > 0) {
      const k = this.#first;
      const len = this.#len[k];
      if (n < len) {
        this.#gpa[k] += n;
        this.#len[k] = len - n;
        return;
      }
      n -= len;
      this.#first++;
    }
  }

  /** Remove the last `n` bytes (at most {@linkcode total}). */
  dropBack(n: number): void {
    n = Math.min(n, this.#total);
    this.#total -= n;
    while (n > 0) {
      const k = this.#end - 1;
      const len = this.#len[k];
      if (n < len) {
        this.#len[k] = len - n;
        return;
      }
      n -= len;
      this.#end--;
    }
  }

  /** The entries as objects (for messages, tests and slow paths). */
  toBuffers(): GuestBuffer[] {
    const out: GuestBuffer[] = [];
    for (let k = this.#first; k < this.#end; k++) {
      out.push({ gpa: this.#gpa[k], len: this.#len[k] });
    }
    return out;
  }

  #grow(): void {
    const size = this.#gpa.length * 2;
    const gpa = new Float64Array(size);
    const len = new Float64Array(size);
    gpa.set(this.#gpa);
    len.set(this.#len);
    this.#gpa = gpa;
    this.#len = len;
  }
}
