/**
 * The PCI core: bus 0 with a host bridge and plugin devices, config space
 * access, BAR sizing, decode toggles and BAR reassignment with overlap
 * handling. It touches the address spaces only through two {@linkcode Bus}
 * instances (one "pio", one "mmio"): a BAR is registered on its bus exactly
 * while the core says it is active.
 *
 * Reassignment of an active BAR (kvmtool's "reassignable BARs", made
 * transactional):
 * 1. deactivate the BAR (if that fails the register keeps its old value);
 * 2. deactivate every active BAR of every device overlapping the new range
 *    (if one fails: re-activate those already deactivated and this BAR at its
 *    old address, keep the old register value);
 * 3. store and activate the BAR at the new address (if that fails:
 *    re-activate what was deactivated in step 2; the register keeps the new value);
 * 4. re-activate the BARs that the old range was hiding.
 *
 * A 64-bit BAR whose halves are written one at a time with decode on moves
 * once: the first half written is held back until the other half is written,
 * or until any other config access to the function.
 *
 * @module
 */

import { type Bus, type BusRange, hex } from "../devices/bus.ts";
import type { IrqLine } from "../devices/irq.ts";
import { type Logger, nullLogger } from "../devices/logger.ts";
import type {
  AnyPciDeviceDefinition,
  BarKind,
  PciHostConsole,
  PciPlatform,
} from "../devices/pci_device.ts";
import { parsePciDeviceOptions, validatePciDevice } from "../devices/pci_manifest.ts";
import type { GuestMemory } from "../kvm/guest_memory.ts";
import {
  type AddressRange,
  PCI_ECAM,
  PCI_IO,
  PCI_MMIO32,
  pciMmio64Window,
  PORTS,
} from "../x86/layout.ts";
import { type BarSpace, type PciBar, rangesOverlap } from "./bar.ts";
import { PciAllocationError, WindowAllocator } from "./bar_allocator.ts";
import { ConfigMechanism1, type ConfigTarget, EcamWindow } from "./config_access.ts";
import { Conf1Shared } from "./conf1_shared.ts";
import { CONFIG_SPACE_SIZE, formatBdf } from "./config_regs.ts";
import { hostBridge } from "./host_bridge.ts";
import { DEFAULT_INTX_GSIS, IntxRouter } from "./intx.ts";
import { PciFunction, type PciFunctionHost } from "./pci_function.ts";

/** How to build a {@linkcode PciRoot}. */
export interface PciRootOptions {
  /** Port I/O bus (I/O BARs, 0xCF8/0xCFC). */
  readonly pio: Bus;
  /** MMIO bus (memory BARs, ECAM). */
  readonly mmio: Bus;
  /** Guest RAM (handed to devices; its size places the 64-bit window). */
  readonly memory: GuestMemory;
  /** Where the core and devices log. Default: nothing. */
  readonly log?: Logger;
  /** The machine's line for a GSI. Default: lines that go nowhere. */
  readonly irqLine?: (gsi: number) => IrqLine;
  /** GSIs handed out round-robin for INTA#. Default {@linkcode DEFAULT_INTX_GSIS} (16..23). */
  readonly intxGsis?: readonly number[];
  /** Windows for initial BAR placement. Defaults from x86/layout.ts. */
  readonly windows?: {
    readonly mmio32?: AddressRange;
    readonly mmio64?: AddressRange;
    readonly io?: AddressRange;
  };
  /** Map 0xCF8/0xCFC on `pio` and the ECAM window on `mmio`. Default true. */
  readonly configAccess?: boolean;
  /** Put the host bridge at 00:00.0. Default true. */
  readonly hostBridge?: boolean;
  /**
   * MSI delivery and ioeventfds for plugins. Default {@linkcode NULL_PCI_PLATFORM}
   * (MSIs go nowhere; doorbells trap to their BAR handlers).
   */
  readonly platform?: PciPlatform;
  /** Host console output offered to plugins. Default: output is dropped. */
  readonly hostConsole?: PciHostConsole;
  /**
   * Where mechanism #1 keeps CONFIG_ADDRESS and which functions exist, for
   * vCPU threads that serve common config accesses themselves (see
   * conf1_shared.ts). Default: memory of the core's own.
   */
  readonly conf1?: Conf1Shared;
}

