/**
 * The sandbox worker: runs one user plugin module inside a Web Worker whose
 * Deno permissions were narrowed by the host (see sandboxed_plugin.ts), and
 * serves the host's calls over the {@linkcode SandboxChannel}.
 *
 * `zod` and devices/pci_device.ts are imported here, statically, so they are
 * in the worker's module map before the plugin loads: the plugin's own
 * `import { z } from "zod"` and `import { definePciDevice } from ".../pci_device.ts"`
 * then need no read permission on node_modules or on dvmm's sources. The
 * plugin itself is read under the permissions the host granted.
 *
 * Messages from the host: one `init` ({@linkcode InitMessage}). Messages to
 * the host: `ready` with the manifest or `load-error`, then side effects the
 * plugin causes outside a call (INTx, logs, MSIs, console output) as
 * {@linkcode AsyncEvent}s.
 *
 * @module
 */

import { waitAtMost } from "../../kvm/atomics_wait.ts";
import { z } from "zod";
import "../pci_device.ts";
import type { PciDeviceContext, PciDeviceInstance } from "../pci_device.ts";
import type { BusDevice } from "../bus.ts";
import {
  CALL,
  CALLBACK,
  type CreatedShape,
  type CreateRequest,
  CTRL,
  DATA_SIZE,
  type OptionsResult,
  SandboxChannel,
  STATE,
  STATUS,
  WIDE,
} from "./channel.ts";

/** The host's first (and only) message. */
export interface InitMessage {
  /** Always "init". */
  readonly type: "init";
  /** Module URL of the plugin. */
  readonly url: string;
  /** The channel buffer. */
  readonly buffer: SharedArrayBuffer;
  /** After a call, keep waiting synchronously this long for the next one (ms) before yielding. */
  readonly spinMs: number;
}

/** The manifest as sent to the host (functions replaced by flags). */
export interface WireManifest {
  /** Every data field of the definition, as the plugin wrote it. */
  readonly fields: Record<string, unknown>;
  /** Does the definition have a `create` function? */
  readonly hasCreate: boolean;
  /** Does it have an options schema (something with `safeParse`)? */
  readonly hasOptions: boolean;
  /** The options' JSON schema (input side), for listings; null if unavailable. */
  readonly optionsJsonSchema: Record<string, unknown> | null;
}

/** Side effects the plugin causes outside a host call. */
export type AsyncEvent =
  | { readonly type: "irq"; readonly inst: number; readonly level: boolean }
  | {
    readonly type: "log";
    readonly inst: number;
    readonly level: number;
    readonly message: string;
  }
  | { readonly type: "msi"; readonly inst: number; readonly address: bigint; readonly data: number }
  | { readonly type: "console"; readonly inst: number; readonly bytes: Uint8Array };

// Captured before any plugin code runs, so a plugin cannot swap them under us.
const { wait, notify, load, store } = Atomics;
/** The worker's global scope, as far as this module uses it. */
const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  addEventListener(
    type: "message",
    listener: (event: MessageEvent<InitMessage>) => void,
    options?: AddEventListenerOptions,
  ): void;
};
const post = scope.postMessage.bind(scope);

type Definition = {
  create?: (ctx: PciDeviceContext<unknown>) => PciDeviceInstance;
  options?: { safeParse(v: unknown): { success: boolean; data?: unknown; error?: z.ZodError } };
};

let channel: SandboxChannel;
let definition: Definition;
const instances = new Map<number, PciDeviceInstance>();
const barAddresses = new Map<number, Map<number, bigint>>();
const kicks = new Map<number, () => void>();
let nextKick = 1;
let inCall = false;
const scratch = new Map<number, Uint8Array>();

scope.addEventListener("message", onInit, { once: true });

async function onInit(event: MessageEvent<InitMessage>): Promise<void> {
  const init = event.data;
  channel = new SandboxChannel(init.buffer);
  let module: Record<string, unknown>;
  try {
    module = await import(init.url);
  } catch (e) {
    return post({ type: "load-error", message: `failed to load: ${errorText(e)}` });
  }
  const def = module.default;
  if (typeof def !== "object" || def === null) {
    return post({
      type: "load-error",
      message: "no default export (export default definePciDevice({...}))",
    });
  }
  definition = def as Definition;
  try {
    post({ type: "ready", manifest: wireManifest(def as Record<string, unknown>) });
  } catch (e) {
    return post({ type: "load-error", message: `manifest cannot be sent: ${errorText(e)}` });
  }
  setInterval(() => {}, 1 << 30); // Atomics.waitAsync alone does not keep the event loop alive
  serve(init.spinMs);
}

