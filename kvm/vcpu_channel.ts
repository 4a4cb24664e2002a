/**
 * The shared-memory channel between one vCPU worker and the VMM thread that
 * owns the device models (see docs/architecture.md).
 *
 * - Writes (PIO OUT, MMIO write) are *posted*, as on PCI: the worker appends
 *   them to a ring and re-enters KVM_RUN at once; the VMM thread applies them
 *   in the order the guest made them, across vCPUs too: each write takes a
 *   ticket from the VM's doorbell before the vCPU goes on, and the rings are
 *   merged by ticket ({@linkcode drainPostedInOrder}). A guest that writes a
 *   register on one vCPU, then (under a lock) on another, gets its last write.
 * - Reads (PIO IN, MMIO read) are *synchronous*: the worker publishes one
 *   request and blocks in `Atomics.wait` until the VMM thread, having first
 *   applied every posted write before it, answers.
 * - A control word carries run / pause / stop requests to the worker; the
 *   worker acknowledges in a state word.
 * - One doorbell word per VM (shared by all vCPUs) wakes the VMM thread.
 *
 * @module
 */

/** Kinds of guest access carried over the channel. */
export const ACCESS = { PIO_WRITE: 1, PIO_READ: 2, MMIO_WRITE: 3, MMIO_READ: 4 } as const;

/** Control requests from the VMM thread to a vCPU worker. */
export const CONTROL = { RUN: 0, PAUSE: 1, STOP: 2 } as const;

/** vCPU states reported by the worker. */
export const VCPU_STATE = { STARTING: 0, RUNNING: 1, PAUSED: 2, STOPPED: 3 } as const;

/** Per-vCPU exit counters kept in the channel (index into {@linkcode VcpuChannel.counters}). */
export const COUNTER = {
  PIO_WRITE: 0,
  PIO_READ: 1,
  MMIO_WRITE: 2,
  MMIO_READ: 3,
  INTR: 4,
  OTHER: 5,
  /**
   * Of the port exits above, those the vCPU thread served itself (unclaimed ports, PCI mechanism
   * #1's common accesses): not a kind of its own, so not part of a total.
   */
  LOCAL: 6,
} as const;

/** Names of the counters, in index order. */
export const COUNTER_NAMES = Object.keys(COUNTER) as (keyof typeof COUNTER)[];

/** Word indices of the channel header (Int32). */
const W = {
  HEAD: 0,
  TAIL: 1,
  SYNC: 2,
  SYNC_KIND: 3,
  SYNC_SIZE: 4,
  SYNC_ADDR_LO: 5,
  SYNC_ADDR_HI: 6,
  CONTROL: 7,
  STATE: 8,
  /**
   * Bumped as the worker enters and as it leaves KVM_RUN (wrapping): odd while it is inside (see
   * {@linkcode VcpuChannel.enterRun}).
   */
  RUN_EDGES: 9,
  // Words 10-11 are the sync data (SYNC_DATA).
  /** Bumped by the VMM to ask the worker for its registers (see {@linkcode VcpuChannel.requestProbe}). */
  PROBE_ASKED: 12,
  /** Set to PROBE_ASKED by the worker once it has written the RIP below. */
  PROBE_ANSWERED: 13,
  /** The guest's RIP when the worker answered, low and high halves. */
  PROBE_RIP_LO: 14,
  PROBE_RIP_HI: 15,
} as const;
/** Byte offset of the sync request's 8 data bytes. */
const SYNC_DATA = 40;
/** Byte offset of the counters (Float64 each). */
const COUNTERS = 64;
/** Byte offset of the ring. */
const RING = 128;
/** Ring entry: u32 kind|size<<8, u32 addr lo, u32 addr hi, u32 ticket, 8 data bytes. */
const ENTRY = 16 + 8;
/** Ring capacity in entries (a power of two). */
export const RING_ENTRIES = 1024;

const SYNC_IDLE = 0, SYNC_REQUEST = 1, SYNC_DONE = 2;

/** Bytes of shared memory one channel needs. */
export const CHANNEL_BYTES = RING + RING_ENTRIES * ENTRY;

