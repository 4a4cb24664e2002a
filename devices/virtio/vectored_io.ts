/**
 * Vectored positioned file I/O (`preadv(2)` / `pwritev(2)` through FFI): one
 * system call moves a whole scatter-gather list, e.g. every guest page of a
 * virtio-blk request, straight between the file and guest RAM, with no view
 * object per page (the list is built from guest addresses and each region's
 * host address). Without FFI (no `--allow-ffi`, or a sandboxed plugin)
 * {@linkcode vectoredIo} returns null and callers use ordinary pread/pwrite.
 *
 * @module
 */

import type { GuestMemory, MemoryRegion } from "../../kvm/guest_memory.ts";
import type { GuestRanges } from "./guest_ranges.ts";

/** Most buffers one call takes (Linux `IOV_MAX`); longer lists are split. */
export const IOV_MAX = 1024;

/**
 * `struct iovec` (void *iov_base; size_t iov_len) as u32 words: base low/high,
 * length low/high (x86-64). Written as two halves to avoid a BigInt per buffer.
 */
export const IOVEC = { BASE: 0, LEN: 2, WORDS: 4 } as const;

const TWO_32 = 0x1_0000_0000;

/** preadv/pwritev over a file descriptor. */
export interface VectoredIo {
  /**
   * Read into `into` (in order) from byte `offset` of `fd`. Returns the bytes
   * read, less than the total only at end of file. Throws on an I/O error.
   */
  preadv(fd: number, offset: number, into: readonly Uint8Array[]): number;
  /** Write all of `data` (in order) at byte `offset` of `fd`. Throws on an I/O error. */
  pwritev(fd: number, offset: number, data: readonly Uint8Array[]): void;
  /**
   * Read into guest RAM `ranges` (each inside one region of `memory`, else
   * RangeError before any I/O) from byte `offset`; returns the bytes read
   * (short only at EOF).
   */
  preadvGuest(fd: number, offset: number, memory: GuestMemory, ranges: GuestRanges): number;
  /** Write guest RAM `ranges` (each inside one region, else RangeError) at byte `offset`. */
  pwritevGuest(fd: number, offset: number, memory: GuestMemory, ranges: GuestRanges): void;
}

const EINTR = 4;

