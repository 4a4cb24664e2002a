/**
 * The contract between dvmm's PCI core and a PCI device plugin.
 *
 * A plugin is a TypeScript module whose default export is made with
 * {@linkcode definePciDevice}: a static manifest (identity, BARs,
 * capabilities, an options schema) plus a `create` factory. The core owns
 * config space and BAR placement; the instance returned by `create` only
 * answers accesses inside its BARs and, if it wants, observes BAR
 * activation, config-space registers and reset.
 *
 * The common case needs no hook code: give a {@linkcode BusDevice} per BAR in
 * {@linkcode PciDeviceInstance.bars} and the core maps it on the right bus
 * whenever the guest enables decode, and moves it when the guest moves the BAR.
 * Any exception a plugin throws is caught by the core, logged with the device's
 * `[vendor:device]` prefix and turned into a failed access (reads all-ones,
 * writes dropped) or a failed activation/deactivation.
 *
 * ```ts
 * import { z } from "zod";
 * import { definePciDevice } from "../devices/pci_device.ts";
 *
 * export default definePciDevice({
 *   name: "scratch",
 *   vendorId: 0x1234, deviceId: 0x0001, classCode: 0xff0000,
 *   bars: [{ index: 0, kind: "mem32", size: 0x1000 }],
 *   options: z.object({ fill: z.coerce.number().default(0) }),
 *   create: ({ options }) => {
 *     const regs = new Uint8Array(0x1000).fill(options.fill);
 *     return { bars: { 0: {
 *       read: (off, data) => data.set(regs.subarray(off, off + data.length)),
 *       write: (off, data) => regs.set(data, off),
 *     } } };
 *   },
 * });
 * ```
 *
 * @module
 */

import type { z } from "zod";
import type { BusDevice } from "./bus.ts";
import type { IrqLine } from "./irq.ts";
import type { Logger } from "./logger.ts";
import type { GuestMemory } from "../kvm/guest_memory.ts";

/** Kind of a base address register: port I/O, 32-bit memory, or 64-bit memory (two slots). */
export type BarKind = "io" | "mem32" | "mem64";

/** One BAR of the manifest. */
export interface PciBarSpec {
  /** Slot 0..5 (a `mem64` BAR also uses slot `index + 1`). */
  readonly index: number;
  /** Address space and width. */
  readonly kind: BarKind;
  /** Memory BARs only: the region is prefetchable. Default false. */
  readonly prefetchable?: boolean;
  /** Size in bytes: a power of two, >= 4 for `io`, >= 16 for memory. */
  readonly size: number | bigint;
}

/**
 * A generic capability-list entry. The core places capabilities from config
 * offset 0x40 on (dword aligned), writes `id` and the next pointer (both
 * read-only), and sets Status bit 4 and the capability pointer at 0x34.
 */
export interface PciCapabilitySpec {
  /** Capability ID (u8), e.g. 0x09 vendor specific, 0x11 MSI-X. */
  readonly id: number;
  /** Total length in bytes including the 2-byte header (id, next), 2..192. */
  readonly size: number;
  /** Initial content of bytes 2..size-1 (missing bytes are zero). */
  readonly body?: readonly number[];
  /** Guest-writable bit mask for bytes 2..size-1 (missing bytes are read-only). */
  readonly writable?: readonly number[];
}

/**
 * Hooks over a part of config space. `offset` is relative to the part
 * (config offset for {@linkcode PciDeviceInstance.config}, offset from the
 * capability's first byte for {@linkcode PciDeviceInstance.capabilities}).
 * An access never crosses a dword boundary.
 */
export interface PciConfigHooks {
  /** `data` arrives holding the stored bytes; change them to emulate a register. */
  read?(offset: number, data: Uint8Array): void;
  /** Called after the core stored the guest-writable bits of `data` (the raw written value). */
  write?(offset: number, data: Uint8Array): void;
}

