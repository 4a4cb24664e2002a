/**
 * A split virtqueue (virtio 1.2 §2.7) seen from the device side, over guest
 * memory.
 *
 * The driver owns the descriptor table and the available ring, the device
 * owns the used ring. {@linkcode Virtqueue.pop} takes the next available
 * descriptor chain, follows NEXT links and one level of INDIRECT table, and
 * returns it as validated device-readable and device-writable buffer lists;
 * {@linkcode Virtqueue.popInto} does the same into a reused
 * {@linkcode ChainBuffers} (typed arrays, no object per descriptor, buffers
 * contiguous in guest memory merged), for hot paths such as virtio-blk;
 * {@linkcode Virtqueue.push} returns a chain to the driver through the used
 * ring. Notification suppression works both ways (EVENT_IDX's used_event /
 * avail_event, or the NO_INTERRUPT / NO_NOTIFY flags).
 *
 * Everything the guest supplies (ring indices, descriptor indices, addresses,
 * lengths, flags) is validated against guest memory and the queue size before
 * use, and every descriptor is read exactly once. A malformed queue is marked
 * broken with a reason (the transport then sets DEVICE_NEEDS_RESET): it
 * returns no more chains and never throws to its caller because of what the
 * guest wrote. Only device-side misuse (pushing a head that is not in flight)
 * throws.
 *
 * @module
 */

import type { GuestMemory, MemoryRegion } from "../../kvm/guest_memory.ts";
import { GuestRanges } from "./guest_ranges.ts";
import {
  availRingBytes,
  descTableBytes,
  MAX_QUEUE_SIZE,
  needEvent,
  usedRingBytes,
  VIRTQ_ALIGN,
  VIRTQ_AVAIL,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC,
  VIRTQ_DESC_F,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED,
  VIRTQ_USED_ELEM,
  VIRTQ_USED_F_NO_NOTIFY,
} from "./spec.ts";

/** Where the three areas of a split queue live in guest memory, and its size. */
export interface VirtqueueLayout {
  /** Number of descriptors: a power of two, 1..32768. */
  readonly size: number;
  /** GPA of the descriptor table (16-byte aligned). */
  readonly desc: number;
  /** GPA of the driver area, the available ring (2-byte aligned). */
  readonly avail: number;
  /** GPA of the device area, the used ring (4-byte aligned). */
  readonly used: number;
}

/** Negotiated ring features and a hook for breakage. */
export interface VirtqueueOptions {
  /** VIRTIO_F_EVENT_IDX was negotiated. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_INDIRECT_DESC was negotiated (otherwise an INDIRECT descriptor breaks the queue). */
  readonly indirect?: boolean;
  /** Name for messages, e.g. `blk requestq`. */
  readonly name?: string;
  /** Called once, when the queue becomes broken. */
  readonly onBroken?: (reason: string) => void;
}

/** One guest buffer of a chain: `len` bytes at guest physical address `gpa`. */
export interface GuestBuffer {
  /** Guest physical address. */
  readonly gpa: number;
  /** Length in bytes. */
  readonly len: number;
}

/** A validated descriptor chain taken from the available ring. */
export interface DescriptorChain {
  /** Index of the head descriptor: pass it to {@linkcode Virtqueue.push}. */
  readonly head: number;
  /** Device-readable buffers, in chain order (they all precede the writable ones). */
  readonly readable: readonly GuestBuffer[];
  /** Device-writable buffers, in chain order. */
  readonly writable: readonly GuestBuffer[];
  /** Total bytes of `readable`. */
  readonly readableLength: number;
  /** Total bytes of `writable`. */
  readonly writableLength: number;
}

/**
 * A validated descriptor chain in reusable typed arrays (see
 * {@linkcode Virtqueue.popInto}): its head and its device-readable and
 * device-writable sides as {@linkcode GuestRanges}.
 */
