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

/** Address space of a BAR: port I/O or memory (the Command decode bit that governs it). */
export type PciSpace = "io" | "mem";

/** Access widths an ioeventfd can match (0: any width; memory BARs only). */
export type IoeventfdLength = 0 | 1 | 2 | 4 | 8;

/** An opaque registration returned by {@linkcode PciPlatform.addIoeventfd}. */
export type PciIoeventfdHandle = number;

/**
 * What the PCI core needs from the host to let plugins raise MSIs and serve
 * doorbells without a trap into the VMM: KVM_SIGNAL_MSI and KVM_IOEVENTFD in
 * a machine, a recording fake in unit tests. The core alone calls it (plugins
 * go through {@linkcode PciDeviceContext.msi} and
 * {@linkcode PciDeviceContext.ioeventfd}).
 */
export interface PciPlatform {
  /** Deliver one MSI (a DWORD write of `data` to `address`). Throws if the host refuses. */
  signalMsi(address: bigint, data: number): void;
  /**
   * Make guest writes of `length` bytes (0: any width) at `address` in `space`
   * call `onKick` (later, on the VMM thread) instead of trapping; with `fd`
   * (an eventfd the caller owns), signal that eventfd instead where the host
   * can. Throws if the host refuses; the write then keeps reaching the BAR handler.
   */
  addIoeventfd(
    space: PciSpace,
    address: bigint,
    length: IoeventfdLength,
    onKick: () => void,
    fd?: number,
  ): PciIoeventfdHandle;
  /** Undo one {@linkcode addIoeventfd}; kicks not yet delivered for it are dropped. */
  removeIoeventfd(handle: PciIoeventfdHandle): void;
  /**
   * Optional: how another thread of this process can send MSIs itself (the
   * KVM VM fd for KVM_SIGNAL_MSI), or null where it cannot.
   */
  remoteMsi?(): { readonly vmFd: number } | null;
}

/**
 * MSI delivery a plugin's own worker thread can do without the VMM thread
 * (structured-cloneable: post it to the worker, send with
 * `kvm/remote_msi.ts`). The core keeps `state` current.
 */
export interface PciRemoteMsi {
  /** The KVM VM fd (process-wide) to send KVM_SIGNAL_MSI on. */
  readonly vmFd: number;
  /** Int32 word {@linkcode REMOTE_MSI_WORD.BUS_MASTER}: non-zero while Bus Master Enable is set. */
  readonly state: SharedArrayBuffer;
}

/** Words of {@linkcode PciRemoteMsi.state}. */
export const REMOTE_MSI_WORD = { BUS_MASTER: 0 } as const;

/** Host output a device can write to (the machine's console; a plugin such as virtio-console). */
export interface PciHostConsole {
  /** Show `bytes` on the host console (a copy is taken if needed). */
  write(bytes: Uint8Array): void;
  /**
   * Become the receiver of the host console's input (what the user types),
   * which otherwise goes to the serial port, until the returned function is
   * called; the last taker wins. `sink` returns how many bytes it took (the
   * rest is offered again later). Absent where the host has no input to give
   * (sandboxed plugins).
   */
  takeInput?(sink: (bytes: Uint8Array) => number): () => void;
}

/** A plugin's way to raise message-signalled interrupts. */
export interface PciMsi {
  /**
   * Write `data` to `address` as the device would (the guest programmed both,
   * e.g. in an MSI-X table entry). Dropped (and counted) while Bus Master
   * Enable is off in the Command register. Returns true if it was sent.
   */
  send(address: bigint, data: number): boolean;
  /**
   * MSI delivery from another thread (a plugin worker that serves a queue
   * itself), or null where the host cannot. Messages sent that way skip the
   * VMM thread; they are dropped while Bus Master Enable is off, like `send`.
   * The plugin stays responsible for masking (send only unmasked messages).
   */
  remote?(): PciRemoteMsi | null;
}

/**
 * A doorbell inside a BAR served by an ioeventfd. The core keeps it
 * registered at `BAR base + offset` exactly while the BAR is decoded, moving
 * it with the BAR; when the host cannot register it, guest writes there keep
 * reaching the BAR's handler (so a plugin must handle doorbell writes there too).
 */
export interface PciIoeventfd {
  /** BAR index. */
  readonly bar: number;
  /** Offset of the doorbell in the BAR. */
  readonly offset: number;
  /** Access width matched (0: any). */
  readonly length: IoeventfdLength;
  /** Guest address where it is registered now, or null (BAR inactive, removed, or the host refused). */
  readonly address: bigint | null;
  /** Stop serving this doorbell (idempotent). */
  remove(): void;
}

/** Options of {@linkcode PciDeviceContext.ioeventfd}. */
export interface PciIoeventfdOptions {
  /** Signal this eventfd (owned by the plugin) instead of calling `onKick`, where the host can. */
  readonly fd?: number;
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
  /** Message-signalled interrupts (MSI / MSI-X messages the guest programmed). */
  readonly msi: PciMsi;
  /** Host console output (the machine's console; drops everything without one). */
  readonly hostConsole: PciHostConsole;
  /**
   * Serve guest writes of `length` bytes at `offset` in BAR `bar` by calling
   * `onKick` on the VMM thread without trapping the vCPU (KVM ioeventfd). The
   * core registers it whenever the BAR is decoded and moves it with the BAR.
   * May be called from `create` on. Throws RangeError for a BAR the device
   * lacks, a range outside it, or length 0 on an I/O BAR. Exceptions from
   * `onKick` are caught and logged like any plugin fault.
   *
   * With `options.fd` (an eventfd the plugin owns and closes), the host
   * signals that eventfd on each doorbell write instead of calling `onKick`
   * (a plugin worker can wait on it and serve the doorbell on its own thread);
   * a host that cannot calls `onKick` as usual.
   */
  ioeventfd(
    bar: number,
    offset: number,
    length: IoeventfdLength,
    onKick: () => void,
    options?: PciIoeventfdOptions,
  ): PciIoeventfd;
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
  /**
   * The machine ends: release host resources (file descriptors, TAP
   * interfaces, timers). Called once, after the vCPUs stopped and before guest
   * memory goes away; no access or hook follows.
   */
  close?(): void;
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
