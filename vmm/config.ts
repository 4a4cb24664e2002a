/**
 * The one VM config schema. CLI flags (cli_flags.ts), JSON config files
 * (config_file.ts) and the TypeScript API all parse into {@linkcode VmConfig}
 * through {@linkcode parseVmConfig}; every default lives here.
 *
 * Paths (kernel, initrd, disks, plugin files, the API socket) are resolved
 * against a base directory (a config file's directory, else the current one)
 * and the input files must exist. Errors are a {@linkcode ConfigError} with
 * one line per problem naming the field:
 *
 * ```
 * config.disks[1].path: file not found: ./img.raw
 * --cpus: expected an integer from 1 to 64, got 1000
 * ```
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { controlSocketDir, SOCKET_SUFFIX } from "./socket_dir.ts";
import { UsageError } from "./cli_errors.ts";

/**
 * Thrown when a VM config is invalid. Its message has one line per problem.
 * A {@linkcode UsageError}: the CLI exits with status 2.
 */
export class ConfigError extends UsageError {
  /**
   * A config error.
   * @param source where the config came from (`config`, `vm.json`, `flags`)
   * @param problems one line each, `field: what was expected, got what`
   */
  constructor(readonly source: string, readonly problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

/** Names the field at a zod path in a message (`config.disks[1].path`, `--cpus`). */
export type DescribePath = (path: readonly PropertyKey[]) => string;

/** Options of {@linkcode vmConfigSchema}. */
export interface VmSchemaOptions {
  /** Directory relative paths are resolved against (default: the current directory). */
  readonly baseDir?: string;
  /** Check that kernel, initrd, disk and plugin files exist (default true). */
  readonly checkFiles?: boolean;
}

/** Options of {@linkcode parseVmConfig}. */
export interface ParseVmConfigOptions extends VmSchemaOptions {
  /** Names fields in messages (default: {@linkcode describeFieldPath} with the source). */
  readonly describePath?: DescribePath;
}

/** 1 MiB. */
const MiB = 1024 * 1024;

/** Smallest guest memory (64 MiB). */
export const MIN_MEMORY_BYTES: number = 64 * MiB;
/** Largest guest memory (64 GiB). */
export const MAX_MEMORY_BYTES: number = 64 * 1024 * MiB;
/** Guest memory must be a multiple of this (the page size). */
export const MEMORY_ALIGN_BYTES = 4096;
/** Default guest memory. */
export const DEFAULT_MEMORY = "512M";
/** Most vCPUs. */
export const MAX_CPUS = 64;
/** Console devices. */
export const CONSOLE_KINDS = ["serial", "virtio"] as const;
/** VM names: also the control socket's file name. */
export const VM_NAME_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,64}$/;
/** Linux interface names (IFNAMSIZ - 1 = 15 characters). */
export const TAP_NAME_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,15}$/;
/** MAC addresses, six colon-separated hex octets. */
export const MAC_PATTERN: RegExp = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
/** Built-in device plugin names. */
export const PLUGIN_NAME_PATTERN: RegExp = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** `sun_path` holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** Unit multipliers of memory sizes (binary). */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  K: 1024,
  M: MiB,
  G: 1024 * MiB,
  T: 1024 * 1024 * MiB,
};

/**
 * Parse a memory size: bytes as a number or digit string, or a number with a
 * binary suffix K, M, G or T (`512M`, `1G`, `1.5G`, `65536K`; `KiB`/`MB`
 * spellings and lower case accepted). Returns bytes; throws a RangeError
 * (message without the value's field) when it is not a size.
 */
export function parseMemorySize(value: string | number): number {
  let bytes: number;
  if (typeof value === "number") {
    bytes = value;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(value);
    if (!m) throw new RangeError(`expected a size like 512M or 1G, got ${show(value)}`);
    bytes = Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()];
  }
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`expected a whole number of bytes, got ${show(value)}`);
  }
  return bytes;
}

/** Generated VM names: `vm-<pid>-<n>`. */
let generatedNames = 0;