function wireManifest(def: Record<string, unknown>): WireManifest {
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(def)) {
    if (key === "create" || key === "options") continue;
    fields[key] = structuredClone(def[key]);
  }
  const options = def.options as { safeParse?: unknown } | undefined;
  const hasOptions = typeof options === "object" && options !== null &&
    typeof options.safeParse === "function";
  let optionsJsonSchema: Record<string, unknown> | null = null;
  if (hasOptions) {
    try {
      optionsJsonSchema = z.toJSONSchema(options as z.ZodType, {
        unrepresentable: "any",
        io: "input",
      }) as Record<string, unknown>;
    } catch {
      optionsJsonSchema = null;
    }
  }
  return { fields, hasCreate: typeof def.create === "function", hasOptions, optionsJsonSchema };
}

/** Wait for calls forever: briefly synchronously after each one, then without blocking the loop. */
async function serve(spinMs: number): Promise<void> {
  const ctrl = channel.ctrl;
  let seq = 0; // a fresh channel: any call made before we got here is still pending
  for (;;) {
    if (load(ctrl, CTRL.SEQ) === seq) {
      if (spinMs > 0) wait(ctrl, CTRL.SEQ, seq, spinMs);
      if (load(ctrl, CTRL.SEQ) === seq) {
        await waitAtMost(ctrl, CTRL.SEQ, seq, 50);
      }
    }
    seq = load(ctrl, CTRL.SEQ);
    if (load(ctrl, CTRL.STATE) === STATE.CALL) handleCall();
  }
}

/** Run one call and post its result. */
function handleCall(): void {
  const c = channel.ctrl;
  const op = c[CTRL.OP], inst = c[CTRL.INST];
  const a0 = c[CTRL.A0], a1 = c[CTRL.A1], a2 = c[CTRL.A2], len = c[CTRL.LEN];
  const wideArg = channel.wide[WIDE.ARG];
  let status: number = STATUS.OK, outLen = 0;
  inCall = true;
  try {
    switch (op) {
      case CALL.PARSE_OPTIONS:
        outLen = channel.putText(JSON.stringify(parseOptions(JSON.parse(channel.text(len)))));
        break;
      case CALL.CREATE:
        outLen = channel.putText(JSON.stringify(create(inst, JSON.parse(channel.text(len)))));
        break;
      case CALL.BAR_READ:
      case CALL.CONFIG_READ: {
        const data = scratchOf(a2);
        if (op === CALL.CONFIG_READ) data.set(channel.data.subarray(0, a2));
        const hooks = op === CALL.BAR_READ ? barHandler(inst, a0) : configHooks(inst, a0);
        hooks.read!(a1, data);
        channel.data.set(data);
        outLen = a2;
        break;
      }
      case CALL.BAR_WRITE:
      case CALL.CONFIG_WRITE: {
        const data = scratchOf(a2);
        data.set(channel.data.subarray(0, a2));
        const hooks = op === CALL.BAR_WRITE ? barHandler(inst, a0) : configHooks(inst, a0);
        hooks.write!(a1, data);
        break;
      }
      case CALL.ACTIVATE:
        instance(inst).activate?.(a0, wideArg);
        barAddresses.get(inst)!.set(a0, wideArg);
        break;
      case CALL.DEACTIVATE:
        instance(inst).deactivate?.(a0, wideArg);
        barAddresses.get(inst)!.delete(a0);
        break;
      case CALL.RESET:
        instance(inst).reset?.();
        break;
      case CALL.KICK: {
        const kick = kicks.get(a0);
        if (!kick) throw new Error(`no ioeventfd kick ${a0}`);
        kick();
        break;
      }
      default:
        throw new Error(`unknown sandbox call ${op}`);
    }
  } catch (e) {
    status = STATUS.THREW;
    outLen = channel.putText(errorText(e));
  } finally {
    inCall = false;
  }
  c[CTRL.STATUS] = status;
  c[CTRL.LEN] = outLen;
  c[CTRL.R0] = 0;
  store(c, CTRL.STATE, STATE.RETURN);
  notify(c, CTRL.STATE);
}