export class ChainBuffers {
  /** Index of the head descriptor: pass it to {@linkcode Virtqueue.push}. */
  head = -1;
  /** Device-readable ranges, in chain order. */
  readonly readable: GuestRanges = new GuestRanges(4);
  /** Device-writable ranges, in chain order. */
  readonly writable: GuestRanges = new GuestRanges(4);
}

/** Largest total length of one chain (virtio 1.2 §2.7.13.1: chains are below 2^32 bytes). */
export const MAX_CHAIN_BYTES = 0xffff_ffff;

/** Largest indirect table, in descriptors (the largest queue size). */
export const MAX_INDIRECT_DESCRIPTORS = MAX_QUEUE_SIZE;

/**
 * A descriptor (`struct virtq_desc`: addr u64, len u32, flags u16, next u16)
 * as four 32-bit words on a little-endian host (x86-64, as everything dvmm
 * drives): typed-array loads walk a chain several times faster than DataView
 * reads.
 */
const DESC_WORD = {
  ADDR_LO: VIRTQ_DESC.ADDR.offset / 4,
  ADDR_HI: VIRTQ_DESC.ADDR.offset / 4 + 1,
  LEN: VIRTQ_DESC.LEN.offset / 4,
  /** flags in the low half, next in the high half. */
  FLAGS_NEXT: VIRTQ_DESC.FLAGS.offset / 4,
} as const;
const DESC_WORDS = VIRTQ_DESC_SIZE / 4;
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("virtqueue: dvmm reads descriptors as little-endian words (x86-64 hosts)");
}

/** Device side of one split virtqueue. */
export class Virtqueue {
  /** Queue size (number of descriptors). */
  readonly size: number;
  /** The layout the driver programmed. */
  readonly layout: VirtqueueLayout;
  /** Name for messages. */
  readonly name: string;
  /** EVENT_IDX in use. */
  readonly eventIdx: boolean;
  /** INDIRECT_DESC in use. */
  readonly indirect: boolean;

  readonly #memory: GuestMemory;
  readonly #onBroken?: (reason: string) => void;
  #broken: string | null = null;
  #lastAvail = 0;
  #usedIdx = 0;
  #signalledUsed = 0;
  #signalledValid = false;
  #pushedSinceCheck = false;
  #notify = true;
  /** Writable length of each in-flight head + 1 (0 = not in flight). */
  readonly #inflight: Float64Array;
  #inflightCount = 0;
  /** Where pop() walks chains (unmerged). */
  readonly #scratch = new ChainBuffers();
  /** Start and end address of each memory region (see `#regions`). */
  #regionTable: Float64Array = new Float64Array(0);
  #regionTableOf: readonly MemoryRegion[] | null = null;

  /**
   * Attach to a queue the driver has set up. An invalid layout (size not a
   * power of two, misaligned or out-of-memory area) gives a queue that is
   * broken from the start.
   */
  constructor(memory: GuestMemory, layout: VirtqueueLayout, options: VirtqueueOptions = {}) {
    this.#memory = memory;
    this.layout = { ...layout };
    this.size = layout.size;
    this.name = options.name ?? "virtqueue";
    this.eventIdx = options.eventIdx ?? false;
    this.indirect = options.indirect ?? false;
    this.#onBroken = options.onBroken;
    const sizeOk = Number.isInteger(layout.size) && layout.size >= 1 &&
      layout.size <= MAX_QUEUE_SIZE && (layout.size & (layout.size - 1)) === 0;
    this.#inflight = new Float64Array(sizeOk ? layout.size : 0);
    const problem = sizeOk
      ? this.#layoutProblem()
      : `size ${layout.size} is not a power of two <= ${MAX_QUEUE_SIZE}`;
    if (problem) this.markBroken(problem);
  }

  /** Why the queue is broken, or null while it is usable. */
  get brokenReason(): string | null {
    return this.#broken;
  }

  /** True once the queue is broken; it then yields no chains and ignores pushes. */
  get isBroken(): boolean {
    return this.#broken !== null;
  }

  /** Index of the next available-ring entry the device will take (16-bit, wraps). */
  get lastAvailIdx(): number {
    return this.#lastAvail;
  }

