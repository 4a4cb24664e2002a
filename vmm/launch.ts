/**
 * Launch a Linux guest: resolve the kernel and initrd (dvmm's default Debian
 * kernel and generated initramfs when none are given), load device plugins,
 * build the {@linkcode Machine}, wire the serial console to the host, and run
 * it to the end. `dvmm run`, `dvmm demo` and the TypeScript API all come
 * through here.
 *
 * @module
 */

// What only some launches need (the default guest, device plugins, the control socket) is
// imported when needed: a launch pays its start-up time only for what it uses.
import type { DeviceRegistry } from "../devices/registry.ts";
import { consoleLogger, type Logger } from "../devices/logger.ts";
import { Machine, type MachineDevice, type MachineExit } from "./machine.ts";
import { OutputBatcher, pumpStdin } from "./host_console.ts";
import type { VmConfig } from "./config.ts";
import { UsageError } from "./cli_errors.ts";
import {
  type CachedVmlinux,
  cachedVmlinux,
  type FileBytes,
  readFileWithIdentity,
} from "../guest/vmlinux.ts";
import { BzImageError, parseBzImage } from "../x86/bzimage.ts";
import type { LoadableBytes } from "../x86/loader.ts";
import { LoadError } from "../x86/loader.ts";
import { startupMark } from "./startup_trace.ts";

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
  /**
   * An unusable file named by the user.
   * @param message what is wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "LaunchError";
  }
}

/**
 * Read (map) a file the user named, with a one-line error naming the flag;
 * with the file's identity (for the kernel cache, see guest/vmlinux.ts). Call
 * `close` when its bytes are no longer used.
 */
export async function readUserFile(path: string, what: string): Promise<FileBytes> {
  try {
    return await readFileWithIdentity(path);
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

/** The kernel and initrd to boot, defaults applied. */
export interface GuestFiles {
  /** bzImage bytes. */
  kernel: Uint8Array;
  /** The kernel file's identity, when read from a file (guest/vmlinux.ts `fileIdentity`). */
  kernelIdentity?: string;
  /** initramfs bytes (and how to read them straight into guest memory). */
  initrd?: LoadableBytes;
  /** Release the bytes (they are mapped files): once the machine that loaded them has ended. */
  close(): void;
}

/** The kernel and initrd bytes to boot, defaults applied. */
export async function resolveGuest(
  opts: Pick<LaunchOptions, "kernel" | "initrd">,
): Promise<GuestFiles> {
  let kernelPath = opts.kernel, initrdPath = opts.initrd;
  if (!kernelPath) {
    const { ensureKernel } = await import("../guest/debian_kernel.ts");
    const { ensureGuestInitramfs } = await import("../guest/initramfs.ts");
    const assets = await ensureKernel();
    kernelPath = assets.vmlinuz;
    initrdPath ??= await ensureGuestInitramfs({ kernel: assets });
  }
  const kernel = await readUserFile(kernelPath, "kernel");
  let initrd: FileBytes | undefined;
  try {
    initrd = initrdPath ? await readUserFile(initrdPath, "initrd") : undefined;
  } catch (e) {
    kernel.close();
    throw e;
  }
  return {
    kernel: kernel.bytes,
    kernelIdentity: kernel.identity,
    initrd,
    close() {
      kernel.close();
      initrd?.close();
    },
  };
}

/** A device registry with the built-in plugins registered (loaded on first use). */
export async function builtinRegistry(): Promise<DeviceRegistry> {
  const { DeviceRegistry } = await import("../devices/registry.ts");
  const { registerBuiltinDevices } = await import("../devices/builtin.ts");
  return registerBuiltinDevices(new DeviceRegistry());
}

/**
 * Load the device plugins named in `specs` through `registry` (default
 * {@linkcode builtinRegistry}): user plugins sandboxed unless `trusted`. Call
 * `registry.close()` when the machine ends (it terminates the sandbox workers).
 */
export async function loadDevices(
  specs: LaunchOptions["devices"],
  registry?: DeviceRegistry,
  sandbox: { read?: string[]; log?: Logger } = {},
): Promise<MachineDevice[]> {
  if (!specs?.length) return [];
  registry ??= await builtinRegistry();
  const out: MachineDevice[] = [];
  for (const d of specs) {
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
  startupMark("guest files read");
  try {
    const machine = await createMachineFrom(guest, opts, serialOutput, log);
    // The guest files are mapped: views into them (machine.boot.image) live as long as it runs.
    machine.exited.finally(() => guest.close());
    return machine;
  } catch (e) {
    guest.close();
    throw e;
  }
}

async function createMachineFrom(
  guest: GuestFiles,
  opts: LaunchOptions,
  serialOutput: (bytes: Uint8Array) => void,
  log: Logger,
): Promise<Machine> {
  // Say what is wrong with the kernel before anything else (even before opening /dev/kvm).
  try {
    parseBzImage(guest.kernel);
  } catch (e) {
    if (e instanceof BzImageError) {
      throw new LaunchError(`kernel ${opts.kernel ?? ""}: ${e.message}`);
    }
    throw e;
  }
  const vmlinux = opts.kernelCache === false ? undefined : await vmlinuxOf(guest, log);
  startupMark("kernel resolved");
  const registry = opts.devices?.length ? await builtinRegistry() : undefined;
  try {
    const devices = await loadDevices(opts.devices, registry, { read: opts.pluginRead, log });
    const machine = await Machine.create({
      kernel: guest.kernel,
      vmlinux: vmlinux && { bytes: vmlinux.elf, readInto: vmlinux.readInto },
      initrd: guest.initrd,
      cmdline: opts.cmdline ?? "",
      memory: opts.memory,
      cpus: opts.cpus,
      devices,
      serialOutput,
      log,
    });
    startupMark("machine built");
    machine.exited.finally(() => registry?.close());
    return machine;
  } catch (e) {
    registry?.close();
    if (e instanceof LoadError) throw new LaunchError(e.message);
    throw e;
  } finally {
    vmlinux?.close(); // copied into guest memory (or never needed)
  }
}

/** The cached vmlinux of a bzImage; undefined (boot the bzImage itself) when it cannot be had. */
async function vmlinuxOf(guest: GuestFiles, log: Logger): Promise<CachedVmlinux | undefined> {
  try {
    const cached = await cachedVmlinux(guest.kernel, { identity: guest.kernelIdentity });
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

/** Open the control socket of `machine` at `path`. */
async function openApi(machine: Machine, name: string, path: string) {
  const { openControlSocket } = await import("./control_socket.ts");
  const { machineControlTarget } = await import("./vm_control.ts");
  return await openControlSocket({ name, path, target: machineControlTarget(machine, name) });
}

/**
 * Run a guest on the host terminal until it ends, with its control socket
 * open (unless disabled) while it runs.
 */
export async function runOnTerminal(config: VmConfig): Promise<MachineExit> {
  const out = new OutputBatcher();
  const machine = await createMachine(launchOptionsFromConfig(config), (b) => out.push(b));
  const api = config.api.enabled && config.api.socket
    ? await openApi(machine, config.name, config.api.socket).catch(async (e) => {
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
  const describe = () => {
    const report = `${machine.describe()}\nhost ${input.describe()}`;
    console.error(`\r\n${report.replaceAll("\n", "\r\n")}\r`);
  };
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
