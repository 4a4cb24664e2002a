/**
 * virtio-console (virtio 1.2 §5.3) with a single port and no MULTIPORT:
 * queue 0 is receiveq (host to guest), queue 1 is transmitq (guest to host).
 * Transmitted bytes go to an output callback; host input is queued (bounded)
 * and copied into receive buffers as the driver makes them available.
 *
 * @module
 */

import { ChainCursor } from "./chain_io.ts";
import type { VirtioDevice, VirtioDeviceContext } from "./device.ts";
import { type Field, VIRTIO_ID } from "./spec.ts";

/** virtio-console feature bits (none are offered). */
export const VIRTIO_CONSOLE_F = { SIZE: 0, MULTIPORT: 1, EMERG_WRITE: 2 } as const;

/** `struct virtio_console_config`. */
export const VIRTIO_CONSOLE_CONFIG = {
  COLS: { offset: 0, size: 2 },
  ROWS: { offset: 2, size: 2 },
  MAX_NR_PORTS: { offset: 4, size: 4 },
  EMERG_WR: { offset: 8, size: 4 },
} as const satisfies Record<string, Field>;

/** Size of the configuration structure. */
export const VIRTIO_CONSOLE_CONFIG_SIZE = 12;

/** Queue indices of port 0. */
export const CONSOLE_QUEUE = { RECEIVE: 0, TRANSMIT: 1 } as const;

/** Options of a console. */
export interface VirtioConsoleOptions {
  /** Receives every chunk the guest transmits (a copy). */
  readonly output: (bytes: Uint8Array) => void;
  /** Host input kept while the guest has no receive buffers; beyond it input is dropped. Default 64 KiB. */
  readonly maxPending?: number;
  /** Queue size. Default 128. */
  readonly queueSize?: number;
}

/** A single-port virtio-console backend. */
export class VirtioConsole implements VirtioDevice {
  /** VIRTIO_ID.CONSOLE. */
  readonly type: number = VIRTIO_ID.CONSOLE;
  /** `virtio-console`. */
  readonly name = "virtio-console";
  /** receiveq, transmitq. */
  readonly queueSizes: readonly number[];
  /** No device features. */
  readonly features = 0n;
  /** {@linkcode VIRTIO_CONSOLE_CONFIG_SIZE}. */
  readonly configSize = VIRTIO_CONSOLE_CONFIG_SIZE;
  /** Input bytes dropped because the pending buffer was full. */
  dropped = 0;

  readonly #output: (bytes: Uint8Array) => void;
  readonly #maxPending: number;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #ctx: VirtioDeviceContext | null = null;

  /** A console writing guest output to `options.output`. */
  constructor(options: VirtioConsoleOptions) {
    this.#output = options.output;
    this.#maxPending = options.maxPending ?? 65536;
    const size = options.queueSize ?? 128;
    this.queueSizes = [size, size];
  }

  /** Bytes of host input waiting for receive buffers. */
  get pendingInput(): number {
    return this.#pendingBytes;
  }

  /** Configuration reads as zero (no SIZE, no MULTIPORT, no EMERG_WRITE). */
  readConfig(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  /**
   * Queue host input for the guest and deliver what fits now. Returns how
   * many bytes were taken; the rest (beyond `maxPending`) is counted in
   * {@linkcode dropped} (a caller that retries them, like the machine's
   * console input, offers them again later).
   */
  input(bytes: Uint8Array): number {
    const room = Math.max(0, this.#maxPending - this.#pendingBytes);
    const take = Math.min(room, bytes.length);
    this.dropped += bytes.length - take;
    if (take > 0) {
      this.#pending.push(bytes.slice(0, take));
      this.#pendingBytes += take;
    }
    this.#deliver();
    return take;
  }

  /** Start. */
  activate(ctx: VirtioDeviceContext): void {
    this.#ctx = ctx;
    this.#deliver();
  }

  /** receiveq: new buffers, deliver pending input; transmitq: emit what the guest sent. */
  notify(index: number): void {
    if (index === CONSOLE_QUEUE.RECEIVE) this.#deliver();
    else if (index === CONSOLE_QUEUE.TRANSMIT) this.#transmit();
  }

  /** Stop (pending host input is kept for the next driver). */
  reset(): void {
    this.#ctx = null;
  }

  #transmit(): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(CONSOLE_QUEUE.TRANSMIT);
    if (!ctx || !q) return;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      const bytes = new ChainCursor(ctx.memory, chain.readable).read(chain.readableLength);
      q.push(chain.head, 0);
      if (bytes.length) this.#output(bytes);
    }
    ctx.signalUsed(CONSOLE_QUEUE.TRANSMIT);
  }

  #deliver(): void {
    const ctx = this.#ctx;
    const q = ctx?.queue(CONSOLE_QUEUE.RECEIVE);
    if (!ctx || !q) return;
    let delivered = false;
    while (this.#pendingBytes > 0) {
      const chain = q.pop();
      if (!chain) break;
      const w = new ChainCursor(ctx.memory, chain.writable);
      let written = 0;
      while (this.#pending.length && w.remaining > 0) {
        const head = this.#pending[0];
        const n = w.write(head);
        written += n;
        this.#pendingBytes -= n;
        if (n === head.length) this.#pending.shift();
        else this.#pending[0] = head.subarray(n);
      }
      q.push(chain.head, written);
      delivered = true;
    }
    if (delivered) ctx.signalUsed(CONSOLE_QUEUE.RECEIVE);
  }
}
