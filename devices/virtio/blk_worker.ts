/**
 * The VMM-thread side of the virtio-blk I/O worker: starts the worker
 * (blk_worker_main.ts) over the image's descriptor and guest RAM, hands it
 * the request queue on activation, takes it back on reset (waiting, so no
 * guest memory access follows), keeps the queue's direct MSI route current,
 * and turns the worker's events into callbacks on the VMM thread.
 *
 * Why a worker: each request then costs one wake-up of one thread (the
 * doorbell eventfd ends the worker's poll) and one KVM_SIGNAL_MSI, instead of
 * a poller thread waking the VMM thread's event loop, which is what dominated
 * request latency under nested virtualization.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import { close, EFD_CLOEXEC, eventfd, writeFd } from "../../kvm/libc.ts";
import type { PciRemoteMsi } from "../pci_device.ts";
import {
  BLK_CMD,
  BLK_FLAG,
  BLK_SHARED_BYTES,
  BLK_WORD,
  type BlkWorkerEvent,
  type BlkWorkerInit,
  type SharedRegion,
} from "./blk_worker_protocol.ts";
import type { SharedImage } from "./fd_block_backend.ts";
import type { VirtqueueLayout } from "./virtqueue.ts";

/** How long RESET and STOP wait for the worker before giving up (ms). */
export const BLK_WORKER_WAIT_MS = 10_000;

/** What the worker needs. */
export interface BlkWorkerOptions {
  /** Guest RAM (its regions must stay mapped until {@linkcode BlkWorker.close}). */
  readonly memory: GuestMemory;
  /** The image. */
  readonly image: SharedImage;
  /** GET_ID answer. */
  readonly id: Uint8Array;
  /** Device name. */
  readonly name: string;
  /** The eventfd the doorbell signals. */
  readonly doorbellFd: number;
  /** Direct MSI delivery, or null. */
  readonly remoteMsi: PciRemoteMsi | null;
  /** Interrupt the driver (no direct route); runs on the VMM thread. */
  onInterrupt(): void;
  /** The queue broke in the worker. */
  onBroken(reason: string): void;
  /** A warning from the worker. */
  onWarn(message: string): void;
  /** The worker ended on an error (it serves nothing more). */
  onFailed(error: string): void;
}

/** Counts from the worker. */
export interface BlkWorkerStats {
  /** Requests served. */
  readonly requests: number;
  /** Interrupts sent directly from the worker. */
  readonly directMsis: number;
  /** Interrupts relayed through the VMM thread. */
  readonly relayed: number;
}

/** Where each region of `memory` is in this process. */
function sharedRegions(memory: GuestMemory): SharedRegion[] {
  return memory.regions.map((r) => ({
    gpa: r.gpa,
    host: Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(r.bytes))),
    len: r.bytes.length,
  }));
}

/** A running virtio-blk I/O worker. */
export class BlkWorker {
  readonly #shared = new SharedArrayBuffer(BLK_SHARED_BYTES);
  readonly #w = new Int32Array(this.#shared);
  readonly #controlFd: number;
  readonly #worker: Worker;
  readonly #opts: BlkWorkerOptions;
  readonly #poke = new Uint8Array(new BigUint64Array([1n]).buffer);
  #epoch = 0;
  #active = false;
  #failed: string | null = null;
  #closed = false;

