/**
 * What virtio-blk needs from its storage: synchronous positioned reads and
 * writes, a durability barrier, a size, and whether writes are allowed. Plus
 * an in-memory implementation for tests and scratch disks.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import type { GuestRanges } from "./guest_ranges.ts";

/** Storage behind a virtio-blk device. Methods throw on host I/O errors. */
export interface BlockBackend {
  /** Size in bytes. */
  readonly size: number;
  /** Writes are refused. */
  readonly readonly: boolean;
  /** Fill `into` from byte `offset` (`offset + into.length <= size`). */
  read(offset: number, into: Uint8Array): void;
  /** Store `data` at byte `offset` (`offset + data.length <= size`). */
  write(offset: number, data: Uint8Array): void;
  /** Make completed writes durable (fdatasync). */
  flush(): void;
  /**
   * Optional scatter read straight into guest RAM: fill `ranges` of `memory`
   * (validated, in order) from byte `offset`, as {@linkcode read} on their
   * concatenation would, ideally in one system call.
   */
  readGuest?(offset: number, memory: GuestMemory, ranges: GuestRanges): void;
  /** Optional gather write from guest RAM: store `ranges` of `memory` (in order) at `offset`. */
  writeGuest?(offset: number, memory: GuestMemory, ranges: GuestRanges): void;
}

/** Read guest `ranges` from `offset`: the backend's readGuest, else {@linkcode BlockBackend.read} per range. */
export function readIntoGuest(
  backend: BlockBackend,
  offset: number,
  memory: GuestMemory,
  ranges: GuestRanges,
): void {
  if (backend.readGuest) return backend.readGuest(offset, memory, ranges);
  for (let k = 0; k < ranges.count; k++) {
    backend.read(offset, memory.slice(ranges.gpa(k), ranges.len(k)));
    offset += ranges.len(k);
  }
}

/** Write guest `ranges` at `offset`: the backend's writeGuest, else {@linkcode BlockBackend.write} per range. */
export function writeFromGuest(
  backend: BlockBackend,
  offset: number,
  memory: GuestMemory,
  ranges: GuestRanges,
): void {
  if (backend.writeGuest) return backend.writeGuest(offset, memory, ranges);
  for (let k = 0; k < ranges.count; k++) {
    backend.write(offset, memory.slice(ranges.gpa(k), ranges.len(k)));
    offset += ranges.len(k);
  }
}

/**
 * Zero what a short read left of `ranges` (the first `done` bytes were read):
 * the part of an image past the end of a file that shrank reads as zeros.
 */
export function zeroPast(memory: GuestMemory, ranges: GuestRanges, done: number): void {
  for (let k = 0; k < ranges.count; k++) {
    const len = ranges.len(k);
    if (done >= len) done -= len;
    else {
      memory.fill(ranges.gpa(k) + done, len - done);
      done = 0;
    }
  }
}

/** A {@linkcode BlockBackend} held in memory. */
export class MemoryBlockBackend implements BlockBackend {
  /** The disk contents. */
  readonly bytes: Uint8Array;
  /** Writes are refused. */
  readonly readonly: boolean;
  /** Number of flushes so far. */
  flushes = 0;

  /** A disk of `size` zero bytes, or over `bytes` if given. */
  constructor(size: number | Uint8Array, readonly = false) {
    this.bytes = typeof size === "number" ? new Uint8Array(size) : size;
    this.readonly = readonly;
  }

  /** Size in bytes. */
  get size(): number {
    return this.bytes.length;
  }

  /** Copy out. */
  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    into.set(this.bytes.subarray(offset, offset + into.length));
  }

  /** Copy in. */
  write(offset: number, data: Uint8Array): void {
    if (this.readonly) throw new Error("memory disk: read-only");
    checkRange(this, offset, data.length);
    this.bytes.set(data, offset);
  }

  /** Count the flush. */
  flush(): void {
    this.flushes++;
  }
}

/** Throw RangeError unless `[offset, offset+length)` lies inside the backend. */
export function checkRange(
  backend: { readonly size: number },
  offset: number,
  length: number,
): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > backend.size) {
    throw new RangeError(`block access ${offset}+${length} outside a ${backend.size}-byte disk`);
  }
}
