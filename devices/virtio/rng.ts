/**
 * virtio-rng (virtio 1.2 §5.4): one request queue whose device-writable
 * buffers are filled with random bytes from crypto.getRandomValues (which
 * takes at most 64 KiB per call).
 *
 * @module
 */

import type { VirtioDevice, VirtioDeviceContext } from "./device.ts";
import { ChainCursor } from "./chain_io.ts";
import { VIRTIO_ID } from "./spec.ts";

/** Largest chunk crypto.getRandomValues fills in one call. */
export const RANDOM_CHUNK = 65536;

/** Fills a buffer with random bytes (injectable for tests). */
export type RandomSource = (into: Uint8Array) => void;

/** Fill `into` from the platform CSPRNG, in 64 KiB chunks. */
export function cryptoRandom(into: Uint8Array): void {
  for (let at = 0; at < into.length; at += RANDOM_CHUNK) {
    crypto.getRandomValues(into.subarray(at, Math.min(into.length, at + RANDOM_CHUNK)));
  }
}

/** A virtio-rng device backend. */
export class VirtioRng implements VirtioDevice {
  /** VIRTIO_ID.RNG. */
  readonly type: number = VIRTIO_ID.RNG;
  /** `virtio-rng`. */
  readonly name = "virtio-rng";
  /** One request queue. */
  readonly queueSizes: readonly number[];
  /** No device features. */
  readonly features = 0n;
  /** No configuration. */
  readonly configSize = 0;
  readonly #random: RandomSource;
  #ctx: VirtioDeviceContext | null = null;

  /**
   * A device with one request queue of `options.queueSize` entries (default 64), its bytes
   * from `options.random` (default: crypto.getRandomValues).
   * @param options queue size and random source
   */
  constructor(options: { queueSize?: number; random?: RandomSource } = {}) {
    this.queueSizes = [options.queueSize ?? 64];
    this.#random = options.random ?? cryptoRandom;
  }

  /** No configuration: reads zero. */
  readConfig(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  /** Start serving. */
  activate(ctx: VirtioDeviceContext): void {
    this.#ctx = ctx;
  }

  /** Fill every available chain's writable buffers completely. */
  notify(index: number): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(index);
    if (!ctx || index !== 0 || !q) return;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      for (const view of new ChainCursor(ctx.memory, chain.writable).views(chain.writableLength)) {
        this.#random(view);
      }
      q.push(chain.head, chain.writableLength);
    }
    ctx.signalUsed(0);
  }

  /** Stop. */
  reset(): void {
    this.#ctx = null;
  }
}
