/**
 * The synchronous channel between the VMM thread and a sandboxed plugin's
 * worker: one SharedArrayBuffer with a few control words and a data area,
 * driven with Atomics (postMessage is far too slow for an MMIO access and
 * cannot be waited for synchronously).
 *
 * One call at a time, always started by the host:
 *
 * ```
 * host                                  worker
 * write OP, INST, A0..A3, data
 * STATE = CALL, SEQ += 1, notify SEQ ─▶ wakes on SEQ, runs the plugin code
 *                                       (needs guest memory, an IRQ, ...?)
 *            ◀─ STATE = CALLBACK, notify  OP/A0..A3/data describe the request
 * serve it, STATE = CALLBACK_DONE ─────▶ continues
 *            ◀─ STATE = RETURN, notify    STATUS, R0/R1, LEN and data hold the result
 * STATE = IDLE
 * ```
 *
 * The host waits in `Atomics.wait` with a deadline; a worker that misses it is
 * considered hung. Every field the worker writes is checked by the host
 * ({@linkcode SandboxProtocolError}): the worker runs untrusted code.
 *
 * @module
 */

/** Index of each Int32 control word in {@linkcode SandboxChannel.ctrl}. */
export const CTRL = {
  /** {@linkcode STATE} of the current call. */
  STATE: 0,
  /** Incremented by the host for every call (the worker waits on it). */
  SEQ: 1,
  /** Call op ({@linkcode CALL}) or, during a callback, callback op ({@linkcode CALLBACK}). */
  OP: 2,
  /** Device instance the call or callback is about. */
  INST: 3,
  /** Arguments. */
  A0: 4,
  A1: 5,
  A2: 6,
  A3: 7,
  /** Bytes of `data` used by the request or the result. */
  LEN: 8,
  /** Result status ({@linkcode STATUS}). */
  STATUS: 9,
  /** Small results. */
  R0: 10,
  R1: 11,
} as const;

/** Number of Int32 control words. */
export const CTRL_WORDS = 16;

/** Index of each 64-bit word in {@linkcode SandboxChannel.wide} (addresses). */
export const WIDE = {
  /** A 64-bit argument (BAR address, GPA, MSI address). */
  ARG: 0,
  /** A 64-bit result. */
  RESULT: 1,
} as const;

/** Number of BigUint64 words. */
export const WIDE_WORDS = 4;

/** Size of the data area: the largest payload of one call or callback. */
export const DATA_SIZE = 64 * 1024;

/** Values of {@linkcode CTRL.STATE}. */
export const STATE = {
  IDLE: 0,
  CALL: 1,
  CALLBACK: 2,
  CALLBACK_DONE: 3,
  RETURN: 4,
} as const;

/** Call ops (host → worker). */
export const CALL = {
  /** Parse options: data = JSON of the raw options; result data = JSON {@linkcode OptionsResult}. */
  PARSE_OPTIONS: 1,
  /** Create instance INST: data = JSON {@linkcode CreateRequest}; result data = JSON {@linkcode CreatedShape}. */
  CREATE: 2,
  /** BAR A0 read at offset A1, A2 bytes; result data holds them. */
  BAR_READ: 3,
  /** BAR A0 write at offset A1 of the A2 bytes in data. */
  BAR_WRITE: 4,
  /** Config hook read: A0 = capability index or -1, A1 = offset, A2 = length, data in/out. */
  CONFIG_READ: 5,
  /** Config hook write: A0 = capability index or -1, A1 = offset, A2 = length, data. */
  CONFIG_WRITE: 6,
  /** activate(bar A0, address WIDE.ARG). */
  ACTIVATE: 7,
  /** deactivate(bar A0, address WIDE.ARG). */
  DEACTIVATE: 8,
  /** reset(). */
  RESET: 9,
  /** Run ioeventfd A0's kick handler. */
  KICK: 10,
} as const;

