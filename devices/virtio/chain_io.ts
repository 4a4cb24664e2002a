/**
 * Sequential access to the buffers of a descriptor chain, as one byte
 * stream: a request header may be split across descriptors anywhere, and data
 * is copied (or handed out as zero-copy views of guest memory) buffer by
 * buffer. The buffers were validated by the virtqueue, so nothing here
 * touches memory outside the guest.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import type { GuestBuffer } from "./virtqueue.ts";

/** A cursor over a list of guest buffers (the readable or writable side of a chain). */
export class ChainCursor {
  readonly #memory: GuestMemory;
  readonly #buffers: readonly GuestBuffer[];
  #index = 0;
  #offset = 0;
  #remaining: number;

  /** Start at the first byte of `buffers`. */
  constructor(memory: GuestMemory, buffers: readonly GuestBuffer[]) {
    this.#memory = memory;
    this.#buffers = buffers;
    this.#remaining = buffers.reduce((n, b) => n + b.len, 0);
  }

  /** Bytes left after the cursor. */
  get remaining(): number {
    return this.#remaining;
  }

  /**
   * The next `length` bytes (at most {@linkcode remaining}) as guest ranges,
   * advancing the cursor. Consecutive buffers that are contiguous in guest
   * memory (and in one region) are merged into one range.
   */
  ranges(length: number): GuestBuffer[] {
    const out: GuestBuffer[] = [];
    let left = Math.min(Math.max(0, Math.floor(length)), this.#remaining);
    let runGpa = 0, runLen = 0;
    while (left > 0) {
      const buf = this.#buffers[this.#index];
      const take = Math.min(left, buf.len - this.#offset);
      if (take > 0) {
        const gpa = buf.gpa + this.#offset;
        if (runLen > 0 && runGpa + runLen === gpa && this.#memory.contains(runGpa, runLen + take)) {
          runLen += take;
        } else {
          if (runLen > 0) out.push({ gpa: runGpa, len: runLen });
          runGpa = gpa;
          runLen = take;
        }
      }
      this.#advance(take);
      left -= take;
    }
    if (runLen > 0) out.push({ gpa: runGpa, len: runLen });
    this.#skipEmpty();
    return out;
  }

  /**
   * Zero-copy views of the next `length` bytes (at most {@linkcode remaining}),
   * one per range of {@linkcode ranges}, advancing the cursor. The views alias guest RAM.
   */
  views(length: number): Uint8Array[] {
    return this.ranges(length).map((r) => this.#memory.slice(r.gpa, r.len));
  }

  /** Copy the next bytes into `into` (up to its length); returns how many were copied. */
  readInto(into: Uint8Array): number {
    let done = 0;
    for (const view of this.views(into.length)) {
      into.set(view, done);
      done += view.length;
    }
    return done;
  }

  /** A copy of the next `length` bytes (shorter if fewer remain). */
  read(length: number): Uint8Array {
    const out = new Uint8Array(Math.min(Math.max(0, Math.floor(length)), this.#remaining));
    this.readInto(out);
    return out;
  }

  /** Copy `data` into the next bytes (as much as fits); returns how many were written. */
  write(data: Uint8Array): number {
    let done = 0;
    for (const view of this.views(data.length)) {
      view.set(data.subarray(done, done + view.length));
      done += view.length;
    }
    return done;
  }

  /** Advance by `length` bytes (at most {@linkcode remaining}); returns how many were skipped. */
  skip(length: number): number {
    let left = Math.min(Math.max(0, Math.floor(length)), this.#remaining);
    const skipped = left;
    while (left > 0) {
      const take = Math.min(left, this.#buffers[this.#index].len - this.#offset);
      this.#advance(take);
      left -= take;
    }
    this.#skipEmpty();
    return skipped;
  }

  #advance(n: number): void {
    this.#offset += n;
    this.#remaining -= n;
    this.#skipEmpty();
  }

  #skipEmpty(): void {
    while (
      this.#index < this.#buffers.length && this.#offset >= this.#buffers[this.#index].len
    ) {
      this.#index++;
      this.#offset = 0;
    }
  }
}
