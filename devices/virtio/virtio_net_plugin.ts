/**
 * The built-in `virtio-net` plugin: a virtio network interface whose frames go
 * through a host TAP interface. Options: `tap` (the interface name, created
 * if absent and permitted) and `mac` (the guest's address; default
 * 52:54:00:xx:xx:xx derived from the TAP name, so it is stable across runs).
 *
 * ```sh
 * dvmm run --net tap=dvmm0            # or: --device virtio-net,tap=dvmm0,mac=52:54:00:12:34:56
 * ```
 *
 * @module
 */

import { z } from "zod";
import { defaultMac, formatMac, parseMac, VIRTIO_NET_CONFIG_SIZE, VirtioNet } from "./net.ts";
import { VIRTIO_ID } from "./spec.ts";
import { Tap, TAP_NAME_PATTERN } from "./tap.ts";
import { defineVirtioPciDevice } from "./virtio_pci_plugin.ts";

/** PCI class of a virtio NIC: network controller, Ethernet. */
export const VIRTIO_NET_CLASS = 0x020000;

/** Unicast, non-zero MAC addresses written as six hex octets. */
const macOption = z.string()
  .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, "expected a MAC address like 52:54:00:12:34:56")
  .refine(
    (v) => (parseInt(v.slice(0, 2), 16) & 1) === 0,
    "expected a unicast MAC (first octet even)",
  )
  .refine((v) => !/^00(:00){5}$/.test(v), "expected a non-zero MAC");

/** The `virtio-net` plugin. */
export default defineVirtioPciDevice({
  name: "virtio-net",
  description: "virtio network interface on a host TAP",
  type: VIRTIO_ID.NET,
  classCode: VIRTIO_NET_CLASS,
  queues: 2,
  configSize: VIRTIO_NET_CONFIG_SIZE,
  options: z.object({
    tap: z.string().regex(TAP_NAME_PATTERN, "expected a TAP name (1-15 of A-Z a-z 0-9 _ . -)")
      .describe("host TAP interface (created if absent and permitted)"),
    mac: macOption.optional().describe(
      "guest MAC address (default 52:54:00:xx:xx:xx from the TAP name)",
    ),
  }),
  createDevice({ options, log }) {
    const tap = Tap.open(options.tap, { log });
    const mac = options.mac ? parseMac(options.mac) : defaultMac(options.tap);
    log.info(`virtio-net: tap ${tap.name}, mac ${formatMac(mac)}`);
    return new VirtioNet(tap, { mac });
  },
});
