/**
 * virtio-blk (virtio 1.2 §5.2): one request queue over a {@linkcode BlockBackend}.
 *
 * A request is a chain: a 16-byte header (type, reserved, sector) in
 * device-readable buffers, then data (readable for OUT, writable for IN and
 * GET_ID), then one writable status byte. Supported: IN, OUT, FLUSH, GET_ID;
 * anything else completes with UNSUPP. Sector ranges are checked against the
 * image (IOERR beyond it), writes to a read-only image fail with IOERR (and
 * VIRTIO_BLK_F_RO is offered), host I/O errors give IOERR. A chain too short
 * to hold a header and a status byte breaks the queue.
 *
 * @module
 */

import type { Logger } from "../logger.ts";
import { nullLogger } from "../logger.ts";
import { type BlockBackend, readIntoGuest, writeFromGuest } from "./block_backend.ts";
import { ChainCursor } from "./chain_io.ts";
import type { VirtioDevice, VirtioDeviceContext } from "./device.ts";
import { featureBit, type Field, VIRTIO_ID } from "./spec.ts";
import type { DescriptorChain, Virtqueue } from "./virtqueue.ts";

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

/** Options of a virtio-blk device. */
export interface VirtioBlkOptions {
  /** Serial returned by GET_ID (at most 20 bytes of ASCII). Default `dvmm`. */
  readonly serial?: string;
  /** Request queue size (power of two). Default 256. */
  readonly queueSize?: number;
  /** Where to report I/O errors. */
  readonly log?: Logger;
}

/** A virtio-blk device backend. */
export class VirtioBlk implements VirtioDevice {
  /** VIRTIO_ID.BLOCK. */
  readonly type: number = VIRTIO_ID.BLOCK;
  /** `virtio-blk`. */
  readonly name = "virtio-blk";
  /** One request queue. */
  readonly queueSizes: readonly number[];
  /** SEG_MAX, BLK_SIZE, FLUSH, and RO for a read-only image. */
  readonly features: bigint;
  /** {@linkcode VIRTIO_BLK_CONFIG_SIZE}. */
  readonly configSize = VIRTIO_BLK_CONFIG_SIZE;
  /** The storage. */
  readonly backend: BlockBackend;

  readonly #config = new Uint8Array(VIRTIO_BLK_CONFIG_SIZE);
  readonly #id: Uint8Array;
  readonly #log: Logger;
  #ctx: VirtioDeviceContext | null = null;

  /** A disk over `backend`. */
  constructor(backend: BlockBackend, options: VirtioBlkOptions = {}) {
    this.backend = backend;
    this.#log = options.log ?? nullLogger;
    const queueSize = options.queueSize ?? 256;
    this.queueSizes = [queueSize];
    this.#id = new TextEncoder().encode(options.serial ?? "dvmm").subarray(0, VIRTIO_BLK_ID_BYTES);
    this.features = featureBit(VIRTIO_BLK_F.SEG_MAX) | featureBit(VIRTIO_BLK_F.BLK_SIZE) |
      featureBit(VIRTIO_BLK_F.FLUSH) | (backend.readonly ? featureBit(VIRTIO_BLK_F.RO) : 0n);
    const view = new DataView(this.#config.buffer);
    view.setBigUint64(
      VIRTIO_BLK_CONFIG.CAPACITY.offset,
      BigInt(Math.floor(backend.size / SECTOR_SIZE)),
      true,
    );
    // Header and status take two descriptors of a direct chain.
    view.setUint32(VIRTIO_BLK_CONFIG.SEG_MAX.offset, Math.max(1, queueSize - 2), true);
    view.setUint32(VIRTIO_BLK_CONFIG.BLK_SIZE.offset, SECTOR_SIZE, true);
  }

  /** Copy from the config structure. */
  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.#config.subarray(offset, offset + data.length));
  }

