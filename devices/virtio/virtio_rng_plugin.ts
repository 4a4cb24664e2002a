/**
 * The built-in `virtio-rng` plugin: an entropy source filled from the host's
 * CSPRNG (crypto.getRandomValues). No options.
 *
 * @module
 */

import { VirtioRng } from "./rng.ts";
import { VIRTIO_ID } from "./spec.ts";
import { defineVirtioPciDevice } from "./virtio_pci_plugin.ts";

/** PCI class of virtio-rng: unclassified, other. */
export const VIRTIO_RNG_CLASS = 0x00ff00;

/** The `virtio-rng` plugin. */
export default defineVirtioPciDevice({
  name: "virtio-rng",
  description: "virtio entropy source (host CSPRNG)",
  type: VIRTIO_ID.RNG,
  classCode: VIRTIO_RNG_CLASS,
  queues: 1,
  configSize: 0,
  createDevice: () => new VirtioRng(),
});
