/**
 * virtio-net (virtio 1.2 §5.1) with one receive/transmit queue pair, no
 * control queue, no multiqueue and no offloads: every frame is a plain
 * Ethernet frame behind a 12-byte `virtio_net_hdr` (VERSION_1 layout, with
 * `num_buffers`) whose fields stay zero. Features offered: MAC and STATUS
 * (link always up).
 *
 * Frames leave and arrive through a {@linkcode NetBackend} (a host TAP device,
 * or a fake in tests):
 * - transmitq: each chain is `virtio_net_hdr` + frame; the header is checked
 *   and stripped, the frame handed to the backend, the chain returned with
 *   length 0.
 * - receiveq: the device takes a receive buffer first and only then pulls a
 *   frame from the backend, writes a zeroed header (`num_buffers` = 1) and the
 *   frame, and returns the chain. With no receive buffers nothing is pulled:
 *   frames wait in the backend (the TAP's kernel queue, which drops on
 *   overflow), and the next receive kick resumes delivery. When the backend is
 *   empty while a buffer is held, the device asks the backend to call back once
 *   a frame may be waiting ({@linkcode NetBackend.watch}).
 *
 * Guest mistakes break the queue (the transport then sets DEVICE_NEEDS_RESET):
 * a transmit chain shorter than the header or with device-writable buffers, a
 * receive chain with device-readable buffers or too small for the header.
 * Frames that do not fit a receive buffer, transmit frames with offload
 * requests that were never negotiated and frames the backend refuses are
 * dropped and counted in {@linkcode NetStats}.
 *
 * @module
 */

import type { DescriptorChain } from "./virtqueue.ts";
import { ChainCursor } from "./chain_io.ts";
import type { VirtioDevice, VirtioDeviceContext } from "./device.ts";
import { featureBit, type Field, VIRTIO_ID } from "./spec.ts";

/** Where a virtio-net device's frames go to and come from (a TAP device; a fake in tests). */
export interface NetBackend {
  /** Name for messages (the TAP interface name). */
  readonly name: string;
  /** Send one Ethernet frame to the host; false if the host dropped it. */
  send(frame: Uint8Array): boolean;
  /**
   * Copy the next waiting frame into `into` and return its length (a longer
   * frame is truncated to `into.length`), or null when no frame waits.
   */
  receive(into: Uint8Array): number | null;
  /**
   * Call `onReadable` once, later, on this thread, when a frame may be
   * waiting. Calling again before it fired replaces the callback.
   */
  watch(onReadable: () => void): void;
  /** Release the host side; no callbacks follow. */
  close(): void;
}

/** virtio-net feature bits used here (bit numbers). */
export const VIRTIO_NET_F = {
  /** Device has a given MAC address (config `mac`). */
  MAC: 5,
  /** Config `status` is valid. */
  STATUS: 16,
} as const;

/** `struct virtio_net_config` (the fields up to `mtu`). */
export const VIRTIO_NET_CONFIG = {
  MAC: { offset: 0, size: 6 },
  STATUS: { offset: 6, size: 2 },
  MAX_VIRTQUEUE_PAIRS: { offset: 8, size: 2 },
  MTU: { offset: 10, size: 2 },
} as const satisfies Record<string, Field>;

/** Size of the configuration structure exposed. */
export const VIRTIO_NET_CONFIG_SIZE = 12;

/** Config `status` bits. */
export const VIRTIO_NET_S = { LINK_UP: 1, ANNOUNCE: 2 } as const;

/** `struct virtio_net_hdr` with VERSION_1 (12 bytes, `num_buffers` included). */
export const VIRTIO_NET_HDR = {
  FLAGS: { offset: 0, size: 1 },
  GSO_TYPE: { offset: 1, size: 1 },
  HDR_LEN: { offset: 2, size: 2 },
  GSO_SIZE: { offset: 4, size: 2 },
  CSUM_START: { offset: 6, size: 2 },
  CSUM_OFFSET: { offset: 8, size: 2 },
  NUM_BUFFERS: { offset: 10, size: 2 },
} as const satisfies Record<string, Field>;

/** Bytes of the header in front of every frame. */
export const VIRTIO_NET_HDR_SIZE = 12;

