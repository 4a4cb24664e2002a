/**
 * A register trace: the last few register accesses of a device (and events
 * such as input arriving or being dropped), for a stall report. Runs of the
 * same access (a driver polling LSR, a stream of THR writes) fold into one
 * entry with a count, so a short ring still reaches back past a burst of
 * output. Recording allocates nothing once the ring is full of entries.
 *
 * @module
 */

/** One traced event as {@linkcode RegisterTrace.entries} returns it. */
export interface TraceEntry {
  /** Milliseconds since the trace was made, at the first access of the run. */
  readonly atMs: number;
  /** Event code (the device's own numbering, e.g. read/write/input). */
  readonly op: number;
  /** Register offset, or 0 for events that have none. */
  readonly reg: number;
  /** The value of the last access of the run. */
  readonly value: number;
  /** How many times in a row it happened. */
  readonly count: number;
}

/** Entries kept by default. */
export const TRACE_DEPTH = 48;

/** A ring of the last {@linkcode TRACE_DEPTH} (or `depth`) folded events. */
export class RegisterTrace {
  readonly #at: Float64Array;
  readonly #words: Uint32Array; // op, reg, value, count per entry
  readonly #start = performance.now();
  #next = 0;
  #size = 0;

  /**
   * An empty trace of `depth` entries.
   * @param depth entries kept
   * @param fold whether a repeat of the last entry's op and reg folds into it
   *   (default: always)
   */
  constructor(
    readonly depth = TRACE_DEPTH,
    readonly fold: (op: number, reg: number) => boolean = () => true,
  ) {
    this.#at = new Float64Array(depth);
    this.#words = new Uint32Array(depth * 4);
  }

  /** Milliseconds since the trace was made (the clock of {@linkcode TraceEntry.atMs}). */
  now(): number {
    return performance.now() - this.#start;
  }

  /** Record `op` on `reg` with `value`. */
  record(op: number, reg: number, value: number): void {
    const w = this.#words;
    if (this.#size > 0) {
      const last = ((this.#next + this.depth - 1) % this.depth) * 4;
      if (w[last] === op && w[last + 1] === reg && this.fold(op, reg)) {
        w[last + 2] = value;
        w[last + 3]++;
        return;
      }
    }
    const i = this.#next;
    this.#at[i] = this.now();
    w[i * 4] = op;
    w[i * 4 + 1] = reg;
    w[i * 4 + 2] = value;
    w[i * 4 + 3] = 1;
    this.#next = (i + 1) % this.depth;
    this.#size = Math.min(this.#size + 1, this.depth);
  }

  /** The entries, oldest first. */
  entries(): TraceEntry[] {
    const out: TraceEntry[] = [];
    for (let k = 0; k < this.#size; k++) {
      const i = (this.#next - this.#size + k + this.depth) % this.depth;
      const w = this.#words;
      out.push({
        atMs: this.#at[i],
        op: w[i * 4],
        reg: w[i * 4 + 1],
        value: w[i * 4 + 2],
        count: w[i * 4 + 3],
      });
    }
    return out;
  }
}