  /** Start serving requests. */
  activate(ctx: VirtioDeviceContext): void {
    this.#ctx = ctx;
  }

  /** Serve every available request, then interrupt if the driver wants it. */
  notify(index: number): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(index);
    if (!ctx || index !== 0 || !q) return;
    for (let chain = q.pop(); chain; chain = q.pop()) this.#serve(ctx, q, chain);
    ctx.signalUsed(0);
  }

  /** Stop. */
  reset(): void {
    this.#ctx = null;
  }

  #serve(ctx: VirtioDeviceContext, q: Virtqueue, chain: DescriptorChain): void {
    if (chain.readableLength < VIRTIO_BLK_REQ_HEADER_SIZE || chain.writableLength < 1) {
      q.markBroken(
        `request ${chain.head}: needs a ${VIRTIO_BLK_REQ_HEADER_SIZE}-byte header and a status byte`,
      );
      q.push(chain.head, 0); // releases it; a broken queue's used ring is left alone
      return;
    }
    const r = new ChainCursor(ctx.memory, chain.readable);
    const w = new ChainCursor(ctx.memory, chain.writable);
    const header = new DataView(r.read(VIRTIO_BLK_REQ_HEADER_SIZE).buffer);
    const type = header.getUint32(VIRTIO_BLK_REQ.TYPE.offset, true);
    const sector = header.getBigUint64(VIRTIO_BLK_REQ.SECTOR.offset, true);
    const dataIn = chain.writableLength - 1;
    let written = 0;
    let status: number;
    try {
      switch (type) {
        case VIRTIO_BLK_T.IN:
          status = this.#transfer(sector, dataIn, "read", () => {
            const at = Number(sector) * SECTOR_SIZE;
            readIntoGuest(this.backend, at, ctx.memory, w.ranges(dataIn));
            written = dataIn;
          });
          break;
        case VIRTIO_BLK_T.OUT:
          status = this.backend.readonly
            ? VIRTIO_BLK_S.IOERR
            : this.#transfer(sector, r.remaining, "write", () => {
              const at = Number(sector) * SECTOR_SIZE;
              writeFromGuest(this.backend, at, ctx.memory, r.ranges(r.remaining));
            });
          break;
        case VIRTIO_BLK_T.FLUSH:
          this.backend.flush();
          status = VIRTIO_BLK_S.OK;
          break;
        case VIRTIO_BLK_T.GET_ID:
          written = w.write(this.#id.subarray(0, Math.min(dataIn, VIRTIO_BLK_ID_BYTES)));
          status = VIRTIO_BLK_S.OK;
          break;
        default:
          status = VIRTIO_BLK_S.UNSUPP;
      }
    } catch (e) {
      this.#log.warn(
        `${this.name}: request type ${type} sector ${sector} failed: ${
          e instanceof Error ? e.message : String(e)
        }`,
      );
      status = VIRTIO_BLK_S.IOERR;
    }
    // The status byte is the chain's last writable byte (in its last non-empty buffer).
    const writable = chain.writable;
    let last = writable.length - 1;
    while (writable[last].len === 0) last--;
    ctx.memory.writeU8(writable[last].gpa + writable[last].len - 1, status);
    q.push(chain.head, (status === VIRTIO_BLK_S.OK ? written : 0) + 1);
  }

  /** Check a data transfer of `length` bytes at `sector`, then run it. */
  #transfer(sector: bigint, length: number, what: string, run: () => void): number {
    const end = sector * BigInt(SECTOR_SIZE) + BigInt(length);
    if (length % SECTOR_SIZE !== 0 || end > BigInt(this.backend.size)) {
      this.#log.warn(
        `${this.name}: ${what} of ${length} bytes at sector ${sector} is outside the ${this.backend.size}-byte image or not whole sectors`,
      );
      return VIRTIO_BLK_S.IOERR;
    }
    run();
    return VIRTIO_BLK_S.OK;
  }
}
