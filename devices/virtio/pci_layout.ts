/**
 * Layouts of the virtio-pci modern transport (virtio 1.2 §4.1.4): the
 * vendor-specific capabilities that point into a BAR, the common
 * configuration structure, and dvmm's placement of the four structures in
 * one memory BAR.
 *
 * @module
 */

import type { PciCapabilitySpec } from "../pci_device.ts";
import type { Field } from "./spec.ts";

/** `cfg_type` of a virtio PCI capability. */
export const VIRTIO_PCI_CAP_TYPE = {
  COMMON_CFG: 1,
  NOTIFY_CFG: 2,
  ISR_CFG: 3,
  DEVICE_CFG: 4,
  PCI_CFG: 5,
} as const;

/** Capability ID of a vendor-specific capability (what virtio uses). */
export const PCI_CAP_ID_VENDOR = 0x09;

/** `struct virtio_pci_cap`, offsets from the capability's first byte. */
export const VIRTIO_PCI_CAP = {
  CAP_VNDR: { offset: 0, size: 1 },
  CAP_NEXT: { offset: 1, size: 1 },
  CAP_LEN: { offset: 2, size: 1 },
  CFG_TYPE: { offset: 3, size: 1 },
  BAR: { offset: 4, size: 1 },
  ID: { offset: 5, size: 1 },
  OFFSET: { offset: 8, size: 4 },
  LENGTH: { offset: 12, size: 4 },
} as const satisfies Record<string, Field>;

/** Size of `struct virtio_pci_cap`. */
export const VIRTIO_PCI_CAP_SIZE = 16;

/** `struct virtio_pci_notify_cap`: a virtio_pci_cap plus the notify offset multiplier. */
export const VIRTIO_PCI_NOTIFY_CAP = {
  ...VIRTIO_PCI_CAP,
  NOTIFY_OFF_MULTIPLIER: { offset: 16, size: 4 },
} as const satisfies Record<string, Field>;

/** Size of `struct virtio_pci_notify_cap`. */
export const VIRTIO_PCI_NOTIFY_CAP_SIZE = 20;

/** `struct virtio_pci_common_cfg` (with the 1.2 queue_notify_data / queue_reset fields). */
export const COMMON_CFG = {
  DEVICE_FEATURE_SELECT: { offset: 0x00, size: 4 },
  DEVICE_FEATURE: { offset: 0x04, size: 4 },
  DRIVER_FEATURE_SELECT: { offset: 0x08, size: 4 },
  DRIVER_FEATURE: { offset: 0x0c, size: 4 },
  MSIX_CONFIG: { offset: 0x10, size: 2 },
  NUM_QUEUES: { offset: 0x12, size: 2 },
  DEVICE_STATUS: { offset: 0x14, size: 1 },
  CONFIG_GENERATION: { offset: 0x15, size: 1 },
  QUEUE_SELECT: { offset: 0x16, size: 2 },
  QUEUE_SIZE: { offset: 0x18, size: 2 },
  QUEUE_MSIX_VECTOR: { offset: 0x1a, size: 2 },
  QUEUE_ENABLE: { offset: 0x1c, size: 2 },
  QUEUE_NOTIFY_OFF: { offset: 0x1e, size: 2 },
  QUEUE_DESC_LO: { offset: 0x20, size: 4 },
  QUEUE_DESC_HI: { offset: 0x24, size: 4 },
  QUEUE_DRIVER_LO: { offset: 0x28, size: 4 },
  QUEUE_DRIVER_HI: { offset: 0x2c, size: 4 },
  QUEUE_DEVICE_LO: { offset: 0x30, size: 4 },
  QUEUE_DEVICE_HI: { offset: 0x34, size: 4 },
  QUEUE_NOTIFY_DATA: { offset: 0x38, size: 2 },
  QUEUE_RESET: { offset: 0x3a, size: 2 },
} as const satisfies Record<string, Field>;

/** A common configuration register name. */
export type CommonCfgField = keyof typeof COMMON_CFG;

/** Bytes of the common configuration structure. */
export const COMMON_CFG_SIZE = 0x3c;

/** "No MSI-X vector" in msix_config / queue_msix_vector. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** ISR status bits (read clears). */
export const ISR = {
  /** Used buffers on some queue (only without MSI-X). */
  QUEUE: 1,
  /** Device configuration changed. */
  CONFIG: 2,
} as const;

