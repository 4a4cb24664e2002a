/**
 * Host side of a sandboxed device plugin: the plugin module runs in a Web
 * Worker with Deno permissions narrowed to reading its own file (plus any
 * paths granted), no net, no ffi, no run, no env, no write, no sys; the
 * host gets a proxy {@linkcode AnyPciDeviceDefinition} whose every handler
 * and hook forwards to the worker over a {@linkcode SandboxChannel}.
 *
 * The manifest is extracted in the worker and validated here with the same
 * zod validation as an in-process plugin. The options schema stays in the
 * worker: the proxy's schema asks it (synchronously) to parse.
 *
 * Failure model, per the PCI core's contract:
 * - a handler or hook that throws in the worker throws here with the same
 *   message: the core logs it with `[vendor:device]` and fails that access
 *   or hook, as for an in-process plugin;
 * - a worker that misses the deadline ({@linkcode SandboxOptions.timeoutMs}),
 *   breaks the protocol, posts a malformed message or dies is *failed*: it is
 *   terminated, the failure is logged once per device, INTx is lowered, and
 *   from then on BAR reads answer all-ones, writes are dropped and hooks do
 *   nothing. The VMM carries on.
 *
 * @module
 */

import { z } from "zod";
import { fileURLToPath } from "node:url";
import { hex } from "../bus.ts";
import type { Logger } from "../logger.ts";
import {
  type AnyPciDeviceDefinition,
  definePciDevice,
  deviceTag,
  type PciConfigHooks,
  type PciDeviceContext,
  type PciDeviceInstance,
} from "../pci_device.ts";
import { PluginError, validatePciDevice } from "../pci_manifest.ts";
import {
  CALL,
  CALLBACK,
  type CreatedShape,
  CTRL,
  DATA_SIZE,
  LOG_LEVELS,
  type OptionsResult,
  SandboxChannel,
  SandboxProtocolError,
  STATE,
  STATUS,
  WIDE,
} from "./channel.ts";
import type { AsyncEvent, InitMessage, WireManifest } from "./worker.ts";

/** How to sandbox a plugin. */
export interface SandboxOptions {
  /** Extra paths the plugin may read (files or directories), besides its own module file. */
  readonly read?: readonly string[];
  /** Deadline of one call into the plugin, in ms (default {@linkcode DEFAULT_CALL_TIMEOUT_MS}). */
  readonly timeoutMs?: number;
  /**
   * Deadline for importing the plugin and extracting its manifest, and for
   * the options and create calls (default {@linkcode DEFAULT_LOAD_TIMEOUT_MS}).
   */
  readonly loadTimeoutMs?: number;
  /** After a call the worker keeps polling this long before yielding its event loop (default 2 ms). */
  readonly spinMs?: number;
  /** Where failures are logged before any device exists (default: nowhere). */
  readonly log?: Logger;
}

/** Default deadline of one call (an MMIO access, a hook) into a sandboxed plugin. */
export const DEFAULT_CALL_TIMEOUT_MS = 100;

/** Default deadline of loading a plugin and of its options and create calls. */
export const DEFAULT_LOAD_TIMEOUT_MS = 15_000;

/** The Deno permissions a sandboxed plugin's worker gets. */
export interface SandboxPermissions {
  /** Readable paths, or false. */
  readonly read: string[] | false;
  /** Hosts it may import modules from (https plugins), or false. */
  readonly import: string[] | false;
  /** Always false. */
  readonly net: false;
  /** Always false. */
  readonly ffi: false;
  /** Always false. */
  readonly run: false;
  /** Always false. */
  readonly env: false;
  /** Always false. */
  readonly write: false;
  /** Always false. */
  readonly sys: false;
}

/** The permissions for the plugin at module `url` with `extraRead` granted. */
export function sandboxPermissions(
  url: string,
  extraRead: readonly string[] = [],
): SandboxPermissions {
  const read = [...extraRead];
  const u = new URL(url);
  if (u.protocol === "file:") read.unshift(fileURLToPath(u));
  return {
    read: read.length ? read : false,
    import: u.protocol === "https:" || u.protocol === "http:" ? [u.host] : false,
    net: false,
    ffi: false,
    run: false,
    env: false,
    write: false,
    sys: false,
  };
}