const symbols = {
  preadv: { parameters: ["i32", "buffer", "i32", "i64"], result: "isize" },
  pwritev: { parameters: ["i32", "buffer", "i32", "i64"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let cached: VectoredIo | null | undefined;

/** The FFI implementation, or null where FFI is unavailable. */
export function vectoredIo(): VectoredIo | null {
  if (cached !== undefined) return cached;
  try {
    cached = new FfiVectoredIo(Deno.dlopen("libc.so.6", symbols).symbols);
  } catch {
    cached = null;
  }
  return cached;
}

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

/**
 * Guest start, guest end and host address of each region, three numbers per
 * region, keyed by the memory's region list (a closed memory has a new, empty one).
 */
const hostRegions = new WeakMap<readonly MemoryRegion[], Float64Array>();

const HOST_REGION = { GPA: 0, END: 1, HOST: 2, SIZE: 3 } as const;

function hostRegionsOf(memory: GuestMemory): Float64Array {
  const regions = memory.regions;
  let table = hostRegions.get(regions);
  if (!table) {
    table = new Float64Array(regions.length * HOST_REGION.SIZE);
    regions.forEach((r, i) => {
      const at = i * HOST_REGION.SIZE;
      table![at + HOST_REGION.GPA] = r.gpa;
      table![at + HOST_REGION.END] = r.gpa + r.bytes.length;
      table![at + HOST_REGION.HOST] = Number(
        Deno.UnsafePointer.value(Deno.UnsafePointer.of(r.bytes)),
      );
    });
    hostRegions.set(regions, table);
  }
  return table;
}

class FfiVectoredIo implements VectoredIo {
  readonly #libc: Libc;
  /** Reused iovec words. */
  #iov = new Uint32Array(IOVEC.WORDS * 256);

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  preadv(fd: number, offset: number, into: readonly Uint8Array[]): number {
    const iov = this.#reserve(into.length);
    let total = 0;
    into.forEach((b, k) => {
      setIovec(iov, k, Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b))), b.length);
      total += b.length;
    });
    return this.#transfer("preadv", fd, offset, into.length, total);
  }

  pwritev(fd: number, offset: number, data: readonly Uint8Array[]): void {
    const iov = this.#reserve(data.length);
    let total = 0;
    data.forEach((b, k) => {
      setIovec(iov, k, Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b))), b.length);
      total += b.length;
    });
    this.#transfer("pwritev", fd, offset, data.length, total);
  }

  preadvGuest(fd: number, offset: number, memory: GuestMemory, ranges: GuestRanges): number {
    const total = this.#fillGuest(memory, ranges);
    return this.#transfer("preadv", fd, offset, ranges.count, total);
  }

  pwritevGuest(fd: number, offset: number, memory: GuestMemory, ranges: GuestRanges): void {
    const total = this.#fillGuest(memory, ranges);
    this.#transfer("pwritev", fd, offset, ranges.count, total);
  }

  /**
   * Put the host addresses of `ranges` into the iovec words (checking each
   * lies inside one region); returns the total length.
   */
  #fillGuest(memory: GuestMemory, ranges: GuestRanges): number {
    const table = hostRegionsOf(memory);
    const count = ranges.count;
    const iov = this.#reserve(count);
    let total = 0;
    let r = 0; // the region of the previous range: consecutive ranges are usually in the same one
    for (let k = 0; k < count; k++) {
      const gpa = ranges.gpa(k), len = ranges.len(k);
      if (!(gpa >= table[r + HOST_REGION.GPA] && gpa + len <= table[r + HOST_REGION.END])) {
        r = -1;
        for (let at = 0; at < table.length; at += HOST_REGION.SIZE) {
          if (gpa >= table[at + HOST_REGION.GPA] && gpa + len <= table[at + HOST_REGION.END]) {
            r = at;
            break;
          }
        }
        if (r < 0) {
          throw new RangeError(
            `guest range 0x${gpa.toString(16)}+${len} is outside guest memory`,
          );
        }
      }
      setIovec(iov, k, table[r + HOST_REGION.HOST] + (gpa - table[r + HOST_REGION.GPA]), len);
      total += len;
    }
    return total;
  }

  #reserve(count: number): Uint32Array {
    if (this.#iov.length < count * IOVEC.WORDS) this.#iov = new Uint32Array(count * IOVEC.WORDS);
    return this.#iov;
  }

  /**
   * Move the `count` entries of the iovec words (`total` bytes), resuming
   * after short transfers (the words are advanced in place); a read stops
   * early only at end of file, a write throws if it makes no progress.
   */
  #transfer(
    call: "preadv" | "pwritev",
    fd: number,
    offset: number,
    count: number,
    total: number,
  ): number {
    const iov = this.#iov;
    let done = 0;
    let first = 0;
    while (done < total && first < count) {
      const n = Number(
        this.#libc[call](
          fd,
          iov.subarray(first * IOVEC.WORDS),
          Math.min(count - first, IOV_MAX),
          BigInt(offset + done),
        ),
      );
      if (n < 0) {
        const e = this.#errno();
        if (e === EINTR) continue;
        throw new Error(`${call} fd ${fd} at byte ${offset + done}: errno ${e}`);
      }
      if (n === 0) {
        if (call === "pwritev") {
          throw new Error(`pwritev fd ${fd} at byte ${offset + done}: no progress`);
        }
        break; // end of file
      }
      done += n;
      let left = n;
      while (first < count) {
        const len = iovecWord(iov, first, IOVEC.LEN);
        if (left < len) {
          setIovec(iov, first, iovecWord(iov, first, IOVEC.BASE) + left, len - left);
          break;
        }
        left -= len;
        first++;
      }
    }
    return done;
  }

  #errno(): number {
    const p = this.#libc.__errno_location();
    return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
  }
}

/** Store entry `k` of an iovec array (`base` and `len` are below 2^53). */
function setIovec(iov: Uint32Array, k: number, base: number, len: number): void {
  const at = k * IOVEC.WORDS;
  iov[at + IOVEC.BASE] = base >>> 0;
  iov[at + IOVEC.BASE + 1] = Math.floor(base / TWO_32);
  iov[at + IOVEC.LEN] = len >>> 0;
  iov[at + IOVEC.LEN + 1] = Math.floor(len / TWO_32);
}

/** The 64-bit field at `field` of entry `k`. */
function iovecWord(iov: Uint32Array, k: number, field: number): number {
  const at = k * IOVEC.WORDS + field;
  return iov[at] + iov[at + 1] * TWO_32;
}