/** A fresh VM name for this process, `vm-<pid>-<n>` (the schema's default for `name`). */
export function generateVmName(): string {
  generatedNames += 1;
  return `vm-${Deno.pid}-${generatedNames}`;
}

/**
 * The VM config schema. Relative paths resolve against `options.baseDir`;
 * input files are checked unless `options.checkFiles` is false.
 */
export function vmConfigSchema(options: VmSchemaOptions = {}) {
  const base = options.baseDir ?? Deno.cwd();
  const check = options.checkFiles ?? true;

  const inputFile = (what: string, disk = false) =>
    path(what).transform((p, ctx) => {
      const abs = resolve(base, p);
      const problem = check ? fileProblem(abs, disk) : undefined;
      if (problem) {
        const where = isAbsolute(p) ? p : `${p} (resolved to ${abs})`;
        ctx.issues.push({ code: "custom", input: p, message: `${problem}: ${where}` });
      }
      return abs;
    });

  const memory = z.union([z.string(), z.number()], { error: memoryMessage })
    .transform((v, ctx) => {
      let bytes: number;
      try {
        bytes = parseMemorySize(v);
      } catch (e) {
        ctx.issues.push({ code: "custom", input: v, message: (e as Error).message });
        return z.NEVER;
      }
      if (bytes < MIN_MEMORY_BYTES || bytes > MAX_MEMORY_BYTES) {
        ctx.issues.push({ code: "custom", input: v, message: memoryMessage({ input: v }) });
      } else if (bytes % MEMORY_ALIGN_BYTES !== 0) {
        ctx.issues.push({
          code: "custom",
          input: v,
          message: `must be a multiple of 4 KiB, got ${show(v)} (${bytes} bytes)`,
        });
      }
      return bytes;
    });

  const disk = object({
    path: inputFile("a disk image path", true).describe(
      "Disk image file or block device (relative to the config file).",
    ),
    readonly: bool().default(false).describe("Attach read-only."),
  }, "a disk { path, readonly? }");

  const net = object({
    tap: z.string({ error: expected("a tap interface name") })
      .regex(TAP_NAME_PATTERN, {
        error: expected("a tap interface name (1-15 of A-Z a-z 0-9 _ . -)"),
      })
      .describe("Host tap interface name."),
    mac: z.string({ error: expected("a MAC address like 52:54:00:12:34:56") })
      .regex(MAC_PATTERN, { error: expected("a MAC address like 52:54:00:12:34:56") })
      .transform((v, ctx) => {
        const problem = macProblem(v);
        if (problem) ctx.issues.push({ code: "custom", input: v, message: problem });
        return v.toLowerCase();
      })
      .optional()
      .describe("Guest MAC address, e.g. 52:54:00:12:34:56 (default: generated)."),
  }, "a network { tap, mac? }");

  const pluginOption = z.union([z.string(), z.number(), z.boolean()], {
    error: expected("a string, number or boolean"),
  });
  const device = object({
    plugin: z.string({ error: expected("a plugin name, path or URL") })
      .min(1, { error: expected("a plugin name, path or URL") })
      .transform((spec, ctx) => {
        if (isPluginUrl(spec)) return spec;
        if (!isPluginPath(spec)) {
          if (!PLUGIN_NAME_PATTERN.test(spec)) {
            ctx.issues.push({
              code: "custom",
              input: spec,
              message: `expected a plugin name, path or URL, got ${show(spec)}`,
            });
          }
          return spec;
        }
        const abs = resolve(base, spec);
        const problem = check ? fileProblem(abs, false) : undefined;
        if (problem) {
          const where = isAbsolute(spec) ? spec : `${spec} (resolved to ${abs})`;
          ctx.issues.push({ code: "custom", input: spec, message: `${problem}: ${where}` });
        }
        return abs;
      })
      .describe("Built-in plugin name, plugin module path (relative to the config file) or URL."),
    options: z.record(
      z.string().min(1, { error: "option names must not be empty" }),
      pluginOption,
      { error: expected("an object of plugin options") },
    ).default({}).describe("Plugin options (key: string, number or boolean)."),
  }, "a device { plugin, options? }");

  const api = object({
    socket: path("a socket path").transform((p) => resolve(base, p)).optional()
      .describe("Control socket path (default: $XDG_RUNTIME_DIR/dvmm/NAME.sock)."),
    enabled: bool().default(true).describe("Serve the HTTP control API on the socket."),
  }, "an object { socket?, enabled? }");

  return object({
    $schema: z.string({ error: expected("a JSON schema URL") }).optional()
      .describe("The JSON schema of this file (docs/vm.schema.json), for editors."),
    name: z.string({ error: expected("a VM name") })
      .regex(VM_NAME_PATTERN, { error: expected("a VM name of 1-64 of A-Z a-z 0-9 _ . -") })
      .optional()
      .transform((v) => v ?? generateVmName())
      .describe("VM name (names the control socket); default vm-<pid>-<n>."),
    kernel: inputFile("a kernel path").optional()
      .describe("Kernel bzImage (default: dvmm's cached Debian kernel)."),
    initrd: inputFile("an initrd path").optional()
      .describe("Initramfs (default with the default kernel: dvmm's initramfs; else none)."),
    cmdline: z.string({ error: expected("kernel arguments as a string") }).default("")
      .describe("Extra kernel command-line arguments, appended to dvmm's."),
    memory: memory.prefault(DEFAULT_MEMORY)
      .describe("Guest RAM: bytes, or a size like 512M or 1G (64M to 64G)."),
    cpus: z.number({ error: cpusMessage }).int({ error: cpusMessage })
      .min(1, { error: cpusMessage }).max(MAX_CPUS, { error: cpusMessage }).default(1)
      .describe("Number of vCPUs (1-64)."),
    console: z.enum(CONSOLE_KINDS, { error: expected(`"serial" or "virtio"`) }).default("serial")
      .describe("Console device: 8250 serial (ttyS0) or virtio-console (hvc0)."),
    disks: z.array(disk, { error: expected("a list of disks") })
      .check(uniqueBy("path", (v) => `disk ${v} is attached twice`)).default([])
      .describe("Block devices, in order (vda, vdb, ...)."),
    nets: z.array(net, { error: expected("a list of networks") })
      .check(uniqueBy("tap", (v) => `tap ${v} is used twice`))
      .check(uniqueBy("mac", (v) => `MAC ${v} is used twice`)).default([])
      .describe("Network interfaces backed by host tap devices."),
    rng: bool().default(false).describe("Add a virtio-rng device."),
    devices: z.array(device, { error: expected("a list of devices") }).default([])
      .describe("PCI devices from plugins."),
    api: api.prefault({}).describe("The control socket."),
    kernelCache: bool().default(true).describe(
      "Boot a bzImage through its decompressed vmlinux kept in dvmm's cache (faster; no KASLR).",
    ),
    debug: bool().default(false).describe("Verbose VMM logging."),
  }, "an object of VM settings").transform((c, ctx) => {
    let socket = c.api.socket;
    if (c.api.enabled && socket === undefined) {
      const dir = controlSocketDir();
      if (dir === undefined) {
        ctx.issues.push({
          code: "custom",
          input: c.api,
          path: ["api", "socket"],
          message: "no default socket directory: set XDG_RUNTIME_DIR or HOME, or api.socket",
        });
      } else {
        socket = join(dir, `${c.name}${SOCKET_SUFFIX}`);
      }
    }
    if (
      c.api.enabled && socket && new TextEncoder().encode(socket).length > MAX_SOCKET_PATH_BYTES
    ) {
      ctx.issues.push({
        code: "custom",
        input: socket,
        path: ["api", "socket"],
        message: `socket path longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${socket}`,
      });
    }
    return { ...c, api: { enabled: c.api.enabled, socket } };
  });
}

