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
