/**
 * How the lab's L1 init reports on its command channel (the second serial
 * port, ttyS1, in raw mode so bytes pass unchanged):
 *
 * ```
 * <anything before: nothing is expected, but it is ignored>
 * <marker>:start\n
 * <the command's stdout and stderr, byte for byte>
 * <marker>:exit:<status>\n
 * ```
 *
 * The marker is random per run, so command output cannot fake it. The exit
 * line is searched anywhere (not only at a line start): output that does not
 * end in a newline is returned exactly. {@linkcode LabChannelParser} consumes
 * the stream in chunks and hands back the command's bytes as they arrive,
 * holding back only a possible partial marker.
 *
 * @module
 */

/** The start line the init prints before running the command. */
export function startLine(marker: string): string {
  return `${marker}:start\n`;
}

/** The prefix of the line the init prints after the command; the status and `\n` follow. */
export function exitPrefix(marker: string): string {
  return `${marker}:exit:`;
}

/** A fresh random marker (letters and digits only, safe in shell scripts). */
export function newMarker(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "LABMARK" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Where the parser is. */
export type ChannelState = "booting" | "running" | "done";

/** Incremental parser of the command channel. */
export class LabChannelParser {
  #state: ChannelState = "booting";
  #pending: Uint8Array = new Uint8Array(0);
  #status: number | undefined;
  readonly #start: Uint8Array;
  readonly #exit: Uint8Array;

  /**
   * A parser waiting for the start line of the run `marker`.
   * @param marker the run's marker (see {@linkcode newMarker})
   */
  constructor(marker: string) {
    this.#start = ENC.encode(startLine(marker));
    this.#exit = ENC.encode(exitPrefix(marker));
  }

  /** Current state. */
  get state(): ChannelState {
    return this.#state;
  }

  /** The command's exit status once the exit line was seen. */
  get status(): number | undefined {
    return this.#status;
  }

  /** Consume a chunk; returns the command output bytes it releases (possibly empty). */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#state === "done") return EMPTY;
    this.#pending = concat(this.#pending, chunk);
    if (this.#state === "booting") {
      const at = indexOf(this.#pending, this.#start);
      if (at < 0) {
        // Keep only what could still be the beginning of the start line.
        this.#pending = this.#pending.slice(Math.max(0, this.#pending.length - this.#start.length));
        return EMPTY;
      }
      this.#pending = this.#pending.slice(at + this.#start.length);
      this.#state = "running";
    }
    const at = indexOf(this.#pending, this.#exit);
    if (at < 0) {
      const keep = partialSuffix(this.#pending, this.#exit);
      const out = this.#pending.slice(0, this.#pending.length - keep);
      this.#pending = this.#pending.slice(this.#pending.length - keep);
      return out;
    }
    const rest = this.#pending.subarray(at + this.#exit.length);
    const nl = rest.indexOf(0x0a);
    if (nl < 0) {
      // The status digits are still on their way; release the output before the marker.
      const out = this.#pending.slice(0, at);
      this.#pending = this.#pending.slice(at);
      return out;
    }
    const text = new TextDecoder().decode(rest.subarray(0, nl));
    if (!/^\d+$/.test(text)) {
      throw new Error(`lab: malformed exit line status ${JSON.stringify(text)}`);
    }
    this.#status = Number(text);
    this.#state = "done";
    const out = this.#pending.slice(0, at);
    this.#pending = EMPTY;
    return out;
  }
}

const ENC = new TextEncoder();
const EMPTY = new Uint8Array(0);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  outer: for (let i = haystack.indexOf(first); i >= 0; i = haystack.indexOf(first, i + 1)) {
    if (i + needle.length > haystack.length) return -1;
    for (let j = 1; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** Length of the longest suffix of `data` that is a proper prefix of `needle`. */
function partialSuffix(data: Uint8Array, needle: Uint8Array): number {
  for (let len = Math.min(needle.length - 1, data.length); len > 0; len--) {
    let ok = true;
    for (let j = 0; j < len; j++) {
      if (data[data.length - len + j] !== needle[j]) {
        ok = false;
        break;
      }
    }
    if (ok) return len;
  }
  return 0;
}