/**
 * A platform without a host: MSIs are refused (counted as dropped) and every
 * ioeventfd is refused, so doorbell writes keep reaching the BAR handlers.
 */
export const NULL_PCI_PLATFORM: PciPlatform = {
  signalMsi(address) {
    throw new Error(`no MSI delivery on this platform (message to ${hex(address)})`);
  },
  addIoeventfd() {
    throw new Error("no ioeventfds on this platform");
  },
  removeIoeventfd() {},
};

/** How to plug one device. */
export interface AddDeviceOptions {
  /** Device number 1..31. Default: the lowest free one. */
  readonly slot?: number;
  /** Raw options (`key=value` strings or typed values) for the plugin's schema. */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Where the plugin came from, for messages. Default: its name. */
  readonly source?: string;
  /** Enable IO/MEM decode at power-on, as firmware would. Default true. */
  readonly decode?: boolean;
}

/** One BAR's placement, for logging and a control API. */
export interface BarAssignment {
  /** `00:03.0`. */
  readonly bdf: string;
  /** `[vendor:device]`. */
  readonly device: string;
  /** The plugin's name. */
  readonly name: string;
  /** BAR index. */
  readonly bar: number;
  /** io, mem32 or mem64. */
  readonly kind: BarKind;
  /** Memory BARs: prefetchable. */
  readonly prefetchable: boolean;
  /** Address in the BAR register now. */
  readonly address: bigint;
  /** Size in bytes. */
  readonly size: bigint;
  /** Is it decoded (registered on its bus)? */
  readonly active: boolean;
  /** Where it is decoded, or null. */
  readonly activeAddress: bigint | null;
}

/** One plugged function, for logging and the lead's interrupt routing. */
export interface PciDeviceSummary {
  /** `00:03.0`. */
  readonly bdf: string;
  /** Device number. */
  readonly slot: number;
  /** `[vendor:device]`. */
  readonly device: string;
  /** The plugin's name. */
  readonly name: string;
  /** Class code (u24). */
  readonly classCode: number;
  /** GSI of INTA#, or null (host bridge). */
  readonly gsi: number | null;
}

/** Bus 0 and everything on it. */
export class PciRoot implements ConfigTarget, PciFunctionHost {
  /** Port I/O bus. */
  readonly pio: Bus;
  /** MMIO bus. */
  readonly mmio: Bus;
  /** Configuration mechanism #1 (mapped on `pio` unless `configAccess: false`). */
  readonly mechanism1: ConfigMechanism1;
  /** The ECAM window device (mapped on `mmio` unless `configAccess: false`). */
  readonly ecam: EcamWindow;
  /** INTx wired-OR per GSI. */
  readonly intx: IntxRouter;
  /** Config reads that reached the core and found no function (they read all-ones). */
  absentConfigReads = 0;
  /** Config-access ranges this core registered. */
  readonly configRanges: readonly BusRange[];

  readonly #log: Logger;
  readonly #memory: GuestMemory;
  readonly #slots: (PciFunction | undefined)[] = new Array(32).fill(undefined);
  readonly #gsis: readonly number[];
  readonly #alloc: Record<BarKind, WindowAllocator>;
  readonly #platform: PciPlatform;
  readonly #hostConsole: PciHostConsole;
  #nextGsi = 0;

