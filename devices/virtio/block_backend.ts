/**
 * What virtio-blk needs from its storage: synchronous positioned reads and
 * writes, a durability barrier, a size, and whether writes are allowed. Plus
 * an in-memory implementation for tests and scratch disks.
 *
 * @module
 */

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
