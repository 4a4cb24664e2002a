/**
 * Launch a Linux guest: resolve the kernel and initrd (dvmm's default Debian
 * kernel and generated initramfs when none are given), load device plugins,
 * build the {@linkcode Machine}, wire the serial console to the host, and run
 * it to the end. `dvmm run`, `dvmm demo` and the TypeScript API all come
 * through here.
 *
 * @module
 */

import { DeviceRegistry } from "../devices/registry.ts";
import { consoleLogger, type Logger } from "../devices/logger.ts";
import { ensureKernel } from "../guest/debian_kernel.ts";
import { ensureGuestInitramfs } from "../guest/initramfs.ts";
import { Machine, type MachineDevice, type MachineExit } from "./machine.ts";
import { OutputBatcher, pumpStdin } from "./host_console.ts";
import { registerBuiltinDevices } from "../devices/builtin.ts";

/** What to boot. */
export interface LaunchOptions {
  /** bzImage path; absent: dvmm's default Debian kernel. */
  kernel?: string;
  /** initramfs path; absent with no kernel: dvmm's default initramfs. */
  initrd?: string;
  /** Extra kernel command line. */
  cmdline?: string;
  /** Guest RAM in bytes. */
  memory: number;
  /** vCPUs. */
  cpus: number;
  /**
   * Device plugins: a built-in name or a path/URL, with options. User plugins
   * run sandboxed (devices/sandbox/) unless `trusted` (then in-process, with
   * the VMM's permissions).
   */
  devices?: { plugin: string; options?: Record<string, unknown>; trusted?: boolean }[];
  /** Extra paths sandboxed plugins may read (their own module file is always readable). */
  pluginRead?: string[];
  /** Verbose VMM log on stderr. */
  debug?: boolean;
}

/** A file the user named could not be read: one clear line. */
export class LaunchError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "LaunchError";
  }
}

/** Read a file the user named, with a one-line error naming the flag. */
export async function readUserFile(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new LaunchError(`${what}: file not found: ${path}`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new LaunchError(`${what}: permission denied: ${path}`);
    }
    if (e instanceof Deno.errors.IsADirectory) {
      throw new LaunchError(`${what}: is a directory: ${path}`);
    }
    throw new LaunchError(`${what}: cannot read ${path}: ${e instanceof Error ? e.message : e}`);
  }
}

/** The kernel and initrd bytes to boot, defaults applied. */
export async function resolveGuest(
  opts: Pick<LaunchOptions, "kernel" | "initrd">,
): Promise<{ kernel: Uint8Array; initrd?: Uint8Array }> {
  if (opts.kernel) {
    return {
      kernel: await readUserFile(opts.kernel, "kernel"),
      initrd: opts.initrd ? await readUserFile(opts.initrd, "initrd") : undefined,
    };
  }
  const assets = await ensureKernel();
  const initrd = opts.initrd ?? await ensureGuestInitramfs({ kernel: assets });
  return {
    kernel: await readUserFile(assets.vmlinuz, "kernel"),
    initrd: await readUserFile(initrd, "initrd"),
  };
}

/**
 * Load the device plugins named in `specs` through a registry with the
 * built-ins: user plugins sandboxed unless `trusted`. Call `registry.close()`
 * when the machine ends (it terminates the sandbox workers).
 */
export async function loadDevices(
  specs: LaunchOptions["devices"],
  registry: DeviceRegistry = registerBuiltinDevices(new DeviceRegistry()),
  sandbox: { read?: string[]; log?: Logger } = {},
): Promise<MachineDevice[]> {
  const out: MachineDevice[] = [];
  for (const d of specs ?? []) {
    const p = d.trusted
      ? await registry.load(d.plugin)
      : await registry.loadSandboxed(d.plugin, sandbox);
    out.push({ definition: p.definition, options: d.options ?? {}, source: d.plugin });
  }
  return out;
}

/** Build the machine for `opts`, its serial console going to `serialOutput`. */
export async function createMachine(
  opts: LaunchOptions,
  serialOutput: (bytes: Uint8Array) => void,
  log: Logger = consoleLogger(opts.debug ?? false),
): Promise<Machine> {
  const guest = await resolveGuest(opts);
  const registry = registerBuiltinDevices(new DeviceRegistry());
  try {
    const devices = await loadDevices(opts.devices, registry, { read: opts.pluginRead, log });
    const machine = await Machine.create({
      kernel: guest.kernel,
      initrd: guest.initrd,
      cmdline: opts.cmdline ?? "",
      memory: opts.memory,
      cpus: opts.cpus,
      devices,
      serialOutput,
      log,
    });
    machine.exited.finally(() => registry.close());
    return machine;
  } catch (e) {
    registry.close();
    throw e;
  }
}

/** Run a guest on the host terminal until it ends. */
export async function runOnTerminal(opts: LaunchOptions): Promise<MachineExit> {
  const out = new OutputBatcher();
  const machine = await createMachine(opts, (b) => out.push(b));
  machine.start();
  const input = pumpStdin((b) => machine.sendInput(b), () => machine.stop("quit with Ctrl-A x"));
  const stopOnSignal = () => machine.stop("stopped by a signal");
  Deno.addSignalListener("SIGINT", stopOnSignal);
  Deno.addSignalListener("SIGTERM", stopOnSignal);
  try {
    return await machine.exited;
  } finally {
    out.flush();
    input.stop();
    Deno.removeSignalListener("SIGINT", stopOnSignal);
    Deno.removeSignalListener("SIGTERM", stopOnSignal);
  }
}