/** Callback ops (worker → host, only while a call runs). */
export const CALLBACK = {
  /** Read A0 bytes of guest memory at WIDE.ARG into data. */
  MEM_READ: 1,
  /** Write the A0 bytes in data to guest memory at WIDE.ARG. */
  MEM_WRITE: 2,
  /** Drive INTx of INST to level A0 (0/1). */
  IRQ: 3,
  /** Log: A0 = level index ({@linkcode LOG_LEVELS}), data = UTF-8 message. */
  LOG: 4,
  /** Where BAR A0 of INST is decoded: R0 = 1 and WIDE.RESULT, or R0 = 0. */
  BAR_ADDRESS: 5,
  /** Send an MSI: WIDE.ARG address, A0 data; R0 = 1 if sent. */
  MSI: 6,
  /** Host console output: data bytes. */
  HOST_CONSOLE: 7,
  /** Register an ioeventfd: A0 bar, A1 offset, A2 length, A3 kick id; R0 = 0 ok. */
  IOEVENTFD_ADD: 8,
  /** Address of ioeventfd kick id A0: R0 = 1 and WIDE.RESULT, or R0 = 0. */
  IOEVENTFD_ADDRESS: 9,
  /** Remove ioeventfd kick id A0. */
  IOEVENTFD_REMOVE: 10,
} as const;

/** Values of {@linkcode CTRL.STATUS}. */
export const STATUS = {
  /** Done. */
  OK: 0,
  /** The plugin (or the host, for a callback) threw: data = UTF-8 message. */
  THREW: 1,
} as const;

/** Log levels by index, as carried in a LOG callback. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** Result of {@linkcode CALL.PARSE_OPTIONS}. */
export type OptionsResult =
  | { readonly ok: true; readonly data: unknown }
  | { readonly ok: false; readonly issues: { path: (string | number)[]; message: string }[] };

/** Payload of {@linkcode CALL.CREATE}. */
export interface CreateRequest {
  /** The raw options (validated already). */
  readonly options: Readonly<Record<string, unknown>>;
  /** PCI slot. */
  readonly slot: number;
  /** Bytes of guest RAM (what `ctx.memory.size` says in the sandbox). */
  readonly memorySize: number;
}

/** Which members the created instance has (the host mirrors them). */
export interface CreatedShape {
  /** BAR indexes with a handler. */
  readonly bars: number[];
  /** Config hooks present. */
  readonly config: { read: boolean; write: boolean } | null;
  /** Capability hooks present, by capability index. */
  readonly capabilities: Record<string, { read: boolean; write: boolean }>;
  /** Lifecycle hooks present. */
  readonly hooks: { activate: boolean; deactivate: boolean; reset: boolean };
}

/** The worker broke the protocol (bad state, length, JSON): the host stops trusting it. */
export class SandboxProtocolError extends Error {
  /**
   * A protocol violation by the worker.
   * @param message what the worker did wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "SandboxProtocolError";
  }
}

/** Views over one channel buffer, shared by both ends. */
export class SandboxChannel {
  /** The shared buffer (sent to the worker at start). */
  readonly buffer: SharedArrayBuffer;
  /** Control words ({@linkcode CTRL}). */
  readonly ctrl: Int32Array;
  /** 64-bit words ({@linkcode WIDE}). */
  readonly wide: BigUint64Array;
  /** Payloads. */
  readonly data: Uint8Array;

  /**
   * Views over `buffer` (or a new buffer). Throws if its size is wrong.
   * @param buffer an existing channel buffer, or none to allocate a new one
   */
  constructor(buffer?: SharedArrayBuffer) {
    const wideAt = CTRL_WORDS * 4;
    const dataAt = wideAt + WIDE_WORDS * 8;
    this.buffer = buffer ?? new SharedArrayBuffer(dataAt + DATA_SIZE);
    if (this.buffer.byteLength !== dataAt + DATA_SIZE) {
      throw new SandboxProtocolError(`channel buffer has ${this.buffer.byteLength} bytes`);
    }
    this.ctrl = new Int32Array(this.buffer, 0, CTRL_WORDS);
    this.wide = new BigUint64Array(this.buffer, wideAt, WIDE_WORDS);
    this.data = new Uint8Array(this.buffer, dataAt, DATA_SIZE);
  }

  /** Put UTF-8 `text` in the data area (truncated to fit); returns its length. */
  putText(text: string): number {
    const { written } = new TextEncoder().encodeInto(text, this.data);
    return written;
  }

  /** The UTF-8 text in the first `length` bytes of the data area. */
  text(length: number): string {
    return new TextDecoder().decode(this.data.slice(0, length));
  }
}