/** `virtio_net_hdr.flags`: NEEDS_CSUM (only valid with CSUM, which is not offered). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;

/** `virtio_net_hdr.gso_type`: no segmentation. */
export const VIRTIO_NET_HDR_GSO_NONE = 0;

/** Queue indices (one pair). */
export const NET_QUEUE = { RECEIVE: 0, TRANSMIT: 1 } as const;

/** Bytes of an Ethernet header (shorter frames are dropped). */
export const ETH_HLEN = 14;

/** Largest frame carried: a 64 KiB IP packet plus its Ethernet header. */
export const MAX_FRAME = 65535 + ETH_HLEN;

/** Frame counters of a device. */
export interface NetStats {
  /** Frames handed to the backend. */
  txFrames: number;
  /** Bytes of those frames. */
  txBytes: number;
  /** Transmit frames dropped (runt, oversize, offload not negotiated, backend refused). */
  txDropped: number;
  /** Frames delivered to the guest. */
  rxFrames: number;
  /** Bytes of those frames. */
  rxBytes: number;
  /** Received frames dropped because they did not fit the guest's receive buffer. */
  rxDropped: number;
}

/** Options of a device. */
export interface VirtioNetOptions {
  /** Guest MAC address (6 bytes). */
  readonly mac: Uint8Array;
  /** Queue size of both queues. Default 256. */
  readonly queueSize?: number;
}

/** A virtio-net backend over a {@linkcode NetBackend}. */
export class VirtioNet implements VirtioDevice {
  /** VIRTIO_ID.NET. */
  readonly type: number = VIRTIO_ID.NET;
  /** `virtio-net`. */
  readonly name = "virtio-net";
  /** receiveq, transmitq. */
  readonly queueSizes: readonly number[];
  /** MAC and STATUS. */
  readonly features: bigint = featureBit(VIRTIO_NET_F.MAC) | featureBit(VIRTIO_NET_F.STATUS);
  /** {@linkcode VIRTIO_NET_CONFIG_SIZE}. */
  readonly configSize = VIRTIO_NET_CONFIG_SIZE;
  /** Frame counters. */
  readonly stats: NetStats = {
    txFrames: 0,
    txBytes: 0,
    txDropped: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxDropped: 0,
  };
  /** The guest's MAC address. */
  readonly mac: Uint8Array;

  readonly #backend: NetBackend;
  readonly #config = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
  readonly #frame = new Uint8Array(MAX_FRAME);
  #ctx: VirtioDeviceContext | null = null;
  /** A receive chain taken from the queue and not yet filled. */
  #rxChain: DescriptorChain | null = null;
  #closed = false;

