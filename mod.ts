/**
 * dvmm's public TypeScript API for scripting launches: start VMs from the
 * same config schema as the CLI, script their consoles, pause, resume and
 * stop them, read their counters. (Device plugins import the plugin contract
 * from `devices/pci_device.ts`; see docs/plugins.md.)
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

import "./vmm/zod_jitless.ts"; // before any schema is built

export { startVm, type StartVmOptions, Vm, type VmExit } from "./vmm/api.ts";
export {
  ConfigError,
  type DescribePath,
  parseVmConfig,
  type ParseVmConfigOptions,
  type PluginOptionValue,
  type VmConfig,
  type VmConfigInput,
  type VmSchemaOptions,
} from "./vmm/config.ts";
export { UsageError } from "./vmm/cli_errors.ts";
export {
  ConsoleClosedError,
  ConsoleTimeoutError,
  GuestConsole,
  type RunResult,
} from "./vmm/guest_console.ts";
export type {
  VcpuStats,
  VmBarInfo,
  VmDeviceInfo,
  VmInfo,
  VmState,
  VmStats,
} from "./vmm/control_api.ts";
export { EXIT_STATUS, type MachineExitReason } from "./vmm/machine.ts";
export type { Logger } from "./devices/logger.ts";
