/**
 * The VM flags of `dvmm run`: adding them to a commander command, and turning
 * the parsed values (and a `--config` file) into a validated {@linkcode VmConfig}
 * through the one schema in config.ts.
 *
 * A flag given together with `--config` replaces that field of the file; a
 * repeatable flag (`--disk`, `--net`, `--device`) replaces the file's whole list.
 * Errors name the flag (`--cpus: expected an integer from 1 to 64, got 1000`) or
 * the file's field (`vm.json: cpus: ...`), one line each.
 *
 * @module
 */

import { resolve } from "node:path";
import {
  type Command,
  CommanderError,
  Option,
  type OptionValues,
} from "@commander-js/extra-typings";
import {
  ConfigError,
  CONSOLE_KINDS,
  describeFieldPath,
  formatFieldPath,
  isPluginPath,
  parseVmConfig,
  type VmConfig,
} from "./config.ts";
import { readConfigFile } from "./config_file.ts";
import { UsageError } from "./cli_errors.ts";

/** The values commander parses for the VM flags (undefined: flag not given). */
export interface VmFlagValues {
  /** `--config FILE`. */
  config?: string;
  /** `--kernel PATH`. */
  kernel?: string;
  /** `--initrd PATH`. */
  initrd?: string;
  /** `--cmdline ARGS`. */
  cmdline?: string;
  /** `--memory SIZE`. */
  memory?: string;
  /** `--mem SIZE` (alias of --memory). */
  mem?: string;
  /** `--cpus N`. */
  cpus?: string;
  /** `--console KIND`. */
  console?: string;
  /** `--disk PATH[,ro]`, repeatable. */
  disk?: string[];
  /** `--net tap=NAME[,mac=MAC]`, repeatable. */
  net?: string[];
  /** `--rng`. */
  rng?: true;
  /** `--device PLUGIN[,key=value...]`, repeatable. */
  device?: string[];
  /** `--name NAME`. */
  name?: string;
  /** `--api-socket PATH`. */
  apiSocket?: string;
  /** false with `--no-api` (commander's default for a lone `--no-` flag is true). */
  api?: boolean;
  /** false with `--no-kernel-cache`. */
  kernelCache?: boolean;
  /** `--debug`. */
  debug?: true;
}

/** Extra text for `dvmm run --help`. */
export const VM_FLAGS_HELP: string = `
Config file:
  --config vm.json reads VM settings from a JSON file (schema: docs/vm.schema.json;
  paths in it are relative to the file). Flags given as well override the file's
  fields; --disk, --net and --device replace the file's whole list.

Examples:
  dvmm run --mem 1G --cpus 2 --disk rootfs.img --disk data.img,ro
  dvmm run --config vm.json --cpus 4 --name web --net tap=tap0,mac=52:54:00:12:34:56`;

/**
 * Add the VM flags to `cmd` (for `dvmm run`), with {@linkcode VM_FLAGS_HELP}
 * after the option list. Returns `cmd`, typed with the new options.
 */
export function addVmFlags<
  Args extends unknown[],
  Opts extends OptionValues,
  G extends OptionValues,
