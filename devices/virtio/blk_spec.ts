/**
 * virtio-blk protocol constants (virtio 1.2 §5.2): feature bits, request
 * types and status values, the request header and the configuration layout.
 *
 * @module
 */

import type { Field } from "./spec.ts";

/** virtio-blk feature bits. */
export const VIRTIO_BLK_F = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
} as const;

/** Request types. */
export const VIRTIO_BLK_T = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
  DISCARD: 11,
  WRITE_ZEROES: 13,
} as const;

/** Request status values. */
export const VIRTIO_BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;

/** `struct virtio_blk_req` header. */
export const VIRTIO_BLK_REQ = {
  TYPE: { offset: 0, size: 4 },
  RESERVED: { offset: 4, size: 4 },
  SECTOR: { offset: 8, size: 8 },
} as const satisfies Record<string, Field>;

/** Size of the request header. */
export const VIRTIO_BLK_REQ_HEADER_SIZE = 16;

/** `struct virtio_blk_config` fields dvmm fills in. */
export const VIRTIO_BLK_CONFIG = {
  CAPACITY: { offset: 0, size: 8 },
  SIZE_MAX: { offset: 8, size: 4 },
  SEG_MAX: { offset: 12, size: 4 },
  BLK_SIZE: { offset: 20, size: 4 },
} as const satisfies Record<string, Field>;

/** Bytes of device configuration exposed (the structure through write_zeroes_may_unmap, padded). */
export const VIRTIO_BLK_CONFIG_SIZE = 64;

/** Sector size of the virtio-blk protocol. */
export const SECTOR_SIZE = 512;

/** Length of the GET_ID answer. */
export const VIRTIO_BLK_ID_BYTES = 20;