/** What a device instance gets from the core. */
export interface PciDeviceContext<O> {
  /** Guest RAM, for DMA. */
  readonly memory: GuestMemory;
  /**
   * The device's INTx (pin A) line. The core reflects its level in Status bit 3,
   * honours Command INTx-disable, and ORs it with other devices sharing the GSI.
   */
  readonly irq: IrqLine;
  /** A logger whose messages already start with `[vendor:device]`. */
  readonly log: Logger;
  /** Options parsed and validated by the definition's schema. */
  readonly options: O;
  /** PCI device number on bus 0 (1..31). */
  readonly slot: number;
  /** Address where BAR `index` is decoded now, or null when it is not active. */
  barAddress(index: number): bigint | null;
}

/** What `create` returns: the device's emulation. Every member is optional. */
export interface PciDeviceInstance {
  /**
   * Access handlers per BAR index, offsets relative to the BAR's base (like a
   * {@linkcode BusDevice} on a bus). A BAR without a handler reads all-ones.
   */
  readonly bars?: Readonly<Partial<Record<number, BusDevice>>>;
  /** Hooks for device-specific config registers (offsets 0x40..0xfff outside capabilities). */
  readonly config?: PciConfigHooks;
  /** Hooks per capability, keyed by its index in the manifest's `capabilities`. */
  readonly capabilities?: Readonly<Partial<Record<number, PciConfigHooks>>>;
  /**
   * BAR `bar` starts decoding at `address`; the core has already mapped its
   * handler there. Throwing makes the activation fail (the core unmaps it again).
   */
  activate?(bar: number, address: bigint): void;
  /**
   * BAR `bar` stops decoding at `address`; the core unmaps its handler after this
   * returns. Throwing makes the deactivation fail (the BAR stays mapped).
   */
  deactivate?(bar: number, address: bigint): void;
  /** The device is reset (the core has already deactivated its BARs and reset config space). */
  reset?(): void;
}

/** A PCI device plugin: manifest plus factory. Make one with {@linkcode definePciDevice}. */
export interface PciDeviceDefinition<O = unknown> {
  /** Short name for listings and messages, e.g. `register-file`. */
  readonly name: string;
  /** One line describing the device. */
  readonly description?: string;
  /** Vendor ID (u16). */
  readonly vendorId: number;
  /** Device ID (u16). */
  readonly deviceId: number;
  /** Subsystem vendor ID (u16). Default 0. */
  readonly subsystemVendorId?: number;
  /** Subsystem ID (u16). Default 0. */
  readonly subsystemId?: number;
  /** Class code (u24): class << 16 | subclass << 8 | programming interface. */
  readonly classCode: number;
  /** Revision ID (u8). Default 0. */
  readonly revision?: number;
  /** Base address registers, at most 6 slots. */
  readonly bars: readonly PciBarSpec[];
  /** Capability-list entries, in list order. */
  readonly capabilities?: readonly PciCapabilitySpec[];
  /** Zod schema for `key=value` options (values arrive as strings: use `z.coerce`). */
  readonly options?: z.ZodType<O>;
  /** Create one device instance. Throwing fails the device's creation. */
  create(ctx: PciDeviceContext<O>): PciDeviceInstance;
}

/** Any definition, whatever its options type (what registries and the core store). */
// deno-lint-ignore no-explicit-any
export type AnyPciDeviceDefinition = PciDeviceDefinition<any>;

/** Brand set on definitions made by {@linkcode definePciDevice}. */
export const PCI_DEVICE_BRAND: unique symbol = Symbol.for("dvmm.pci-device-definition");

/**
 * Declare a PCI device plugin. The manifest is validated when the plugin is
 * loaded (by the registry or the core), so errors can name the plugin file.
 * The options type flows from the schema into `create`'s context.
 */
export function definePciDevice<S extends z.ZodType = z.ZodType<Record<string, never>>>(
  def: Omit<PciDeviceDefinition<z.output<S>>, "options"> & { readonly options?: S },
): PciDeviceDefinition<z.output<S>> {
  const branded = { ...def } as PciDeviceDefinition<z.output<S>>;
  Object.defineProperty(branded, PCI_DEVICE_BRAND, { value: true });
  return Object.freeze(branded);
}

/** Format a vendor/device pair as the log prefix `[1af4:1042]`. */
export function deviceTag(vendorId: number, deviceId: number): string {
  const h = (v: number) => v.toString(16).padStart(4, "0");
  return `[${h(vendorId)}:${h(deviceId)}]`;
}
