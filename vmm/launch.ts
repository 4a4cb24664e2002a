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
import type { VmConfig } from "./config.ts";
import { UsageError } from "./cli_errors.ts";
import { type CachedVmlinux, cachedVmlinux } from "../guest/vmlinux.ts";
import { BzImageError, parseBzImage } from "../x86/bzimage.ts";
import { LoadError } from "../x86/loader.ts";
import { openControlSocket } from "./control_socket.ts";
import { machineControlTarget } from "./vm_control.ts";

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
  /**
   * Boot a bzImage through its decompressed vmlinux, kept in the dvmm cache
   * (default true): the guest skips decompressing itself, which costs seconds
   * under nested virtualization, but the decompressor's KASLR is lost. False
   * boots the bzImage as it is.
   */
  kernelCache?: boolean;
  /** Verbose VMM log on stderr. */
  debug?: boolean;
}

/** A file the user named could not be used: one clear line, exit status 2. */
export class LaunchError extends UsageError {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "LaunchError";
  }
}

/** Read a file the user named, with a one-line error naming the flag. */
export async function readUserFile(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readExactly(path);
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

/**
 * A file's bytes, read into a buffer of its size (about twice as fast as
 * `Deno.readFile`, which grows its buffer, for a kernel or an initrd).
 */
async function readExactly(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path);
  const { size, isFile } = await file.stat();
  if (!isFile) return await Deno.readFile(path); // a pipe or device: size unknown
  const bytes = new Uint8Array(size);
  let at = 0;
  while (at < size) {
    const n = await file.read(bytes.subarray(at));
    if (n === null) break;
    at += n;
  }
  return bytes.subarray(0, at);
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
  // Say what is wrong with the kernel before anything else (even before opening /dev/kvm).
  try {
    parseBzImage(guest.kernel);
  } catch (e) {
    if (e instanceof BzImageError) {
      throw new LaunchError(`kernel ${opts.kernel ?? ""}: ${e.message}`);
    }
    throw e;
  }
  const vmlinux = opts.kernelCache === false ? undefined : await vmlinuxOf(guest.kernel, log);
  const registry = registerBuiltinDevices(new DeviceRegistry());
  try {
    const devices = await loadDevices(opts.devices, registry, { read: opts.pluginRead, log });
    const machine = await Machine.create({
      kernel: guest.kernel,
      vmlinux: vmlinux?.elf,
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
    if (e instanceof LoadError) throw new LaunchError(e.message);
    throw e;
  } finally {
    vmlinux?.close(); // copied into guest memory (or never needed)
  }
}

/** The cached vmlinux of a bzImage; undefined (boot the bzImage itself) when it cannot be had. */
async function vmlinuxOf(kernel: Uint8Array, log: Logger): Promise<CachedVmlinux | undefined> {
  try {
    const cached = await cachedVmlinux(kernel);
    log.debug(
      cached ? `kernel: booting the vmlinux cached at ${cached.path}` : "kernel: no writable cache",
    );
    return cached;
  } catch (e) {
    log.debug(`kernel: booting the bzImage itself: ${e instanceof Error ? e.message : e}`);
    return undefined;
  }
}

/**
 * The launch for a validated {@linkcode VmConfig}: disks, rng, nets and the
 * virtio console become their built-in virtio plugins, after the user's devices.
 */
export function launchOptionsFromConfig(config: VmConfig): LaunchOptions {
  const devices: NonNullable<LaunchOptions["devices"]> = config.devices.map((d) => ({
    plugin: d.plugin,
    options: d.options,
  }));
  for (const disk of config.disks) {
    devices.push({ plugin: "virtio-blk", options: { path: disk.path, readonly: disk.readonly } });
  }
  if (config.rng) devices.push({ plugin: "virtio-rng", options: {} });
  for (const net of config.nets) {
    devices.push({
      plugin: "virtio-net",
      options: { tap: net.tap, ...(net.mac ? { mac: net.mac } : {}) },
    });
  }
  let cmdline = config.cmdline;
  if (config.console === "virtio") {
    devices.push({ plugin: "virtio-console", options: { input: true } });
    cmdline = `console=hvc0 ${cmdline}`.trim();
  }
  return {
    kernel: config.kernel,
    initrd: config.initrd,
    cmdline,
    memory: config.memory,
    cpus: config.cpus,
    devices,
    kernelCache: config.kernelCache,
    debug: config.debug,
  };
}

/**
 * Run a guest on the host terminal until it ends, with its control socket
 * open (unless disabled) while it runs.
 */
export async function runOnTerminal(config: VmConfig): Promise<MachineExit> {
  const out = new OutputBatcher();
  const machine = await createMachine(launchOptionsFromConfig(config), (b) => out.push(b));
  const api = config.api.enabled && config.api.socket
    ? await openControlSocket({
      name: config.name,
      path: config.api.socket,
      target: machineControlTarget(machine, config.name),
    }).catch(async (e) => {
      await machine.stop();
      throw e;
    })
    : undefined;
  machine.start();
  const input = pumpStdin((b) => machine.sendInput(b), () => machine.stop("quit with Ctrl-A x"));
  const stopOnSignal = () => machine.stop("stopped by a signal");
  Deno.addSignalListener("SIGINT", stopOnSignal);
  Deno.addSignalListener("SIGTERM", stopOnSignal);
  // `kill -USR1 <pid>`: report where the machine stands, on stderr, and go on.
  const describe = () => console.error(`\r\n${machine.describe().replaceAll("\n", "\r\n")}\r`);
  Deno.addSignalListener("SIGUSR1", describe);
  try {
    return await machine.exited;
  } finally {
    out.flush();
    input.stop();
    await api?.close();
    Deno.removeSignalListener("SIGINT", stopOnSignal);
    Deno.removeSignalListener("SIGTERM", stopOnSignal);
    Deno.removeSignalListener("SIGUSR1", describe);
  }
}