/**
 * Words of the VM's doorbell (shared by all vCPUs):
 * - COUNT is bumped on every post and every read request;
 * - SLEEPING is set by the VMM thread before it sleeps on COUNT; the first
 *   poster to see it clears it and pays for the one wake-up, later posts are
 *   free until the VMM thread sleeps again;
 * - READS is bumped and always notified on a read request, which the VMM
 *   thread must answer at once even while it lets posted writes pile up;
 * - TICKET hands out the VM-wide order of posted writes (wrapping 32-bit).
 */
export const DOORBELL = { COUNT: 0, SLEEPING: 1, READS: 2, TICKET: 3 } as const;

/** Bytes of a doorbell. */
export const DOORBELL_BYTES = 16;

/** A guest access as the VMM thread receives it. `data` is only valid during the call. */
export type AccessHandler = (kind: number, address: bigint, data: Uint8Array) => void;

/**
 * VMM: apply every published posted write of `channels` in the VM-wide order
 * of their tickets (a merge of the per-vCPU rings). Returns how many.
 *
 * A write still being published when the drain starts waits for the next
 * one, even if its ticket is older: its vCPU has not gone past it yet, so the
 * guest cannot have ordered anything after it.
 */
export function drainPostedInOrder(
  channels: readonly VcpuChannel[],
  handle: AccessHandler,
): number {
  if (channels.length === 1) return channels[0].drainPosted(handle);
  const limits = channels.map((c) => c.postedLimit());
  let n = 0;
  for (;; n++) {
    let next = -1, ticket = 0;
    for (let i = 0; i < channels.length; i++) {
      if (!channels[i].hasPosted(limits[i])) continue;
      const t = channels[i].nextTicket();
      if (next < 0 || ((t - ticket) | 0) < 0) { // wrap-aware "t is older"
        next = i;
        ticket = t;
      }
    }
    if (next < 0) break;
    channels[next].applyPosted(handle);
  }
  for (const c of channels) c.releasePosted();
  return n;
}

/** Byte offset of the ring entry at (wrapping) ring position `position`. */
function entryAt(position: number): number {
  return RING + (position & (RING_ENTRIES - 1)) * ENTRY;
}

/** Both ends of a vCPU channel over one SharedArrayBuffer. */
export class VcpuChannel {
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #doorbell: Int32Array;
  /** VMM side: ring position after the last applied, not yet released write. */
  #applied: number | null = null;
  /** Exit counters (see {@linkcode COUNTER}). */
  readonly counters: Float64Array;
  /** VMM side: the RUN_EDGES word at the last {@linkcode sampleRun}, and when it changed. */
  #runSample = { edges: -1, since: 0 };
  /** VMM side: when the last probe was asked for (epoch ms), 0 for never. */
  #probeAskedAt = 0;
  /** VMM side: the answered probe before the last one, if any. */
  #previousProbe: { readonly at: number; readonly rip: bigint } | null = null;

  /**
   * Views over one vCPU's channel and the VM's doorbell.
   * @param buffer the channel's shared memory ({@linkcode CHANNEL_BYTES} bytes)
   * @param doorbell the VM's shared doorbell ({@linkcode DOORBELL_BYTES})
   */
  constructor(readonly buffer: SharedArrayBuffer, readonly doorbell: SharedArrayBuffer) {
    this.#words = new Int32Array(buffer);
    this.#bytes = new Uint8Array(buffer);
    this.#doorbell = new Int32Array(doorbell);
    this.counters = new Float64Array(buffer, COUNTERS, COUNTER_NAMES.length);
  }

  /** A new channel with fresh shared memory, on a given VM doorbell. */
  static create(doorbell: SharedArrayBuffer): VcpuChannel {
    return new VcpuChannel(new SharedArrayBuffer(CHANNEL_BYTES), doorbell);
  }

  // ---- worker side ----

