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

  /** @param write where bytes go (default: stdout, retrying partial writes) */
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

  /** @param onQuit called when the user types Ctrl-A x */
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
}

/**
 * Read host stdin and hand it to `send` (which returns how many bytes it
 * took; the rest is offered again shortly). On a TTY the terminal is put in
 * raw mode and `Ctrl-A x` calls `onQuit`.
 */
export function pumpStdin(send: (bytes: Uint8Array) => number, onQuit: () => void): InputPump {
  const tty = Deno.stdin.isTerminal();
  let stopped = false;
  if (tty) Deno.stdin.setRaw(true, { cbreak: false });
  const escape = new EscapeFilter(onQuit);
  (async () => {
    const buf = new Uint8Array(4096);
    try {
      while (!stopped) {
        const n = await Deno.stdin.read(buf);
        if (n === null) return; // EOF: the guest keeps running without input
        let data = tty ? escape.filter(buf.subarray(0, n)) : buf.slice(0, n);
        while (data.length && !stopped) {
          const taken = send(data);
          data = data.subarray(taken);
          if (data.length) await new Promise((r) => setTimeout(r, 5));
        }
      }
    } catch {
      // stdin closed under us: nothing more to read
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
  };
}
