/**
 * The device plugins that ship with dvmm, registered by name.
 *
 * @module
 */

import type { DeviceRegistry } from "./registry.ts";
import copyEngine from "../examples/copy_engine.ts";
import registerFile from "../examples/register_file.ts";
import virtioBlk from "./virtio/virtio_blk_plugin.ts";
import virtioConsole from "./virtio/virtio_console_plugin.ts";
import virtioNet from "./virtio/virtio_net_plugin.ts";
import virtioRng from "./virtio/virtio_rng_plugin.ts";

/** Register every built-in plugin on `registry` and return it. */
export function registerBuiltinDevices(registry: DeviceRegistry): DeviceRegistry {
  registry.registerBuiltin(registerFile);
  registry.registerBuiltin(copyEngine);
  registry.registerBuiltin(virtioBlk);
  registry.registerBuiltin(virtioRng);
  registry.registerBuiltin(virtioConsole);
  registry.registerBuiltin(virtioNet);
  return registry;
}
