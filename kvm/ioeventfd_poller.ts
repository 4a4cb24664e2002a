/**
 * Waits on eventfds off the VMM thread and calls back on it: the doorbell
 * half of KVM ioeventfds (and usable with any eventfd).
 *
 * A dedicated worker blocks in `poll(2)` on a control eventfd plus every
 * registered eventfd. When one fires it reads (resets) the counter, sets the
 * slot's pending word in shared memory and bumps a doorbell word; the VMM
 * thread waits on that word with `Atomics.waitAsync` and calls each pending
 * slot's callback. Kicks of one slot that arrive before the VMM thread got to
 * it are coalesced (a doorbell is level-like: "look at the queue").
 *
 * Why shared memory rather than `postMessage`: no structured clone or
 * allocation per kick, coalescing for free, and the same pattern as the vCPU
 * channel. The set of fds changes through shared slot words plus a write to
 * the control eventfd. The worker alone closes a removed slot's fd (after it
 * left `poll`), so an fd number is never reused under its feet.
 *
 * @module
 */

import { IdleBackoff, waitAtMost } from "./atomics_wait.ts";
import { IDLE_RECHECK_MS, QUIET_AFTER_MS } from "./io_dispatcher.ts";
import { close, EFD_CLOEXEC, EFD_NONBLOCK, eventfd, libc } from "./libc.ts";

/** Most eventfds one poller serves. */
export const POLLER_SLOTS = 256;

/** Word indices of the shared header (Int32). */
export const POLLER_WORD = {
  /** Bumped by the worker after it marked slots pending. */
  BELL: 0,
  /** Non-zero: the worker must close everything and exit. */
  STOP: 1,
  /** Number of wake-ups the worker delivered (statistics). */
  WAKES: 2,
} as const;

/** Slot states (in the state array). */
export const SLOT_STATE = { FREE: 0, ACTIVE: 1, CLOSING: 2 } as const;

/** Int32 words of the header. */
const HEADER_WORDS = 4;
/**
 * Longest wait before the bell is looked at again (see ./atomics_wait.ts):
 * {@linkcode KICK_RECHECK_MS} within {@linkcode QUIET_AFTER_MS} of the last
 * kick, {@linkcode IDLE_RECHECK_MS} after.
 */
const KICK_RECHECK_MS = 50;

/** Int32 index of slot `i`'s fd, state and pending words. */
export function slotWords(i: number): { fd: number; state: number; pending: number } {
  return {
    fd: HEADER_WORDS + i,
    state: HEADER_WORDS + POLLER_SLOTS + i,
    pending: HEADER_WORDS + 2 * POLLER_SLOTS + i,
  };
}

/** Bytes of the shared memory between the poller and its worker. */
export const POLLER_BYTES = (HEADER_WORDS + 3 * POLLER_SLOTS) * 4;

/** The message that starts the worker. */
export interface PollerInit {
  /** Shared words ({@linkcode POLLER_BYTES}). */
  readonly shared: SharedArrayBuffer;
  /** The control eventfd. */
  readonly controlFd: number;
}

/** Statistics of a poller. */
export interface PollerStats {
  /** Callbacks run. */
  kicks: number;
  /** Times the VMM thread woke for pending slots. */
  wakes: number;
}

/** An eventfd registered with a poller. */
export interface PolledEventfd {
  /** The eventfd (owned by the poller: closed after {@linkcode IoeventfdPoller.remove}). */
  readonly fd: number;
  /** Slot index. */
  readonly slot: number;
}

/** A worker thread polling eventfds for the VMM thread. */
export class IoeventfdPoller {
  /** Statistics. */
  readonly stats: PollerStats = { kicks: 0, wakes: 0 };
  readonly #backoff = new IdleBackoff(KICK_RECHECK_MS, IDLE_RECHECK_MS, QUIET_AFTER_MS);
  readonly #shared = new SharedArrayBuffer(POLLER_BYTES);
  readonly #words = new Int32Array(this.#shared);
  readonly #callbacks: ((() => void) | null)[] = new Array(POLLER_SLOTS).fill(null);
  readonly #control: number;
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  #stopped = false;
  #loop: Promise<void>;

