/**
 * The VMM thread's exit loop: waits on the VM's doorbell, drains every vCPU
 * channel, and dispatches each access to the port I/O or MMIO {@linkcode Bus}.
 * A device that throws never takes the VMM down: its read answers all-ones,
 * its write is dropped, and the error is logged once per device.
 *
 * @module
 */

import type { Bus, BusRange } from "../devices/bus.ts";
import { IdleBackoff, waitAtMost } from "./atomics_wait.ts";
import { PORT_MAP, PORT_MAP_BYTES, setPortBits } from "./port_map.ts";
import {
  ACCESS,
  DOORBELL,
  DOORBELL_BYTES,
  drainPostedInOrder,
  type VcpuChannel,
} from "./vcpu_channel.ts";

/** Receives log lines (device errors, accesses to nothing). */
export type Logger = (line: string) => void;

/**
 * How long the VMM thread lets posted writes accumulate after the first one
 * wakes it (reads still wake it at once). Posted writes need no answer, so
 * batching them saves a wake-up per exit.
 */
export const COALESCE_MS = 1;

/**
 * While the guest keeps making exits, the VMM thread's event loop turns at
 * least this often. Deno does not reliably wake its event loop when another
 * thread's `Atomics.notify` resolves an `Atomics.waitAsync`
 * (denoland/deno#14786), and now and then such a promise never settles at
 * all: a lost wake-up left a vCPU waiting for a read answer forever, and the
 * guest hung (SMP guests, one boot in four to eight). So every wait also races
 * a timer ({@linkcode waitAtMost}), this short while exits come.
 */
export const BUSY_RECHECK_MS = 10;

/**
 * Once the guest has made no exit for {@linkcode QUIET_AFTER_MS}, the idle
 * VMM thread looks at the doorbell only this often (an exit still wakes it at
 * once), and this is also how often it samples the vCPUs' KVM_RUN state for
 * stall reports (its event loop's keep-alive tick).
 */
export const IDLE_RECHECK_MS = 250;

/** How long without an exit makes the VMM thread idle (see {@linkcode IDLE_RECHECK_MS}). */
export const QUIET_AFTER_MS = 50;

/** Counts of what the dispatcher has seen. */
export interface DispatchStats {
  /** Accesses handled. */
  accesses: number;
  /**
   * Accesses that hit no device here (a port access to nothing never gets
   * here: its vCPU thread answers it, see port_map.ts).
   */
  unclaimed: number;
  /** Device handlers that threw. */
  deviceErrors: number;
  /** Turns of the wait-drain loop: wake-ups of the VMM thread for exits, and idle rechecks. */
  turns: number;
}

/** Drains vCPU channels into the buses until stopped. */
export class IoDispatcher {
  /** The VM's doorbell (share it with every vCPU channel). */
  readonly doorbell: SharedArrayBuffer = new SharedArrayBuffer(DOORBELL_BYTES);
  /** Running totals. */
  readonly stats: DispatchStats = { accesses: 0, unclaimed: 0, deviceErrors: 0, turns: 0 };
  readonly #bell = new Int32Array(this.doorbell);
  /**
   * The port map the vCPU threads consult (see port_map.ts): where writes
   * may be posted ({@linkcode postPorts}) and where a device is mapped on the
   * port bus (kept up to date as ranges come and go).
   */
  readonly portMap: SharedArrayBuffer = new SharedArrayBuffer(PORT_MAP_BYTES);
  readonly #ports = new Uint8Array(this.portMap);
  readonly #channels: VcpuChannel[] = [];
  readonly #logged = new Set<string>();
  #running = false;
  #loop: Promise<void> | undefined;
  #keepAlive: ReturnType<typeof setInterval> | undefined;
  readonly #backoff = new IdleBackoff(BUSY_RECHECK_MS, IDLE_RECHECK_MS, QUIET_AFTER_MS);
  readonly #handle: (kind: number, address: bigint, data: Uint8Array) => void;

