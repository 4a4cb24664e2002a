/**
 * dvmm's public TypeScript API.
 *
 * @example Boot the default guest and run a command in it
 * ```ts
 * import { createMachine, GuestConsole } from "./mod.ts";
 * let console: GuestConsole | undefined;
 * const vm = await createMachine({ memory: 256 << 20, cpus: 1 }, (b) => console?.feed(b));
 * console = new GuestConsole((b) => vm.sendInput(b));
 * vm.start();
 * await console.waitFor(/# $/m);
 * console.log((await console.run("uname -r")).output);
 * ```
 *
 * @module
 */

export { createMachine, type LaunchOptions, runOnTerminal } from "./vmm/launch.ts";
export {
  DEFAULT_CMDLINE,
  EXIT_STATUS,
  Machine,
  type MachineConfig,
  type MachineExit,
} from "./vmm/machine.ts";
export { GuestConsole, type RunResult } from "./vmm/guest_console.ts";
export {
  definePciDevice,
  type PciDeviceContext,
  type PciDeviceDefinition,
} from "./devices/pci_device.ts";
export { Bus, type BusDevice } from "./devices/bus.ts";
export { GuestMemory, GuestMemoryError } from "./kvm/guest_memory.ts";