  /** Build bus 0 (with the host bridge at 00:00.0 unless disabled). */
  constructor(options: PciRootOptions) {
    this.pio = options.pio;
    this.mmio = options.mmio;
    this.#memory = options.memory;
    this.#log = options.log ?? nullLogger;
    this.#gsis = options.intxGsis ?? DEFAULT_INTX_GSIS;
    this.#platform = options.platform ?? NULL_PCI_PLATFORM;
    this.#hostConsole = options.hostConsole ?? { write() {} };
    const noLine: IrqLine = { set() {} };
    this.intx = new IntxRouter(options.irqLine ?? (() => noLine));
    const w = options.windows ?? {};
    const window = (name: string, r: AddressRange) =>
      new WindowAllocator(name, BigInt(r.base), BigInt(r.size));
    this.#alloc = {
      io: window("PCI_IO", w.io ?? PCI_IO),
      mem32: window("PCI_MMIO32", w.mmio32 ?? PCI_MMIO32),
      mem64: window("PCI_MMIO64", w.mmio64 ?? pciMmio64Window(this.#memory.size)),
    };
    const conf1 = options.conf1 ?? new Conf1Shared();
    this.mechanism1 = new ConfigMechanism1(this, conf1);
    this.ecam = new EcamWindow(this);
    const ranges: BusRange[] = [];
    if (options.configAccess ?? true) {
      const m = this.mechanism1;
      ranges.push(this.pio.register(BigInt(PORTS.PCI_CONFIG_ADDRESS), 4n, m.addressPort, "pci"));
      ranges.push(this.pio.register(BigInt(PORTS.PCI_CONFIG_DATA), 4n, m.dataPort, "pci"));
      ranges.push(
        this.mmio.register(BigInt(PCI_ECAM.base), BigInt(PCI_ECAM.size), this.ecam, "pci ecam"),
      );
      conf1.enabled = true;
    }
    this.configRanges = ranges;
    if (options.hostBridge ?? true) this.addDevice(hostBridge, { slot: 0 });
  }

  /** Every plugged function, by device number. */
  get functions(): PciFunction[] {
    return this.#slots.filter((f): f is PciFunction => f !== undefined);
  }

  /** The function at device number `slot`, if any. */
  device(slot: number): PciFunction | undefined {
    return this.#slots[slot];
  }

  /**
   * Plug a device: validate the manifest and options, pick a slot and an INTx
   * GSI, allocate naturally aligned BAR addresses, create the instance, and
   * (with `decode`, the default) activate its BARs. Throws `PluginError` for an
   * invalid plugin or a failing `create`, {@linkcode PciAllocationError} when a
   * window is full, and `Error` for a bad or taken slot.
   */
  addDevice(definition: AnyPciDeviceDefinition, opts: AddDeviceOptions = {}): PciFunction {
    const source = opts.source ?? String((definition as { name?: unknown }).name);
    // The core's own host bridge is a constant (a unit test validates it): no zod at start-up.
    const def = definition === hostBridge ? hostBridge : validatePciDevice(definition, source);
    const options = parsePciDeviceOptions(def, opts.options ?? {}, source);
    const slot = opts.slot ?? this.#slots.findIndex((f, i) => i > 0 && f === undefined);
    if (!Number.isInteger(slot) || slot < 0 || slot > 31) {
      throw new Error(`${source}: no free PCI slot on bus 0 (asked for ${opts.slot ?? "any"})`);
    }
    if (this.#slots[slot]) {
      throw new Error(
        `${source}: PCI slot ${formatBdf(0, slot, 0)} is taken by ${this.#slots[slot]!.def.name}`,
      );
    }
    const isBridge = def === hostBridge;
    const barAddresses = this.#allocateBars(def, source);
    const gsi = isBridge || !this.#gsis.length
      ? null
      : this.#gsis[this.#nextGsi++ % this.#gsis.length];
    const fn = new PciFunction({
      slot,
      def,
      options,
      source,
      memory: this.#memory,
      log: this.#log,
      gsi,
      barAddresses,
      decode: opts.decode ?? true,
      host: this,
      platform: this.#platform,
      hostConsole: this.#hostConsole,
    });
    this.#slots[slot] = fn;
    this.mechanism1.shared.setPresent(slot, 0, true);
    for (const bar of fn.bars) this.#sync(fn, bar);
    this.#log.info(
      `${fn.tag} ${def.name} at ${fn.bdf}${gsi === null ? "" : `, INTA# -> GSI ${gsi}`}`,
    );
    return fn;
  }