function scratchOf(length: number): Uint8Array {
  let s = scratch.get(length);
  if (!s) scratch.set(length, s = new Uint8Array(length));
  return s;
}

function instance(inst: number): PciDeviceInstance {
  const i = instances.get(inst);
  if (!i) throw new Error(`no device instance ${inst}`);
  return i;
}

function barHandler(inst: number, bar: number): BusDevice {
  const h = instance(inst).bars?.[bar];
  if (!h) throw new Error(`BAR ${bar} has no handler`);
  return h;
}

function configHooks(inst: number, cap: number) {
  const i = instance(inst);
  const hooks = cap < 0 ? i.config : i.capabilities?.[cap];
  if (!hooks) throw new Error(cap < 0 ? "no config hooks" : `no hooks for capability ${cap}`);
  return hooks;
}

function parseOptions(raw: unknown): OptionsResult {
  const schema = definition.options;
  if (!schema) return { ok: true, data: {} };
  const r = schema.safeParse(raw);
  if (r.success) {
    let data: unknown = null;
    try {
      data = JSON.parse(JSON.stringify(r.data));
    } catch { /* not JSON-safe (bigint): the host does not need it */ }
    return { ok: true, data };
  }
  return {
    ok: false,
    issues: (r.error?.issues ?? []).map((i) => ({
      path: i.path.map((p) => (typeof p === "number" ? p : String(p))),
      message: i.message,
    })),
  };
}

function create(inst: number, req: CreateRequest): CreatedShape {
  const schema = definition.options;
  const options = schema ? schema.safeParse(req.options).data : {};
  barAddresses.set(inst, new Map());
  const ctx = makeContext(inst, options, req.slot, req.memorySize);
  const made = definition.create!(ctx) ?? {};
  instances.set(inst, made);
  const flags = (h: { read?: unknown; write?: unknown } | undefined) =>
    h ? { read: typeof h.read === "function", write: typeof h.write === "function" } : null;
  const capabilities: CreatedShape["capabilities"] = {};
  for (const [k, v] of Object.entries(made.capabilities ?? {})) {
    const f = flags(v);
    if (f) capabilities[k] = f;
  }
  return {
    bars: Object.entries(made.bars ?? {})
      .filter(([, h]) => h && typeof h.read === "function" && typeof h.write === "function")
      .map(([k]) => Number(k)),
    config: flags(made.config),
    capabilities,
    hooks: {
      activate: typeof made.activate === "function",
      deactivate: typeof made.deactivate === "function",
      reset: typeof made.reset === "function",
    },
  };
}

/** Ask the host for something while a call runs; returns R0. Throws what the host reports. */
function callback(op: number, inst: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, len = 0): number {
  const c = channel.ctrl;
  c[CTRL.OP] = op;
  c[CTRL.INST] = inst;
  c[CTRL.A0] = a0;
  c[CTRL.A1] = a1;
  c[CTRL.A2] = a2;
  c[CTRL.A3] = a3;
  c[CTRL.LEN] = len;
  store(c, CTRL.STATE, STATE.CALLBACK);
  notify(c, CTRL.STATE);
  while (load(c, CTRL.STATE) === STATE.CALLBACK) wait(c, CTRL.STATE, STATE.CALLBACK, 1000);
  if (c[CTRL.STATUS] !== STATUS.OK) throw new Error(channel.text(c[CTRL.LEN]));
  return c[CTRL.R0];
}

function requireCall(what: string): void {
  if (!inCall) {
    throw new Error(`${what} is only available to a sandboxed plugin while the VMM calls it`);
  }
}

