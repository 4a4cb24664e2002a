/**
 * Turning errors into the one line a user sees, and parsing the simple
 * numeric flags, with messages that name the flag.
 *
 * @module
 */

/** A bad flag or config value: exit status 2. */
export class UsageError extends Error {
  /**
   * A usage error.
   * @param message one line naming the flag or field
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const SUFFIX: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** Parse `512M`, `1G`, `65536K` or a byte count; must be a positive multiple of 4 KiB. */
export function parseSize(flag: string, text: string): number {
  const m = /^(\d+)([KMG]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${flag}: expected a size like 512M or 2G, got '${text}'`);
  const bytes = Number(m[1]) * SUFFIX[m[2].toUpperCase()];
  if (bytes < 64 * 1024 ** 2) {
    throw new UsageError(`${flag}: at least 64M is needed, got '${text}'`);
  }
  if (bytes > 64 * 1024 ** 3) {
    throw new UsageError(`${flag}: at most 64G is supported, got '${text}'`);
  }
  if (bytes % 4096) throw new UsageError(`${flag}: must be a multiple of 4K, got '${text}'`);
  return bytes;
}

/** Parse an integer in `[min, max]`. */
export function parseCount(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) {
    throw new UsageError(`${flag}: expected an integer from ${min} to ${max}, got '${text}'`);
  }
  return n;
}

/** One line for the user (`dvmm: ...`), or the stack with `debug`. */
export function formatError(e: unknown, debug: boolean): string {
  if (debug && e instanceof Error && e.stack) return `dvmm: ${e.stack}`;
  return `dvmm: ${e instanceof Error ? e.message : String(e)}`;
}
