/**
 * Where a launch's start-up time goes: with `DVMM_STARTUP_TRACE=1` in the
 * environment, each {@linkcode startupMark} prints one line on stderr,
 * `dvmm-startup <epoch ms> <thread> <label>`, from the main thread and from
 * the vCPU workers alike (epoch milliseconds, so lines from different
 * isolates compare). Without the variable a mark costs one boolean test.
 *
 * @module
 */

/** Whether start-up marks are printed (read once per isolate). */
export const STARTUP_TRACE: boolean = (() => {
  try {
    return Deno.env.get("DVMM_STARTUP_TRACE") === "1";
  } catch {
    return false; // no env permission (a sandboxed worker): no trace
  }
})();

/** Print a start-up mark for `label` (only with `DVMM_STARTUP_TRACE=1`). */
export function startupMark(label: string, thread = "main"): void {
  if (!STARTUP_TRACE) return;
  const ms = performance.timeOrigin + performance.now();
  console.error(`dvmm-startup ${ms.toFixed(1)} ${thread} ${label}`);
}