  /** Start the worker (idle until {@linkcode activate}). */
  constructor(opts: BlkWorkerOptions) {
    this.#opts = opts;
    this.#controlFd = eventfd(EFD_CLOEXEC);
    this.#worker = new Worker(new URL("./blk_worker_main.ts", import.meta.url), {
      type: "module",
    });
    this.#worker.onmessage = (e: MessageEvent<BlkWorkerEvent>) => this.#event(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#fail(e.message);
    };
    const init: BlkWorkerInit = {
      shared: this.#shared,
      controlFd: this.#controlFd,
      doorbellFd: opts.doorbellFd,
      regions: sharedRegions(opts.memory),
      image: opts.image,
      id: opts.id,
      name: opts.name,
      remoteMsi: opts.remoteMsi,
    };
    this.#worker.postMessage(init);
  }

  /** The worker failed (it serves nothing more): why, else null. */
  get failed(): string | null {
    return this.#failed;
  }

  /** Counts so far. */
  get stats(): BlkWorkerStats {
    return {
      requests: Atomics.load(this.#w, BLK_WORD.REQUESTS),
      directMsis: Atomics.load(this.#w, BLK_WORD.DIRECT_MSIS),
      relayed: Atomics.load(this.#w, BLK_WORD.RELAYED),
    };
  }

  /** Hand the worker the queue at `layout`; it serves it from the next doorbell on. */
  activate(layout: VirtqueueLayout, flags: { eventIdx: boolean; indirect: boolean }): void {
    const w = this.#w;
    const split = (gpa: number, lo: number, hi: number) => {
      Atomics.store(w, lo, gpa % 0x1_0000_0000);
      Atomics.store(w, hi, Math.floor(gpa / 0x1_0000_0000));
    };
    Atomics.store(w, BLK_WORD.Q_SIZE, layout.size);
    split(layout.desc, BLK_WORD.DESC_LO, BLK_WORD.DESC_HI);
    split(layout.avail, BLK_WORD.AVAIL_LO, BLK_WORD.AVAIL_HI);
    split(layout.used, BLK_WORD.USED_LO, BLK_WORD.USED_HI);
    Atomics.store(
      w,
      BLK_WORD.FLAGS,
      (flags.eventIdx ? BLK_FLAG.EVENT_IDX : 0) | (flags.indirect ? BLK_FLAG.INDIRECT : 0),
    );
    Atomics.store(w, BLK_WORD.EPOCH, ++this.#epoch);
    this.#active = true;
    this.#command(BLK_CMD.ACTIVATE, false);
  }

  /** Take the queue back; returns once the worker no longer touches guest memory. */
  reset(): void {
    this.#active = false;
    this.#command(BLK_CMD.RESET, true);
  }

  /** Ring the doorbell (a doorbell write that trapped instead of signalling the eventfd). */
  kick(): void {
    writeFd(this.#opts.doorbellFd, this.#poke, "write blk doorbell");
  }

  /**
   * The queue's MSI-X message while it may be sent directly, or null.
   * Invalidating waits until the worker is not sending on the old route.
   */
  setRoute(message: { readonly address: bigint; readonly data: number } | null): void {
    const w = this.#w;
    if (message === null) {
      if (Atomics.load(w, BLK_WORD.MSI_VALID) === 0) return;
      Atomics.store(w, BLK_WORD.MSI_VALID, 0);
      const until = performance.now() + BLK_WORKER_WAIT_MS;
      while (Atomics.load(w, BLK_WORD.BUSY) !== 0 && performance.now() < until) {
        Atomics.wait(w, BLK_WORD.BUSY, 1, 10);
      }
      return;
    }
    Atomics.add(w, BLK_WORD.MSI_SEQ, 1); // odd: being rewritten
    Atomics.store(w, BLK_WORD.MSI_ADDR_LO, Number(message.address & 0xffff_ffffn) | 0);
    Atomics.store(w, BLK_WORD.MSI_ADDR_HI, Number(message.address >> 32n) | 0);
    Atomics.store(w, BLK_WORD.MSI_DATA, message.data | 0);
    Atomics.store(w, BLK_WORD.MSI_VALID, 1);
    Atomics.add(w, BLK_WORD.MSI_SEQ, 1);
  }

  /** Stop the worker (waiting for it) and release the control eventfd. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#active = false;
    this.#command(BLK_CMD.STOP, true);
    this.#worker.terminate();
    close(this.#controlFd);
  }

  /** Store `cmd`, poke the worker and, if `wait`, wait until it applied it. */
  #command(cmd: number, wait: boolean): void {
    const w = this.#w;
    Atomics.store(w, BLK_WORD.CMD, cmd);
    const seq = Atomics.add(w, BLK_WORD.CMD_SEQ, 1) + 1;
    if (this.#failed === null) writeFd(this.#controlFd, this.#poke, "write blk worker control");
    if (!wait) return;
    const until = performance.now() + BLK_WORKER_WAIT_MS;
    for (;;) {
      const ack = Atomics.load(w, BLK_WORD.ACK_SEQ);
      // Not started yet: it will read the current command when it starts.
      if (ack - seq >= 0 || Atomics.load(w, BLK_WORD.STARTED) !== 1) return;
      if (performance.now() >= until) {
        this.#opts.onWarn(
          `${this.#opts.name}: I/O worker did not answer within ${BLK_WORKER_WAIT_MS} ms`,
        );
        return;
      }
      Atomics.wait(w, BLK_WORD.ACK_SEQ, ack, 10);
    }
  }

  #event(e: BlkWorkerEvent): void {
    switch (e.type) {
      case "interrupt":
        if (this.#active && e.epoch === this.#epoch) this.#opts.onInterrupt();
        return;
      case "broken":
        if (this.#active && e.epoch === this.#epoch) this.#opts.onBroken(e.reason);
        return;
      case "warn":
        this.#opts.onWarn(e.message);
        return;
      case "exited":
        if (e.error !== undefined) this.#fail(e.error);
        return;
    }
  }

  #fail(error: string): void {
    if (this.#failed !== null || this.#closed) return;
    this.#failed = error;
    this.#opts.onFailed(error);
  }
}