/** The schema's type. */
export type VmConfigSchema = ReturnType<typeof vmConfigSchema>;

/** A plugin option value. */
export type PluginOptionValue = string | number | boolean;

/**
 * A validated VM config: defaults applied, paths absolute, memory in bytes.
 * Written out (rather than only inferred) so the public API documents it; a
 * type check below keeps it identical to what the schema produces.
 */
export interface VmConfig {
  /** The JSON schema URL a config file named, if any. */
  $schema?: string | undefined;
  /** VM name (names the control socket). */
  name: string;
  /** Kernel bzImage; undefined: dvmm's default Debian kernel. */
  kernel?: string | undefined;
  /** Initramfs; undefined with the default kernel: dvmm's initramfs. */
  initrd?: string | undefined;
  /** Extra kernel arguments. */
  cmdline: string;
  /** Guest RAM in bytes. */
  memory: number;
  /** vCPUs. */
  cpus: number;
  /** Console device. */
  console: "serial" | "virtio";
  /** Block devices, in order. */
  disks: { path: string; readonly: boolean }[];
  /** Network interfaces on host taps. */
  nets: { tap: string; mac?: string | undefined }[];
  /** Add a virtio-rng device. */
  rng: boolean;
  /** PCI devices from plugins. */
  devices: { plugin: string; options: Record<string, PluginOptionValue> }[];
  /** The control socket (socket is set whenever enabled). */
  api: { enabled: boolean; socket: string | undefined };
  /** Boot a bzImage through its cached decompressed vmlinux. */
  kernelCache: boolean;
  /** Verbose VMM logging. */
  debug: boolean;
}

