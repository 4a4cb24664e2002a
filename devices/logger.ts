/**
 * A minimal leveled logger that device models and the PCI core write to.
 * Messages are plain strings that already name their subject
 * (`[1af4:1042] BAR 1: activate failed: ...`); {@linkcode prefixLogger} adds
 * such a prefix once so a device never has to.
 *
 * @module
 */

/** Severity of a log message. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Where device models and the PCI core report what happened. */
export interface Logger {
  /** Detail useful when tracing guest behaviour. */
  debug(message: string): void;
  /** Normal events (a BAR was assigned, a plugin loaded). */
  info(message: string): void;
  /** Something went wrong but the VMM carries on (a plugin hook threw). */
  warn(message: string): void;
  /** Something went badly wrong. */
  error(message: string): void;
}

/** One message captured by {@linkcode RecordingLogger}. */
export interface LogRecord {
  /** Its severity. */
  readonly level: LogLevel;
  /** The text, with any prefix applied. */
  readonly message: string;
}

/** A logger that drops everything. */
export const nullLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/** A logger that writes `warn` and `error` to stderr, and `info`/`debug` only when `verbose`. */
export function consoleLogger(verbose = false): Logger {
  return {
    debug: (m) => verbose && console.error(`debug: ${m}`),
    info: (m) => verbose && console.error(m),
    warn: (m) => console.error(`warning: ${m}`),
    error: (m) => console.error(`error: ${m}`),
  };
}

/** A logger that prepends `prefix` and a space to every message before passing it to `inner`. */
export function prefixLogger(inner: Logger, prefix: string): Logger {
  return {
    debug: (m) => inner.debug(`${prefix} ${m}`),
    info: (m) => inner.info(`${prefix} ${m}`),
    warn: (m) => inner.warn(`${prefix} ${m}`),
    error: (m) => inner.error(`${prefix} ${m}`),
  };
}

/** A logger that keeps every message (for tests). */
export class RecordingLogger implements Logger {
  /** Every message, in order. */
  readonly records: LogRecord[] = [];

  /** Record a debug message. */
  debug(message: string): void {
    this.records.push({ level: "debug", message });
  }
  /** Record an info message. */
  info(message: string): void {
    this.records.push({ level: "info", message });
  }
  /** Record a warning. */
  warn(message: string): void {
    this.records.push({ level: "warn", message });
  }
  /** Record an error. */
  error(message: string): void {
    this.records.push({ level: "error", message });
  }

  /** The messages at `level` or above (`warn` returns warnings and errors). */
  messages(level: LogLevel = "debug"): string[] {
    const order: LogLevel[] = ["debug", "info", "warn", "error"];
    const min = order.indexOf(level);
    return this.records.filter((r) => order.indexOf(r.level) >= min).map((r) => r.message);
  }

  /** Forget every message. */
  clear(): void {
    this.records.length = 0;
  }
}
