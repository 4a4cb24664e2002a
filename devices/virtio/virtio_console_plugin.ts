/**
 * The built-in `virtio-console` plugin: a single-port virtio console (the
 * guest's /dev/hvc0) whose output goes to the machine's host console (the
 * same place as the serial console's output). With `input=on` it also takes
 * the host console's input (what the user types, otherwise given to the
 * serial port): use it when hvc0 is the guest's console (`console=hvc0`, as
 * `dvmm run --console virtio` sets up).
 *
 * @module
 */

import { z } from "zod";
import { VIRTIO_CONSOLE_CONFIG_SIZE, VirtioConsole } from "./console.ts";
import { booleanOption } from "./plugin_options.ts";
import { VIRTIO_ID } from "./spec.ts";
import { defineVirtioPciDevice } from "./virtio_pci_plugin.ts";

/** PCI class of virtio-console: communication controller, other. */
export const VIRTIO_CONSOLE_CLASS = 0x078000;

/** The `virtio-console` plugin. */
export default defineVirtioPciDevice({
  name: "virtio-console",
  description: "virtio console (hvc0) on the host console",
  type: VIRTIO_ID.CONSOLE,
  classCode: VIRTIO_CONSOLE_CLASS,
  queues: 2,
  configSize: VIRTIO_CONSOLE_CONFIG_SIZE,
  options: z.object({
    input: booleanOption().default(false).describe(
      "take the host console's input instead of the serial port (default false)",
    ),
  }),
  createDevice: ({ hostConsole, options, log }) => {
    const device = new VirtioConsole({ output: (b) => hostConsole.write(b) });
    if (options.input) {
      if (hostConsole.takeInput) hostConsole.takeInput((b) => device.input(b));
      else log.warn("virtio-console: this host gives no console input; input=on ignored");
    }
    return device;
  },
});
