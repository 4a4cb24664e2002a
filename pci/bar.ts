/**
 * One emulated base address register: its guest-visible register value,
 * sizing behaviour, and the address where it is decoded now (kept apart from
 * the register, so that sizing with decode enabled does not disturb the mapped
 * region).
 *
 * @module
 */

import type { BusRange } from "../devices/bus.ts";
import type { BarKind } from "../devices/pci_device.ts";
import { BAR_BITS } from "./config_regs.ts";

/** Which Command decode bit governs a BAR, and which bus it lives on. */
export type BarSpace = "io" | "mem";

/** Where a BAR is decoded now. */
export interface ActiveBar {
  /** Base address of the mapping. */
  readonly address: bigint;
  /** Its registration on the bus. */
  readonly range: BusRange;
}

const U32 = 0xffff_ffffn;

/** The register state of one BAR (one slot, or two for a 64-bit BAR). */
export class PciBar {
  /** Address bits currently in the register (may be the sizing pattern `~(size-1)`). */
  address = 0n;
  /** The decoded mapping, or null when the BAR is not active. */
  active: ActiveBar | null = null;
  /**
   * 64-bit BARs: the address before the first half of a not yet committed
   * two-half update, or null when no update is pending.
   */
  pendingFrom: bigint | null = null;

  readonly #addressMask: bigint;

  /**
   * A BAR with its register at address 0 and not active.
   * @param index first slot (0..5)
   * @param kind io, mem32 or mem64
   * @param size power-of-two size in bytes
   * @param prefetchable memory BARs: prefetchable bit
   */
  constructor(
    readonly index: number,
    readonly kind: BarKind,
    readonly size: bigint,
    readonly prefetchable: boolean,
  ) {
    const full = kind === "io"
      ? BigInt(BAR_BITS.IO_ADDRESS_MASK)
      : kind === "mem32"
      ? BigInt(BAR_BITS.MEM_ADDRESS_MASK)
      : (U32 << 32n) | BigInt(BAR_BITS.MEM_ADDRESS_MASK);
    this.#addressMask = full & ~(size - 1n);
  }

  /** The Command decode bit that enables this BAR. */
  get space(): BarSpace {
    return this.kind === "io" ? "io" : "mem";
  }

  /** The slots this BAR occupies. */
  get slots(): number[] {
    return this.kind === "mem64" ? [this.index, this.index + 1] : [this.index];
  }

  /** Read-only type bits of the (low) register dword. */
  get typeBits(): number {
    if (this.kind === "io") return BAR_BITS.IO_SPACE;
    return (this.kind === "mem64" ? BAR_BITS.MEM_TYPE_64 : 0) |
      (this.prefetchable ? BAR_BITS.MEM_PREFETCH : 0);
  }

  /** Exclusive upper limit of a decodable range for this kind. */
  get limit(): bigint {
    return this.kind === "io" ? 0x1_0000n : this.kind === "mem32" ? 1n << 32n : 1n << 64n;
  }

  /** The register dword at `slot` as the guest reads it. */
  readDword(slot: number): number {
    if (slot === this.index) return Number((this.address & U32) | BigInt(this.typeBits));
    return Number(this.address >> 32n);
  }

  /** The register address after the guest writes `value` to the dword at `slot`. */
  addressAfterWrite(slot: number, value: number): bigint {
    const v = BigInt(value >>> 0);
    const merged = slot === this.index ? (this.address & (U32 << 32n)) | v : (v << 32n) |
      (this.address & U32);
    return merged & this.#addressMask;
  }

  /** True when writing `value` to `slot` is a sizing probe (every address bit set). */
  isSizingWrite(slot: number, value: number): boolean {
    const v = value >>> 0;
    if (slot !== this.index) return v === 0xffff_ffff;
    const mask = this.kind === "io" ? BAR_BITS.IO_ADDRESS_MASK : BAR_BITS.MEM_ADDRESS_MASK;
    return ((v & mask) >>> 0) === mask;
  }

  /**
   * True when `address` can be decoded: non-zero, aligned and entirely below
   * this kind's limit with room to spare (so the sizing pattern `~(size-1)`
   * never decodes).
   */
  isDecodable(address: bigint): boolean {
    return address !== 0n && (address & (this.size - 1n)) === 0n &&
      address + this.size < this.limit;
  }
}

/** True when `[a, a + aSize)` and `[b, b + bSize)` overlap (exact, bigint). */
export function rangesOverlap(a: bigint, aSize: bigint, b: bigint, bSize: bigint): boolean {
  return a < b + bSize && b < a + aSize;
}
