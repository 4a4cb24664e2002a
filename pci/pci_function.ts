/**
 * One PCI function on the bus: its config space (with write masks), its BARs,
 * the plugin instance behind it, and the guard that turns every plugin
 * exception into a logged, contained failure.
 *
 * BAR placement decisions (moves, overlap handling) belong to the core
 * ({@linkcode PciFunctionHost}); this class provides the primitives
 * {@linkcode PciFunction.activateBar} / {@linkcode PciFunction.deactivateBar},
 * which are idempotent: a plugin hook never fires twice in the same direction.
 *
 * @module
 */

import { type Bus, type BusDevice, hex } from "../devices/bus.ts";
import type { IrqLine } from "../devices/irq.ts";
import { type Logger, prefixLogger } from "../devices/logger.ts";
import {
  type AnyPciDeviceDefinition,
  deviceTag,
  type IoeventfdLength,
  type PciConfigHooks,
  type PciDeviceInstance,
  type PciHostConsole,
  type PciIoeventfd,
  type PciIoeventfdHandle,
  type PciPlatform,
  type PciRemoteMsi,
  REMOTE_MSI_WORD,
} from "../devices/pci_device.ts";
import { PluginError } from "../devices/pci_manifest.ts";
import type { GuestMemory } from "../kvm/guest_memory.ts";
import { type BarSpace, PciBar } from "./bar.ts";
import {
  CFG,
  COMMAND,
  COMMAND_WRITABLE,
  CONFIG_SPACE_SIZE,
  formatBdf,
  INTERRUPT_PIN_A,
  STATUS,
  STATUS_W1C,
} from "./config_regs.ts";
import { ConfigSpace } from "./config_space.ts";

/** What a function needs from the core that owns the bus. */
export interface PciFunctionHost {
  /** Decode for `space` was switched on or off in `fn`'s Command register. */
  decodeChanged(fn: PciFunction, space: BarSpace): void;
  /**
   * The guest changed `bar`'s register while decode is on: bring the mapping to
   * the new address. Returns false when the move was refused and the register
   * must keep its old value.
   */
  barMoved(fn: PciFunction, bar: PciBar): boolean;
  /** `fn`'s INTx output changed (already masked by INTx-disable). */
  intxChanged(fn: PciFunction, level: boolean): void;
}

/** Everything needed to build a function. */
export interface PciFunctionInit {
  /** Device number on bus 0. */
  readonly slot: number;
  /** The validated definition. */
  readonly def: AnyPciDeviceDefinition;
  /** Parsed options handed to `create`. */
  readonly options: unknown;
  /** Where the plugin came from, for messages. */
  readonly source: string;
  /** Guest RAM for the device context. */
  readonly memory: GuestMemory;
  /** The core's logger (the function prefixes `[vendor:device]`). */
  readonly log: Logger;
  /** GSI of the INTA# line, or null for a function without INTx (host bridge). */
  readonly gsi: number | null;
  /** Initial register address of each BAR, by index. */
  readonly barAddresses: ReadonlyMap<number, bigint>;
  /** Enable IO/MEM decode from the start (as firmware would). */
  readonly decode: boolean;
  /** The core. */
  readonly host: PciFunctionHost;
  /** MSI delivery and ioeventfds. */
  readonly platform: PciPlatform;
  /** Host console output for the device context. */
  readonly hostConsole: PciHostConsole;
}

/** A plugin doorbell as the core tracks it. */
export interface DoorbellState {
  /** The BAR it lives in. */
  readonly bar: PciBar;
  /** Offset in the BAR. */
  readonly offset: number;
  /** Access width matched. */
  readonly length: IoeventfdLength;
  /** Guest address where the platform serves it now, or null. */
  readonly address: bigint | null;
}

/** Message-signalled interrupt counts of a function. */
export interface MsiCounts {
  /** MSIs handed to the platform. */
  sent: number;
  /** MSIs dropped: Bus Master Enable was off, or the platform refused. */
  dropped: number;
}

/** Where a capability was placed in config space. */
export interface PlacedCapability {
  /** Index in the manifest's `capabilities`. */
  readonly index: number;
  /** Capability ID. */
  readonly id: number;
  /** Config offset of its first byte. */
  readonly offset: number;
  /** Its length in bytes. */
  readonly size: number;
}

