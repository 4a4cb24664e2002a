/**
 * The host bridge at 00:00.0 that lets a guest find PCI bus 0. It has the
 * identity of the Q35 chipset's DRAM controller (8086:29c0, class 0x0600)
 * and no BARs and no interrupt.
 *
 * @module
 */

import { definePciDevice, type PciDeviceDefinition } from "../devices/pci_device.ts";

/** Host bridge vendor ID (Intel). */
export const HOST_BRIDGE_VENDOR_ID = 0x8086;
/** Host bridge device ID (Q35 / ICH9 MCH). */
export const HOST_BRIDGE_DEVICE_ID = 0x29c0;
/** Class code: bridge (0x06), host bridge (0x00). */
export const HOST_BRIDGE_CLASS = 0x06_00_00;

/** The host bridge definition (no BARs, no options, no behaviour). */
export const hostBridge: PciDeviceDefinition<Record<string, never>> = definePciDevice({
  name: "host-bridge",
  description: "PCI host bridge (Q35 MCH identity)",
  vendorId: HOST_BRIDGE_VENDOR_ID,
  deviceId: HOST_BRIDGE_DEVICE_ID,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  classCode: HOST_BRIDGE_CLASS,
  bars: [],
  create: () => ({}),
});