/** What users write (TS API, JSON file): every field optional, memory as `"512M"` or bytes. */
export interface VmConfigInput {
  /** The JSON schema of the file, for editors. */
  $schema?: string | undefined;
  /** VM name (default generated). */
  name?: string | undefined;
  /** Kernel bzImage path. */
  kernel?: string | undefined;
  /** Initramfs path. */
  initrd?: string | undefined;
  /** Extra kernel arguments. */
  cmdline?: string | undefined;
  /** Guest RAM: bytes or a size like `"512M"` (default 512M). */
  memory?: string | number | undefined;
  /** vCPUs (default 1). */
  cpus?: number | undefined;
  /** Console device (default serial). */
  console?: "serial" | "virtio" | undefined;
  /** Block devices. */
  disks?: { path: string; readonly?: boolean | undefined }[] | undefined;
  /** Network interfaces. */
  nets?: { tap: string; mac?: string | undefined }[] | undefined;
  /** Add a virtio-rng device. */
  rng?: boolean | undefined;
  /** PCI devices from plugins. */
  devices?:
    | { plugin: string; options?: Record<string, PluginOptionValue> | undefined }[]
    | undefined;
  /** The control socket. */
  api?: { socket?: string | undefined; enabled?: boolean | undefined } | undefined;
  /** Boot a bzImage through its cached decompressed vmlinux (default true). */
  kernelCache?: boolean | undefined;
  /** Verbose VMM logging. */
  debug?: boolean | undefined;
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// Compile-time proof that the written-out types are exactly the schema's.
const _outputMatchesSchema: Same<VmConfig, z.output<VmConfigSchema>> = true;
const _inputMatchesSchema: Same<VmConfigInput, z.input<VmConfigSchema>> = true;
void _outputMatchesSchema, _inputMatchesSchema;

/** One disk of a validated config. */
export type DiskConfig = VmConfig["disks"][number];
/** One network interface of a validated config. */
export type NetConfig = VmConfig["nets"][number];
/** One plugin device of a validated config. */
export type DeviceConfig = VmConfig["devices"][number];
/** Console kinds. */
export type ConsoleKind = (typeof CONSOLE_KINDS)[number];

/**
 * Validate `input` into a {@linkcode VmConfig}. `source` names it in messages
 * (`config` gives `config.cpus: ...`, `vm.json` gives `vm.json: cpus: ...`).
 * Throws {@linkcode ConfigError} listing every problem, one line each.
 */
export function parseVmConfig(
  input: unknown,
  source: string,
  options: ParseVmConfigOptions = {},
): VmConfig {
  const result = vmConfigSchema(options).safeParse(input);
  if (result.success) return result.data;
  const describe = options.describePath ?? ((p) => describeFieldPath(source, p));
  throw new ConfigError(source, formatIssues(result.error.issues, describe));
}

/**
 * Name a field: `config` + `[disks, 1, path]` gives `config.disks[1].path`;
 * a source that is not an identifier (a file) gives `vm.json: disks[1].path`.
 */
export function describeFieldPath(source: string, path: readonly PropertyKey[]): string {
  if (path.length === 0) return source;
  const field = formatFieldPath(path);
  if (/^[A-Za-z_$][\w$]*$/.test(source)) {
    return field.startsWith("[") ? `${source}${field}` : `${source}.${field}`;
  }
  return `${source}: ${field}`;
}

/** `[disks, 1, path]` as `disks[1].path`. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)) {
      out += out ? `.${key}` : key;
    } else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

/** One line per zod issue (one per key for unknown keys): `<field>: <message>`. */
export function formatIssues(
  issues: readonly z.core.$ZodIssue[],
  describe: DescribePath,
): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) lines.push(`${describe([...issue.path, key])}: unknown field`);
    } else {
      lines.push(`${describe(issue.path)}: ${issue.message}`);
    }
  }
  return lines;
}