/** A plugin running in its own worker. */
export class SandboxedPlugin {
  /** The proxy definition to plug into the PCI core. */
  readonly definition: AnyPciDeviceDefinition;
  /** The plugin as the user named it. */
  readonly source: string;
  /** Its module URL. */
  readonly url: string;
  /** The permissions its worker runs with. */
  readonly permissions: SandboxPermissions;

  readonly #worker: Worker;
  readonly #channel: SandboxChannel;
  readonly #timeoutMs: number;
  readonly #setupTimeoutMs: number;
  readonly #log: Logger | undefined;
  readonly #tag: string;
  readonly #contexts = new Map<number, PciDeviceContext<unknown>>();
  readonly #ioeventfds = new Map<number, { remove(): void; readonly address: bigint | null }>();
  #nextInstance = 1;
  #failure: string | null = null;
  #calls = 0;

  private constructor(init: {
    source: string;
    url: string;
    permissions: SandboxPermissions;
    worker: Worker;
    channel: SandboxChannel;
    manifest: WireManifest;
    options: SandboxOptions;
  }) {
    this.source = init.source;
    this.url = init.url;
    this.permissions = init.permissions;
    this.#worker = init.worker;
    this.#channel = init.channel;
    this.#timeoutMs = init.options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.#setupTimeoutMs = init.options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    this.#log = init.options.log;
    const m = init.manifest;
    const f = m.fields;
    this.#tag = typeof f.vendorId === "number" && typeof f.deviceId === "number"
      ? deviceTag(f.vendorId, f.deviceId)
      : `[${this.source}]`;
    const proxy: Record<string, unknown> = { ...f };
    if (m.hasOptions) proxy.options = this.#optionsSchema(m.optionsJsonSchema);
    if (m.hasCreate) proxy.create = (ctx: PciDeviceContext<unknown>) => this.#create(ctx);
    validatePciDevice(proxy, this.source);
    // Brand it like an in-process definition (validated above).
    this.definition = definePciDevice(proxy as unknown as Parameters<typeof definePciDevice>[0]);
    this.#worker.onmessage = (e) => this.#onEvent(e.data);
    this.#worker.onerror = (e) => {
      e.preventDefault();
      this.#fail(`uncaught error in the plugin: ${e.message}`);
    };
    this.#worker.onmessageerror = () => this.#fail("sent a message that cannot be received");
  }

  /**
   * Start a worker for the plugin at `url` (named `source` in messages),
   * import it there and validate its manifest. Throws {@linkcode PluginError}.
   */
  static async load(
    source: string,
    url: string,
    options: SandboxOptions = {},
  ): Promise<SandboxedPlugin> {
    const permissions = sandboxPermissions(url, options.read);
    let worker: Worker;
    try {
      worker = new Worker(new URL("./worker.ts", import.meta.url), {
        type: "module",
        name: `dvmm sandbox ${source}`,
        deno: { permissions },
      } as WorkerOptions);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      const hint = /unstable/i.test(why)
        ? ' (sandboxing needs Deno\'s worker options: "unstable": ["worker-options"] in deno.json,' +
          " or --unstable-worker-options)"
        : "";
      throw new PluginError(source, `cannot start the sandbox: ${why}${hint}`, { cause: e });
    }
    const channel = new SandboxChannel();
    const loadTimeoutMs = options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let manifest: WireManifest;
    try {
      manifest = await new Promise<WireManifest>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no manifest within ${loadTimeoutMs} ms`)),
          loadTimeoutMs,
        );
        worker.onmessage = (e) => {
          const parsed = loadReplySchema.safeParse(e.data);
          if (!parsed.success) return reject(new Error("malformed reply while loading"));
          const reply = parsed.data;
          if (reply.type === "ready") resolve(reply.manifest as WireManifest);
          else reject(new Error(reply.message));
        };
        worker.onerror = (e) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        const init: InitMessage = {
          type: "init",
          url,
          buffer: channel.buffer,
          spinMs: options.spinMs ?? 2,
        };
        worker.postMessage(init);
      });
    } catch (e) {
      worker.terminate();
      const why = e instanceof Error ? e.message : String(e);
      throw new PluginError(source, why.startsWith("failed to load") ? why : `sandbox: ${why}`, {
        cause: e,
      });
    } finally {
      clearTimeout(timer);
    }
    try {
      return new SandboxedPlugin({ source, url, permissions, worker, channel, manifest, options });
    } catch (e) {
      worker.terminate();
      throw e;
    }
  }

  /** Why the sandbox failed, or null while it works. */
  get failure(): string | null {
    return this.#failure;
  }

  /** Calls made into the worker so far. */
  get calls(): number {
    return this.#calls;
  }

  /** Terminate the worker (devices made from it then answer all-ones). Idempotent. */
  close(): void {
    if (this.#failure === null) this.#failure = "closed";
    this.#worker.terminate();
  }

  /** The options schema the core sees: parsing is done by the plugin's own schema in the worker. */
  #optionsSchema(jsonSchema: Record<string, unknown> | null): z.ZodType {
    const schema = z.any().transform((raw, zctx) => {
      const r = this.#parseOptions(raw);
      if (r.ok) return { raw, parsed: r.data };
      for (const issue of r.issues) {
        zctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
      }
      return z.NEVER;
    });
    // Listings (`dvmm devices`) read the JSON schema: give them the plugin's.
    if (!jsonSchema) return schema;
    const { $schema: _, ...meta } = jsonSchema;
    return schema.meta(meta);
  }

  #parseOptions(raw: unknown): OptionsResult {
    const failed = (message: string): OptionsResult => ({
      ok: false,
      issues: [{ path: [], message }],
    });
    let json: string;
    try {
      json = JSON.stringify(raw ?? {});
    } catch (e) {
      return failed(`cannot send options to the sandbox: ${e}`);
    }
    const r = this.#invoke(CALL.PARSE_OPTIONS, 0, "options", 0, 0, 0, json);
    if (typeof r !== "string") return failed(r.error);
    const parsed = optionsResultSchema.safeParse(safeJson(r));
    if (!parsed.success) {
      this.#fail("answered an options request with garbage");
      return failed(`plugin sandbox failed: ${this.#failure}`);
    }
    return parsed.data as OptionsResult;
  }

  /** The proxy's `create`: make the instance in the worker, mirror its members here. */
  #create(ctx: PciDeviceContext<unknown>): PciDeviceInstance {
    const inst = this.#nextInstance++;
    this.#contexts.set(inst, ctx);
    const raw = (ctx.options as { raw?: unknown } | undefined)?.raw ?? {};
    const request = JSON.stringify({ options: raw, slot: ctx.slot, memorySize: ctx.memory.size });
    const r = this.#invoke(CALL.CREATE, inst, "create", 0, 0, 0, request);
    if (typeof r !== "string") throw new Error(r.error);
    const shape = createdShapeSchema.safeParse(safeJson(r));
    if (!shape.success) {
      this.#fail("answered create with garbage");
      throw new Error(`plugin sandbox failed: ${this.#failure}`);
    }
    return this.#mirror(inst, shape.data);
  }

  #mirror(inst: number, shape: CreatedShape): PciDeviceInstance {
    const bars: Record<
      number,
      { read(o: number, d: Uint8Array): void; write(o: number, d: Uint8Array): void }
    > = {};
    for (const bar of shape.bars) {
      bars[bar] = {
        read: (offset, data) => this.#access(CALL.BAR_READ, inst, bar, offset, data),
        write: (offset, data) => this.#access(CALL.BAR_WRITE, inst, bar, offset, data),
      };
    }
    const hooks = (cap: number, f: { read: boolean; write: boolean }): PciConfigHooks => ({
      ...(f.read
        ? { read: (offset, data) => this.#access(CALL.CONFIG_READ, inst, cap, offset, data) }
        : {}),
      ...(f.write
        ? { write: (offset, data) => this.#access(CALL.CONFIG_WRITE, inst, cap, offset, data) }
        : {}),
    });
    const capabilities: Record<number, PciConfigHooks> = {};
    for (const [k, f] of Object.entries(shape.capabilities)) {
      capabilities[Number(k)] = hooks(Number(k), f);
    }
    const lifecycle = (op: number, what: string) => (bar: number, address: bigint) => {
      this.#channel.wide[WIDE.ARG] = address;
      const r = this.#invoke(op, inst, `BAR ${bar}: ${what} at ${hex(address)}`, bar, 0, 0);
      if (typeof r !== "string" && !r.failed) throw new Error(r.error);
    };
    return {
      bars,
      ...(shape.config ? { config: hooks(-1, shape.config) } : {}),
      capabilities,
      // Always forwarded: the worker tracks BAR addresses for ctx.barAddress().
      activate: lifecycle(CALL.ACTIVATE, "activate"),
      deactivate: lifecycle(CALL.DEACTIVATE, "deactivate"),
      ...(shape.hooks.reset
        ? {
          reset: () => {
            const r = this.#invoke(CALL.RESET, inst, "reset", 0, 0, 0);
            if (typeof r !== "string" && !r.failed) throw new Error(r.error);
          },
        }
        : {}),
    };
  }

  /** A BAR or config access. A failed sandbox reads all-ones and drops writes. */
  #access(op: number, inst: number, index: number, offset: number, data: Uint8Array): void {
    const isRead = op === CALL.BAR_READ || op === CALL.CONFIG_READ;
    if (this.#failure !== null) {
      if (isRead) data.fill(0xff);
      return;
    }
    const c = this.#channel;
    if (op !== CALL.BAR_READ) c.data.set(data);
    const what = `${op <= CALL.BAR_WRITE ? `BAR ${index}` : "config"} ${
      isRead ? "read" : "write"
    } at +${hex(offset)}`;
    const r = this.#invoke(op, inst, what, index, offset, data.length, data.length);
    if (typeof r === "string") {
      if (isRead) data.set(c.data.subarray(0, data.length));
      return;
    }
    if (isRead) data.fill(0xff);
    if (!r.failed) throw new Error(r.error);
  }

  /**
   * One call into the worker. Returns the result text (or "" for binary
   * results, then in the data area), or `{ error }` when the plugin threw,
   * or `{ failed: true }` when the sandbox failed (now or before).
   */
  #invoke(
    op: number,
    inst: number,
    what: string,
    a0: number,
    a1: number,
    a2: number,
    payload: string | number = 0,
  ): string | { error: string; failed?: false } | { error: string; failed: true } {
    if (this.#failure !== null) {
      return { error: `plugin sandbox failed: ${this.#failure}`, failed: true };
    }
    const c = this.#channel, ctrl = c.ctrl;
    let len = 0;
    if (typeof payload === "string") {
      len = new TextEncoder().encodeInto(payload, c.data).written;
      if (len >= DATA_SIZE) return { error: `${what}: request too large for the sandbox` };
    } else {
      len = payload;
    }
    ctrl[CTRL.OP] = op;
    ctrl[CTRL.INST] = inst;
    ctrl[CTRL.A0] = a0;
    ctrl[CTRL.A1] = a1;
    ctrl[CTRL.A2] = a2;
    ctrl[CTRL.LEN] = len;
    this.#calls++;
    Atomics.store(ctrl, CTRL.STATE, STATE.CALL);
    Atomics.add(ctrl, CTRL.SEQ, 1);
    Atomics.notify(ctrl, CTRL.SEQ);
    // Options and create run once, maybe JIT-cold on a slow (emulated) CPU: the load deadline.
    const limit = op === CALL.PARSE_OPTIONS || op === CALL.CREATE
      ? this.#setupTimeoutMs
      : this.#timeoutMs;
    let deadline = performance.now() + limit;
    try {
      for (;;) {
        const state = Atomics.load(ctrl, CTRL.STATE);
        if (state === STATE.RETURN) break;
        if (state === STATE.CALLBACK) {
          this.#serveCallback();
          Atomics.store(ctrl, CTRL.STATE, STATE.CALLBACK_DONE);
          Atomics.notify(ctrl, CTRL.STATE);
          deadline = performance.now() + limit;
          continue;
        }
        if (state !== STATE.CALL && state !== STATE.CALLBACK_DONE) {
          throw new SandboxProtocolError(`channel state ${state}`);
        }
        const left = deadline - performance.now();
        if (left <= 0) {
          this.#fail(`${what}: no answer within ${limit} ms (hung?)`);
          return { error: `plugin sandbox failed: ${this.#failure}`, failed: true };
        }
        Atomics.wait(ctrl, CTRL.STATE, state, left);
      }
      const status = ctrl[CTRL.STATUS], outLen = ctrl[CTRL.LEN];
      if (outLen < 0 || outLen > DATA_SIZE) {
        throw new SandboxProtocolError(`result length ${outLen}`);
      }
      if (status === STATUS.THREW) return { error: c.text(outLen) || "(no message)" };
      if (status !== STATUS.OK) throw new SandboxProtocolError(`status ${status}`);
      const binary = op === CALL.BAR_READ || op === CALL.CONFIG_READ;
      if (binary && outLen !== a2) {
        throw new SandboxProtocolError(`${what}: answered ${outLen} bytes for ${a2}`);
      }
      Atomics.store(ctrl, CTRL.STATE, STATE.IDLE);
      return binary ? "" : c.text(outLen);
    } catch (e) {
      if (!(e instanceof SandboxProtocolError)) throw e;
      this.#fail(`${what}: broke the sandbox protocol: ${e.message}`);
      return { error: `plugin sandbox failed: ${this.#failure}`, failed: true };
    }
  }

  /** Serve a request the worker made during a call; results go back through the channel. */
  #serveCallback(): void {
    const c = this.#channel, ctrl = c.ctrl;
    const op = ctrl[CTRL.OP], inst = ctrl[CTRL.INST];
    const a0 = ctrl[CTRL.A0], a1 = ctrl[CTRL.A1], a2 = ctrl[CTRL.A2], a3 = ctrl[CTRL.A3];
    const len = ctrl[CTRL.LEN];
    const ctx = this.#contexts.get(inst);
    if (!ctx) throw new SandboxProtocolError(`callback for unknown instance ${inst}`);
    if (len < 0 || len > DATA_SIZE) throw new SandboxProtocolError(`callback length ${len}`);
    const ext = ctx as unknown as ExtendedContext;
    let r0 = 0, outLen = 0;
    try {
      switch (op) {
        case CALLBACK.MEM_READ: {
          if (a0 < 0 || a0 > DATA_SIZE) {
            throw new SandboxProtocolError(`memory read of ${a0} bytes`);
          }
          const gpa = Number(c.wide[WIDE.ARG]);
          if (a1 === 1) {
            r0 = ctx.memory.contains(gpa, a0) ? 1 : 0;
          } else {
            c.data.set(ctx.memory.slice(gpa, a0));
            outLen = a0;
          }
          break;
        }
        case CALLBACK.MEM_WRITE:
          if (a0 < 0 || a0 > DATA_SIZE) {
            throw new SandboxProtocolError(`memory write of ${a0} bytes`);
          }
          ctx.memory.write(Number(c.wide[WIDE.ARG]), c.data.subarray(0, a0));
          break;
        case CALLBACK.IRQ:
          ctx.irq.set(a0 !== 0);
          break;
        case CALLBACK.LOG:
          ctx.log[LOG_LEVELS[a0] ?? "info"](c.text(len));
          break;
        case CALLBACK.MSI:
          if (!ext.msi) throw new Error("MSI is not available on this machine");
          r0 = ext.msi.send(c.wide[WIDE.ARG], a0 >>> 0) ? 1 : 0;
          break;
        case CALLBACK.HOST_CONSOLE:
          ext.hostConsole?.write(c.data.slice(0, len));
          break;
        case CALLBACK.IOEVENTFD_ADD: {
          if (!ext.ioeventfd) throw new Error("ioeventfds are not available on this machine");
          const kick = a3;
          const fd = ext.ioeventfd(a0, a1, a2, () => this.#kick(inst, kick));
          this.#ioeventfds.set(kick, fd);
          break;
        }
        case CALLBACK.IOEVENTFD_ADDRESS: {
          const address = this.#ioeventfds.get(a0)?.address ?? null;
          r0 = address === null ? 0 : 1;
          if (address !== null) c.wide[WIDE.RESULT] = address;
          break;
        }
        case CALLBACK.IOEVENTFD_REMOVE:
          this.#ioeventfds.get(a0)?.remove();
          this.#ioeventfds.delete(a0);
          break;
        default:
          throw new SandboxProtocolError(`unknown callback ${op}`);
      }
      ctrl[CTRL.STATUS] = STATUS.OK;
    } catch (e) {
      if (e instanceof SandboxProtocolError) throw e;
      ctrl[CTRL.STATUS] = STATUS.THREW;
      outLen = c.putText(e instanceof Error ? e.message : String(e));
    }
    ctrl[CTRL.R0] = r0;
    ctrl[CTRL.LEN] = outLen;
  }

  /** An ioeventfd fired: run the plugin's kick handler (a call like any other). */
  #kick(inst: number, kick: number): void {
    const r = this.#invoke(CALL.KICK, inst, `ioeventfd ${kick}`, kick, 0, 0);
    if (typeof r !== "string" && !r.failed) throw new Error(r.error);
  }

  /** A side effect the plugin caused outside a call. */
  #onEvent(data: unknown): void {
    if (this.#failure !== null) return;
    const parsed = asyncEventSchema.safeParse(data);
    const ctx = parsed.success ? this.#contexts.get(parsed.data.inst) : undefined;
    if (!parsed.success || !ctx) return this.#fail("posted a malformed message");
    const ev = parsed.data as AsyncEvent;
    const ext = ctx as unknown as ExtendedContext;
    switch (ev.type) {
      case "irq":
        return ctx.irq.set(ev.level);
      case "log":
        return ctx.log[LOG_LEVELS[ev.level] ?? "info"](ev.message);
      case "msi":
        ext.msi?.send(ev.address, ev.data);
        return;
      case "console":
        return ext.hostConsole?.write(ev.bytes);
    }
  }

  /** The sandbox failed: stop the worker, say so once per device, lower INTx. */
  #fail(reason: string): void {
    if (this.#failure !== null) return;
    this.#failure = reason;
    this.#worker.terminate();
    const message =
      `plugin sandbox failed: ${reason}; worker terminated, the device answers all-ones from now on`;
    if (this.#contexts.size === 0) this.#log?.error(`${this.#tag} ${message}`);
    for (const ctx of this.#contexts.values()) {
      ctx.log.error(message);
      try {
        ctx.irq.set(false);
      } catch { /* the core guards its own lines */ }
    }
  }
}