function makeContext(
  inst: number,
  options: unknown,
  slot: number,
  memorySize: number,
): PciDeviceContext<unknown> {
  const log = (level: number) => (message: string) => {
    if (!inCall) return post({ type: "log", inst, level, message: String(message) });
    callback(CALLBACK.LOG, inst, level, 0, 0, 0, channel.putText(String(message)));
  };
  const memory = sandboxMemory(inst, memorySize);
  const ctx = {
    memory,
    irq: {
      set(level: boolean) {
        if (!inCall) return post({ type: "irq", inst, level: !!level });
        callback(CALLBACK.IRQ, inst, level ? 1 : 0);
      },
    },
    log: {
      debug: log(0),
      info: log(1),
      warn: log(2),
      error: log(3),
    },
    options,
    slot,
    barAddress: (index: number) => barAddresses.get(inst)?.get(index) ?? null,
    msi: {
      send(address: bigint, data: number): boolean {
        if (!inCall) {
          post({ type: "msi", inst, address: BigInt(address), data: data >>> 0 });
          return true;
        }
        channel.wide[WIDE.ARG] = BigInt(address);
        return callback(CALLBACK.MSI, inst, data | 0) === 1;
      },
    },
    hostConsole: {
      write(bytes: Uint8Array) {
        if (!inCall) return post({ type: "console", inst, bytes: bytes.slice() });
        for (let at = 0; at < bytes.length; at += DATA_SIZE) {
          const part = bytes.subarray(at, at + DATA_SIZE);
          channel.data.set(part);
          callback(CALLBACK.HOST_CONSOLE, inst, 0, 0, 0, 0, part.length);
        }
      },
    },
    ioeventfd(bar: number, offset: number, length: number, onKick: () => void) {
      requireCall("ioeventfd()");
      const id = nextKick++;
      kicks.set(id, onKick);
      callback(CALLBACK.IOEVENTFD_ADD, inst, bar, offset, length, id);
      return {
        bar,
        offset,
        length,
        get address(): bigint | null {
          requireCall("ioeventfd address");
          return callback(CALLBACK.IOEVENTFD_ADDRESS, inst, id) === 1
            ? channel.wide[WIDE.RESULT]
            : null;
        },
        remove() {
          requireCall("ioeventfd remove()");
          kicks.delete(id);
          callback(CALLBACK.IOEVENTFD_REMOVE, inst, id);
        },
      };
    },
  };
  return ctx as unknown as PciDeviceContext<unknown>;
}

/** Guest memory seen from the sandbox: bounded reads and writes forwarded to the host. */
function sandboxMemory(inst: number, size: number) {
  const read = (gpa: number, length: number): Uint8Array => {
    requireCall("guest memory");
    const out = new Uint8Array(length);
    for (let at = 0; at < length; at += DATA_SIZE) {
      const n = Math.min(DATA_SIZE, length - at);
      channel.wide[WIDE.ARG] = BigInt(gpa + at);
      callback(CALLBACK.MEM_READ, inst, n, 0);
      out.set(channel.data.subarray(0, n), at);
    }
    return out;
  };
  const write = (gpa: number, data: Uint8Array): void => {
    requireCall("guest memory");
    for (let at = 0; at < data.length; at += DATA_SIZE) {
      const part = data.subarray(at, at + DATA_SIZE);
      channel.data.set(part);
      channel.wide[WIDE.ARG] = BigInt(gpa + at);
      callback(CALLBACK.MEM_WRITE, inst, part.length);
    }
  };
  const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const bytesOf = (width: number, set: (v: DataView) => void) => {
    const b = new Uint8Array(width);
    set(view(b));
    return b;
  };
  return {
    size,
    regions: [],
    contains(gpa: number, length = 1): boolean {
      requireCall("guest memory");
      channel.wide[WIDE.ARG] = BigInt(gpa);
      return callback(CALLBACK.MEM_READ, inst, length, 1) === 1;
    },
    slice(): Uint8Array {
      throw new Error("a sandboxed plugin cannot alias guest memory: use read()/write()");
    },
    read,
    write,
    fill: (gpa: number, length: number, value = 0) =>
      write(gpa, new Uint8Array(length).fill(value)),
    readU8: (gpa: number) => read(gpa, 1)[0],
    readU16: (gpa: number) => view(read(gpa, 2)).getUint16(0, true),
    readU32: (gpa: number) => view(read(gpa, 4)).getUint32(0, true),
    readU64: (gpa: number) => view(read(gpa, 8)).getBigUint64(0, true),
    writeU8: (gpa: number, v: number) => write(gpa, Uint8Array.of(v)),
    writeU16: (gpa: number, v: number) => write(gpa, bytesOf(2, (d) => d.setUint16(0, v, true))),
    writeU32: (gpa: number, v: number) => write(gpa, bytesOf(4, (d) => d.setUint32(0, v, true))),
    writeU64: (gpa: number, v: bigint) => write(gpa, bytesOf(8, (d) => d.setBigUint64(0, v, true))),
    close() {},
  };
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name === "Error" ? "" : `${e.name}: `}${e.message}` : String(e);
}