/** Plugin faults logged per function before further ones are only counted. */
export const MAX_LOGGED_FAULTS = 16;

/** One PCI function (device number `slot`, function 0, bus 0). */
export class PciFunction {
  /** `[vendor:device]`, the prefix of every message about this function. */
  readonly tag: string;
  /** Device number on bus 0. */
  readonly slot: number;
  /** The plugin definition. */
  readonly def: AnyPciDeviceDefinition;
  /** Config space storage. */
  readonly config: ConfigSpace = new ConfigSpace();
  /** Implemented BARs, in index order. */
  readonly bars: readonly PciBar[];
  /** Capabilities, in list order. */
  readonly capabilities: readonly PlacedCapability[];
  /** GSI of INTA#, or null without INTx. */
  readonly gsi: number | null;
  /** Logger with the `[vendor:device]` prefix. */
  readonly log: Logger;
  /** Plugin faults caught so far (access handlers, config hooks, activate/deactivate, reset). */
  faults = 0;
  /** MSIs sent and dropped. */
  readonly msiCounts: MsiCounts = { sent: 0, dropped: 0 };

  readonly #host: PciFunctionHost;
  readonly #barBySlot: (PciBar | undefined)[] = new Array(6).fill(undefined);
  readonly #barDevices = new Map<number, BusDevice>();
  readonly #initial: { bytes: Uint8Array; addresses: Map<PciBar, bigint> };
  readonly #instance: PciDeviceInstance;
  readonly #platform: PciPlatform;
  readonly #doorbells: Doorbell[] = [];
  #intxLevel = false;
  #closed = false;
  #remote: PciRemoteMsi | null | undefined;

