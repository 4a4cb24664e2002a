/**
 * The device plugin registry: built-in plugins by name, user plugins loaded
 * at run time from a path or URL (dynamic import), each validated before use,
 * and a listing of what is available with its options (for `dvmm devices`).
 *
 * Loading never crashes the VMM: an import that throws, a module without a
 * default export, or an invalid manifest becomes a {@linkcode PluginError}
 * naming the plugin (`./dev.ts: bars[1].size: must be a power of two`).
 *
 * @module
 */

import { pathToFileURL } from "node:url";
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import type { AnyPciDeviceDefinition } from "./pci_device.ts";
import { SandboxedPlugin, type SandboxOptions } from "./sandbox/sandboxed_plugin.ts";
import {
  formatZodIssues,
  parsePciDeviceOptions,
  PluginError,
  validatePciDevice,
} from "./pci_manifest.ts";

/** A plugin the registry knows, ready to plug. */
export interface RegisteredPlugin {
  /** The validated definition. */
  readonly definition: AnyPciDeviceDefinition;
  /** `builtin:<name>` for built-ins, else the path or URL as the user wrote it. */
  readonly source: string;
  /** The module URL it was imported from (built-ins: undefined). */
  readonly url?: string;
  /** True for built-in plugins. */
  readonly builtin: boolean;
  /** The sandbox it runs in (user plugins loaded with {@linkcode DeviceRegistry.loadSandboxed}). */
  readonly sandbox?: SandboxedPlugin;
}

/** One option of a plugin, for listings. */
export interface PluginOptionInfo {
  /** Option key (`key=value`). */
  readonly name: string;
  /** JSON-schema type name(s), e.g. `number`, `string`, `boolean`, or an enum's values. */
  readonly type: string;
  /** Must it be given? */
  readonly required: boolean;
  /** Default value, if any. */
  readonly default?: unknown;
  /** The schema's description, if any. */
  readonly description?: string;
}

/** One plugin, for listings (`dvmm devices`). */
export interface PluginInfo {
  /** Plugin name. */
  readonly name: string;
  /** Where it comes from (`builtin:...`, a path or a URL). */
  readonly source: string;
  /** Built-in? */
  readonly builtin: boolean;
  /** One-line description. */
  readonly description: string;
  /** `1af4:1042`. */
  readonly id: string;
  /** Class code (u24). */
  readonly classCode: number;
  /** BARs as `0:mem32 4 KiB`. */
  readonly bars: readonly string[];
  /** Its options. */
  readonly options: readonly PluginOptionInfo[];
}

/** A parsed `--device spec,key=value,...` argument. */
export interface DeviceArgument {
  /** Built-in name, path or URL. */
  readonly spec: string;
  /** Raw option strings. */
  readonly options: Record<string, string>;
}

/**
 * Split `./plugin.ts,key=value,flag` into the plugin spec and its options
 * (a bare `flag` means `flag=true`). Throws {@linkcode PluginError} on an empty key.
 */
export function parseDeviceArgument(arg: string): DeviceArgument {
  const [spec, ...parts] = arg.split(",");
  const options: Record<string, string> = {};
  for (const part of parts) {
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (!key) throw new PluginError(spec, `bad option "${part}" (expected key=value)`);
    options[key] = eq < 0 ? "true" : part.slice(eq + 1);
  }
  return { spec: spec.trim(), options };
}

/** Built-in and loaded device plugins. */
export class DeviceRegistry {
  readonly #builtins = new Map<string, RegisteredPlugin>();
  readonly #lazyBuiltins = new Map<string, () => Promise<AnyPciDeviceDefinition>>();
  readonly #loaded = new Map<string, RegisteredPlugin>();
  readonly #sandboxed: SandboxedPlugin[] = [];

  /** Add a built-in plugin under its name. Throws {@linkcode PluginError} if invalid or the name is taken. */
  registerBuiltin(definition: AnyPciDeviceDefinition): RegisteredPlugin {
    const name = String((definition as { name?: unknown }).name);
    const def = validatePciDevice(definition, `builtin:${name}`);
    if (this.#builtins.has(def.name)) {
      throw new PluginError(`builtin:${def.name}`, "a built-in plugin with this name exists");
    }
    const entry = { definition: def, source: `builtin:${def.name}`, builtin: true };
    this.#builtins.set(def.name, entry);
    return entry;
  }

