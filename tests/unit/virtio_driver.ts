/**
 * A tiny virtio "driver" for tests: lays out a split virtqueue in guest memory
 * the way Linux's virtio_ring.c does (free-list descriptors chained with NEXT,
 * readable before writable, optional indirect tables, 16-bit free-running
 * indices) and reads back the used ring. Also raw writers for malformed cases.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import {
  VIRTQ_AVAIL,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC,
  VIRTQ_DESC_F,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED,
  VIRTQ_USED_ELEM,
} from "../../devices/virtio/spec.ts";
import type { VirtqueueLayout } from "../../devices/virtio/virtqueue.ts";

/** A buffer as [gpa, len]. */
export type Buf = readonly [number, number];

/** One used-ring element. */
export interface UsedElem {
  /** Head descriptor index. */
  readonly id: number;
  /** Bytes written. */
  readonly len: number;
}

/** Place a queue of `size` at `base`: desc table, avail ring, used ring (4 KiB aligned like Linux). */
export function layoutAt(base: number, size: number): VirtqueueLayout {
  const desc = base;
  const avail = desc + VIRTQ_DESC_SIZE * size;
  const used = Math.ceil((avail + 6 + 2 * size) / 4096) * 4096;
  return { size, desc, avail, used };
}

/** The driver side of one split queue. */
export class TestDriver {
  /** Next avail index to publish. */
  availIdx = 0;
  /** Next used index to consume. */
  lastUsed = 0;
  readonly #free: number[];
  readonly #chains = new Map<number, number[]>();

  /** Initialise the rings (zeroed) of `layout` in `memory`. */
  constructor(readonly memory: GuestMemory, readonly layout: VirtqueueLayout) {
    this.#free = Array.from({ length: layout.size }, (_, i) => i);
    memory.fill(layout.desc, VIRTQ_DESC_SIZE * layout.size);
    memory.fill(layout.avail, 6 + 2 * layout.size);
    memory.fill(layout.used, 6 + 8 * layout.size);
  }

  /** Free descriptors left. */
  get free(): number {
    return this.#free.length;
  }

  /** Write descriptor `i` of the table at `table` raw. */
  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number) {
    const at = table + VIRTQ_DESC_SIZE * i;
    this.memory.writeU64(at + VIRTQ_DESC.ADDR.offset, BigInt(addr));
    this.memory.writeU32(at + VIRTQ_DESC.LEN.offset, len);
    this.memory.writeU16(at + VIRTQ_DESC.FLAGS.offset, flags);
    this.memory.writeU16(at + VIRTQ_DESC.NEXT.offset, next);
  }

  /** Lay out a direct chain (readable `out`, then writable `inn`) and return its head (not yet published). */
  chain(out: readonly Buf[], inn: readonly Buf[]): number {
    const bufs = [
      ...out.map((b) => [b, 0] as const),
      ...inn.map((b) => [b, VIRTQ_DESC_F.WRITE] as const),
    ];
    if (bufs.length === 0 || bufs.length > this.#free.length) throw new Error("no room for chain");
    const ids = this.#free.splice(0, bufs.length);
    bufs.forEach(([[gpa, len], flags], k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(
        this.layout.desc,
        ids[k],
        gpa,
        len,
        flags | (last ? 0 : VIRTQ_DESC_F.NEXT),
        last ? 0 : ids[k + 1],
      );
    });
    this.#chains.set(ids[0], ids);
    return ids[0];
  }

  /** Lay out an indirect table at `tableGpa` and one descriptor pointing at it; returns the head. */
  indirectChain(tableGpa: number, out: readonly Buf[], inn: readonly Buf[]): number {
    const bufs = [
      ...out.map((b) => [b, 0] as const),
      ...inn.map((b) => [b, VIRTQ_DESC_F.WRITE] as const),
    ];
    bufs.forEach(([[gpa, len], flags], k) => {
      const last = k === bufs.length - 1;
      this.writeDesc(
        tableGpa,
        k,
        gpa,
        len,
        flags | (last ? 0 : VIRTQ_DESC_F.NEXT),
        last ? 0 : k + 1,
      );
    });
    const [id] = this.#free.splice(0, 1);
    this.writeDesc(
      this.layout.desc,
      id,
      tableGpa,
      VIRTQ_DESC_SIZE * bufs.length,
      VIRTQ_DESC_F.INDIRECT,
      0,
    );
    this.#chains.set(id, [id]);
    return id;
  }

  /** Put `head` in the next avail slot and bump the avail index. */
  publish(head: number): void {
    this.setAvailEntry(this.availIdx, head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.setAvailIdx(this.availIdx);
  }

  /** Lay out and publish a direct chain; returns its head. */
  add(out: readonly Buf[], inn: readonly Buf[]): number {
    const head = this.chain(out, inn);
    this.publish(head);
    return head;
  }

  /** Write avail ring slot for index `idx` raw. */
  setAvailEntry(idx: number, head: number): void {
    const slot = idx & (this.layout.size - 1);
    this.memory.writeU16(this.layout.avail + VIRTQ_AVAIL.RING.offset + 2 * slot, head);
  }

  /** Write the avail index raw. */
  setAvailIdx(idx: number): void {
    this.memory.writeU16(this.layout.avail + VIRTQ_AVAIL.IDX.offset, idx & 0xffff);
  }

  /** Set or clear VIRTQ_AVAIL_F_NO_INTERRUPT. */
  setNoInterrupt(on: boolean): void {
    this.memory.writeU16(
      this.layout.avail + VIRTQ_AVAIL.FLAGS.offset,
      on ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0,
    );
  }

  /** Write used_event (interrupt me when the used index passes this). */
  setUsedEvent(idx: number): void {
    this.memory.writeU16(
      this.layout.avail + VIRTQ_AVAIL.RING.offset + 2 * this.layout.size,
      idx & 0xffff,
    );
  }

  /** The device's avail_event. */
  availEvent(): number {
    return this.memory.readU16(this.layout.used + VIRTQ_USED.RING.offset + 8 * this.layout.size);
  }

  /** The used ring flags. */
  usedFlags(): number {
    return this.memory.readU16(this.layout.used + VIRTQ_USED.FLAGS.offset);
  }

  /** The device's used index. */
  usedIdx(): number {
    return this.memory.readU16(this.layout.used + VIRTQ_USED.IDX.offset);
  }

  /** Consume used elements up to the device's used index and free their descriptors. */
  reclaim(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.usedIdx();
    while (this.lastUsed !== idx) {
      const slot = this.lastUsed & (this.layout.size - 1);
      const at = this.layout.used + VIRTQ_USED.RING.offset + 8 * slot;
      const id = this.memory.readU32(at + VIRTQ_USED_ELEM.ID.offset);
      const len = this.memory.readU32(at + VIRTQ_USED_ELEM.LEN.offset);
      out.push({ id, len });
      const ids = this.#chains.get(id);
      if (ids) {
        this.#free.push(...ids);
        this.#chains.delete(id);
      }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}