  /**
   * A dispatcher of guest accesses to `pio` and `mmio`.
   * @param pio the port I/O bus
   * @param mmio the MMIO bus
   * @param log where device errors go
   */
  constructor(readonly pio: Bus, readonly mmio: Bus, readonly log: Logger = console.error) {
    this.#handle = (kind, address, data) => this.#dispatch(kind, address, data);
    // setPortBits clips to the port space (a range on the port bus may lie past it).
    const claim = (range: BusRange, mapped: boolean) =>
      setPortBits(this.#ports, PORT_MAP.CLAIMED, Number(range.base), Number(range.size), mapped);
    for (const range of pio.ranges) claim(range, true);
    pio.watch(claim);
  }

  /** Start draining `channel` too. */
  add(channel: VcpuChannel): void {
    this.#channels.push(channel);
  }

  /**
   * Apply everything pending on every channel now. Returns how many accesses
   * were handled. Posted writes are applied in the order the guest made them
   * across vCPUs, and every vCPU's posted writes go before any synchronous
   * access seen at the start: a guest that posts a write on one vCPU, then
   * (under a lock, say) reads on another, must see its write applied.
   */
  drain(): number {
    const pending = this.#channels.filter((c) => c.readPending());
    let n = drainPostedInOrder(this.#channels, this.#handle);
    for (const c of pending) n += c.completeRequest(this.#handle);
    return n;
  }

  /** The doorbell, the loop's state and each channel, for a stall report. */
  describe(): string[] {
    const bell = this.#bell;
    const { accesses, unclaimed, deviceErrors } = this.stats;
    return [
      `dispatcher running=${this.#running} doorbell count=${Atomics.load(bell, DOORBELL.COUNT)} ` +
      `sleeping=${Atomics.load(bell, DOORBELL.SLEEPING)} reads=${
        Atomics.load(bell, DOORBELL.READS)
      } accesses=${accesses} unclaimed=${unclaimed} errors=${deviceErrors}`,
      ...this.#channels.map((c, i) => `vcpu${i}: ${c.describe()}`),
    ];
  }

  /**
   * Let port writes to `[base, base+count)` be posted (the vCPU does not wait
   * for the device). Port I/O writes are otherwise synchronous, as on x86,
   * where an OUT completes before the next instruction: a guest that writes a
   * device register and then EOIs an interrupt relies on it. Post only where
   * nothing can depend on completion (POST codes, a console data port whose
   * ISA interrupt is edge-triggered, the config address register).
   */
  postPorts(base: number, count: number): void {
    setPortBits(this.#ports, PORT_MAP.POSTED, base, count, true);
  }

  /** Run the wait-drain loop in the background until {@linkcode stop}. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    // Atomics.waitAsync does not keep Deno's event loop alive: a timer does. The tick also
    // samples each vCPU's KVM_RUN state for stall reports (VcpuChannel.sampleRun).
    this.#keepAlive = setInterval(() => {
      const now = Date.now();
      for (const c of this.#channels) c.sampleRun(now);
    }, IDLE_RECHECK_MS);
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
      this.stats.turns++;
      const seen = Atomics.load(bell, DOORBELL.COUNT);
      if (this.drain() > 0) this.#backoff.noteWork();
      if (Atomics.load(bell, DOORBELL.COUNT) !== seen) {
        if (++busy >= 64) {
          // Under a storm of exits, still let timers and I/O run.
          busy = 0;
          await new Promise((r) => setTimeout(r, 0));
        }
        continue;
      }
      busy = 0;
      // Idle: ask the next poster to wake us, then sleep unless something came in meanwhile.
      Atomics.store(bell, DOORBELL.SLEEPING, 1);
      await waitAtMost(bell, DOORBELL.COUNT, seen, this.#backoff.waitMs());
      Atomics.store(bell, DOORBELL.SLEEPING, 0);
      // Woken by a posted write: let a few more pile up (nobody waits for them), but answer
      // a read request at once.
      const reads = Atomics.load(bell, DOORBELL.READS);
      if (!this.#readPending()) {
        await waitAtMost(bell, DOORBELL.READS, reads, COALESCE_MS);
      }
    }
  }

  #readPending(): boolean {
    return this.#channels.some((c) => c.readPending());
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
