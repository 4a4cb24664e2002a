/**
 * The scripting API: start a VM from the same config schema as the CLI and
 * config files, talk to its console, pause, resume and stop it, read its
 * counters, and learn how it ended. `await using` stops it on scope exit.
 *
 * @example
 * ```ts
 * import { startVm } from "./mod.ts";
 * await using vm = await startVm({ memory: "256M", cpus: 2 });
 * await vm.console.waitFor("# ");
 * const { output } = await vm.console.run("uname -r");
 * console.log(output, vm.stats());
 * ```
 *
 * @module
 */

import { parseVmConfig, type VmConfig, type VmConfigInput } from "./config.ts";
import { createMachine, launchOptionsFromConfig } from "./launch.ts";
import { GuestConsole } from "./guest_console.ts";
import type { Machine, MachineExitReason } from "./machine.ts";
import { type ControlSocket, openControlSocket } from "./control_socket.ts";
import { machineControlTarget } from "./vm_control.ts";
import type { VmInfo, VmStats } from "./control_api.ts";
import { type Logger, nullLogger } from "../devices/logger.ts";

/** How a VM started with {@linkcode startVm} ended. */
export interface VmExit {
  /** Process-style status (0 poweroff/stopped, 3 reboot, 4 panic, 5 triple fault, 1 error). */
  status: number;
  /** Why. */
  reason: MachineExitReason;
  /** One line. */
  message: string;
}

/** Options that are not part of the VM config. */
export interface StartVmOptions {
  /** Also receives every byte the guest prints (e.g. to mirror it to stdout). */
  onOutput?: (bytes: Uint8Array) => void;
  /** VMM log (default: silent). */
  log?: Logger;
}

/** A running VM. */
export class Vm implements AsyncDisposable {
  /** The guest's serial console. */
  readonly console: GuestConsole;
  /** Resolves when the VM has ended. */
  readonly exited: Promise<VmExit>;

  readonly #machine: Machine;

  /** @internal use {@linkcode startVm} */
  constructor(
    readonly config: VmConfig,
    machine: Machine,
    console: GuestConsole,
    socket: ControlSocket | undefined,
  ) {
    this.#machine = machine;
    this.console = console;
    this.exited = machine.exited.then(async (e) => {
      await socket?.close();
      return { status: e.status, reason: e.reason, message: e.message };
    });
  }

  /** The VM's name (its control socket is named after it). */
  get name(): string {
    return this.config.name;
  }

  /** State, vCPUs, memory, devices with their current BARs. */
  info(): VmInfo {
    return machineControlTarget(this.#machine, this.name).info();
  }

  /** Exits by kind per vCPU, and uptime. */
  stats(): VmStats {
    return machineControlTarget(this.#machine, this.name).stats();
  }

  /** Stop the vCPUs (they leave guest mode and are held). */
  pause(): Promise<void> {
    return this.#machine.pause();
  }

  /** Let paused vCPUs run again. */
  resume(): Promise<void> {
    this.#machine.resume();
    return Promise.resolve();
  }

  /** Ask the guest to power off (ACPI power button). */
  shutdown(): void {
    this.#machine.requestShutdown();
  }

  /** End the VM now; resolves with how it ended. */
  async stop(): Promise<VmExit> {
    await this.#machine.stop("stopped by the API");
    return await this.exited;
  }

  /** `await using` support: stop the VM if it still runs. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#machine.state !== "stopped") await this.stop();
    else await this.exited;
  }
}

/**
 * Validate `input` with the VM config schema (the same one as `dvmm run` and
 * config files; field errors name the field), build the machine and start it.
 */
export async function startVm(input: VmConfigInput, options: StartVmOptions = {}): Promise<Vm> {
  const config = parseVmConfig(input, "startVm");
  // The console needs the machine to send input, the machine the console to feed output.
  const late: { machine?: Machine } = {};
  const console = new GuestConsole((b) => late.machine?.sendInput(b) ?? 0);
  const machine = await createMachine(launchOptionsFromConfig(config), (bytes) => {
    options.onOutput?.(bytes);
    console.feed(bytes);
  }, options.log ?? nullLogger);
  late.machine = machine;
  console.follow(machine); // stall report in timeouts; its end fails waits at once
  let socket: ControlSocket | undefined;
  if (config.api.enabled && config.api.socket) {
    try {
      socket = await openControlSocket({
        name: config.name,
        path: config.api.socket,
        target: machineControlTarget(machine, config.name),
      });
    } catch (e) {
      await machine.stop();
      throw e;
    }
  }
  machine.start();
  return new Vm(config, machine, console, socket);
}
