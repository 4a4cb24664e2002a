/**
 * Turns a virtio device backend into a PCI device plugin using only the
 * public plugin API: the modern virtio-pci transport in BAR 4, an MSI-X table
 * and PBA in BAR 1, the vendor-specific capabilities plus the MSI-X
 * capability, one ioeventfd per queue doorbell, MSI-X messages through
 * `ctx.msi`, INTx through `ctx.irq` while MSI-X is off, and a full reset on a
 * PCI reset.
 *
 * @module
 */

import type { z } from "zod";
import type { BusDevice } from "../bus.ts";
import {
  definePciDevice,
  type PciCapabilitySpec,
  type PciDeviceContext,
  type PciDeviceDefinition,
  type PciDeviceInstance,
} from "../pci_device.ts";
import type { VirtioDevice } from "./device.ts";
import { VirtioPciInterrupts } from "./interrupts.ts";
import { MsixTable } from "../msix.ts";
import { VIRTIO_BAR_SIZE, virtioPciCapabilities } from "./pci_layout.ts";
import { VirtioPciTransport } from "./transport.ts";

/** PCI vendor ID of virtio devices. */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;

/** Device ID of a modern (virtio 1.x) PCI device: this plus the virtio device type. */
export const VIRTIO_PCI_MODERN_DEVICE_BASE = 0x1040;

/** Where dvmm's virtio-pci devices put things. */
export const VIRTIO_PCI_BARS = {
  /** BAR index of the MSI-X table and PBA (mem32). */
  MSIX: 1,
  /** BAR index of the virtio structures (mem64, prefetchable). */
  VIRTIO: 4,
  /** Size of the MSI-X BAR. */
  MSIX_SIZE: 0x1000,
  /** Offset of the MSI-X table in its BAR. */
  TABLE_OFFSET: 0,
  /** Offset of the PBA in the MSI-X BAR. */
  PBA_OFFSET: 0x800,
} as const;

/** Width of a queue doorbell write (the 16-bit queue index Linux writes). */
export const DOORBELL_WIDTH = 2;

/** What a virtio plugin declares. */
export interface VirtioPciPluginSpec<S extends z.ZodType> {
  /** Plugin name (`virtio-blk`). */
  readonly name: string;
  /** One line for listings. */
  readonly description: string;
  /** Virtio device type (VIRTIO_ID.*). */
  readonly type: number;
  /** PCI class code. */
  readonly classCode: number;
  /** Number of virtqueues the device has. */
  readonly queues: number;
  /** Size of its device configuration structure. */
  readonly configSize: number;
  /** Options schema. */
  readonly options?: S;
  /** Build the backend (throwing fails the device's creation). */
  createDevice(ctx: PciDeviceContext<z.output<S>>): VirtioDevice;
}

/** The capability list of a virtio-pci device with `queues` queues and `configSize` config bytes. */
export function virtioPciPluginCapabilities(
  queues: number,
  configSize: number,
): PciCapabilitySpec[] {
  const msix = new MsixTable(queues + 1, { sendMsi() {} });
  return [
    ...virtioPciCapabilities(VIRTIO_PCI_BARS.VIRTIO, queues, configSize),
    msix.capability({
      tableBar: VIRTIO_PCI_BARS.MSIX,
      tableOffset: VIRTIO_PCI_BARS.TABLE_OFFSET,
      pbaBar: VIRTIO_PCI_BARS.MSIX,
      pbaOffset: VIRTIO_PCI_BARS.PBA_OFFSET,
    }),
  ];
}

/** What {@linkcode createVirtioPciInstance} returns: the instance plus its parts, for tests. */
export interface VirtioPciParts {
  /** The plugin instance handed to the core. */
  readonly instance: PciDeviceInstance;
  /** The transport. */
  readonly transport: VirtioPciTransport;
  /** The MSI-X table. */
  readonly msix: MsixTable;
}

/**
 * Wire `device` to a PCI function through `ctx`: transport, MSI-X, INTx
 * fallback, doorbell ioeventfds. `msixCapIndex` is the MSI-X capability's
 * index in the manifest.
 */
