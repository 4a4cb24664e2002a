/**
 * The VMM thread's exit loop: waits on the VM's doorbell, drains every vCPU
 * channel, and dispatches each access to the port I/O or MMIO {@linkcode Bus}.
 * A device that throws never takes the VMM down: its read answers all-ones,
 * its write is dropped, and the error is logged once per device.
 *
 * @module
 */

import type { Bus } from "../devices/bus.ts";
import { ACCESS, DOORBELL, DOORBELL_BYTES, type VcpuChannel } from "./vcpu_channel.ts";

/** Receives log lines (device errors, accesses to nothing). */
export type Logger = (line: string) => void;

/** Counts of what the dispatcher has seen. */
export interface DispatchStats {
  /** Accesses handled. */
  accesses: number;
  /** Accesses that hit no device. */
  unclaimed: number;
  /** Device handlers that threw. */
  deviceErrors: number;
}

/** Drains vCPU channels into the buses until stopped. */
export class IoDispatcher {
  /** The VM's doorbell (share it with every vCPU channel). */
  readonly doorbell: SharedArrayBuffer = new SharedArrayBuffer(DOORBELL_BYTES);
  /** Running totals. */
  readonly stats: DispatchStats = { accesses: 0, unclaimed: 0, deviceErrors: 0 };
  readonly #bell = new Int32Array(this.doorbell);
  readonly #channels: VcpuChannel[] = [];
  readonly #logged = new Set<string>();
  #running = false;
  #loop: Promise<void> | undefined;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  readonly #handle: (kind: number, address: bigint, data: Uint8Array) => void;

  /**
   * @param pio the port I/O bus
   * @param mmio the MMIO bus
   * @param log where device errors go
   */
  constructor(readonly pio: Bus, readonly mmio: Bus, readonly log: Logger = console.error) {
    this.#handle = (kind, address, data) => this.#dispatch(kind, address, data);
  }

  /** Start draining `channel` too. */
  add(channel: VcpuChannel): void {
    this.#channels.push(channel);
  }

  /** Apply everything pending on every channel now. Returns how many accesses were handled. */
  drain(): number {
    let n = 0;
    for (const c of this.#channels) n += c.drain(this.#handle);
    return n;
  }

  /** Run the wait-drain loop in the background until {@linkcode stop}. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    // Atomics.waitAsync does not keep Deno's event loop alive; a timer does.
    this.#keepAlive = setInterval(() => {}, 1 << 30);
    this.#loop = this.#run();
  }

  /** Stop the loop (after a final drain). */
  async stop(): Promise<void> {
    this.#running = false;
    Atomics.add(this.#bell, DOORBELL.COUNT, 1);
    Atomics.notify(this.#bell, DOORBELL.COUNT);
    await this.#loop;
    clearInterval(this.#keepAlive);
    this.drain();
  }

  async #run(): Promise<void> {
    const bell = this.#bell;
    let busy = 0;
    while (this.#running) {
      const seen = Atomics.load(bell, DOORBELL.COUNT);
      this.drain();
      // Say we are going to sleep, then sleep only if nothing was posted since `seen`.
      Atomics.store(bell, DOORBELL.SLEEPING, 1);
      const wait = Atomics.waitAsync(bell, DOORBELL.COUNT, seen);
      if (wait.async) {
        busy = 0;
        await wait.value;
      } else if (++busy >= 64) {
        // Under a storm of exits, still let timers and I/O run.
        busy = 0;
        await new Promise((r) => setTimeout(r, 0));
      }
      Atomics.store(bell, DOORBELL.SLEEPING, 0);
    }
  }

  #dispatch(kind: number, address: bigint, data: Uint8Array): void {
    this.stats.accesses++;
    const bus = kind === ACCESS.PIO_READ || kind === ACCESS.PIO_WRITE ? this.pio : this.mmio;
    const write = kind === ACCESS.PIO_WRITE || kind === ACCESS.MMIO_WRITE;
    const range = bus.find(address);
    if (!range) {
      this.stats.unclaimed++;
      if (!write) data.fill(0xff);
      return;
    }
    try {
      const offset = Number(address - range.base);
      if (write) range.device.write(offset, data);
      else range.device.read(offset, data);
    } catch (e) {
      this.stats.deviceErrors++;
      if (!write) data.fill(0xff);
      const key = range.name;
      if (!this.#logged.has(key)) {
        this.#logged.add(key);
        const what = `${bus.kind} ${write ? "write" : "read"} at 0x${address.toString(16)}`;
        this.log(`${range.name}: ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
}
