/**
 * virtio-blk (virtio 1.2 §5.2): one request queue over a {@linkcode BlockBackend}.
 *
 * A request is a chain: a 16-byte header (type, reserved, sector) in
 * device-readable buffers, then data (readable for OUT, writable for IN and
 * GET_ID), then one writable status byte. Supported: IN, OUT, FLUSH, GET_ID;
 * anything else completes with UNSUPP. Sector ranges are checked against the
 * image (IOERR beyond it), writes to a read-only image fail with IOERR (and
 * VIRTIO_BLK_F_RO is offered), host I/O errors give IOERR. A chain too short
 * to hold a header and a status byte breaks the queue (see blk_request.ts).
 *
 * Requests are served on the VMM thread, or, with {@linkcode VirtioBlkOptions.worker}
 * and an image file, by an I/O worker ({@linkcode BlkWorker}) that waits on
 * the doorbell's eventfd itself and interrupts the driver directly.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import { close, EFD_CLOEXEC, eventfd } from "../../kvm/libc.ts";
import type { Logger } from "../logger.ts";
import { nullLogger } from "../logger.ts";
import type { PciRemoteMsi } from "../pci_device.ts";
import {
  SECTOR_SIZE,
  VIRTIO_BLK_CONFIG,
  VIRTIO_BLK_CONFIG_SIZE,
  VIRTIO_BLK_F,
  VIRTIO_BLK_ID_BYTES,
} from "./blk_spec.ts";
import { type BlkRequestEnv, serveBlkRequest } from "./blk_request.ts";
import { BlkWorker } from "./blk_worker.ts";
import type { BlockBackend } from "./block_backend.ts";
import type { SharedImage } from "./fd_block_backend.ts";
import type { VirtioDevice, VirtioDeviceContext } from "./device.ts";
import { featureBit, VIRTIO_ID } from "./spec.ts";
import { ChainBuffers } from "./virtqueue.ts";

export {
  SECTOR_SIZE,
  VIRTIO_BLK_CONFIG,
  VIRTIO_BLK_CONFIG_SIZE,
  VIRTIO_BLK_F,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_REQ,
  VIRTIO_BLK_REQ_HEADER_SIZE,
  VIRTIO_BLK_S,
  VIRTIO_BLK_T,
} from "./blk_spec.ts";

/** Where an I/O worker serves the queue (see {@linkcode VirtioBlkOptions.worker}). */
export interface VirtioBlkWorkerOptions {
  /** Guest RAM (the worker maps the same host memory). */
  readonly memory: GuestMemory;
  /** Direct MSI delivery from the worker, or null (interrupts go through the VMM thread). */
  readonly remoteMsi: PciRemoteMsi | null;
}

/** Options of a virtio-blk device. */
export interface VirtioBlkOptions {
  /** Serial returned by GET_ID (at most 20 bytes of ASCII). Default `dvmm`. */
  readonly serial?: string;
  /** Request queue size (power of two). Default 256. */
  readonly queueSize?: number;
  /** Where to report I/O errors. */
  readonly log?: Logger;
  /**
   * Serve requests in an I/O worker when the backend can share its image
   * (`shared()`, as {@linkcode FileBlockBackend} does) and FFI is available;
   * otherwise (and after a worker failure) on the VMM thread.
   */
  readonly worker?: VirtioBlkWorkerOptions;
}

/** A backend whose open image another thread can use. */
interface ShareableBackend extends BlockBackend {
  shared(): SharedImage | null;
}

function isShareable(b: BlockBackend): b is ShareableBackend {
  return typeof (b as Partial<ShareableBackend>).shared === "function";
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
  #doorbellFd: number | null = null;
  #worker: BlkWorker | null = null;
  /** The request being served on the VMM thread (reused). */
  readonly #chain = new ChainBuffers();

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
    if (options.worker) this.#startWorker(options.worker);
  }

  /** The I/O worker, while requests are served there. */
  get worker(): BlkWorker | null {
    return this.#worker;
  }

  /** The doorbell eventfd of the I/O worker (queue 0), else null. */
  doorbellFd(index: number): number | null {
    return index === 0 && this.#worker ? this.#doorbellFd : null;
  }

  /** Copy from the config structure. */
  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.#config.subarray(offset, offset + data.length));
  }

  /** Start serving requests (handing the queue to the worker, if there is one). */
  activate(ctx: VirtioDeviceContext): void {
    this.#ctx = ctx;
    const q = ctx.queue(0);
    if (this.#worker && q && !q.isBroken) {
      this.#worker.activate(q.layout, { eventIdx: q.eventIdx, indirect: q.indirect });
      this.interruptRouteChanged();
    }
  }

  /** Serve every available request, then interrupt if the driver wants it. */
  notify(index: number): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(index);
    if (!ctx || index !== 0 || !q) return;
    if (this.#worker) {
      this.#worker.kick();
      return;
    }
    const env = this.#requestEnv(ctx);
    const chain = this.#chain;
    while (q.popInto(chain)) serveBlkRequest(env, q, chain);
    ctx.signalUsed(0);
  }

  /** Tell the worker the queue's current direct MSI route. */
  interruptRouteChanged(): void {
    if (this.#worker && this.#ctx) this.#worker.setRoute(this.#ctx.queueMessage(0));
  }

  /** Stop (the worker gives the queue back before this returns). */
  reset(): void {
    this.#worker?.reset();
    this.#worker?.setRoute(null);
    this.#ctx = null;
  }

  /** Stop the worker and release its eventfd. */
  close(): void {
    this.#worker?.close();
    this.#worker = null;
    if (this.#doorbellFd !== null) close(this.#doorbellFd);
    this.#doorbellFd = null;
  }

  #requestEnv(ctx: VirtioDeviceContext): BlkRequestEnv {
    return {
      memory: ctx.memory,
      backend: this.backend,
      id: this.#id,
      name: this.name,
      warn: (message) => this.#log.warn(message),
    };
  }

  #startWorker(opts: VirtioBlkWorkerOptions): void {
    const image = isShareable(this.backend) ? this.backend.shared() : null;
    if (!image) return;
    try {
      this.#doorbellFd = eventfd(EFD_CLOEXEC);
      this.#worker = new BlkWorker({
        memory: opts.memory,
        image,
        id: this.#id,
        name: this.name,
        doorbellFd: this.#doorbellFd,
        remoteMsi: opts.remoteMsi,
        onInterrupt: () => this.#ctx?.interruptQueue(0),
        onBroken: (reason) => this.#ctx?.queue(0)?.markBroken(`I/O worker: ${reason}`),
        onWarn: (message) => this.#log.warn(message),
        onFailed: (error) => {
          this.#log.error(`${this.name}: I/O worker failed: ${error}`);
          this.#worker = null; // later activations serve on the VMM thread
          this.#ctx?.queue(0)?.markBroken(`I/O worker failed: ${error}`);
        },
      });
    } catch (e) {
      this.#log.warn(
        `${this.name}: no I/O worker (${
          e instanceof Error ? e.message : String(e)
        }); serving on the VMM thread`,
      );
      this.#worker = null;
    }
  }
}