  /**
   * Worker: post a write of `size` bytes taken from `src` at `offset`, to the
   * address `hi:lo`. Blocks only while the ring is full.
   */
  post(kind: number, lo: number, hi: number, src: Uint8Array, offset: number, size: number): void {
    const w = this.#words;
    const head = w[W.HEAD];
    for (;;) {
      const tail = Atomics.load(w, W.TAIL);
      if (head - tail < RING_ENTRIES) break;
      this.#ring(true); // full: the VMM thread must drain now
      Atomics.wait(w, W.TAIL, tail, 100);
    }
    const at = entryAt(head);
    const e = at >> 2;
    w[e] = kind | (size << 8);
    w[e + 1] = lo;
    w[e + 2] = hi;
    // Taken while the vCPU is stopped on this write: any write the guest makes after it (on any
    // vCPU) gets a later ticket.
    w[e + 3] = Atomics.add(this.#doorbell, DOORBELL.TICKET, 1);
    const bytes = this.#bytes;
    for (let i = 0; i < size; i++) bytes[at + 16 + i] = src[offset + i];
    Atomics.store(w, W.HEAD, head + 1);
    this.#ring();
  }

  /**
   * Worker: perform a synchronous access of `size` bytes at `hi:lo` and wait
   * for it to complete (after every write posted before it, by any vCPU). A
   * read's answer is stored into `dst` at `offset`; a non-posted write takes
   * its data from there.
   */
  request(
    kind: number,
    lo: number,
    hi: number,
    dst: Uint8Array,
    offset: number,
    size: number,
  ): void {
    const w = this.#words;
    w[W.SYNC_KIND] = kind;
    w[W.SYNC_SIZE] = size;
    w[W.SYNC_ADDR_LO] = lo;
    w[W.SYNC_ADDR_HI] = hi;
    const bytes = this.#bytes;
    for (let i = 0; i < size; i++) bytes[SYNC_DATA + i] = dst[offset + i];
    Atomics.store(w, W.SYNC, SYNC_REQUEST);
    this.#ring(true);
    while (Atomics.load(w, W.SYNC) === SYNC_REQUEST) Atomics.wait(w, W.SYNC, SYNC_REQUEST);
    for (let i = 0; i < size; i++) dst[offset + i] = bytes[SYNC_DATA + i];
    Atomics.store(w, W.SYNC, SYNC_IDLE);
  }

  /** Worker: the pending control request. */
  control(): number {
    return Atomics.load(this.#words, W.CONTROL);
  }

  /** Worker: publish the vCPU's state and wake anyone waiting for it. */
  setState(state: number): void {
    Atomics.store(this.#words, W.STATE, state);
    Atomics.notify(this.#words, W.STATE);
    this.#ring();
  }

  /** Worker: block while the control word equals `value` (paused). */
  waitControlChange(value: number): void {
    Atomics.wait(this.#words, W.CONTROL, value);
  }

  /** Bump the doorbell; wake the VMM thread if it sleeps, or at once when `urgent` (a read, a full ring). */
  #ring(urgent = false): void {
    const bell = this.#doorbell;
    Atomics.add(bell, DOORBELL.COUNT, 1);
    if (urgent) {
      Atomics.add(bell, DOORBELL.READS, 1);
      Atomics.notify(bell, DOORBELL.READS);
      Atomics.notify(bell, DOORBELL.COUNT);
    } else if (
      Atomics.load(bell, DOORBELL.SLEEPING) !== 0 &&
      Atomics.exchange(bell, DOORBELL.SLEEPING, 0) !== 0
    ) {
      Atomics.notify(bell, DOORBELL.COUNT);
    }
  }

  /**
   * Worker: about to enter KVM_RUN. With {@linkcode leaveRun} this lets a
   * stall report say whether a silent vCPU sits in the kernel (the guest, or
   * KVM) or in dvmm's own code, and (through the VMM thread's
   * {@linkcode sampleRun}) for how long. No clock is read here: on a host
   * whose clock source is slow to read (the lab's L1 reads an emulated HPET)
   * two clock reads per exit cost a fifth of the exit.
   */
  enterRun(): void {
    Atomics.add(this.#words, W.RUN_EDGES, 1);
  }

  /** Worker: back from KVM_RUN. */
  leaveRun(): void {
    Atomics.add(this.#words, W.RUN_EDGES, 1);
  }

  /** Has the VMM asked for the registers since the worker last answered (is a probe pending)? */
  probeAsked(): boolean {
    return Atomics.load(this.#words, W.PROBE_ASKED) !== Atomics.load(this.#words, W.PROBE_ANSWERED);
  }

  /** Worker: answer a probe with the guest's RIP. */
  answerProbe(rip: bigint): void {
    const w = this.#words;
    w[W.PROBE_RIP_LO] = Number(rip & 0xffff_ffffn) | 0;
    w[W.PROBE_RIP_HI] = Number(rip >> 32n) | 0;
    Atomics.store(w, W.PROBE_ANSWERED, Atomics.load(w, W.PROBE_ASKED));
  }

  // ---- VMM side ----

  /** VMM: is a read request waiting for an answer? */
  readPending(): boolean {
    return Atomics.load(this.#words, W.SYNC) === SYNC_REQUEST;
  }

  /** VMM: the vCPU's last published state. */
  state(): number {
    return Atomics.load(this.#words, W.STATE);
  }

  /**
   * VMM: note the time (epoch ms, default now) if the worker entered or left
   * KVM_RUN since the last sample (the edge count changed); the stall report counts from there. Call
   * it regularly (the dispatcher does, on its event-loop tick).
   */
  sampleRun(now: number = Date.now()): void {
    const edges = Atomics.load(this.#words, W.RUN_EDGES);
    if (edges !== this.#runSample.edges) this.#runSample = { edges, since: now };
  }

  /**
   * VMM: ask the worker for the guest's registers; the caller kicks it out of
   * KVM_RUN, and the worker answers before it enters again. A stall report
   * uses it on a vCPU that has been inside KVM_RUN for long: an answer gives
   * the RIP the guest spins at, no answer means KVM itself does not return.
   */
  requestProbe(now: number = Date.now()): void {
    if (this.#probeAskedAt && !this.probeAsked()) {
      this.#previousProbe = { at: this.#probeAskedAt, rip: this.#probeRip() };
    }
    this.#probeAskedAt = now;
    Atomics.add(this.#words, W.PROBE_ASKED, 1);
  }

  /**
   * VMM: {@linkcode requestProbe} if the worker has been inside KVM_RUN for
   * `minSeconds` or more and no probe was asked for in the last `minSeconds`.
   * Returns whether it asked (then kick the vCPU).
   */
  probeIfLongInRun(minSeconds: number, now: number = Date.now()): boolean {
    if (this.secondsInRun(now) < minSeconds) return false;
    if (this.#probeAskedAt && now - this.#probeAskedAt < minSeconds * 1000) return false;
    this.requestProbe(now);
    return true;
  }

  /** VMM: seconds the worker has been inside KVM_RUN without a break (0 when outside). */
  secondsInRun(now: number = Date.now()): number {
    this.sampleRun(now);
    return Atomics.load(this.#words, W.RUN_EDGES) & 1 ? (now - this.#runSample.since) / 1000 : 0;
  }

  /**
   * The last probe's outcome, for {@linkcode describe}; empty before the
   * first. With an earlier answered probe, says whether the guest was at the
   * same RIP then: the same RIP twice, seconds apart, points at a guest
   * spinning in one place; another at one making (slow) progress.
   */
  #probeOutcome(now: number): string {
    if (!this.#probeAskedAt) return "";
    const ago = ((now - this.#probeAskedAt) / 1000).toFixed(1);
    if (this.probeAsked()) {
      return ` probe: kicked ${ago} s ago, no answer yet (still in KVM_RUN: KVM has not returned)`;
    }
    const rip = this.#probeRip();
    let outcome = ` probe: kicked ${ago} s ago, left KVM_RUN at guest rip=0x${rip.toString(16)}`;
    const before = this.#previousProbe;
    if (before) {
      const gap = ((this.#probeAskedAt - before.at) / 1000).toFixed(1);
      outcome += before.rip === rip
        ? `; the probe ${gap} s earlier found the same rip`
        : `; the probe ${gap} s earlier found rip=0x${before.rip.toString(16)}`;
    }
    return outcome;
  }

  /** The RIP of the last answered probe. */
  #probeRip(): bigint {
    const w = this.#words;
    return (BigInt(w[W.PROBE_RIP_HI] >>> 0) << 32n) | BigInt(w[W.PROBE_RIP_LO] >>> 0);
  }

  /** VMM: the channel's words as they stand, for a stall report. */
  describe(): string {
    const w = this.#words;
    const sync = ["idle", "REQUEST", "done"][Atomics.load(w, W.SYNC)] ?? "?";
    const at = (BigInt(w[W.SYNC_ADDR_HI] >>> 0) << 32n) | BigInt(w[W.SYNC_ADDR_LO] >>> 0);
    const state = Object.keys(VCPU_STATE)[Atomics.load(w, W.STATE)] ?? "?";
    const control = Object.keys(CONTROL)[Atomics.load(w, W.CONTROL)] ?? "?";
    const counts = COUNTER_NAMES.map((n, i) => `${n}=${this.counters[i]}`).join(" ");
    this.sampleRun();
    const since = ((Date.now() - this.#runSample.since) / 1000).toFixed(1);
    const where = Atomics.load(w, W.RUN_EDGES) & 1 ? "in KVM_RUN" : "out of KVM_RUN";
    return `${state} control=${control} sync=${sync} (kind ${w[W.SYNC_KIND]} at 0x${
      at.toString(16)
    }) ring=${
      Atomics.load(w, W.HEAD) - Atomics.load(w, W.TAIL)
    } ${where} for ${since} s or more ${counts}${this.#probeOutcome(Date.now())}`;
  }

  /** VMM: ask the worker to run, pause or stop (the caller kicks it out of KVM_RUN). */
  setControl(value: number): void {
    Atomics.store(this.#words, W.CONTROL, value);
    Atomics.notify(this.#words, W.CONTROL);
  }

  /** VMM: apply every posted write, then complete a pending synchronous access. */
  drain(handle: AccessHandler): number {
    const pending = this.readPending();
    return this.drainPosted(handle) + (pending ? this.completeRequest(handle) : 0);
  }

  /** VMM: apply every posted write of this channel, in order. Returns how many. */
  drainPosted(handle: AccessHandler): number {
    let n = 0;
    for (const limit = this.postedLimit(); this.hasPosted(limit); n++) this.applyPosted(handle);
    this.releasePosted();
    return n;
  }

  /** VMM: the ring position up to which posted writes are published now. */
  postedLimit(): number {
    return Atomics.load(this.#words, W.HEAD);
  }

  /**
   * VMM: is a posted write waiting before `limit` (from {@linkcode postedLimit})?
   * Wrap-aware, and false once a nested drain has gone past `limit`.
   */
  hasPosted(limit: number): boolean {
    return ((limit - this.#drainTail()) | 0) > 0;
  }

  /** VMM: the ticket of the next posted write (call only when {@linkcode hasPosted}). */
  nextTicket(): number {
    return this.#words[(entryAt(this.#drainTail()) >> 2) + 3];
  }

  /** VMM: apply the next posted write (call only when {@linkcode hasPosted}). */
  applyPosted(handle: AccessHandler): void {
    const w = this.#words;
    const tail = this.#drainTail();
    const at = entryAt(tail);
    const e = at >> 2;
    const kind = w[e] & 0xff, size = (w[e] >> 8) & 0xff;
    const address = (BigInt(w[e + 2] >>> 0) << 32n) | BigInt(w[e + 1] >>> 0);
    this.#applied = tail + 1;
    handle(kind, address, this.#bytes.subarray(at + 16, at + 16 + size));
  }

  /** VMM: hand the ring slots of the applied writes back to the worker. */
  releasePosted(): void {
    if (this.#applied === null) return;
    Atomics.store(this.#words, W.TAIL, this.#applied);
    Atomics.notify(this.#words, W.TAIL);
    this.#applied = null;
  }

  /** Ring position of the next write to apply (applied but not yet released ones skipped). */
  #drainTail(): number {
    return this.#applied ?? this.#words[W.TAIL];
  }

  /**
   * VMM: complete the pending synchronous access (a read, or a non-posted
   * write), if any. Call it only after applying the posted writes of every
   * vCPU that were published before the request was seen.
   */
  completeRequest(handle: AccessHandler): number {
    const w = this.#words;
    if (Atomics.load(w, W.SYNC) !== SYNC_REQUEST) return 0;
    const kind = w[W.SYNC_KIND], size = w[W.SYNC_SIZE];
    const address = (BigInt(w[W.SYNC_ADDR_HI] >>> 0) << 32n) | BigInt(w[W.SYNC_ADDR_LO] >>> 0);
    const data = this.#bytes.subarray(SYNC_DATA, SYNC_DATA + size);
    if (kind === ACCESS.PIO_READ || kind === ACCESS.MMIO_READ) data.fill(0xff);
    handle(kind, address, data);
    Atomics.store(w, W.SYNC, SYNC_DONE);
    Atomics.notify(w, W.SYNC);
    return 1;
  }
}