>(
  cmd: Command<Args, Opts, G>,
): Command<Args, Opts & VmFlagValues, G> {
  const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];
  cmd
    .addOption(
      new Option("--config <file>", "read VM settings from a JSON file; flags override it"),
    )
    .addOption(new Option("--kernel <path>", "kernel bzImage (default: dvmm's Debian kernel)"))
    .addOption(new Option("--initrd <path>", "initramfs (default with no --kernel: dvmm's)"))
    .addOption(new Option("--cmdline <args>", "extra kernel command-line arguments"))
    .addOption(new Option("--memory <size>", "guest RAM, e.g. 512M or 2G (default 512M)"))
    .addOption(new Option("--mem <size>", "same as --memory"))
    .addOption(new Option("--cpus <n>", "number of vCPUs, 1-64 (default 1)"))
    .addOption(
      new Option(
        "--console <kind>",
        `guest console: ${CONSOLE_KINDS.join(" or ")} (default serial)`,
      ),
    )
    .addOption(
      new Option("--disk <path[,ro]>", "attach a disk image, read-only with ,ro (repeatable)")
        .argParser(collect),
    )
    .addOption(
      new Option("--net <tap=NAME[,mac=MAC]>", "add a network interface on a host tap (repeatable)")
        .argParser(collect),
    )
    .addOption(new Option("--rng", "add a virtio-rng device"))
    .addOption(
      new Option("--device <plugin[,key=value...]>", "add a PCI device plugin (repeatable)")
        .argParser(collect),
    )
    .addOption(new Option("--name <name>", "VM name, names the control socket (default vm-PID-N)"))
    .addOption(new Option("--api-socket <path>", "control socket path (default: see dvmm list)"))
    .addOption(new Option("--no-api", "do not open the control socket"))
    .addOption(
      new Option("--no-kernel-cache", "boot a bzImage as it is (guest decompresses it; KASLR)"),
    )
    .addOption(new Option("--debug", "verbose VMM logging"))
    .addHelpText("after", VM_FLAGS_HELP);
  return cmd as unknown as Command<Args, Opts & VmFlagValues, G>;
}

/**
 * The validated config for the parsed flags: the `--config` file's fields
 * (relative paths against the file's directory) overridden by the flags given
 * (relative paths against `cwd`). Throws {@linkcode ConfigError} naming the flag or field.
 */
export function vmConfigFromFlags(flags: VmFlagValues, cwd: string = Deno.cwd()): VmConfig {
  const { input, problems, origins } = flagsToInput(flags, cwd);
  let base: Record<string, unknown> | undefined;
  let source = "flags";
  let baseDir = cwd;
  let fileData: unknown = {};
  if (flags.config !== undefined) {
    const file = readConfigFile(flags.config, cwd);
    source = file.source;
    baseDir = file.baseDir;
    fileData = file.data;
    if (isRecord(file.data)) base = file.data;
  }
  if (problems.length) throw new ConfigError("flags", problems);
  // A file that is not a JSON object is reported by the schema, unless flags would hide it.
  const merged = base ? mergeInput(base, input) : flags.config !== undefined ? fileData : input;
  const describePath = (path: readonly PropertyKey[]) => {
    const origin = originOf(origins, path);
    if (origin) return origin;
    return describeFieldPath(flags.config !== undefined ? source : "config", path);
  };
  return parseVmConfig(merged, source, { baseDir, describePath });
}

/**
 * The exit status for an error out of commander or config parsing: 0 for
 * `--help`/`--version`, 2 for usage errors (unknown flag, bad value, bad
 * config), undefined for anything else. Use with `cmd.exitOverride()`.
 */
export function usageExitCode(error: unknown): number | undefined {
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
  if (error instanceof UsageError) return 2;
  return undefined;
}

/** Flags as schema input, syntax problems of the flag values, and which flag set which field. */
interface FlagInput {
  readonly input: Record<string, unknown>;
  readonly problems: string[];
  /** Top-level field (or `api.socket`/`api.enabled`) -> label per item or for the field. */
  readonly origins: Map<string, string | string[]>;
}