  /** Every BAR of every function with its register address and decode state. */
  assignments(): BarAssignment[] {
    return this.functions.flatMap((fn) =>
      fn.bars.map((bar) => ({
        bdf: fn.bdf,
        device: fn.tag,
        name: fn.def.name,
        bar: bar.index,
        kind: bar.kind,
        prefetchable: bar.prefetchable,
        address: bar.address,
        size: bar.size,
        active: bar.active !== null,
        activeAddress: bar.active?.address ?? null,
      }))
    );
  }

  /** Every plugged function with its INTx GSI. */
  summary(): PciDeviceSummary[] {
    return this.functions.map((fn) => ({
      bdf: fn.bdf,
      slot: fn.slot,
      device: fn.tag,
      name: fn.def.name,
      classCode: fn.def.classCode,
      gsi: fn.gsi,
    }));
  }

  /** Config read from bus/device/function at `offset`; absent functions read all-ones. Never throws. */
  configRead(bus: number, device: number, fn: number, offset: number, data: Uint8Array): void {
    const f = this.#function(bus, device, fn);
    if (!f) {
      this.absentConfigReads++;
      return void data.fill(0xff);
    }
    this.#chunks(offset, data, (at, part) => f.configRead(at, part), true);
  }

  /** Config write to bus/device/function at `offset`; writes to absent functions are dropped. Never throws. */
  configWrite(bus: number, device: number, fn: number, offset: number, data: Uint8Array): void {
    const f = this.#function(bus, device, fn);
    if (!f) return;
    this.#chunks(offset, data, (at, part) => f.configWrite(at, part), false);
  }

  /**
   * Reset every function: deactivate all BARs, restore power-on config space
   * and BAR addresses, call reset hooks, then activate BARs again.
   */
  reset(): void {
    for (const fn of this.functions) {
      fn.disableDecode();
      for (const bar of fn.bars) this.#sync(fn, bar);
    }
    for (const fn of this.functions) fn.resetState();
    for (const fn of this.functions) for (const bar of fn.bars) this.#sync(fn, bar);
  }

  /** The machine ends: run every plugin's close hook (release host resources). */
  close(): void {
    for (const fn of this.functions) fn.close();
  }

  /** {@inheritDoc PciFunctionHost.decodeChanged} */
  decodeChanged(fn: PciFunction, space: BarSpace): void {
    for (const bar of fn.bars) if (bar.space === space) this.#sync(fn, bar);
  }

  /** {@inheritDoc PciFunctionHost.barMoved} */
  barMoved(fn: PciFunction, bar: PciBar): boolean {
    return this.#sync(fn, bar) !== "rejected";
  }

  /** {@inheritDoc PciFunctionHost.intxChanged} */
  intxChanged(fn: PciFunction, level: boolean): void {
    if (fn.gsi !== null) this.intx.drive(fn, fn.gsi, level);
  }

  /** The bus a BAR lives on. */
  busFor(bar: PciBar): Bus {
    return bar.space === "io" ? this.pio : this.mmio;
  }

  /** Where `bar` should be decoded now: its register address if decode is on and it is decodable. */
  desiredAddress(fn: PciFunction, bar: PciBar): bigint | null {
    if (bar.pendingFrom !== null) return bar.active?.address ?? null;
    return fn.decodeEnabled(bar.space) && bar.isDecodable(bar.address) ? bar.address : null;
  }