  /**
   * Add a built-in plugin by name, imported on first use: a VM that does not
   * use it does not pay for loading its module (start-up time). Throws
   * {@linkcode PluginError} if the name is taken.
   */
  registerBuiltinLoader(name: string, load: () => Promise<AnyPciDeviceDefinition>): void {
    if (this.#builtins.has(name) || this.#lazyBuiltins.has(name)) {
      throw new PluginError(`builtin:${name}`, "a built-in plugin with this name exists");
    }
    this.#lazyBuiltins.set(name, load);
  }

  /** Import every built-in registered with {@linkcode registerBuiltinLoader} (before listing them). */
  async loadBuiltins(): Promise<void> {
    for (const name of [...this.#lazyBuiltins.keys()]) await this.#builtin(name);
  }

  /** The built-in plugin called `name`, if any (loaded already; see {@linkcode load}). */
  builtin(name: string): RegisteredPlugin | undefined {
    return this.#builtins.get(name);
  }

  /** The built-in called `name`, importing it if it is registered lazily. */
  async #builtin(name: string): Promise<RegisteredPlugin | undefined> {
    const load = this.#lazyBuiltins.get(name);
    if (!load) return this.#builtins.get(name);
    this.#lazyBuiltins.delete(name);
    const definition = await load();
    if ((definition as { name?: unknown }).name !== name) {
      throw new PluginError(`builtin:${name}`, "the module defines another plugin name");
    }
    return this.registerBuiltin(definition);
  }

  /**
   * Resolve `spec`: a built-in name, or a module path (relative to `cwd`) or
   * URL (`file:`, `https:`, `data:`) whose default export is a definition.
   * Modules are imported once and cached by URL; they run in-process, with the
   * VMM's permissions (trusted: see {@linkcode loadSandboxed}). Throws {@linkcode PluginError}.
   */
  async load(spec: string, cwd: string = Deno.cwd()): Promise<RegisteredPlugin> {
    const builtin = await this.#builtin(spec);
    if (builtin) return builtin;
    const url = moduleUrl(spec, cwd);
    const cached = this.#loaded.get(url);
    if (cached) return cached;
    let module: Record<string, unknown>;
    try {
      module = await import(url);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new PluginError(spec, `failed to load: ${why}`, { cause: e });
    }
    if (!("default" in module)) {
      throw new PluginError(spec, "no default export (export default definePciDevice({...}))");
    }
    const definition = validatePciDevice(module.default, spec);
    const entry = { definition, source: spec, url, builtin: false };
    this.#loaded.set(url, entry);
    return entry;
  }

  /**
   * Resolve `spec` like {@linkcode load}, but run a user plugin in its own
   * sandbox worker (no net/ffi/run/env/write/sys; it may read its own file
   * and `options.read`): the definition returned is a proxy to it. Built-ins
   * stay in-process. Every call makes a new sandbox (one worker per plugin
   * load; devices made from it share the worker). Throws {@linkcode PluginError}.
   */
  async loadSandboxed(
    spec: string,
    options: SandboxOptions & { readonly cwd?: string } = {},
  ): Promise<RegisteredPlugin> {
    const builtin = await this.#builtin(spec);
    if (builtin) return builtin;
    const url = moduleUrl(spec, options.cwd ?? Deno.cwd());
    const sandbox = await SandboxedPlugin.load(spec, url, options);
    this.#sandboxed.push(sandbox);
    return { definition: sandbox.definition, source: spec, url, builtin: false, sandbox };
  }

  /** Terminate every sandbox this registry started (their devices then answer all-ones). */
  close(): void {
    for (const s of this.#sandboxed.splice(0)) s.close();
  }

  /**
   * Load `spec` and validate `options` against its schema. Returns the
   * plugin and its parsed options. Throws {@linkcode PluginError}.
   */
  async resolve(
    spec: string,
    options: Readonly<Record<string, unknown>> = {},
    cwd?: string,
  ): Promise<RegisteredPlugin & { readonly options: unknown }> {
    const plugin = await this.load(spec, cwd);
    return { ...plugin, options: parsePciDeviceOptions(plugin.definition, options, spec) };
  }

  /** Built-ins (by name; lazy ones once loaded, see {@linkcode loadBuiltins}) then loaded plugins (in load order). */
  plugins(): RegisteredPlugin[] {
    return [...this.#builtins.values(), ...this.#loaded.values()];
  }

  /** Structured listing of every plugin with its options. */
  list(): PluginInfo[] {
    return this.plugins().map(describePlugin);
  }
}

/** Describe one plugin for listings. */
export function describePlugin(plugin: RegisteredPlugin): PluginInfo {
  const d = plugin.definition;
  const h = (v: number) => v.toString(16).padStart(4, "0");
  return {
    name: d.name,
    source: plugin.source,
    builtin: plugin.builtin,
    description: d.description ?? "",
    id: `${h(d.vendorId)}:${h(d.deviceId)}`,
    classCode: d.classCode,
    bars: d.bars.map((b) =>
      `${b.index}:${b.kind}${b.prefetchable ? " prefetchable" : ""} ${formatSize(BigInt(b.size))}`
    ),
    options: describeOptions(d.options),
  };
}

/** Format a listing as an aligned, human-readable table with options below each plugin. */
export function formatPluginList(list: readonly PluginInfo[]): string {
  if (!list.length) return "no device plugins\n";
  const width = Math.max(...list.map((p) => p.name.length));
  const lines: string[] = [];
  for (const p of list) {
    const cls = `class ${p.classCode.toString(16).padStart(6, "0")}`;
    lines.push(`${p.name.padEnd(width)}  ${p.id}  ${cls}  ${p.description}`.trimEnd());
    lines.push(`${"".padEnd(width)}  source: ${p.source}`);
    if (p.bars.length) lines.push(`${"".padEnd(width)}  bars: ${p.bars.join(", ")}`);
    for (const o of p.options) {
      const dflt = o.default === undefined ? "" : ` (default ${JSON.stringify(o.default)})`;
      const req = o.required ? " (required)" : "";
      const desc = o.description ? `  ${o.description}` : "";
      lines.push(`${"".padEnd(width)}  ${o.name}=<${o.type}>${req}${dflt}${desc}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** The options of a schema, from its JSON schema (an object schema; anything else lists nothing). */
export function describeOptions(schema: z.ZodType | undefined): PluginOptionInfo[] {
  if (!schema) return [];
  let json: Record<string, unknown>;
  try {
    json = z.toJSONSchema(schema, { unrepresentable: "any", io: "input" }) as Record<
      string,
      unknown
    >;
  } catch {
    return [];
  }
  const props = (json.properties ?? {}) as Record<string, Record<string, unknown>>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(props).map(([name, p]) => ({
    name,
    type: jsonType(p),
    required: required.has(name) && p.default === undefined,
    ...(p.default !== undefined ? { default: p.default } : {}),
    ...(typeof p.description === "string" ? { description: p.description } : {}),
  }));
}

/** Turn a zod error on options into `options.key: message` text. */
export function formatOptionsError(error: z.ZodError): string {
  return formatZodIssues(error, "options");
}

function jsonType(p: Record<string, unknown>): string {
  if (Array.isArray(p.enum)) return p.enum.map((v) => JSON.stringify(v)).join("|");
  if (typeof p.type === "string") return p.type;
  if (Array.isArray(p.type)) return p.type.join("|");
  for (const key of ["anyOf", "oneOf"]) {
    const alts = p[key];
    if (Array.isArray(alts)) {
      return alts.map((a) => jsonType(a as Record<string, unknown>)).join("|");
    }
  }
  return "any";
}

function formatSize(size: bigint): string {
  const units: [bigint, string][] = [[1n << 30n, "GiB"], [1n << 20n, "MiB"], [1n << 10n, "KiB"]];
  for (const [unit, name] of units) {
    if (size >= unit && size % unit === 0n) return `${size / unit} ${name}`;
  }
  return `${size} B`;
}

/** The module URL of a plugin spec: URLs pass through, paths resolve against `cwd`. */
function moduleUrl(spec: string, cwd: string): string {
  if (/^(file|https?|data|npm|jsr):/.test(spec)) return spec;
  return pathToFileURL(isAbsolute(spec) ? spec : resolve(cwd, spec)).href;
}
