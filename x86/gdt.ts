/**
 * Segments for the 64-bit boot entry: the GDT dvmm writes into the guest and the
 * matching hidden segment state for KVM_SET_SREGS (the same fields as
 * struct kvm_segment), both derived from one description so they cannot disagree.
 *
 * Linux's 64-bit boot protocol wants a GDT with flat `__BOOT_CS` (0x10, 64-bit
 * code) and `__BOOT_DS` (0x18, data) descriptors, CS = `__BOOT_CS` and
 * DS/ES/SS = `__BOOT_DS`.
 *
 * @module
 */

import type { Segment } from "../kvm/types.ts";

export type { Dtable, Segment } from "../kvm/types.ts";

/** Selector of the 64-bit code segment (`__BOOT_CS`). */
export const BOOT_CS = 0x10;
/** Selector of the data segment (`__BOOT_DS`). */
export const BOOT_DS = 0x18;
/** Selector of the TSS (a 16-byte system descriptor in long mode). */
export const BOOT_TSS = 0x20;

/** Flat 64-bit code segment (`__BOOT_CS`). */
export const CODE64_SEGMENT: Segment = {
  base: 0n,
  limit: 0xffff_ffff,
  selector: BOOT_CS,
  type: 0xb,
  present: 1,
  dpl: 0,
  db: 0,
  s: 1,
  l: 1,
  g: 1,
  avl: 0,
  unusable: 0,
};

/** Flat data segment (`__BOOT_DS`) for DS, ES, FS, GS and SS. */
export const DATA_SEGMENT: Segment = {
  ...CODE64_SEGMENT,
  selector: BOOT_DS,
  type: 0x3,
  db: 1,
  l: 0,
};

/** A busy 64-bit TSS (type 0xb) at 0: VMX needs a usable TR; Linux loads its own before use. */
export const TSS_SEGMENT: Segment = {
  base: 0n,
  limit: 0x67,
  selector: BOOT_TSS,
  type: 0xb,
  present: 1,
  dpl: 0,
  db: 0,
  s: 0,
  l: 0,
  g: 0,
  avl: 0,
  unusable: 0,
};

/** No LDT: selector 0 with the reset state KVM expects (type 2, present). */
export const LDT_SEGMENT: Segment = { ...TSS_SEGMENT, selector: 0, limit: 0xffff, type: 0x2 };

/** Encode the 8-byte descriptor of a code/data segment or the first half of a system one. */
export function encodeDescriptor(seg: Segment): bigint {
  const limit = BigInt(seg.g ? Math.floor(seg.limit / 4096) : seg.limit);
  const base = seg.base & 0xffff_ffffn;
  if (limit > 0xfffffn) {
    throw new RangeError(`GDT: limit 0x${seg.limit.toString(16)} does not fit with g=${seg.g}`);
  }
  return (limit & 0xffffn) |
    ((base & 0xff_ffffn) << 16n) |
    (BigInt(seg.type & 0xf) << 40n) |
    (BigInt(seg.s & 1) << 44n) |
    (BigInt(seg.dpl & 3) << 45n) |
    (BigInt(seg.present & 1) << 47n) |
    (((limit >> 16n) & 0xfn) << 48n) |
    (BigInt(seg.avl & 1) << 52n) |
    (BigInt(seg.l & 1) << 53n) |
    (BigInt(seg.db & 1) << 54n) |
    (BigInt(seg.g & 1) << 55n) |
    (((base >> 24n) & 0xffn) << 56n);
}

/** Decode an 8-byte descriptor back into a segment (selector given by the caller). */
export function decodeDescriptor(desc: bigint, selector: number): Segment {
  const bits = (shift: bigint, width: bigint) => Number((desc >> shift) & ((1n << width) - 1n));
  const g = bits(55n, 1n);
  const rawLimit = bits(0n, 16n) | (bits(48n, 4n) << 16);
  return {
    base: BigInt(bits(16n, 24n) + bits(56n, 8n) * 0x100_0000),
    limit: g ? rawLimit * 4096 + 0xfff : rawLimit,
    selector,
    type: bits(40n, 4n),
    s: bits(44n, 1n),
    dpl: bits(45n, 2n),
    present: bits(47n, 1n),
    avl: bits(52n, 1n),
    l: bits(53n, 1n),
    db: bits(54n, 1n),
    g,
    unusable: 0,
  };
}

/** The boot GDT as bytes: null, null, code (0x10), data (0x18), TSS (0x20, 16 bytes). */
export function buildBootGdt(): Uint8Array {
  const entries = [0n, 0n, encodeDescriptor(CODE64_SEGMENT), encodeDescriptor(DATA_SEGMENT)];
  entries.push(encodeDescriptor(TSS_SEGMENT), 0n); // upper half: base[63:32] = 0
  const bytes = new Uint8Array(entries.length * 8);
  const view = new DataView(bytes.buffer);
  entries.forEach((e, i) => view.setBigUint64(i * 8, e, true));
  return bytes;
}