  /** Build the function and create the plugin instance. Throws {@linkcode PluginError} if `create` throws. */
  constructor(init: PciFunctionInit) {
    const { def } = init;
    this.slot = init.slot;
    this.def = def;
    this.gsi = init.gsi;
    this.tag = deviceTag(def.vendorId, def.deviceId);
    this.log = prefixLogger(init.log, this.tag);
    this.#host = init.host;
    this.#platform = init.platform;
    this.bars = [...def.bars].sort((a, b) => a.index - b.index).map((spec) => {
      const bar = new PciBar(spec.index, spec.kind, BigInt(spec.size), spec.prefetchable ?? false);
      bar.address = init.barAddresses.get(spec.index) ?? 0n;
      for (const s of bar.slots) this.#barBySlot[s] = bar;
      return bar;
    });
    this.capabilities = this.#buildHeader(init.decode);
    this.#initial = {
      bytes: this.config.snapshot(0, CONFIG_SPACE_SIZE),
      addresses: new Map(this.bars.map((b) => [b, b.address])),
    };
    const irq: IrqLine = { set: (level) => this.#setIntx(level) };
    try {
      this.#instance = def.create({
        memory: init.memory,
        irq,
        log: this.log,
        options: init.options,
        slot: init.slot,
        barAddress: (index) => this.#barBySlot[index]?.active?.address ?? null,
        msi: {
          send: (address, data) => this.#sendMsi(address, data),
          remote: () => this.#remoteMsi(),
        },
        hostConsole: init.hostConsole,
        ioeventfd: (bar, offset, length, onKick, options) =>
          this.#addDoorbell(bar, offset, length, onKick, options?.fd),
      }) ?? {};
    } catch (e) {
      throw new PluginError(init.source, `create failed: ${errorText(e)}`, { cause: e });
    }
    for (const bar of this.bars) this.#barDevices.set(bar.index, this.#guardedBar(bar));
  }

  /** `00:<slot>.0`. */
  get bdf(): string {
    return formatBdf(0, this.slot, 0);
  }

  /** The Command register. */
  get command(): number {
    return this.config.u16(CFG.COMMAND);
  }

  /** Is decode of `space` enabled in the Command register? */
  decodeEnabled(space: BarSpace): boolean {
    return (this.command & (space === "io" ? COMMAND.IO : COMMAND.MEMORY)) !== 0;
  }

  /** The BAR occupying `slot` (either half of a 64-bit BAR), if implemented. */
  barAt(slot: number): PciBar | undefined {
    return this.#barBySlot[slot];
  }

  /** The plugin's doorbells and where each is served now. */
  doorbells(): DoorbellState[] {
    return this.#doorbells.filter((d) => !d.removed).map((d) => ({
      bar: d.bar,
      offset: d.offset,
      length: d.length,
      address: d.handle === null ? null : d.address,
    }));
  }

  /** The level the device drives on INTx (before INTx-disable). */
  get intxLevel(): boolean {
    return this.#intxLevel;
  }

  /** Signal Status error bits (e.g. a master abort the device saw); the guest clears them by writing 1. */
  signalStatus(bits: number): void {
    this.config.setU16(CFG.STATUS, this.config.u16(CFG.STATUS) | (bits & STATUS_W1C));
  }

  /**
   * Guest config read of `data.length` bytes at `offset` (within one dword).
   * Unimplemented registers read 0; a failing plugin hook reads all-ones.
   */
  configRead(offset: number, data: Uint8Array): void {
    this.#commitPendingUnless(offset);
    if (offset >= CFG.BAR0 && offset < CFG.BAR_END) {
      const dword = this.barAt((offset - CFG.BAR0) >> 2)?.readDword((offset - CFG.BAR0) >> 2) ?? 0;
      for (let i = 0; i < data.length; i++) data[i] = dword >>> (8 * ((offset & 3) + i));
      return;
    }
    this.config.read(offset, data);
    if (offset < CFG.HEADER_END) return;
    const [hooks, base, what] = this.#hooksAt(offset);
    if (!hooks?.read) return;
    try {
      hooks.read(offset - base, data);
    } catch (e) {
      data.fill(0xff);
      this.fault(`${what} read at ${hex(offset)} failed`, e);
    }
  }

  /** Guest config write of `data` at `offset` (within one dword). */
  configWrite(offset: number, data: Uint8Array): void {
    this.#commitPendingUnless(offset);
    if (offset >= CFG.BAR0 && offset < CFG.BAR_END) {
      this.#barWrite(offset, data);
      return;
    }
    if (offset < CFG.HEADER_END) {
      const before = this.command;
      this.config.write(offset, data);
      const changed = before ^ this.command;
      if (changed & COMMAND.BUS_MASTER) this.#publishBusMaster();
      if (changed & COMMAND.IO) this.#host.decodeChanged(this, "io");
      if (changed & COMMAND.MEMORY) this.#host.decodeChanged(this, "mem");
      if (changed & COMMAND.INTX_DISABLE) this.#driveIntx();
      return;
    }
    const saved = this.config.snapshot(offset, data.length);
    this.config.write(offset, data);
    const [hooks, base, what] = this.#hooksAt(offset);
    if (!hooks?.write) return;
    try {
      hooks.write(offset - base, data);
    } catch (e) {
      this.config.restore(offset, saved);
      this.fault(`${what} write at ${hex(offset)} failed`, e);
    }
  }

  /**
   * Map `bar` at `address` on `bus` and tell the plugin. Idempotent: true at
   * once if already active there. Returns false (logged) if the bus refuses the
   * range or the plugin's activate hook throws; the BAR is then not mapped.
   */
  activateBar(bar: PciBar, address: bigint, bus: Bus): boolean {
    if (bar.active) return bar.active.address === address;
    let range;
    try {
      range = bus.register(address, bar.size, this.#barDevices.get(bar.index)!, this.barName(bar));
    } catch (e) {
      this.log.warn(`BAR ${bar.index}: activate failed: ${errorText(e)}`);
      return false;
    }
    bar.active = { address, range };
    try {
      this.#instance.activate?.(bar.index, address);
    } catch (e) {
      bar.active = null;
      bus.unregister(range);
      this.fault(`BAR ${bar.index}: activate failed at ${hex(address)}`, e);
      return false;
    }
    this.log.debug(`BAR ${bar.index}: active at ${hex(address)}+${hex(bar.size)}`);
    for (const d of this.#doorbells) if (d.bar === bar) this.#attach(d, address);
    return true;
  }

  /**
   * Tell the plugin and unmap `bar`. Idempotent: true at once if not active.
   * Returns false (logged) if the deactivate hook throws; the BAR then stays mapped.
   */
  deactivateBar(bar: PciBar, bus: Bus): boolean {
    const active = bar.active;
    if (!active) return true;
    try {
      this.#instance.deactivate?.(bar.index, active.address);
    } catch (e) {
      this.fault(`BAR ${bar.index}: deactivate failed at ${hex(active.address)}`, e);
      return false;
    }
    for (const d of this.#doorbells) if (d.bar === bar) this.#detach(d);
    bus.unregister(active.range);
    bar.active = null;
    this.log.debug(`BAR ${bar.index}: inactive (was at ${hex(active.address)})`);
    return true;
  }

  /** Name of a BAR's bus range: `[1af4:1042] BAR 1`. */
  barName(bar: PciBar): string {
    return `${this.tag} BAR ${bar.index}`;
  }

  /** Clear Command decode bits (first step of a reset; the core then deactivates the BARs). */
  disableDecode(): void {
    this.config.setU16(CFG.COMMAND, this.command & ~(COMMAND.IO | COMMAND.MEMORY));
  }

  /** Restore config space and BAR registers to their power-on values and run the plugin's reset hook. */
  resetState(): void {
    this.config.restore(0, this.#initial.bytes);
    for (const bar of this.bars) {
      bar.address = this.#initial.addresses.get(bar)!;
      bar.pendingFrom = null;
    }
    this.#setIntx(false);
    this.#publishBusMaster();
    try {
      this.#instance.reset?.();
    } catch (e) {
      this.fault("reset failed", e);
    }
  }

  /** The machine ends: run the plugin's close hook (once; a throw is logged as a fault). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#instance.close?.();
    } catch (e) {
      this.fault("close failed", e);
    }
  }

  /** Validate and record a plugin doorbell; serve it at once if its BAR is decoded. */
  #addDoorbell(
    index: number,
    offset: number,
    length: IoeventfdLength,
    onKick: () => void,
    fd?: number,
  ): PciIoeventfd {
    const bar = this.#barBySlot[index];
    if (!bar || bar.index !== index) {
      throw new RangeError(`${this.tag} ioeventfd: no BAR ${index}`);
    }
    if (![0, 1, 2, 4, 8].includes(length)) {
      throw new RangeError(
        `${this.tag} ioeventfd: BAR ${index}: length ${length} (0, 1, 2, 4 or 8)`,
      );
    }
    if (length === 0 && bar.space === "io") {
      throw new RangeError(`${this.tag} ioeventfd: BAR ${index}: length 0 needs a memory BAR`);
    }
    if (!Number.isInteger(offset) || offset < 0 || BigInt(offset + length) > bar.size) {
      throw new RangeError(
        `${this.tag} ioeventfd: BAR ${index}: ${hex(offset)}+${length} is outside its ${
          hex(bar.size)
        } bytes`,
      );
    }
    const d: Doorbell = {
      bar,
      offset,
      length,
      onKick: () => {
        try {
          onKick();
        } catch (e) {
          this.fault(`BAR ${index}: doorbell at +${hex(offset)} failed`, e);
        }
      },
      fd,
      handle: null,
      address: null,
      removed: false,
    };
    this.#doorbells.push(d);
    if (bar.active) this.#attach(d, bar.active.address);
    return {
      bar: index,
      offset,
      length,
      get address() {
        return d.handle === null ? null : d.address;
      },
      remove: () => {
        if (d.removed) return;
        this.#detach(d);
        d.removed = true;
        this.#doorbells.splice(this.#doorbells.indexOf(d), 1);
      },
    };
  }

  /** Ask the platform to serve `d` in its BAR placed at `base`; on refusal the BAR handler keeps it. */
  #attach(d: Doorbell, base: bigint): void {
    if (d.removed || d.handle !== null) return;
    const address = base + BigInt(d.offset);
    try {
      d.handle = this.#platform.addIoeventfd(d.bar.space, address, d.length, d.onKick, d.fd);
      d.address = address;
    } catch (e) {
      this.log.warn(
        `BAR ${d.bar.index}: ioeventfd at ${hex(address)} refused (writes trap instead): ${
          errorText(e)
        }`,
      );
    }
  }

  #detach(d: Doorbell): void {
    if (d.handle === null) return;
    const handle = d.handle;
    d.handle = null;
    d.address = null;
    try {
      this.#platform.removeIoeventfd(handle);
    } catch (e) {
      this.log.error(`BAR ${d.bar.index}: removing ioeventfd failed: ${errorText(e)}`);
    }
  }

  /** The remote MSI descriptor (created on first use), or null where the platform has none. */
  #remoteMsi(): PciRemoteMsi | null {
    if (this.#remote === undefined) {
      const target = this.#platform.remoteMsi?.() ?? null;
      this.#remote = target && { vmFd: target.vmFd, state: new SharedArrayBuffer(4) };
      this.#publishBusMaster();
    }
    return this.#remote;
  }

  /** Mirror Bus Master Enable into the remote MSI state word. */
  #publishBusMaster(): void {
    if (!this.#remote) return;
    const words = new Int32Array(this.#remote.state);
    Atomics.store(words, REMOTE_MSI_WORD.BUS_MASTER, this.command & COMMAND.BUS_MASTER ? 1 : 0);
  }

  #sendMsi(address: bigint, data: number): boolean {
    if (!(this.command & COMMAND.BUS_MASTER)) {
      if (this.msiCounts.dropped++ === 0) {
        this.log.warn(`MSI to ${hex(address)} dropped: bus mastering is disabled`);
      }
      return false;
    }
    try {
      this.#platform.signalMsi(address, data);
    } catch (e) {
      if (this.msiCounts.dropped++ === 0) {
        this.log.warn(`MSI to ${hex(address)} data ${hex(data)} failed: ${errorText(e)}`);
      }
      return false;
    }
    this.msiCounts.sent++;
    return true;
  }

  /** Log a plugin fault (the first {@linkcode MAX_LOGGED_FAULTS}; later ones are counted). */
  fault(what: string, error: unknown): void {
    this.faults++;
    if (this.faults <= MAX_LOGGED_FAULTS) this.log.warn(`${what}: ${errorText(error)}`);
    if (this.faults === MAX_LOGGED_FAULTS) this.log.warn("further plugin faults are not logged");
  }

  /** Fill in the header, capability list and write masks. Returns the placed capabilities. */
  #buildHeader(decode: boolean): PlacedCapability[] {
    const { config: c, def } = this;
    c.setU16(CFG.VENDOR_ID, def.vendorId);
    c.setU16(CFG.DEVICE_ID, def.deviceId);
    c.setU8(CFG.REVISION, def.revision ?? 0);
    c.setU8(CFG.PROG_IF, def.classCode & 0xff);
    c.setU8(CFG.SUBCLASS, (def.classCode >> 8) & 0xff);
    c.setU8(CFG.CLASS, (def.classCode >> 16) & 0xff);
    c.setU16(CFG.SUBSYSTEM_VENDOR_ID, def.subsystemVendorId ?? 0);
    c.setU16(CFG.SUBSYSTEM_ID, def.subsystemId ?? 0);
    c.setWritable(CFG.COMMAND, 2, COMMAND_WRITABLE);
    c.setW1c(CFG.STATUS, 2, STATUS_W1C);
    c.setWritable(CFG.CACHE_LINE_SIZE, 1, 0xff);
    c.setWritable(CFG.LATENCY_TIMER, 1, 0xff);
    c.setWritable(CFG.INTERRUPT_LINE, 1, 0xff);
    if (this.gsi !== null) {
      c.setU8(CFG.INTERRUPT_PIN, INTERRUPT_PIN_A);
      c.setU8(CFG.INTERRUPT_LINE, this.gsi & 0xff);
    }
    if (decode) {
      const io = this.bars.some((b) => b.space === "io") ? COMMAND.IO : 0;
      const mem = this.bars.some((b) => b.space === "mem") ? COMMAND.MEMORY : 0;
      c.setU16(CFG.COMMAND, io | mem);
    }
    const placed: PlacedCapability[] = [];
    let at = CFG.HEADER_END;
    (def.capabilities ?? []).forEach((cap, index) => {
      placed.push({ index, id: cap.id, offset: at, size: cap.size });
      c.setU8(at, cap.id);
      (cap.body ?? []).forEach((b, i) => c.setU8(at + 2 + i, b));
      (cap.writable ?? []).forEach((m, i) => (c.writable[at + 2 + i] = m));
      at += (cap.size + 3) & ~3;
    });
    placed.forEach((cap, i) => c.setU8(cap.offset + 1, placed[i + 1]?.offset ?? 0));
    if (placed.length) {
      c.setU8(CFG.CAPABILITY_POINTER, placed[0].offset);
      c.setU16(CFG.STATUS, STATUS.CAPABILITY_LIST);
    }
    return placed;
  }

  /** The hooks covering device-specific `offset`: a capability's, else the device's. */
  #hooksAt(offset: number): [PciConfigHooks | undefined, number, string] {
    for (const cap of this.capabilities) {
      if (offset >= cap.offset && offset < cap.offset + cap.size) {
        const hooks = this.#instance.capabilities?.[cap.index];
        if (hooks) return [hooks, cap.offset, `capability ${hex(cap.id)}`];
      }
    }
    return [this.#instance.config, 0, "config"];
  }

  /** A guest write to a BAR register dword (1, 2 or 4 bytes of it). */
  #barWrite(offset: number, data: Uint8Array): void {
    const slot = (offset - CFG.BAR0) >> 2;
    const bar = this.barAt(slot);
    if (!bar) return;
    let value = bar.readDword(slot);
    for (let i = 0; i < data.length; i++) {
      const shift = 8 * ((offset & 3) + i);
      value = (value & ~(0xff << shift)) | (data[i] << shift);
    }
    const next = bar.addressAfterWrite(slot, value);
    if (bar.isSizingWrite(slot, value) || !this.decodeEnabled(bar.space)) {
      // A sizing probe never moves the decoded region; with decode off a write only stores.
      bar.address = next;
      if (!this.decodeEnabled(bar.space)) bar.pendingFrom = null;
      return;
    }
    if (bar.kind === "mem64" && bar.pendingFrom === null) {
      // First half of a 64-bit update: wait for the other half (or any other access).
      bar.pendingFrom = bar.address;
      bar.address = next;
      return;
    }
    const from = bar.pendingFrom ?? bar.address;
    bar.pendingFrom = null;
    bar.address = next;
    if (!this.#host.barMoved(this, bar)) bar.address = from;
  }

  /** Commit a half-written 64-bit BAR update when the guest touches anything else. */
  #commitPendingUnless(offset: number): void {
    for (const bar of this.bars) {
      if (bar.pendingFrom === null) continue;
      const slot = (offset - CFG.BAR0) >> 2;
      if (offset >= CFG.BAR0 && offset < CFG.BAR_END && bar.slots.includes(slot)) continue;
      const from = bar.pendingFrom;
      bar.pendingFrom = null;
      if (!this.#host.barMoved(this, bar)) bar.address = from;
    }
  }

  /** The device drove its INTx line. */
  #setIntx(level: boolean): void {
    this.#intxLevel = level;
    const status = this.config.u16(CFG.STATUS);
    this.config.setU16(
      CFG.STATUS,
      level ? status | STATUS.INTERRUPT : status & ~STATUS.INTERRUPT,
    );
    this.#driveIntx();
  }

  #driveIntx(): void {
    if (this.gsi === null) return;
    const masked = (this.command & COMMAND.INTX_DISABLE) !== 0;
    this.#host.intxChanged(this, this.#intxLevel && !masked);
  }

  /** The bus device the core maps for `bar`: the plugin's handler behind a fault guard. */
  #guardedBar(bar: PciBar): BusDevice {
    const handler = this.#instance.bars?.[bar.index];
    return {
      read: (offset, data) => {
        if (!handler) return void data.fill(0xff);
        try {
          handler.read(offset, data);
        } catch (e) {
          data.fill(0xff);
          this.fault(`BAR ${bar.index}: read at +${hex(offset)} failed`, e);
        }
      },
      write: (offset, data) => {
        if (!handler) return;
        try {
          handler.write(offset, data);
        } catch (e) {
          this.fault(`BAR ${bar.index}: write at +${hex(offset)} failed`, e);
        }
      },
    };
  }
}

/** A doorbell with its platform registration. */
interface Doorbell {
  readonly bar: PciBar;
  readonly offset: number;
  readonly length: IoeventfdLength;
  readonly onKick: () => void;
  readonly fd: number | undefined;
  handle: PciIoeventfdHandle | null;
  address: bigint | null;
  removed: boolean;
}

/** The message of an exception, whatever was thrown. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
