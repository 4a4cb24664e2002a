/**
 * Wires the guest's serial console to the host terminal: guest output to
 * stdout (batched, one write per burst), host stdin to the guest (raw mode
 * on a TTY, with `Ctrl-A x` to quit and `Ctrl-A Ctrl-A` for a literal Ctrl-A).
 *
 * @module
 */

/** Ctrl-A, the escape prefix. */
export const ESCAPE = 0x01;

/** Batches output bytes and writes them once per macrotask burst. */
export class OutputBatcher {
  #chunks: Uint8Array[] = [];
  #scheduled = false;

  /**
   * A batcher writing through `write`.
   * @param write where bytes go (default: stdout, retrying partial writes)
   */
  constructor(readonly write: (bytes: Uint8Array) => void = writeAllStdout) {}

  /** Queue bytes (copied). */
  push(bytes: Uint8Array): void {
    this.#chunks.push(bytes.slice());
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Write everything queued now. */
  flush(): void {
    this.#scheduled = false;
    if (this.#chunks.length === 0) return;
    const total = this.#chunks.reduce((n, c) => n + c.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.#chunks = [];
    this.write(out);
  }
}

/** Write all of `bytes` to stdout. */
export function writeAllStdout(bytes: Uint8Array): void {
  let at = 0;
  while (at < bytes.length) at += Deno.stdout.writeSync(bytes.subarray(at));
}

/**
 * Filters host input for the escape sequence. Returns the bytes to send to
 * the guest; calls `onQuit` on `Ctrl-A x`.
 */
export class EscapeFilter {
  #pending = false;

  /**
   * A filter with no escape pending.
   * @param onQuit called when the user types Ctrl-A x
   */
  constructor(readonly onQuit: () => void) {}

  /** Process one chunk of input. */
  filter(input: Uint8Array): Uint8Array {
    const out: number[] = [];
    for (const b of input) {
      if (this.#pending) {
        this.#pending = false;
        if (b === 0x78 /* x */ || b === 0x58) {
          this.onQuit();
          return Uint8Array.from(out);
        }
        out.push(b === ESCAPE ? ESCAPE : b);
      } else if (b === ESCAPE) this.#pending = true;
      else out.push(b);
    }
    return Uint8Array.from(out);
  }
}

/** A running stdin pump; `stop()` restores the terminal. */
export interface InputPump {
  /** Stop reading and restore the terminal mode. */
  stop(): void;
  /** Where the pump stands, for a stall report: bytes forwarded, and reading, at EOF or failed. */
  describe(): string;
}

/** How long the pump waits before reading again after a transient error (EAGAIN, EINTR). */
const RETRY_READ_MS = 20;

/**
 * Read host stdin and hand it to `send` (which returns how many bytes it
 * took; the rest is offered again shortly). On a TTY the terminal is put in
 * raw mode and `Ctrl-A x` calls `onQuit`. A transient read error (a
 * non-blocking stdin's EAGAIN, an interrupted read) is retried; any other
 * error ends the pump and is reported once through `log`, never silently.
 */
export function pumpStdin(
  send: (bytes: Uint8Array) => number,
  onQuit: () => void,
  log: (line: string) => void = (l) => console.error(l),
): InputPump {
  const tty = Deno.stdin.isTerminal();
  let stopped = false;
  let forwarded = 0;
  let state = "reading";
  if (tty) Deno.stdin.setRaw(true, { cbreak: false });
  const escape = new EscapeFilter(onQuit);
  (async () => {
    const buf = new Uint8Array(4096);
    while (!stopped) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buf);
      } catch (e) {
        if (e instanceof Deno.errors.WouldBlock || e instanceof Deno.errors.Interrupted) {
          await new Promise((r) => setTimeout(r, RETRY_READ_MS));
          continue;
        }
        if (stopped) return;
        const why = e instanceof Error ? e.message : String(e);
        state = `failed: ${why}`;
        log(`dvmm: reading stdin failed (${why}); input no longer reaches the guest`);
        return;
      }
      if (n === null) { // EOF: the guest keeps running without input
        state = "at EOF";
        return;
      }
      let data = tty ? escape.filter(buf.subarray(0, n)) : buf.slice(0, n);
      while (data.length && !stopped) {
        const taken = send(data);
        forwarded += taken;
        data = data.subarray(taken);
        if (data.length) await new Promise((r) => setTimeout(r, 5));
      }
    }
  })();
  return {
    stop() {
      stopped = true;
      if (tty) {
        try {
          Deno.stdin.setRaw(false);
        } catch { /* not a terminal any more */ }
      }
    },
    describe: () => `stdin ${tty ? "(terminal) " : ""}${state}, ${forwarded} bytes forwarded`,
  };
}
