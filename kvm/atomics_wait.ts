/**
 * A bounded `Atomics.waitAsync`. Deno does not reliably wake its event loop
 * when another thread's `Atomics.notify` resolves a `waitAsync`
 * (denoland/deno#14786), and now and then such a promise never settles at
 * all; a thread that awaits one can then sleep forever. Every asynchronous
 * wait on shared memory in dvmm goes through {@linkcode waitAtMost}.
 *
 * @module
 */

/**
 * `Atomics.waitAsync(view, index, value, ms)`, but settled by a timer too:
 * resolves when the word changes (or is notified), or after `ms` at the
 * latest, even if Deno loses the wait's own resolution.
 */
export async function waitAtMost(
  view: Int32Array,
  index: number,
  value: number,
  ms: number,
): Promise<void> {
  const wait = Atomics.waitAsync(view, index, value, ms);
  if (!wait.async) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([wait.value, new Promise((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
}

/**
 * How long a thread's idle wait may last before it looks again: short while
 * work came in recently (a wake-up Deno loses then costs at most that), long
 * once it has been quiet for a while, so an idle VM does not wake its VMM
 * thread a hundred times a second (under nested virtualization each wake-up
 * costs about a millisecond of CPU, taken from the vCPU and I/O threads).
 */
export class IdleBackoff {
  #lastWork = -Infinity;
  #worked = false;

  /**
   * A backoff that answers `busyMs` until `quietAfterMs` have passed without
   * work, then `idleMs`.
   * @param busyMs the wait while work is recent
   * @param idleMs the wait once quiet
   * @param quietAfterMs how long without work counts as quiet
   */
  constructor(readonly busyMs: number, readonly idleMs: number, readonly quietAfterMs: number) {}

  /**
   * Work was done. No clock is read here (this runs once per exit drained):
   * the next {@linkcode waitMs}, which follows the work at once, dates it.
   */
  noteWork(): void {
    this.#worked = true;
  }

  /** The wait to use at `now` (ms, `performance.now()` by default). */
  waitMs(now: number = performance.now()): number {
    if (this.#worked) {
      this.#worked = false;
      this.#lastWork = now;
    }
    return now - this.#lastWork < this.quietAfterMs ? this.busyMs : this.idleMs;
  }
}
