/**
 * Constants of the virtio 1.x specification shared by the split virtqueue, the
 * PCI transport and the device backends: device IDs, feature bits, device
 * status bits, descriptor and ring flags, and the split-ring layouts as typed
 * tables (byte offsets and sizes of each field).
 *
 * @module
 */

/** Device type IDs (virtio 1.2 §5). The modern PCI device ID is `0x1040 + id`. */
export const VIRTIO_ID = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  RNG: 4,
} as const;

/** PCI vendor ID of every virtio device. */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;

/** PCI device ID of a non-transitional (modern-only) virtio device of type `id`. */
export function virtioPciDeviceId(id: number): number {
  return 0x1040 + id;
}

/** Transport/ring feature bits (bit numbers) that do not depend on the device type. */
export const VIRTIO_F = {
  /** Indirect descriptor tables (VIRTIO_F_INDIRECT_DESC / VIRTIO_RING_F_INDIRECT_DESC). */
  INDIRECT_DESC: 28,
  /** used_event / avail_event notification suppression (VIRTIO_RING_F_EVENT_IDX). */
  EVENT_IDX: 29,
  /** Compliance with virtio 1.0 or later; mandatory for a modern-only device. */
  VERSION_1: 32,
} as const;

/** The 64-bit feature mask with bit `bit` set. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

/** Is feature `bit` set in `features`? */
export function hasFeature(features: bigint, bit: number): boolean {
  return ((features >> BigInt(bit)) & 1n) === 1n;
}

/** Device status bits (virtio 1.2 §2.1). */
export const STATUS = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** Split-ring descriptor flags. */
export const VIRTQ_DESC_F = {
  /** The buffer continues via the `next` field. */
  NEXT: 1,
  /** The buffer is device write-only (otherwise device read-only). */
  WRITE: 2,
  /** The buffer holds a table of descriptors. */
  INDIRECT: 4,
} as const;

/** Driver-area (available ring) flags. */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Device-area (used ring) flags. */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Largest split-queue size (a power of two). */
export const MAX_QUEUE_SIZE = 32768;

/** A field of a little-endian guest structure: byte offset and width. */
export interface Field {
  /** Byte offset from the start of the structure. */
  readonly offset: number;
  /** Width in bytes (1, 2, 4 or 8). */
  readonly size: number;
}

/** `struct virtq_desc`: one 16-byte descriptor. */
export const VIRTQ_DESC = {
  ADDR: { offset: 0, size: 8 },
  LEN: { offset: 8, size: 4 },
  FLAGS: { offset: 12, size: 2 },
  NEXT: { offset: 14, size: 2 },
} as const satisfies Record<string, Field>;

/** Size of one descriptor. */
export const VIRTQ_DESC_SIZE = 16;

/**
 * `struct virtq_avail` (driver area): flags, idx, ring[size], then used_event.
 * Ring entry `i` is at `RING.offset + 2*i`; used_event at `RING.offset + 2*size`.
 */
export const VIRTQ_AVAIL = {
  FLAGS: { offset: 0, size: 2 },
  IDX: { offset: 2, size: 2 },
  RING: { offset: 4, size: 2 },
} as const satisfies Record<string, Field>;

/**
 * `struct virtq_used` (device area): flags, idx, ring[size] of 8-byte elements,
 * then avail_event. Element `i` is at `RING.offset + 8*i`; avail_event at
 * `RING.offset + 8*size`.
 */
export const VIRTQ_USED = {
  FLAGS: { offset: 0, size: 2 },
  IDX: { offset: 2, size: 2 },
  RING: { offset: 4, size: 8 },
} as const satisfies Record<string, Field>;

/** `struct virtq_used_elem`. */
export const VIRTQ_USED_ELEM = {
  ID: { offset: 0, size: 4 },
  LEN: { offset: 4, size: 4 },
} as const satisfies Record<string, Field>;

/** Required alignment of the three split-ring areas (virtio 1.2 §2.7). */
export const VIRTQ_ALIGN = { DESC: 16, AVAIL: 2, USED: 4 } as const;

/** Bytes of the descriptor table of a queue of `size` entries. */
export function descTableBytes(size: number): number {
  return VIRTQ_DESC_SIZE * size;
}

/** Bytes of the driver area (available ring with used_event) of a queue of `size`. */
export function availRingBytes(size: number): number {
  return VIRTQ_AVAIL.RING.offset + VIRTQ_AVAIL.RING.size * size + 2;
}

/** Bytes of the device area (used ring with avail_event) of a queue of `size`. */
export function usedRingBytes(size: number): number {
  return VIRTQ_USED.RING.offset + VIRTQ_USED.RING.size * size + 2;
}

/**
 * The event-index test of virtio 1.2 §2.7.10: after moving an index from `old`
 * to `next`, must the other side be notified given its requested `event`?
 * All three are 16-bit ring indices.
 */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}