export function createVirtioPciInstance(
  ctx: PciDeviceContext<unknown>,
  device: VirtioDevice,
  msixCapIndex: number,
): VirtioPciParts {
  const vectors = device.queueSizes.length + 1;
  let onRoute = () => {};
  const msix = new MsixTable(vectors, {
    sendMsi: (_vector, m) => void ctx.msi.send(m.address, m.data),
    vectorChanged: () => onRoute(),
  });
  const transport = new VirtioPciTransport(device, {
    memory: ctx.memory,
    interrupts: new VirtioPciInterrupts(msix, ctx.irq),
    msixVectors: vectors,
    log: ctx.log,
  });
  onRoute = () => transport.interruptRouteChanged();
  device.queueSizes.forEach((_, i) => {
    const fd = device.doorbellFd?.(i) ?? null;
    ctx.ioeventfd(
      VIRTIO_PCI_BARS.VIRTIO,
      transport.notifyOffset(i),
      DOORBELL_WIDTH,
      () => transport.kick(i),
      fd === null ? undefined : { fd },
    );
  });
  const tableEnd = VIRTIO_PCI_BARS.TABLE_OFFSET + msix.tableBytes;
  const pbaEnd = VIRTIO_PCI_BARS.PBA_OFFSET + msix.pbaBytes;
  const region = (offset: number, len: number): [BusDevice, number] | null => {
    if (offset >= VIRTIO_PCI_BARS.TABLE_OFFSET && offset + len <= tableEnd) {
      return [msix.table, offset - VIRTIO_PCI_BARS.TABLE_OFFSET];
    }
    if (offset >= VIRTIO_PCI_BARS.PBA_OFFSET && offset + len <= pbaEnd) {
      return [msix.pba, offset - VIRTIO_PCI_BARS.PBA_OFFSET];
    }
    return null;
  };
  const msixBar: BusDevice = {
    read: (offset, data) => {
      const r = region(offset, data.length);
      if (r) r[0].read(r[1], data);
      else data.fill(0);
    },
    write: (offset, data) => {
      const r = region(offset, data.length);
      if (r) r[0].write(r[1], data);
    },
  };
  const instance: PciDeviceInstance = {
    bars: { [VIRTIO_PCI_BARS.MSIX]: msixBar, [VIRTIO_PCI_BARS.VIRTIO]: transport.bar },
    capabilities: { [msixCapIndex]: msix.capabilityHooks() },
    reset: () => {
      transport.reset();
      msix.reset();
    },
    close: () => device.close?.(),
  };
  return { instance, transport, msix };
}

/** Declare a virtio-pci device plugin around a backend factory. */
export function defineVirtioPciDevice<S extends z.ZodType = z.ZodType<Record<string, never>>>(
  spec: VirtioPciPluginSpec<S>,
): PciDeviceDefinition<z.output<S>> {
  const capabilities = virtioPciPluginCapabilities(spec.queues, spec.configSize);
  const msixCapIndex = capabilities.length - 1;
  const deviceId = VIRTIO_PCI_MODERN_DEVICE_BASE + spec.type;
  return definePciDevice<S>({
    name: spec.name,
    description: spec.description,
    vendorId: VIRTIO_PCI_VENDOR_ID,
    deviceId,
    subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
    subsystemId: deviceId,
    classCode: spec.classCode,
    revision: 1,
    bars: [
      { index: VIRTIO_PCI_BARS.MSIX, kind: "mem32", size: VIRTIO_PCI_BARS.MSIX_SIZE },
      { index: VIRTIO_PCI_BARS.VIRTIO, kind: "mem64", prefetchable: true, size: VIRTIO_BAR_SIZE },
    ],
    capabilities,
    ...(spec.options ? { options: spec.options } : {}),
    create(ctx) {
      const device = spec.createDevice(ctx);
      if (device.queueSizes.length !== spec.queues || device.configSize !== spec.configSize) {
        throw new Error(
          `${spec.name}: backend has ${device.queueSizes.length} queues and ${device.configSize} config bytes; the manifest says ${spec.queues} and ${spec.configSize}`,
        );
      }
      return createVirtioPciInstance(ctx as PciDeviceContext<unknown>, device, msixCapIndex)
        .instance;
    },
  });
}