function flagsToInput(flags: VmFlagValues, cwd: string): FlagInput {
  const input: Record<string, unknown> = {};
  const problems: string[] = [];
  const origins = new Map<string, string | string[]>();
  const abs = (p: string) => (p === "" ? p : resolve(cwd, p));
  const set = (field: string, flag: string, value: unknown) => {
    input[field] = value;
    origins.set(field, flag);
  };

  if (flags.kernel !== undefined) set("kernel", "--kernel", abs(flags.kernel));
  if (flags.initrd !== undefined) set("initrd", "--initrd", abs(flags.initrd));
  if (flags.cmdline !== undefined) set("cmdline", "--cmdline", flags.cmdline);
  if (flags.memory !== undefined && flags.mem !== undefined && flags.memory !== flags.mem) {
    problems.push(`--mem: conflicts with --memory ${flags.memory} (give one)`);
  }
  if (flags.memory !== undefined) set("memory", "--memory", flags.memory);
  else if (flags.mem !== undefined) set("memory", "--mem", flags.mem);
  if (flags.cpus !== undefined) {
    set("cpus", "--cpus", /^\s*\d+\s*$/.test(flags.cpus) ? Number(flags.cpus) : flags.cpus);
  }
  if (flags.console !== undefined) set("console", "--console", flags.console);
  if (flags.rng) set("rng", "--rng", true);
  if (flags.name !== undefined) set("name", "--name", flags.name);
  if (flags.debug) set("debug", "--debug", true);
  if (flags.kernelCache === false) set("kernelCache", "--no-kernel-cache", false);

  if (flags.disk !== undefined) {
    input.disks = flags.disk.map((arg) => {
      const [path, ...opts] = arg.split(",");
      let readonly = false;
      for (const o of opts) {
        if (o === "ro" || o === "readonly") readonly = true;
        else if (o === "rw") readonly = false;
        else problems.push(`--disk ${arg}: unknown option "${o}" (expected ro or rw)`);
      }
      return { path: abs(path), readonly };
    });
    origins.set("disks", flags.disk.map((arg) => `--disk ${arg}`));
  }
  if (flags.net !== undefined) {
    input.nets = flags.net.map((arg) => {
      const net: Record<string, string> = {};
      for (const [i, part] of arg.split(",").entries()) {
        const eq = part.indexOf("=");
        const key = eq < 0 ? (i === 0 ? "tap" : part) : part.slice(0, eq);
        const value = eq < 0 ? (i === 0 ? part : "") : part.slice(eq + 1);
        if (key !== "tap" && key !== "mac") {
          problems.push(`--net ${arg}: unknown option "${key}" (expected tap=NAME or mac=MAC)`);
        } else net[key] = value;
      }
      return net;
    });
    origins.set("nets", flags.net.map((arg) => `--net ${arg}`));
  }
  if (flags.device !== undefined) {
    input.devices = flags.device.map((arg) => {
      const [spec, ...parts] = arg.split(",");
      const options: Record<string, string> = {};
      for (const part of parts) {
        const eq = part.indexOf("=");
        const key = (eq < 0 ? part : part.slice(0, eq)).trim();
        if (!key) problems.push(`--device ${arg}: bad option "${part}" (expected key=value)`);
        else options[key] = eq < 0 ? "true" : part.slice(eq + 1);
      }
      return { plugin: isPluginPath(spec) ? abs(spec) : spec.trim(), options };
    });
    origins.set("devices", flags.device.map((arg) => `--device ${arg}`));
  }
  if (flags.apiSocket !== undefined || flags.api === false) {
    const api: Record<string, unknown> = {};
    if (flags.apiSocket !== undefined) {
      api.socket = abs(flags.apiSocket);
      origins.set("api.socket", "--api-socket");
    }
    if (flags.api === false) {
      api.enabled = false;
      origins.set("api.enabled", "--no-api");
    }
    input.api = api;
  }
  return { input, problems, origins };
}

/** The file's fields, with each field given by a flag replaced (`api` merged key by key). */
function mergeInput(
  file: Record<string, unknown>,
  flags: Record<string, unknown>,
): Record<string, unknown> {
  const out = { ...file, ...flags };
  if (flags.api !== undefined && isRecord(file.api)) {
    out.api = { ...file.api, ...(flags.api as Record<string, unknown>) };
  }
  return out;
}

/** The flag that set the field at `path`, with the sub-field when it is not the item's main one. */
function originOf(
  origins: Map<string, string | string[]>,
  path: readonly PropertyKey[],
): string | undefined {
  const [top, index, ...rest] = path;
  if (top === "api" && typeof index === "string") {
    const o = origins.get(`api.${index}`);
    return typeof o === "string" ? o : undefined;
  }
  const origin = typeof top === "string" ? origins.get(top) : undefined;
  if (origin === undefined) return undefined;
  if (typeof origin === "string") return origin;
  if (typeof index !== "number" || index >= origin.length) return origin[0]?.split(" ")[0];
  const main = rest[0] === undefined || ["path", "tap", "plugin"].includes(String(rest[0]));
  return main ? origin[index] : `${origin[index]} (${formatFieldPath(rest)})`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
