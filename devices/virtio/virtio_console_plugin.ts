/**
 * The built-in `virtio-console` plugin: a single-port virtio console (the
 * guest's /dev/hvc0) whose output goes to the machine's host console (the
 * same place as the serial console's output). Host input is not connected yet.
 *
 * @module
 */

import { VIRTIO_CONSOLE_CONFIG_SIZE, VirtioConsole } from "./console.ts";
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
  createDevice: ({ hostConsole }) => new VirtioConsole({ output: (b) => hostConsole.write(b) }),
});
