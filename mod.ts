/**
 * dvmm's public TypeScript API.
 *
 * @example Boot the default guest and run a command in it
 * ```ts
 * import { startVm } from "./mod.ts";
 * await using vm = await startVm({ memory: "256M", cpus: 2 });
 * await vm.console.waitFor("# ");
 * const { output, status } = await vm.console.run("uname -r");
 * console.log(output, status, vm.stats());
 * ```
 *
 * @module
 */

export { startVm, type StartVmOptions, Vm, type VmExit } from "./vmm/api.ts";
export { ConfigError, parseVmConfig, type VmConfig, type VmConfigInput } from "./vmm/config.ts";
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
