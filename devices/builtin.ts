/**
 * The device plugins that ship with dvmm, registered by name. Each module is
 * imported when a VM first uses it (a VM without virtio devices does not load
 * the virtio stack).
 *
 * @module
 */

import type { DeviceRegistry } from "./registry.ts";

/** Register every built-in plugin on `registry` and return it. */
export function registerBuiltinDevices(registry: DeviceRegistry): DeviceRegistry {
  const builtins = {
    "register-file": async () => (await import("../examples/register_file.ts")).default,
    "copy-engine": async () => (await import("../examples/copy_engine.ts")).default,
    "virtio-blk": async () => (await import("./virtio/virtio_blk_plugin.ts")).default,
    "virtio-rng": async () => (await import("./virtio/virtio_rng_plugin.ts")).default,
    "virtio-console": async () => (await import("./virtio/virtio_console_plugin.ts")).default,
    "virtio-net": async () => (await import("./virtio/virtio_net_plugin.ts")).default,
  };
  for (const [name, load] of Object.entries(builtins)) registry.registerBuiltinLoader(name, load);
  return registry;
}