/** A sub-region of the virtio BAR. */
export interface BarRegion {
  /** Offset in the BAR. */
  readonly offset: number;
  /** Length in bytes. */
  readonly size: number;
}

/**
 * dvmm's virtio BAR: four 4 KiB-aligned regions (each can be mapped or
 * trapped on its own page). The notify region holds one 4-byte doorbell per
 * queue (`queue_notify_off = index`, multiplier {@linkcode NOTIFY_OFF_MULTIPLIER}).
 */
export const VIRTIO_BAR_LAYOUT = {
  COMMON: { offset: 0x0000, size: 0x1000 },
  ISR: { offset: 0x1000, size: 0x1000 },
  DEVICE: { offset: 0x2000, size: 0x1000 },
  NOTIFY: { offset: 0x3000, size: 0x1000 },
} as const satisfies Record<string, BarRegion>;

/** Size of the virtio BAR (a power of two covering every region). */
export const VIRTIO_BAR_SIZE = 0x4000;

/** Bytes between two queues' doorbells in the notify region. */
export const NOTIFY_OFF_MULTIPLIER = 4;

/** Most queues the notify region can serve. */
export const MAX_VIRTIO_QUEUES = VIRTIO_BAR_LAYOUT.NOTIFY.size / NOTIFY_OFF_MULTIPLIER;

/**
 * A vendor-specific capability pointing at `length` bytes at `offset` in BAR
 * `bar` (all read-only). `notifyOffMultiplier` makes it a notify capability.
 */
export function virtioPciCapability(
  cfgType: number,
  bar: number,
  offset: number,
  length: number,
  notifyOffMultiplier?: number,
): PciCapabilitySpec {
  const size = notifyOffMultiplier === undefined ? VIRTIO_PCI_CAP_SIZE : VIRTIO_PCI_NOTIFY_CAP_SIZE;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  bytes[VIRTIO_PCI_CAP.CAP_VNDR.offset] = PCI_CAP_ID_VENDOR;
  bytes[VIRTIO_PCI_CAP.CAP_LEN.offset] = size;
  bytes[VIRTIO_PCI_CAP.CFG_TYPE.offset] = cfgType;
  bytes[VIRTIO_PCI_CAP.BAR.offset] = bar;
  view.setUint32(VIRTIO_PCI_CAP.OFFSET.offset, offset, true);
  view.setUint32(VIRTIO_PCI_CAP.LENGTH.offset, length, true);
  if (notifyOffMultiplier !== undefined) {
    view.setUint32(VIRTIO_PCI_NOTIFY_CAP.NOTIFY_OFF_MULTIPLIER.offset, notifyOffMultiplier, true);
  }
  // The PCI core writes the ID and next pointer itself; the body starts at byte 2.
  return { id: PCI_CAP_ID_VENDOR, size, body: [...bytes.subarray(2)] };
}

/**
 * The four capabilities of a device whose virtio BAR is `bar`: common, notify
 * (covering `numQueues` doorbells), ISR, and device config (if `configSize` > 0).
 */
export function virtioPciCapabilities(
  bar: number,
  numQueues: number,
  configSize: number,
): PciCapabilitySpec[] {
  const L = VIRTIO_BAR_LAYOUT;
  const caps = [
    virtioPciCapability(VIRTIO_PCI_CAP_TYPE.COMMON_CFG, bar, L.COMMON.offset, COMMON_CFG_SIZE),
    virtioPciCapability(
      VIRTIO_PCI_CAP_TYPE.NOTIFY_CFG,
      bar,
      L.NOTIFY.offset,
      Math.max(1, numQueues) * NOTIFY_OFF_MULTIPLIER,
      NOTIFY_OFF_MULTIPLIER,
    ),
    virtioPciCapability(VIRTIO_PCI_CAP_TYPE.ISR_CFG, bar, L.ISR.offset, 1),
  ];
  if (configSize > 0) {
    caps.push(
      virtioPciCapability(VIRTIO_PCI_CAP_TYPE.DEVICE_CFG, bar, L.DEVICE.offset, configSize),
    );
  }
  return caps;
}