/** A value for a message: strings quoted, `nothing` for a missing value. */
export function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "object" && v !== null) return Array.isArray(v) ? "a list" : "an object";
  return String(v);
}

/** `expected <what>, got <input>` as a zod error function. */
function expected(what: string) {
  return (issue: { input?: unknown }) => `expected ${what}, got ${show(issue.input)}`;
}

function cpusMessage(issue: { input?: unknown }): string {
  return `expected an integer from 1 to ${MAX_CPUS}, got ${show(issue.input)}`;
}

function memoryMessage(issue: { input?: unknown }): string {
  return `expected a size from 64M to 64G (>= 64 MiB and <= 64 GiB) like 512M or 1G, got ${
    show(issue.input)
  }`;
}

function bool() {
  return z.boolean({ error: expected("true or false") });
}

function path(what: string) {
  return z.string({ error: expected(what) }).min(1, { error: expected(`${what} (not empty)`) });
}

/** A strict object; unknown keys are reported by {@linkcode formatIssues}, one per key. */
function object<S extends z.core.$ZodLooseShape>(shape: S, what: string) {
  return z.strictObject(shape, {
    error: (issue) => issue.code === "invalid_type" ? expected(what)(issue) : undefined,
  });
}

/** An array check: items must not repeat `key` (undefined values ignored). */
function uniqueBy<K extends string>(key: K, message: (value: unknown) => string) {
  return (ctx: z.core.ParsePayload<readonly Partial<Record<K, unknown>>[]>) => {
    const seen = new Set<unknown>();
    ctx.value.forEach((item, i) => {
      const v = item[key];
      if (v === undefined) return;
      if (seen.has(v)) {
        ctx.issues.push({ code: "custom", input: v, path: [i, key], message: message(v) });
      }
      seen.add(v);
    });
  };
}

/** Why `abs` cannot be used as an input file, or undefined. */
function fileProblem(abs: string, allowBlockDevice: boolean): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(abs);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "file not found";
    if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
    return `cannot stat (${(e as Error).message})`;
  }
  if (info.isDirectory) return "is a directory, expected a file";
  if (info.isFile || (allowBlockDevice && info.isBlockDevice)) return undefined;
  return allowBlockDevice ? "not a file or block device" : "not a regular file";
}

/** Is a device plugin spec a module path (not a built-in name or URL)? */
export function isPluginPath(spec: string): boolean {
  return !isPluginUrl(spec) &&
    (spec.includes("/") || /\.(ts|js|mjs|tsx|jsx)$/.test(spec));
}

/** Is a device plugin spec a URL (`file:`, `https:`, `data:`, ...)? */
export function isPluginUrl(spec: string): boolean {
  return /^[a-z][a-z0-9+.-]+:/i.test(spec);
}

/** Why `mac` is not a usable guest MAC, or undefined. */
function macProblem(mac: string): string | undefined {
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) return `expected a unicast MAC (first octet even), got ${show(mac)}`;
  if (/^00(:00){5}$/.test(mac)) return `expected a non-zero MAC, got ${show(mac)}`;
  return undefined;
}