  /** The device's used index (16-bit, wraps). */
  get usedIdx(): number {
    return this.#usedIdx;
  }

  /** Chains popped but not yet pushed back. */
  get inflight(): number {
    return this.#inflightCount;
  }

  /**
   * Mark the queue broken (once; later calls keep the first reason) and call
   * `onBroken`. Devices call it for protocol errors they detect themselves.
   */
  markBroken(reason: string): void {
    if (this.#broken !== null) return;
    this.#broken = `${this.name}: ${reason}`;
    try {
      this.#onBroken?.(this.#broken);
    } catch {
      // A failing observer must not turn a guest error into a device exception.
    }
  }

  /**
   * Number of chains the driver has made available and the device has not
   * taken yet (0 when broken; breaks the queue if the driver's index jumped by
   * more than the queue size).
   */
  available(): number {
    if (this.#broken !== null) return 0;
    const idx = this.#readU16(this.layout.avail + VIRTQ_AVAIL.IDX.offset);
    if (idx < 0) return 0;
    const pending = (idx - this.#lastAvail) & 0xffff;
    if (pending > this.size) {
      this.markBroken(
        `available index jumped from ${this.#lastAvail} to ${idx} (queue size ${this.size})`,
      );
      return 0;
    }
    return pending;
  }

  /**
   * Take the next available chain, validated; null when there is none or the
   * queue is (or just became) broken.
   */
  pop(): DescriptorChain | null {
    const c = this.#scratch;
    if (!this.#take(c, false)) return null;
    return {
      head: c.head,
      readable: c.readable.toBuffers(),
      writable: c.writable.toBuffers(),
      readableLength: c.readable.total,
      writableLength: c.writable.total,
    };
  }

  /**
   * Take the next available chain, validated, into `out` (its previous
   * contents are replaced): the same checks and effects as
   * {@linkcode pop}, but no object per buffer, and consecutive buffers of one
   * side that are contiguous in guest memory (within one region) come out as
   * one range, empty ones not at all. False when there is none or the queue
   * is (or just became) broken.
   */
  popInto(out: ChainBuffers): boolean {
    return this.#take(out, true);
  }

  #take(out: ChainBuffers, merge: boolean): boolean {
    if (this.available() === 0) return false;
    const slot = this.#lastAvail & (this.size - 1);
    const head = this.#readU16(
      this.layout.avail + VIRTQ_AVAIL.RING.offset + VIRTQ_AVAIL.RING.size * slot,
    );
    if (head < 0) return false;
    if (head >= this.size) {
      this.markBroken(
        `available ring entry ${this.#lastAvail} names descriptor ${head} >= size ${this.size}`,
      );
      return false;
    }
    if (this.#inflight[head] !== 0) {
      this.markBroken(`descriptor ${head} made available again while the device still owns it`);
      return false;
    }
    let ok: boolean;
    try {
      ok = this.#walk(head, out, merge);
    } catch (e) {
      this.#accessFailed(e);
      return false;
    }
    if (!ok) return false;
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    this.#inflight[head] = out.writable.total + 1;
    this.#inflightCount++;
    if (this.eventIdx && this.#notify) this.#writeAvailEvent();
    return true;
  }

  /**
   * Return chain `head` to the driver with `writtenLen` bytes written into its
   * writable buffers. Ignored on a broken queue. Throws RangeError if `head`
   * is not in flight or `writtenLen` exceeds the chain's writable length
   * (device bugs, not guest errors).
   */
  push(head: number, writtenLen: number): void {
    if (
      !Number.isInteger(head) || head < 0 || head >= this.#inflight.length || !this.#inflight[head]
    ) {
      throw new RangeError(`${this.name}: push of descriptor ${head}, which is not in flight`);
    }
    const limit = this.#inflight[head] - 1;
    if (!Number.isInteger(writtenLen) || writtenLen < 0 || writtenLen > limit) {
      throw new RangeError(
        `${this.name}: push of descriptor ${head} with length ${writtenLen} > writable ${limit}`,
      );
    }
    this.#inflight[head] = 0;
    this.#inflightCount--;
    if (this.#broken !== null) return;
    const used = this.layout.used;
    const elem = used + VIRTQ_USED.RING.offset +
      VIRTQ_USED.RING.size * (this.#usedIdx & (this.size - 1));
    const next = (this.#usedIdx + 1) & 0xffff;
    try {
      this.#memory.writeU32(elem + VIRTQ_USED_ELEM.ID.offset, head);
      this.#memory.writeU32(elem + VIRTQ_USED_ELEM.LEN.offset, writtenLen);
      // x86 keeps stores in order: the element is visible before the index.
      this.#memory.writeU16(used + VIRTQ_USED.IDX.offset, next);
    } catch (e) {
      this.#accessFailed(e);
      return;
    }
    this.#usedIdx = next;
    this.#pushedSinceCheck = true;
  }

  /**
   * Should the device interrupt the driver now for the chains pushed since the
   * last call? Uses used_event with EVENT_IDX, else the NO_INTERRUPT flag.
   * False when nothing was pushed since the previous call, or the queue is broken.
   */
  needsNotification(): boolean {
    if (this.#broken !== null) return false;
    fullFence(); // the used index store must be visible before we read the driver's wishes
    if (!this.#pushedSinceCheck) return false;
    this.#pushedSinceCheck = false;
    const old = this.#signalledUsed;
    const valid = this.#signalledValid;
    this.#signalledUsed = this.#usedIdx;
    this.#signalledValid = true;
    if (this.eventIdx) {
      const at = this.layout.avail + VIRTQ_AVAIL.RING.offset + VIRTQ_AVAIL.RING.size * this.size;
      const event = this.#readU16(at);
      if (event < 0) return false;
      return !valid || needEvent(event, this.#usedIdx, old);
    }
    const flags = this.#readU16(this.layout.avail + VIRTQ_AVAIL.FLAGS.offset);
    return flags >= 0 && (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Ask the driver to notify (kick) when it makes buffers available (`true`),
   * or to stop (`false`): avail_event with EVENT_IDX, else the NO_NOTIFY flag.
   * After enabling, call {@linkcode available} again: buffers added before the
   * driver saw the change raise no kick.
   */
  setNotification(enabled: boolean): void {
    this.#notify = enabled;
    if (this.#broken !== null) return;
    if (this.eventIdx) {
      if (enabled) this.#writeAvailEvent();
    } else {
      this.#writeU16(
        this.layout.used + VIRTQ_USED.FLAGS.offset,
        enabled ? 0 : VIRTQ_USED_F_NO_NOTIFY,
      );
    }
    fullFence(); // publish before the caller re-reads the available index
  }

  #writeAvailEvent(): void {
    const at = this.layout.used + VIRTQ_USED.RING.offset + VIRTQ_USED.RING.size * this.size;
    this.#writeU16(at, this.#lastAvail);
  }

  /** What is wrong with the layout, or null. */
  #layoutProblem(): string | null {
    const { size, desc, avail, used } = this.layout;
    const areas: [string, number, number, number][] = [
      ["descriptor table", desc, descTableBytes(size), VIRTQ_ALIGN.DESC],
      ["available ring", avail, availRingBytes(size), VIRTQ_ALIGN.AVAIL],
      ["used ring", used, usedRingBytes(size), VIRTQ_ALIGN.USED],
    ];
    for (const [what, gpa, len, align] of areas) {
      if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa % align !== 0) {
        return `${what} address ${hexOf(gpa)} is not ${align}-byte aligned`;
      }
      if (!this.#memory.contains(gpa, len)) {
        return `${what} ${hexOf(gpa)}+${hexOf(len)} is outside guest memory`;
      }
    }
    return null;
  }

  /**
   * Follow the chain starting at `head` into `out`; false (queue broken) if it
   * is malformed. With `merge`, contiguous buffers of one side become one
   * range and empty ones are left out; without, `out` has one entry per
   * descriptor. Throws GuestMemoryError only when memory was closed.
   */
  #walk(head: number, out: ChainBuffers, merge: boolean): boolean {
    const memory = this.#memory;
    const readable = out.readable, writable = out.writable;
    readable.clear();
    writable.clear();
    out.head = head;
    // Buffers are checked against the region table inline (this loop runs once per descriptor);
    // a buffer extends the previous one of its side when it follows it in the same region.
    const regions = this.#regions();
    let region = 0, bytes = 0;
    let readEnd = -1, readRegion = -1, writeEnd = -1, writeRegion = -1;
    let table = this.layout.desc, tableSize = this.size, index = head, count = 0;
    let inIndirect = false, sawWritable = false;
    // One bounds-checked view per table (not five checked reads per descriptor), as 32-bit words.
    let descs = this.#tableWords(table, tableSize);
    for (;;) {
      if (++count > tableSize) {
        this.markBroken(
          `chain at descriptor ${head} has more than ${tableSize} descriptors${
            inIndirect ? " in its indirect table" : ""
          } (loop?)`,
        );
        return false;
      }
      const at = DESC_WORDS * index;
      const lo = descs[at + DESC_WORD.ADDR_LO];
      const hi = descs[at + DESC_WORD.ADDR_HI];
      const len = descs[at + DESC_WORD.LEN];
      const flagsNext = descs[at + DESC_WORD.FLAGS_NEXT];
      const flags = flagsNext & 0xffff, next = flagsNext >>> 16;
      const gpa = hi < 0x20_0000 ? hi * 0x1_0000_0000 + lo : -1; // -1: beyond 2^53
      if (flags & VIRTQ_DESC_F.INDIRECT) {
        const problem = !this.indirect
          ? "uses INDIRECT, which was not negotiated"
          : inIndirect
          ? "is INDIRECT inside an indirect table"
          : flags & VIRTQ_DESC_F.NEXT
          ? "has both INDIRECT and NEXT"
          : len === 0 || len % VIRTQ_DESC_SIZE !== 0
          ? `has indirect table length ${len}, not a non-zero multiple of ${VIRTQ_DESC_SIZE}`
          : len / VIRTQ_DESC_SIZE > MAX_INDIRECT_DESCRIPTORS
          ? `has an indirect table of ${
            len / VIRTQ_DESC_SIZE
          } descriptors (max ${MAX_INDIRECT_DESCRIPTORS})`
          : gpa < 0 || !memory.contains(gpa, len)
          ? `has indirect table ${hexOf(gpa, hi, lo)}+${hexOf(len)} outside guest memory`
          : null;
        if (problem) {
          this.markBroken(`${descriptorName(head, index, inIndirect)} ${problem}`);
          return false;
        }
        table = gpa;
        tableSize = len / VIRTQ_DESC_SIZE;
        descs = this.#tableWords(table, tableSize);
        index = 0;
        count = 0;
        inIndirect = true;
        continue;
      }
      if (!(gpa >= regions[region] && gpa + len <= regions[region + 1])) {
        region = gpa < 0 ? -1 : findRegion(regions, gpa, len);
        if (region < 0) {
          this.markBroken(
            `${descriptorName(head, index, inIndirect)} buffer ${hexOf(gpa, hi, lo)}+${
              hexOf(len)
            } is outside guest memory`,
          );
          return false;
        }
      }
      bytes += len;
      if (bytes > MAX_CHAIN_BYTES) {
        this.markBroken(`chain at descriptor ${head} is longer than ${MAX_CHAIN_BYTES} bytes`);
        return false;
      }
      if (flags & VIRTQ_DESC_F.WRITE) {
        sawWritable = true;
        if (!merge) writable.push(gpa, len);
        else if (len > 0) {
          if (gpa === writeEnd && region === writeRegion) writable.extendLast(len);
          else writable.push(gpa, len);
          writeEnd = gpa + len;
          writeRegion = region;
        }
      } else if (sawWritable) {
        this.markBroken(
          `${
            descriptorName(head, index, inIndirect)
          } is device-readable but follows a device-writable one`,
        );
        return false;
      } else if (!merge) readable.push(gpa, len);
      else if (len > 0) {
        if (gpa === readEnd && region === readRegion) readable.extendLast(len);
        else readable.push(gpa, len);
        readEnd = gpa + len;
        readRegion = region;
      }
      if (!(flags & VIRTQ_DESC_F.NEXT)) break;
      if (next >= tableSize) {
        this.markBroken(
          `${descriptorName(head, index, inIndirect)} links to ${next} >= ${
            inIndirect ? "table" : "queue"
          } size ${tableSize}`,
        );
        return false;
      }
      index = next;
    }
    return true;
  }

  /** A view of a (validated) descriptor table; throws GuestMemoryError once memory is closed. */
  /**
   * The descriptor table at `table` as little-endian 32-bit words (see
   * {@linkcode DESC_WORD}): a view of guest memory, or for a table that is not
   * 4-byte aligned (a guest may place an indirect table anywhere) a copy.
   */
  #tableWords(table: number, entries: number): Uint32Array {
    const bytes = this.#memory.slice(table, entries * VIRTQ_DESC_SIZE);
    if (bytes.byteOffset % 4 === 0) {
      return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    }
    const copy = new Uint32Array(bytes.byteLength / 4);
    new Uint8Array(copy.buffer).set(bytes);
    return copy;
  }

  /**
   * The memory's regions as start, end pairs (rebuilt when its region list
   * changes, e.g. to none when it is closed); regions that touch stay apart
   * (their host memory is not contiguous).
   */
  #regions(): Float64Array {
    const regions = this.#memory.regions;
    if (regions !== this.#regionTableOf) {
      const table = new Float64Array(2 * regions.length);
      regions.forEach((r, i) => {
        table[2 * i] = r.gpa;
        table[2 * i + 1] = r.gpa + r.bytes.length;
      });
      this.#regionTable = table;
      this.#regionTableOf = regions;
    }
    return this.#regionTable;
  }

  /** Read a u16 at a validated ring address; -1 (queue broken) if memory was closed. */
  #readU16(gpa: number): number {
    try {
      return this.#memory.readU16(gpa);
    } catch (e) {
      this.#accessFailed(e);
      return -1;
    }
  }

  /** Write a u16 at a validated ring address; breaks the queue if memory was closed. */
  #writeU16(gpa: number, value: number): void {
    try {
      this.#memory.writeU16(gpa, value);
    } catch (e) {
      this.#accessFailed(e);
    }
  }

  /**
   * A guest-memory access whose range was validated failed (memory closed
   * under us): break the queue instead of letting it escape.
   */
  #accessFailed(e: unknown): void {
    this.markBroken(`guest memory access failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** How a descriptor is named in messages. */
function descriptorName(head: number, index: number, inIndirect: boolean): string {
  return inIndirect ? `indirect descriptor ${index} (chain ${head})` : `descriptor ${index}`;
}

/** Index in `regions` (start, end pairs) of the region holding `[gpa, gpa+len)`, or -1. */
function findRegion(regions: Float64Array, gpa: number, len: number): number {
  for (let at = 0; at < regions.length; at += 2) {
    if (gpa >= regions[at] && gpa + len <= regions[at + 1]) return at;
  }
  return -1;
}

const fenceCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * A full memory barrier between our ring stores and later ring loads (the
 * guest's vCPUs run concurrently). A sequentially consistent atomic store is
 * a locked instruction on x86, which orders all earlier stores before all
 * later loads.
 */
export function fullFence(): void {
  Atomics.store(fenceCell, 0, 0);
}

function hexOf(value: number, hi?: number, lo?: number): string {
  if (value < 0 && hi !== undefined && lo !== undefined) {
    return `0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`;
  }
  return Number.isFinite(value) && value >= 0 ? `0x${value.toString(16)}` : String(value);
}
