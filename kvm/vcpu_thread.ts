/**
 * The VMM-thread handle of one vCPU worker: starts it, kicks it out of
 * `KVM_RUN`, pauses, resumes and stops it, and reports how it ended.
 *
 * @module
 */

import { libc, SIGUSR2 } from "./libc.ts";
import { offsetOf } from "./layout.ts";
import { kvmRun } from "./kvm_structs.ts";
import { CONTROL, VCPU_STATE, VcpuChannel } from "./vcpu_channel.ts";
import type { VcpuExit } from "./vcpu_exit.ts";
import type { VcpuInit, VcpuMessage } from "./vcpu_worker.ts";
import type { VcpuSetup } from "./types.ts";

const IMMEDIATE_EXIT = offsetOf(kvmRun, "immediate_exit");

let kickHandlerInstalled = false;

/**
 * Install (once per process, for good) the SIGUSR2 handler that makes kicks
 * interrupt KVM_RUN harmlessly. It is never removed: a kick still in flight
 * when the last vCPU ends would otherwise hit the default action and kill the
 * process. (A signal listener does not keep Deno's event loop alive.)
 */
function installKickHandler(): void {
  if (kickHandlerInstalled) return;
  Deno.addSignalListener("SIGUSR2", () => {});
  kickHandlerInstalled = true;
}

const WORKER_URL = new URL("./vcpu_worker.ts", import.meta.url);

/** Workers started ahead of time by {@linkcode prestartVcpuWorkers}, not yet given a vCPU. */
const prestarted: Worker[] = [];

/**
 * Have `count` vCPU workers started ahead of time (start as many as are
 * missing), so that their JavaScript loads while the VMM is still reading
 * the kernel and building the machine (a worker is a new isolate: its
 * start-up is a good part of the time to first guest instruction). The next
 * {@linkcode VcpuThread}s take them. An idle prestarted worker keeps the
 * process alive: call {@linkcode releasePrestartedVcpuWorkers} if no machine
 * will take them.
 */
export function prestartVcpuWorkers(count: number): void {
  while (prestarted.length < count) {
    prestarted.push(new Worker(WORKER_URL, { type: "module" }));
  }
}

/** Terminate the prestarted workers no machine took. */
export function releasePrestartedVcpuWorkers(): void {
  for (const w of prestarted.splice(0)) w.terminate();
}

/** A running vCPU worker. */
export class VcpuThread {
  /** Its channel (the VMM side drains it). */
  readonly channel: VcpuChannel;
  /** Resolves when the vCPU has been created and is about to run. */
  readonly ready: Promise<void>;
  /** Resolves with the vCPU's final report. */
  readonly exited: Promise<VcpuExit>;
  #worker: Worker;
  #thread = 0n;
  #run: Uint8Array | undefined;
  #done = false;

  /**
   * Start a worker that creates vCPU `index` on `vmFd` and runs it.
   * @param onMessage called for each message before the thread handles it (e.g. to drain the channel)
   */
  constructor(
    vmFd: number,
    readonly index: number,
    mmapSize: number,
    setup: VcpuSetup,
    doorbell: SharedArrayBuffer,
    portMap: SharedArrayBuffer,
  ) {
    this.channel = VcpuChannel.create(doorbell);
    installKickHandler();
    this.#worker = prestarted.shift() ?? new Worker(WORKER_URL, { type: "module" });
    let onReady!: () => void, onExit!: (e: VcpuExit) => void;
    this.ready = new Promise((r) => onReady = r);
    this.exited = new Promise((r) => onExit = r);
    this.#worker.onmessage = (event: MessageEvent<VcpuMessage>) => {
      const m = event.data;
      if (m.type === "ready") {
        this.#thread = m.thread;
        this.#run = new Uint8Array(
          Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(m.runAddress)!, 4096),
        );
        onReady();
      } else {
        this.#finish();
        onReady();
        onExit(m.exit);
      }
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#finish();
      onReady();
      onExit({ index, kind: "error", detail: event.message });
    };
    const init: VcpuInit = {
      vmFd,
      index,
      mmapSize,
      setup,
      channel: this.channel.buffer,
      doorbell,
      portMap,
    };
    this.#worker.postMessage(init);
  }

  /** Force the vCPU out of KVM_RUN soon (immediate_exit, then a signal to its thread). */
  kick(): void {
    if (this.#done || !this.#run) return;
    this.#run[IMMEDIATE_EXIT] = 1;
    libc().pthread_kill(this.#thread, SIGUSR2);
  }

  /** Stop running guest code until {@linkcode resume}; resolves once the vCPU is held. */
  async pause(timeoutMs = 5000): Promise<void> {
    await this.ready;
    this.channel.setControl(CONTROL.PAUSE);
    const deadline = Date.now() + timeoutMs;
    while (!this.#done && this.channel.state() !== VCPU_STATE.PAUSED) {
      if (Date.now() > deadline) {
        throw new Error(`vcpu${this.index}: did not pause within ${timeoutMs} ms`);
      }
      this.kick();
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Let a paused vCPU run again. */
  resume(): void {
    this.channel.setControl(CONTROL.RUN);
  }

  /** Ask the vCPU to stop; resolves with its report. */
  async stop(): Promise<VcpuExit> {
    await this.ready;
    this.channel.setControl(CONTROL.STOP);
    const kicker = setInterval(() => this.kick(), 5);
    this.kick();
    try {
      return await this.exited;
    } finally {
      clearInterval(kicker);
    }
  }

  /** True once the worker has ended. */
  get done(): boolean {
    return this.#done;
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#run = undefined;
    this.#worker.terminate();
  }
}