/** Context members added by the MSI/ioeventfd extension of the plugin API (optional here). */
interface ExtendedContext {
  readonly msi?: { send(address: bigint, data: number): boolean };
  readonly hostConsole?: { write(bytes: Uint8Array): void };
  readonly ioeventfd?: (
    bar: number,
    offset: number,
    length: number,
    onKick: () => void,
  ) => { remove(): void; readonly address: bigint | null };
}

const loadReplySchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("ready"),
    manifest: z.object({
      fields: z.record(z.string(), z.unknown()),
      hasCreate: z.boolean(),
      hasOptions: z.boolean(),
      optionsJsonSchema: z.record(z.string(), z.unknown()).nullable(),
    }),
  }),
  z.object({ type: z.literal("load-error"), message: z.string() }),
]);

const optionsResultSchema = z.union([
  z.object({ ok: z.literal(true), data: z.unknown() }),
  z.object({
    ok: z.literal(false),
    issues: z.array(z.object({
      path: z.array(z.union([z.string(), z.number()])),
      message: z.string(),
    })),
  }),
]);

const hookFlags = z.object({ read: z.boolean(), write: z.boolean() });
const createdShapeSchema = z.object({
  bars: z.array(z.number().int().min(0).max(5)),
  config: hookFlags.nullable(),
  capabilities: z.record(z.string().regex(/^\d+$/), hookFlags),
  hooks: z.object({ activate: z.boolean(), deactivate: z.boolean(), reset: z.boolean() }),
});

const inst = z.number().int().positive();
const asyncEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("irq"), inst, level: z.boolean() }),
  z.object({
    type: z.literal("log"),
    inst,
    level: z.number().int().min(0).max(3),
    message: z.string().max(4096),
  }),
  z.object({ type: z.literal("msi"), inst, address: z.bigint(), data: z.number().int() }),
  z.object({ type: z.literal("console"), inst, bytes: z.instanceof(Uint8Array) }),
]);

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
