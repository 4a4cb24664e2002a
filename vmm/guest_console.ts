/**
 * A scriptable view of a guest's console: everything the guest printed, a
 * `waitFor` that resolves when a string or pattern shows up, and `run`, which
 * types a shell command and returns what it printed and its exit status.
 *
 * @module
 */

/** Thrown when `waitFor` or `run` times out; carries the tail of the output. */
export class ConsoleTimeoutError extends Error {
  /**
   * A timeout while waiting for console output.
   * @param what what was awaited
   * @param timeoutMs how long
   * @param tail the last output seen
   * @param report where the machine stood at the timeout (see {@linkcode GuestConsole.diagnose})
   */
  constructor(what: string, timeoutMs: number, readonly tail: string, readonly report = "") {
    super(
      `console: ${what} not seen within ${timeoutMs} ms; last output:\n${tail}` +
        (report ? `\n-- machine at the timeout --\n${report}` : ""),
    );
    this.name = "ConsoleTimeoutError";
  }
}

/** Thrown by a wait on a console whose machine ended ({@linkcode GuestConsole.close}). */
export class ConsoleClosedError extends Error {
  /**
   * A wait that cannot be satisfied any more.
   * @param what what was awaited
   * @param reason why the console closed (the machine's exit)
   * @param tail the last output seen
   */
  constructor(what: string, readonly reason: string, readonly tail: string) {
    super(`console: ${what} cannot come any more: ${reason}; last output:\n${tail}`);
    this.name = "ConsoleClosedError";
  }
}

/** The result of {@linkcode GuestConsole.run}. */
export interface RunResult {
  /** What the command printed (CRLF normalized to LF). */
  output: string;
  /** Its exit status. */
  status: number;
}

interface Waiter {
  pattern: string | RegExp;
  resolve: (text: string) => void;
  reject: (error: Error) => void;
}

const decoder = new TextDecoder();

/** A guest console fed with the guest's output bytes. */
export class GuestConsole {
  #text = "";
  #cursor = 0;
  #waiters: Waiter[] = [];
  #commands = 0;
  #closed: string | undefined;

  /**
   * Where the machine stands (a stall report, such as `Machine.describe`),
   * added to every {@linkcode ConsoleTimeoutError}: it tells a guest that is
   * stuck from one whose console stopped, and a slow one from both.
   */
  diagnose?: () => string;

  /**
   * A console that types into the guest with `send`.
   * @param send delivers bytes to the guest (returns how many it took)
   */
  constructor(readonly send: (bytes: Uint8Array) => number) {}

  /** Everything the guest printed so far. */
  get output(): string {
    return this.#text;
  }

  /** Feed output bytes from the guest. */
  feed(bytes: Uint8Array): void {
    this.#text += decoder.decode(bytes, { stream: true });
    this.#check();
  }

  /**
   * Resolve with the output from the current position up to and including the
   * first match of `pattern`, and move past it.
   */
  waitFor(pattern: string | RegExp, timeoutMs = 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(
          new ConsoleTimeoutError(
            String(pattern),
            timeoutMs,
            this.#text.slice(-2000),
            this.#report(),
          ),
        );
      }, timeoutMs);
      const waiter: Waiter = {
        pattern,
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.push(waiter);
      this.#check();
      // Output that already came may still match; after that a closed console waits no more.
      if (this.#closed !== undefined && this.#waiters.includes(waiter)) {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        waiter.reject(this.#closedError(waiter, this.#closed));
      }
    });
  }

  /**
   * The machine behind this console ended (`reason`, e.g. its exit message):
   * every pending and later wait that the output so far does not satisfy
   * fails at once with {@linkcode ConsoleClosedError} instead of timing out.
   */
  close(reason: string): void {
    if (this.#closed !== undefined) return;
    this.#closed = reason;
    for (const w of this.#waiters.splice(0)) w.reject(this.#closedError(w, reason));
  }

  /**
   * Follow `machine`: its stall report goes into every timeout
   * ({@linkcode diagnose}), and its end closes the console
   * ({@linkcode close}), so a wait fails at once with the exit message.
   */
  follow(machine: { describe(): string; exited: Promise<{ message: string }> }): void {
    this.diagnose = () => machine.describe();
    machine.exited.then((e) => this.close(`the machine ended: ${e.message}`));
  }

  #closedError(w: Waiter, reason: string): ConsoleClosedError {
    return new ConsoleClosedError(String(w.pattern), reason, this.#text.slice(-2000));
  }

  /** Type `text` into the guest (bytes the guest cannot take yet are retried). */
  async write(text: string): Promise<void> {
    let data = new TextEncoder().encode(text);
    while (data.length) {
      const n = this.send(data);
      data = data.subarray(n);
      if (data.length) await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Run a shell command in the guest's console shell; returns its output and status. */
  async run(command: string, timeoutMs = 60_000): Promise<RunResult> {
    const n = ++this.#commands;
    // The echoed command line shows "dvmm- b<n>" (with a space); only the output has "dvmm-b<n>".
    const line = `printf '%s%s\\n' dvmm- b${n}; ${command}; printf '%s%s:%s\\n' dvmm- e${n} "$?"\n`;
    const done = this.waitFor(new RegExp(`dvmm-e${n}:(\\d+)`), timeoutMs);
    await this.write(line);
    const text = (await done).replaceAll("\r\n", "\n");
    const begin = text.lastIndexOf(`dvmm-b${n}\n`);
    const end = text.lastIndexOf(`dvmm-e${n}:`);
    const status = Number(/dvmm-e\d+:(\d+)/.exec(text.slice(end))![1]);
    return { output: text.slice(begin + `dvmm-b${n}\n`.length, end), status };
  }

  #report(): string {
    try {
      return this.diagnose?.() ?? "";
    } catch (e) {
      return `(no report: ${e instanceof Error ? e.message : String(e)})`;
    }
  }

  #check(): void {
    for (const w of [...this.#waiters]) {
      const rest = this.#text.slice(this.#cursor);
      let end = -1;
      if (typeof w.pattern === "string") {
        const i = rest.indexOf(w.pattern);
        if (i >= 0) end = i + w.pattern.length;
      } else {
        const m = new RegExp(w.pattern.source, w.pattern.flags.replace("g", "")).exec(rest);
        if (m) end = m.index + m[0].length;
      }
      if (end < 0) continue;
      this.#cursor += end;
      this.#waiters = this.#waiters.filter((x) => x !== w);
      w.resolve(rest.slice(0, end));
    }
  }
}