  /** A device sending and receiving through `backend`. */
  constructor(backend: NetBackend, options: VirtioNetOptions) {
    if (options.mac.length !== 6) {
      throw new RangeError(`virtio-net: MAC of ${options.mac.length} bytes`);
    }
    this.#backend = backend;
    this.mac = options.mac.slice();
    const size = options.queueSize ?? 256;
    this.queueSizes = [size, size];
    this.#config.set(this.mac, VIRTIO_NET_CONFIG.MAC.offset);
    const view = new DataView(this.#config.buffer);
    view.setUint16(VIRTIO_NET_CONFIG.STATUS.offset, VIRTIO_NET_S.LINK_UP, true);
    view.setUint16(VIRTIO_NET_CONFIG.MAX_VIRTQUEUE_PAIRS.offset, 1, true);
  }

  /** Read the configuration (mac, status = link up, one queue pair, no MTU). */
  readConfig(offset: number, data: Uint8Array): void {
    data.set(this.#config.subarray(offset, offset + data.length));
  }

  /** Start: deliver frames into buffers the driver already posted. */
  activate(ctx: VirtioDeviceContext): void {
    this.#ctx = ctx;
    this.#receive();
  }

  /** receiveq: new buffers, pull frames; transmitq: send what the guest queued. */
  notify(index: number): void {
    if (index === NET_QUEUE.RECEIVE) this.#receive();
    else if (index === NET_QUEUE.TRANSMIT) this.#transmit();
  }

  /** Stop (frames still in the backend wait for the next driver). */
  reset(): void {
    this.#ctx = null;
    this.#rxChain = null;
  }

  /** The machine ends: close the backend. */
  close(): void {
    this.reset();
    this.#closed = true;
    this.#backend.close();
  }

  #transmit(): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(NET_QUEUE.TRANSMIT);
    if (!ctx || !q) return;
    let done = false;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      if (chain.writable.length) {
        q.markBroken(`transmit chain ${chain.head} has device-writable buffers`);
        return;
      }
      if (chain.readableLength < VIRTIO_NET_HDR_SIZE) {
        q.markBroken(
          `transmit chain ${chain.head} has ${chain.readableLength} bytes, less than the ${VIRTIO_NET_HDR_SIZE}-byte virtio_net_hdr`,
        );
        return;
      }
      const cursor = new ChainCursor(ctx.memory, chain.readable);
      const hdr = cursor.read(VIRTIO_NET_HDR_SIZE);
      const length = chain.readableLength - VIRTIO_NET_HDR_SIZE;
      const offload = (hdr[VIRTIO_NET_HDR.FLAGS.offset] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 ||
        hdr[VIRTIO_NET_HDR.GSO_TYPE.offset] !== VIRTIO_NET_HDR_GSO_NONE;
      if (offload || length < ETH_HLEN || length > MAX_FRAME) this.stats.txDropped++;
      else {
        const frame = this.#frame.subarray(0, length);
        cursor.readInto(frame);
        if (this.#backend.send(frame)) {
          this.stats.txFrames++;
          this.stats.txBytes += length;
        } else this.stats.txDropped++;
      }
      q.push(chain.head, 0);
      done = true;
    }
    if (done) ctx.signalUsed(NET_QUEUE.TRANSMIT);
  }

  #receive(): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(NET_QUEUE.RECEIVE);
    if (!ctx || !q || this.#closed) return;
    let delivered = false;
    for (;;) {
      if (!this.#rxChain) {
        const chain = q.pop();
        if (!chain) break; // no receive buffers: frames wait in the backend until the next kick
        if (chain.readable.length) {
          q.markBroken(`receive chain ${chain.head} has device-readable buffers`);
          break;
        }
        if (chain.writableLength < VIRTIO_NET_HDR_SIZE + ETH_HLEN) {
          q.markBroken(
            `receive chain ${chain.head} has ${chain.writableLength} bytes, too small for a header and a frame`,
          );
          break;
        }
        this.#rxChain = chain;
      }
      const chain = this.#rxChain;
      const n = this.#backend.receive(this.#frame);
      if (n === null) {
        this.#backend.watch(() => this.#receive());
        break;
      }
      if (VIRTIO_NET_HDR_SIZE + n > chain.writableLength) {
        this.stats.rxDropped++; // keep the buffer for the next frame
        continue;
      }
      const hdr = new Uint8Array(VIRTIO_NET_HDR_SIZE);
      hdr[VIRTIO_NET_HDR.NUM_BUFFERS.offset] = 1;
      const cursor = new ChainCursor(ctx.memory, chain.writable);
      cursor.write(hdr);
      cursor.write(this.#frame.subarray(0, n));
      this.#rxChain = null;
      q.push(chain.head, VIRTIO_NET_HDR_SIZE + n);
      this.stats.rxFrames++;
      this.stats.rxBytes += n;
      delivered = true;
    }
    if (delivered) ctx.signalUsed(NET_QUEUE.RECEIVE);
  }
}

/** Parse `aa:bb:cc:dd:ee:ff` into 6 bytes; throws RangeError naming the text. */
export function parseMac(text: string): Uint8Array {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) {
    throw new RangeError(
      `bad MAC address ${JSON.stringify(text)} (expected like 52:54:00:12:34:56)`,
    );
  }
  return new Uint8Array(text.split(":").map((h) => parseInt(h, 16)));
}

/** Format 6 bytes as `aa:bb:cc:dd:ee:ff`. */
export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/**
 * The default MAC for a TAP named `name`: QEMU's locally administered
 * 52:54:00 prefix and three bytes of an FNV-1a hash of the name, so the same
 * TAP always gives the guest the same address.
 */
export function defaultMac(name: string): Uint8Array {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return new Uint8Array([0x52, 0x54, 0x00, (h >>> 16) & 0xff, (h >>> 8) & 0xff, h & 0xff]);
}
