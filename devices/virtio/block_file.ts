/**
 * A {@linkcode BlockBackend} over a host file (a raw disk image), with
 * synchronous positioned I/O and fdatasync for flush. A request's buffers
 * move in one `preadv`/`pwritev` (FFI, see {@linkcode vectoredIo}) straight
 * between the file and guest RAM; without FFI, pread/pwrite per buffer through
 * node:fs.
 *
 * @module
 */

import * as fs from "node:fs";
import { type BlockBackend, checkRange, zeroPast } from "./block_backend.ts";
import { vectoredIo } from "./vectored_io.ts";
import type { SharedImage } from "./fd_block_backend.ts";
import type { GuestMemory } from "../../kvm/guest_memory.ts";
import type { GuestRanges } from "./guest_ranges.ts";

/** A raw image file opened for virtio-blk. */
export class FileBlockBackend implements BlockBackend {
  /** Path of the image, for messages. */
  readonly path: string;
  /** Writes are refused (opened read-only). */
  readonly readonly: boolean;
  /** Size in bytes, taken when opened. */
  readonly size: number;
  #fd: number | null;

  /** Open `path` (read-write unless `readonly`). Throws if it cannot be opened. */
  constructor(path: string, options: { readonly?: boolean } = {}) {
    this.path = path;
    this.readonly = options.readonly ?? false;
    this.#fd = fs.openSync(path, this.readonly ? "r" : "r+");
    this.size = fs.fstatSync(this.#fd).size;
  }

  /** pread into `into`; a short file reads as zeros past its end. */
  read(offset: number, into: Uint8Array): void {
    checkRange(this, offset, into.length);
    const fd = this.#open();
    let done = 0;
    while (done < into.length) {
      const n = fs.readSync(fd, into, done, into.length - done, offset + done);
      if (n === 0) {
        into.fill(0, done);
        break;
      }
      done += n;
    }
  }

  /** pwrite all of `data`. */
  write(offset: number, data: Uint8Array): void {
    if (this.readonly) throw new Error(`${this.path}: opened read-only`);
    checkRange(this, offset, data.length);
    const fd = this.#open();
    let done = 0;
    while (done < data.length) {
      done += fs.writeSync(fd, data, done, data.length - done, offset + done);
    }
  }

  /** preadv straight into guest RAM; a short file reads as zeros past its end. */
  readGuest(offset: number, memory: GuestMemory, ranges: GuestRanges): void {
    checkRange(this, offset, ranges.total);
    const io = vectoredIo();
    if (!io) {
      for (let k = 0; k < ranges.count; k++) {
        this.read(offset, memory.slice(ranges.gpa(k), ranges.len(k)));
        offset += ranges.len(k);
      }
      return;
    }
    const done = io.preadvGuest(this.#open(), offset, memory, ranges);
    if (done < ranges.total) zeroPast(memory, ranges, done);
  }

  /** pwritev straight from guest RAM. */
  writeGuest(offset: number, memory: GuestMemory, ranges: GuestRanges): void {
    if (this.readonly) throw new Error(`${this.path}: opened read-only`);
    checkRange(this, offset, ranges.total);
    const io = vectoredIo();
    if (io) return io.pwritevGuest(this.#open(), offset, memory, ranges);
    for (let k = 0; k < ranges.count; k++) {
      this.write(offset, memory.slice(ranges.gpa(k), ranges.len(k)));
      offset += ranges.len(k);
    }
  }

  /** The open image for another thread (an FdBlockBackend there); null once closed. */
  shared(): SharedImage | null {
    if (this.#fd === null) return null;
    return { path: this.path, fd: this.#fd, size: this.size, readonly: this.readonly };
  }

  /** fdatasync. */
  flush(): void {
    if (!this.readonly) fs.fdatasyncSync(this.#open());
  }

  /** Close the file; later accesses throw. */
  close(): void {
    if (this.#fd !== null) fs.closeSync(this.#fd);
    this.#fd = null;
  }

  #open(): number {
    if (this.#fd === null) throw new Error(`${this.path}: closed`);
    return this.#fd;
  }
}
