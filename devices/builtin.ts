/**
 * The device plugins that ship with dvmm, registered by name.
 *
 * @module
 */

import type { DeviceRegistry } from "./registry.ts";
import registerFile from "../examples/register_file.ts";

/** Register every built-in plugin on `registry` and return it. */
export function registerBuiltinDevices(registry: DeviceRegistry): DeviceRegistry {
  registry.registerBuiltin(registerFile);
  return registry;
}
