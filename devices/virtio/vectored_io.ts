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
import type { GuestBuffer } from "./virtqueue.ts";

/** Most buffers one call takes (Linux `IOV_MAX`); longer lists are split. */
export const IOV_MAX = 1024;

/** `struct iovec`: void *iov_base; size_t iov_len (two u64 words on x86-64). */
export const IOVEC = { BASE: 0, LEN: 1, WORDS: 2 } as const;

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
   * Read into guest RAM `ranges` (validated, each inside one region of
   * `memory`) from byte `offset`; returns the bytes read (short only at EOF).
   */
  preadvGuest(
    fd: number,
    offset: number,
    memory: GuestMemory,
    ranges: readonly GuestBuffer[],
  ): number;
  /** Write guest RAM `ranges` (validated, each inside one region) at byte `offset`. */
  pwritevGuest(
    fd: number,
    offset: number,
    memory: GuestMemory,
    ranges: readonly GuestBuffer[],
  ): void;
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

/** Host address of each region, keyed by the memory's region list (a closed memory has a new, empty one). */
interface HostRegion {
  readonly gpa: number;
  readonly end: number;
  readonly host: bigint;
}

const hostRegions = new WeakMap<readonly MemoryRegion[], HostRegion[]>();

function hostRegionsOf(memory: GuestMemory): HostRegion[] {
  const regions = memory.regions;
  let table = hostRegions.get(regions);
  if (!table) {
    table = regions.map((r) => ({
      gpa: r.gpa,
      end: r.gpa + r.bytes.length,
      host: BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(r.bytes))),
    }));
    hostRegions.set(regions, table);
  }
  return table;
}

class FfiVectoredIo implements VectoredIo {
  readonly #libc: Libc;
  /** Reused iovec words. */
  #iov = new BigUint64Array(IOVEC.WORDS * 256);

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  preadv(fd: number, offset: number, into: readonly Uint8Array[]): number {
    const iov = this.#reserve(into.length);
    let total = 0;
    into.forEach((b, k) => {
      iov[k * IOVEC.WORDS + IOVEC.BASE] = BigInt(
        Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)),
      );
      iov[k * IOVEC.WORDS + IOVEC.LEN] = BigInt(b.length);
      total += b.length;
    });
    return this.#transfer("preadv", fd, offset, into.length, total);
  }

  pwritev(fd: number, offset: number, data: readonly Uint8Array[]): void {
    const iov = this.#reserve(data.length);
    let total = 0;
    data.forEach((b, k) => {
      iov[k * IOVEC.WORDS + IOVEC.BASE] = BigInt(
        Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)),
      );
      iov[k * IOVEC.WORDS + IOVEC.LEN] = BigInt(b.length);
      total += b.length;
    });
    this.#transfer("pwritev", fd, offset, data.length, total);
  }

  preadvGuest(
    fd: number,
    offset: number,
    memory: GuestMemory,
    ranges: readonly GuestBuffer[],
  ): number {
    const total = this.#fillGuest(memory, ranges);
    return this.#transfer("preadv", fd, offset, ranges.length, total);
  }

  pwritevGuest(
    fd: number,
    offset: number,
    memory: GuestMemory,
    ranges: readonly GuestBuffer[],
  ): void {
    const total = this.#fillGuest(memory, ranges);
    this.#transfer("pwritev", fd, offset, ranges.length, total);
  }

  /** Put the host addresses of `ranges` into the iovec words; returns the total length. */
  #fillGuest(memory: GuestMemory, ranges: readonly GuestBuffer[]): number {
    const table = hostRegionsOf(memory);
    const iov = this.#reserve(ranges.length);
    let total = 0;
    for (let k = 0; k < ranges.length; k++) {
      const { gpa, len } = ranges[k];
      let r: HostRegion | undefined;
      for (const t of table) {
        if (gpa >= t.gpa && gpa + len <= t.end) {
          r = t;
          break;
        }
      }
      if (!r) {
        throw new RangeError(`guest range 0x${gpa.toString(16)}+${len} is outside guest memory`);
      }
      iov[k * IOVEC.WORDS + IOVEC.BASE] = r.host + BigInt(gpa - r.gpa);
      iov[k * IOVEC.WORDS + IOVEC.LEN] = BigInt(len);
      total += len;
    }
    return total;
  }

  #reserve(count: number): BigUint64Array {
    if (this.#iov.length < count * IOVEC.WORDS) this.#iov = new BigUint64Array(count * IOVEC.WORDS);
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
        const len = Number(iov[first * IOVEC.WORDS + IOVEC.LEN]);
        if (left < len) {
          iov[first * IOVEC.WORDS + IOVEC.BASE] += BigInt(left);
          iov[first * IOVEC.WORDS + IOVEC.LEN] = BigInt(len - left);
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