  /** Start the worker (it idles in poll on the control eventfd). */
  constructor() {
    this.#control = eventfd(EFD_CLOEXEC | EFD_NONBLOCK);
    this.#worker = new Worker(new URL("./ioeventfd_poller_worker.ts", import.meta.url), {
      type: "module",
    });
    let exited!: () => void;
    this.#exited = new Promise((r) => exited = r);
    this.#worker.onmessage = () => exited();
    this.#worker.onerror = (e) => {
      e.preventDefault();
      console.error(`ioeventfd poller: worker failed: ${e.message}`);
      exited();
    };
    this.#worker.postMessage({ shared: this.#shared, controlFd: this.#control } as PollerInit);
    this.#loop = this.#run();
  }

  /**
   * Create an eventfd and call `onKick` on this thread whenever it is
   * signalled. Throws when every slot is taken or the poller is stopped.
   */
  add(onKick: () => void): PolledEventfd {
    if (this.#stopped) throw new Error("ioeventfd poller: stopped");
    const w = this.#words;
    let slot = -1;
    for (let i = 0; i < POLLER_SLOTS; i++) {
      if (Atomics.load(w, slotWords(i).state) === SLOT_STATE.FREE) {
        slot = i;
        break;
      }
    }
    if (slot < 0) throw new Error(`ioeventfd poller: all ${POLLER_SLOTS} slots are in use`);
    const fd = eventfd(EFD_CLOEXEC | EFD_NONBLOCK);
    const at = slotWords(slot);
    this.#callbacks[slot] = onKick;
    Atomics.store(w, at.pending, 0);
    Atomics.store(w, at.fd, fd);
    Atomics.store(w, at.state, SLOT_STATE.ACTIVE);
    this.#poke();
    return { fd, slot };
  }

  /** Stop calling back for `entry`; the worker closes its fd. Kicks not yet delivered are dropped. */
  remove(entry: PolledEventfd): void {
    const at = slotWords(entry.slot);
    if (Atomics.load(this.#words, at.fd) !== entry.fd) return;
    this.#callbacks[entry.slot] = null;
    Atomics.store(this.#words, at.state, SLOT_STATE.CLOSING);
    this.#poke();
  }

  /** Number of slots in use (registered or still closing). */
  get used(): number {
    let n = 0;
    for (let i = 0; i < POLLER_SLOTS; i++) {
      if (Atomics.load(this.#words, slotWords(i).state) !== SLOT_STATE.FREE) n++;
    }
    return n;
  }

  /** Stop the worker (it closes every eventfd) and the wait loop. Idempotent. */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      Atomics.store(this.#words, POLLER_WORD.STOP, 1);
      this.#poke();
      Atomics.add(this.#words, POLLER_WORD.BELL, 1);
      Atomics.notify(this.#words, POLLER_WORD.BELL);
      const timeout = new Promise<void>((r) => {
        const t = setTimeout(r, 2000);
        this.#exited.then(() => clearTimeout(t));
      });
      await Promise.race([this.#exited, timeout]);
      this.#worker.terminate();
      close(this.#control);
    }
    await this.#loop;
  }

  /** Wake the worker so it re-reads the slot table. */
  #poke(): void {
    const one = new BigUint64Array([1n]);
    libc().write(this.#control, new Uint8Array(one.buffer), 8n);
  }

  async #run(): Promise<void> {
    const w = this.#words;
    while (!this.#stopped) {
      const seen = Atomics.load(w, POLLER_WORD.BELL);
      this.#deliver();
      // Under a stream of kicks the bell has always moved on: still give the event loop (the
      // vCPU dispatcher, timers) a turn, or a busy device would starve everything else.
      if (Atomics.load(w, POLLER_WORD.BELL) !== seen) await new Promise((r) => setTimeout(r, 0));
      else await waitAtMost(w, POLLER_WORD.BELL, seen, this.#backoff.waitMs());
      this.stats.wakes++;
    }
  }

  #deliver(): void {
    const w = this.#words;
    for (let i = 0; i < POLLER_SLOTS; i++) {
      const at = slotWords(i);
      if (Atomics.load(w, at.pending) === 0 || Atomics.exchange(w, at.pending, 0) === 0) continue;
      const cb = this.#callbacks[i];
      if (!cb) continue;
      this.stats.kicks++;
      this.#backoff.noteWork();
      try {
        cb();
      } catch (e) {
        console.error(`ioeventfd poller: slot ${i} callback failed: ${e}`);
      }
    }
  }
}