  /**
   * Bring `bar`'s mapping to {@linkcode desiredAddress}, following the
   * transactional move in the module description.
   * - "unchanged": it already was there;
   * - "done": it is there now;
   * - "failed": activation at the new address failed (it is inactive; register keeps the new value);
   * - "rejected": it could not leave its old place (the caller restores the old register value).
   */
  #sync(fn: PciFunction, bar: PciBar): "unchanged" | "done" | "failed" | "rejected" {
    const target = this.desiredAddress(fn, bar);
    const current = bar.active?.address ?? null;
    if (target === current) return "unchanged";
    const bus = this.busFor(bar);
    if (current !== null && !fn.deactivateBar(bar, bus)) return "rejected";
    if (target !== null) {
      const hidden: [PciFunction, PciBar, bigint][] = [];
      for (const [ofn, obar] of this.#activeOverlapping(bar, target)) {
        const at = obar.active!.address;
        if (!ofn.deactivateBar(obar, bus)) {
          fn.log.warn(
            `BAR ${bar.index}: move to ${hex(target)} refused: ${ofn.barName(obar)} at ${
              hex(at)
            } could not be deactivated`,
          );
          for (const [hf, hb, ha] of hidden) hf.activateBar(hb, ha, bus);
          if (current !== null) fn.activateBar(bar, current, bus);
          return "rejected";
        }
        hidden.push([ofn, obar, at]);
      }
      if (!fn.activateBar(bar, target, bus)) {
        for (const [hf, hb, ha] of hidden) hf.activateBar(hb, ha, bus);
        if (current !== null) this.#reactivateUnder(bar, current);
        return "failed";
      }
    }
    if (current !== null) this.#reactivateUnder(bar, current);
    return "done";
  }

  /** Active BARs (other than `bar`) in `bar`'s space that overlap `bar` placed at `base`. */
  #activeOverlapping(bar: PciBar, base: bigint): [PciFunction, PciBar][] {
    const out: [PciFunction, PciBar][] = [];
    for (const fn of this.functions) {
      for (const other of fn.bars) {
        if (other === bar || other.space !== bar.space || !other.active) continue;
        if (rangesOverlap(base, bar.size, other.active.address, other.size)) out.push([fn, other]);
      }
    }
    return out;
  }

  /**
   * Re-activate inactive BARs that want to decode over `[base, base + moved.size)`,
   * the range `moved` just left, when nothing else on the bus is in their way.
   */
  #reactivateUnder(moved: PciBar, base: bigint): void {
    const bus = this.busFor(moved);
    for (const fn of this.functions) {
      for (const bar of fn.bars) {
        if (bar === moved || bar.space !== moved.space || bar.active) continue;
        const want = this.desiredAddress(fn, bar);
        if (want === null || !rangesOverlap(want, bar.size, base, moved.size)) continue;
        const blocked = bus.ranges.some((r) => rangesOverlap(want, bar.size, r.base, r.size));
        if (!blocked) fn.activateBar(bar, want, bus);
      }
    }
  }

  #function(bus: number, device: number, fn: number): PciFunction | undefined {
    return bus === 0 && fn === 0 ? this.#slots[device] : undefined;
  }

  /** Split an access into pieces that stay inside one dword of config space. */
  #chunks(
    offset: number,
    data: Uint8Array,
    each: (offset: number, part: Uint8Array) => void,
    isRead: boolean,
  ): void {
    let i = 0;
    while (i < data.length) {
      const at = offset + i;
      const len = Math.min(data.length - i, 4 - (at & 3));
      const part = data.subarray(i, i + len);
      if (at < 0 || at + len > CONFIG_SPACE_SIZE) {
        if (isRead) part.fill(0xff);
      } else {
        try {
          each(at, part);
        } catch (e) {
          // The function guards plugin code; this catches bugs in the core itself.
          if (isRead) part.fill(0xff);
          this.#log.error(`pci: config ${isRead ? "read" : "write"} at ${hex(at)} failed: ${e}`);
        }
      }
      i += len;
    }
  }

  #allocateBars(def: AnyPciDeviceDefinition, source: string): Map<number, bigint> {
    const out = new Map<number, bigint>();
    const bars = [...def.bars].sort((a, b) => (BigInt(b.size) > BigInt(a.size) ? 1 : -1));
    for (const bar of bars) {
      try {
        out.set(bar.index, this.#alloc[bar.kind].allocate(BigInt(bar.size), `BAR ${bar.index}`));
      } catch (e) {
        if (e instanceof PciAllocationError) {
          throw new PciAllocationError(`${source}: ${e.message}`);
        }
        throw e;
      }
    }
    return out;
  }
}
