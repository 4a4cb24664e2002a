/**
 * A {@linkcode BlockBackend} over a raw file descriptor that another thread
 * opened (the image of a {@linkcode FileBlockBackend}, used by the virtio-blk
 * I/O worker): preadv/pwritev straight between the file and guest RAM and
 * fdatasync, all through libc FFI (node:fs descriptors are per thread). The
 * descriptor is borrowed: this backend never closes it.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import { errno, libc, OsError } from "../../kvm/libc.ts";
import { type BlockBackend, checkRange, zeroPast } from "./block_backend.ts";
import { type VectoredIo, vectoredIo } from "./vectored_io.ts";
import type { GuestRanges } from "./guest_ranges.ts";

/** Where the image is (structured-cloneable, to hand to a worker). */
export interface SharedImage {
  /** Path, for messages. */
  readonly path: string;
  /** Open file descriptor (process-wide). */
  readonly fd: number;
  /** Size in bytes. */
  readonly size: number;
  /** Writes are refused. */
  readonly readonly: boolean;
}

const EINTR = 4;

/** Positioned I/O on a borrowed descriptor. */
export class FdBlockBackend implements BlockBackend {
  /** Path, for messages. */
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
  /** Writes are refused. */
  readonly readonly: boolean;
  readonly #fd: number;
  readonly #io: VectoredIo;

  /** Use `image.fd`. Throws where FFI is unavailable. */
  constructor(image: SharedImage) {
    const io = vectoredIo();
    if (!io) throw new Error(`${image.path}: vectored I/O needs FFI`);
    this.#io = io;
    this.#fd = image.fd;
    this.path = image.path;
    this.size = image.size;
    this.readonly = image.readonly;
  }

  /** pread into `into`; a short file reads as zeros past its end. */
  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    const n = this.#io.preadv(this.#fd, offset, [into]);
    into.fill(0, n);
  }

  /** pwrite all of `data`. */
  write(offset: number, data: Uint8Array): void {
    if (this.readonly) throw new Error(`${this.path}: opened read-only`);
    checkRange(this, offset, data.length);
    this.#io.pwritev(this.#fd, offset, [data]);
  }

  /** preadv straight into guest RAM; a short file reads as zeros past its end. */
  readGuest(offset: number, memory: GuestMemory, ranges: GuestRanges): void {
    checkRange(this, offset, ranges.total);
    const done = this.#io.preadvGuest(this.#fd, offset, memory, ranges);
    if (done < ranges.total) zeroPast(memory, ranges, done);
  }

  /** pwritev straight from guest RAM. */
  writeGuest(offset: number, memory: GuestMemory, ranges: GuestRanges): void {
    if (this.readonly) throw new Error(`${this.path}: opened read-only`);
    checkRange(this, offset, ranges.total);
    this.#io.pwritevGuest(this.#fd, offset, memory, ranges);
  }

  /** fdatasync (retried on EINTR); throws OsError on failure. */
  flush(): void {
    if (this.readonly) return;
    for (;;) {
      if (libc().fdatasync(this.#fd) === 0) return;
      const e = errno();
      if (e !== EINTR) throw new OsError(`fdatasync ${this.path}`, e);
    }
  }
}
