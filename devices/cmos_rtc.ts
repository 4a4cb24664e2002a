/**
 * MC146818 real-time clock and CMOS memory: index port `PORTS.RTC`
 * (0x70, bit 7 is the NMI mask and is ignored) and data port 0x71; 128 bytes.
 *
 * - Time and date come from an injectable host clock plus an offset the
 *   guest changes by writing the time registers (with or without the SET
 *   bit), in UTC. Values are BCD or binary per register B's DM bit, 12- or
 *   24-hour per its 24/12 bit, computed at each read. The century is at
 *   0x32 (point the FADT's CENTURY field there). Day of week (1 = Sunday)
 *   is derived from the date; writes to it are ignored.
 * - Register A: UIP (bit 7) always reads 0, so no reader waits on it;
 *   divider and rate bits are plain storage (0x26 at power-on: 32.768 kHz
 *   time base, 1024 Hz periodic rate).
 * - Register B: all bits writable; setting SET freezes the time registers
 *   for the guest to write and clears UIE, clearing SET commits them.
 * - Register C: PF/AF/UF/IRQF, evaluated lazily from the clock (on every C
 *   read and on {@linkcode CmosRtc.poll}); reading clears it and lowers the
 *   IRQ. Register D: VRT (valid RAM and time) always set.
 * - Interrupts (IRQ 8) are optional: Linux boots without them. A VMM that
 *   wants alarm, update-ended or periodic interrupts (hwclock uses them via
 *   /dev/rtc) calls {@linkcode CmosRtc.poll} every
 *   {@linkcode CmosRtc.pollIntervalMs} milliseconds while that is not null.
 * - Memory size bytes are filled in as QEMU does: 0x15/0x16 base memory
 *   (KiB), 0x17/0x18 and 0x30/0x31 memory above 1 MiB (KiB, capped),
 *   0x34/0x35 memory between 16 MiB and 4 GiB (64 KiB units), 0x5b-0x5d
 *   memory above 4 GiB (64 KiB units), 0x5f number of CPUs minus one.
 *
 * @module
 */

import type { BusDevice } from "./bus.ts";
import type { IrqLine } from "./irq.ts";
import { readBytewise, writeBytewise } from "./byte_access.ts";
import { KiB, MiB, ramRegions } from "../x86/layout.ts";

/** CMOS register indexes. */
export const CmosReg = {
  /** Seconds. */
  SECONDS: 0x00,
  /** Seconds alarm. */
  SECONDS_ALARM: 0x01,
  /** Minutes. */
  MINUTES: 0x02,
  /** Minutes alarm. */
  MINUTES_ALARM: 0x03,
  /** Hours (bit 7 = PM in 12-hour mode). */
  HOURS: 0x04,
  /** Hours alarm. */
  HOURS_ALARM: 0x05,
  /** Day of week, 1 = Sunday. */
  DAY_OF_WEEK: 0x06,
  /** Day of month, 1-31. */
  DAY_OF_MONTH: 0x07,
  /** Month, 1-12. */
  MONTH: 0x08,
  /** Year within the century, 0-99. */
  YEAR: 0x09,
  /** Register A: UIP, divider, rate select. */
  A: 0x0a,
  /** Register B: SET, interrupt enables, data mode, 24/12. */
  B: 0x0b,
  /** Register C: interrupt flags (read-only, read clears). */
  C: 0x0c,
  /** Register D: VRT (read-only). */
  D: 0x0d,
  /** Shutdown status byte (storage). */
  SHUTDOWN_STATUS: 0x0f,
  /** Base memory in KiB, low byte. */
  BASE_MEMORY_LO: 0x15,
  /** Base memory in KiB, high byte. */
  BASE_MEMORY_HI: 0x16,
  /** Extended memory above 1 MiB in KiB (capped at 65535), low byte. */
  EXTENDED_MEMORY_LO: 0x17,
  /** Extended memory above 1 MiB in KiB, high byte. */
  EXTENDED_MEMORY_HI: 0x18,
  /** Copy of the extended memory size, low byte. */
  EXTENDED_MEMORY2_LO: 0x30,
  /** Copy of the extended memory size, high byte. */
  EXTENDED_MEMORY2_HI: 0x31,
  /** Century (BCD or binary per DM). */
  CENTURY: 0x32,
  /** Memory between 16 MiB and 4 GiB in 64 KiB units, low byte. */
  MEMORY_ABOVE_16M_LO: 0x34,
  /** Memory between 16 MiB and 4 GiB in 64 KiB units, high byte. */
  MEMORY_ABOVE_16M_HI: 0x35,
  /** Memory above 4 GiB in 64 KiB units, bits 0-7 (0x5c bits 8-15, 0x5d bits 16-23). */
  MEMORY_ABOVE_4G: 0x5b,
  /** Number of CPUs minus one (QEMU/SeaBIOS convention). */
  CPU_COUNT_MINUS_ONE: 0x5f,
} as const;

/** Register A bits. */
export const RegA = {
  /** Update in progress (always reads 0 here). */
  UIP: 0x80,
  /** Divider chain select (bits 4-6). */
  DIVIDER_MASK: 0x70,
  /** Divider value for a 32.768 kHz time base. */
  DIVIDER_32KHZ: 0x20,
  /** Periodic rate select (bits 0-3). */
  RATE_MASK: 0x0f,
} as const;

/** Register B bits. */
export const RegB = {
  /** Inhibit updates while the guest sets the time. */
  SET: 0x80,
  /** Periodic interrupt enable. */
  PIE: 0x40,
  /** Alarm interrupt enable. */
  AIE: 0x20,
  /** Update-ended interrupt enable. */
  UIE: 0x10,
  /** Square wave enable (ignored). */
  SQWE: 0x08,
  /** Data mode: 1 = binary, 0 = BCD. */
  DM_BINARY: 0x04,
  /** 1 = 24-hour mode, 0 = 12-hour mode. */
  HOUR_24: 0x02,
  /** Daylight saving enable (ignored). */
  DSE: 0x01,
} as const;

/** Register C bits. */
export const RegC = {
  /** Some enabled flag below is set: the IRQ is asserted. */
  IRQF: 0x80,
  /** Periodic interrupt flag. */
  PF: 0x40,
  /** Alarm flag. */
  AF: 0x20,
  /** Update-ended flag. */
  UF: 0x10,
} as const;

/** Register D bits. */
export const RegD = {
  /** Valid RAM and time. */
  VRT: 0x80,
} as const;

/** Register A at power-on: 32.768 kHz divider, 1024 Hz rate. */
export const RTC_REG_A_DEFAULT: number = RegA.DIVIDER_32KHZ | 0x06;

/** Register B at power-on: 24-hour, BCD. */
export const RTC_REG_B_DEFAULT: number = RegB.HOUR_24;

/** Number of CMOS bytes (the index is 7 bits). */
export const CMOS_SIZE = 128;

/** Ports the device occupies (index, data). */
export const RTC_PORT_COUNT = 2;

/** An alarm register value at or above this matches any value ("don't care"). */
export const RTC_ALARM_DONT_CARE = 0xc0;

/** Construction options for {@linkcode CmosRtc}. */
export interface CmosRtcOptions {
  /** Name for messages; default `"cmos rtc"`. */
  name?: string;
  /** Guest memory size in bytes, for the memory size bytes. */
  memoryBytes: number;
  /** Number of vCPUs, stored at 0x5f as count - 1; default 1. */
  cpus?: number;
  /** Host clock in milliseconds since the Unix epoch (UTC); default `Date.now`. */
  clock?: () => number;
  /** IRQ 8, for alarm/update/periodic interrupts; optional. */
  irq?: IrqLine;
}

/** The MC146818 RTC and CMOS RAM as a {@linkcode BusDevice} of {@linkcode RTC_PORT_COUNT} ports. */
export class CmosRtc implements BusDevice {
  /** Name for messages. */
  readonly name: string;

  readonly #clock: () => number;
  readonly #irq?: IrqLine;
  readonly #cmos = new Uint8Array(CMOS_SIZE);
  #index = 0;
  /** Guest time minus host time, in ms. */
  #offsetMs = 0;
  /** Time fields frozen while register B's SET bit is set. */
  #frozen: DateFields | undefined;
  /** Register C flags (PF/AF/UF; IRQF computed). */
  #flags = 0;
  /** Guest time up to which the flags have been evaluated. */
  #evaluatedMs: number;
  #irqLevel = false;

  /**
   * Create the RTC with the time taken from the clock and the memory size bytes filled in.
   * @param options memory size, clock and optional IRQ line
   */
  constructor(options: CmosRtcOptions) {
    this.name = options.name ?? "cmos rtc";
    this.#clock = options.clock ?? Date.now;
    this.#irq = options.irq;
    this.#cmos[CmosReg.A] = RTC_REG_A_DEFAULT;
    this.#cmos[CmosReg.B] = RTC_REG_B_DEFAULT;
    this.#setMemorySize(options.memoryBytes, options.cpus ?? 1);
    this.#evaluatedMs = this.#guestNow();
  }

  /**
   * How often {@linkcode poll} should run for the interrupts the guest
   * enabled, in ms; null when no RTC interrupt is enabled (no polling needed).
   */
  get pollIntervalMs(): number | null {
    const b = this.#cmos[CmosReg.B];
    const period = this.#periodicPeriodMs();
    if ((b & RegB.PIE) && period !== undefined) return Math.max(1, period);
    if (b & (RegB.AIE | RegB.UIE)) return Math.max(1, 1000 - (this.#guestNow() % 1000));
    return null;
  }

  /** Current level of the IRQ line as this device drives it. */
  get irqLevel(): boolean {
    return this.#irqLevel;
  }

  /** Evaluate alarm/update/periodic events up to now and drive the IRQ line. */
  poll(): void {
    this.#catchUp();
    this.#updateIrq();
  }

  /** Read at `offset`: 0 is the index port (reads 0xff), 1 the data port. */
  read(offset: number, data: Uint8Array): void {
    readBytewise(offset, data, RTC_PORT_COUNT, (at) => at === 0 ? 0xff : this.#readRegister());
    this.#updateIrq();
  }

  /** Write at `offset`: 0 selects the register (bit 7 ignored), 1 writes it. */
  write(offset: number, data: Uint8Array): void {
    writeBytewise(offset, data, RTC_PORT_COUNT, (at, value) => {
      if (at === 0) this.#index = value & 0x7f;
      else this.#writeRegister(value);
    });
    this.#updateIrq();
  }

  #readRegister(): number {
    const index = this.#index;
    switch (index) {
      case CmosReg.SECONDS:
      case CmosReg.MINUTES:
      case CmosReg.HOURS:
      case CmosReg.DAY_OF_WEEK:
      case CmosReg.DAY_OF_MONTH:
      case CmosReg.MONTH:
      case CmosReg.YEAR:
      case CmosReg.CENTURY:
        return this.#encodeField(index, this.#frozen ?? fieldsOf(this.#guestNow()));
      case CmosReg.A:
        return this.#cmos[CmosReg.A] & ~RegA.UIP;
      case CmosReg.C: {
        this.#catchUp();
        const c = this.#regC();
        this.#flags = 0;
        return c;
      }
      case CmosReg.D:
        return RegD.VRT;
      default:
        return this.#cmos[index];
    }
  }

  #writeRegister(value: number): void {
    const index = this.#index;
    switch (index) {
      case CmosReg.SECONDS:
      case CmosReg.MINUTES:
      case CmosReg.HOURS:
      case CmosReg.DAY_OF_MONTH:
      case CmosReg.MONTH:
      case CmosReg.YEAR:
      case CmosReg.CENTURY: {
        const fields = this.#frozen ?? fieldsOf(this.#guestNow());
        this.#decodeField(index, value, fields);
        if (this.#frozen) this.#frozen = fields;
        else this.#commit(fields);
        return;
      }
      case CmosReg.DAY_OF_WEEK:
        return; // derived from the date
      case CmosReg.A:
        this.#catchUp();
        this.#cmos[CmosReg.A] = value & ~RegA.UIP;
        return;
      case CmosReg.B:
        this.#writeRegB(value);
        return;
      case CmosReg.C:
      case CmosReg.D:
        return; // read-only
      default:
        this.#cmos[index] = value;
    }
  }

  #writeRegB(value: number): void {
    this.#catchUp();
    const wasSet = this.#frozen !== undefined;
    if (value & RegB.SET) {
      value &= ~RegB.UIE;
      if (!wasSet) this.#frozen = fieldsOf(this.#guestNow());
    }
    this.#cmos[CmosReg.B] = value;
    if (!(value & RegB.SET) && this.#frozen) {
      const fields = this.#frozen;
      this.#frozen = undefined;
      this.#commit(fields);
    }
  }

  /** Make `fields` the current guest time. */
  #commit(fields: DateFields): void {
    const epoch = Date.UTC(
      fields.year,
      fields.month - 1,
      fields.day,
      fields.hour,
      fields.minute,
      fields.second,
    );
    this.#offsetMs = epoch - this.#clock();
    this.#evaluatedMs = this.#guestNow();
  }

  #guestNow(): number {
    return this.#clock() + this.#offsetMs;
  }

  get #binary(): boolean {
    return (this.#cmos[CmosReg.B] & RegB.DM_BINARY) !== 0;
  }

  #encode(value: number): number {
    return this.#binary ? value : toBcd(value);
  }

  #decode(value: number): number {
    return this.#binary ? value : fromBcd(value);
  }

  #encodeHours(hour: number): number {
    if (this.#cmos[CmosReg.B] & RegB.HOUR_24) return this.#encode(hour);
    const pm = hour >= 12 ? 0x80 : 0;
    return this.#encode(hour % 12 === 0 ? 12 : hour % 12) | pm;
  }

  #encodeField(index: number, f: DateFields): number {
    switch (index) {
      case CmosReg.SECONDS:
        return this.#encode(f.second);
      case CmosReg.MINUTES:
        return this.#encode(f.minute);
      case CmosReg.HOURS:
        return this.#encodeHours(f.hour);
      case CmosReg.DAY_OF_WEEK:
        return this.#encode(f.weekday + 1);
      case CmosReg.DAY_OF_MONTH:
        return this.#encode(f.day);
      case CmosReg.MONTH:
        return this.#encode(f.month);
      case CmosReg.YEAR:
        return this.#encode(f.year % 100);
      default:
        return this.#encode(Math.floor(f.year / 100) % 100);
    }
  }

  #decodeField(index: number, value: number, f: DateFields): void {
    switch (index) {
      case CmosReg.SECONDS:
        f.second = clamp(this.#decode(value), 0, 59);
        return;
      case CmosReg.MINUTES:
        f.minute = clamp(this.#decode(value), 0, 59);
        return;
      case CmosReg.HOURS:
        if (this.#cmos[CmosReg.B] & RegB.HOUR_24) {
          f.hour = clamp(this.#decode(value), 0, 23);
        } else {
          const h12 = clamp(this.#decode(value & 0x7f), 1, 12) % 12;
          f.hour = h12 + (value & 0x80 ? 12 : 0);
        }
        return;
      case CmosReg.DAY_OF_MONTH:
        f.day = clamp(this.#decode(value), 1, 31);
        return;
      case CmosReg.MONTH:
        f.month = clamp(this.#decode(value), 1, 12);
        return;
      case CmosReg.YEAR:
        f.year = Math.floor(f.year / 100) * 100 + clamp(this.#decode(value), 0, 99);
        return;
      default:
        f.year = clamp(this.#decode(value), 0, 99) * 100 + (f.year % 100);
    }
  }

  /** Set PF/AF/UF for everything that happened since the last evaluation. */
  #catchUp(): void {
    const now = this.#guestNow();
    const last = this.#evaluatedMs;
    this.#evaluatedMs = now;
    if (now <= last || this.#frozen) return;
    const period = this.#periodicPeriodMs();
    if (period !== undefined && Math.floor(now / period) > Math.floor(last / period)) {
      this.#flags |= RegC.PF;
    }
    if ((this.#cmos[CmosReg.A] & RegA.DIVIDER_MASK) !== RegA.DIVIDER_32KHZ) return;
    const lastSecond = Math.floor(last / 1000);
    const nowSecond = Math.floor(now / 1000);
    if (nowSecond <= lastSecond) return;
    this.#flags |= RegC.UF;
    // A day of seconds covers every alarm pattern.
    const from = Math.max(lastSecond + 1, nowSecond - 86_399);
    for (let s = from; s <= nowSecond; s++) {
      if (this.#alarmMatches(fieldsOf(s * 1000))) {
        this.#flags |= RegC.AF;
        break;
      }
    }
  }

  #alarmMatches(f: DateFields): boolean {
    const match = (alarm: number, current: number) =>
      alarm >= RTC_ALARM_DONT_CARE || alarm === current;
    return match(this.#cmos[CmosReg.SECONDS_ALARM], this.#encode(f.second)) &&
      match(this.#cmos[CmosReg.MINUTES_ALARM], this.#encode(f.minute)) &&
      match(this.#cmos[CmosReg.HOURS_ALARM], this.#encodeHours(f.hour));
  }

  /** Periodic interrupt period for register A's rate, or undefined when off. */
  #periodicPeriodMs(): number | undefined {
    const a = this.#cmos[CmosReg.A];
    const rate = a & RegA.RATE_MASK;
    if (rate === 0 || (a & RegA.DIVIDER_MASK) !== RegA.DIVIDER_32KHZ) return undefined;
    const shift = rate < 3 ? rate + 7 : rate;
    return ((1 << (shift - 1)) * 1000) / 32768;
  }

  #regC(): number {
    const enabled = this.#flags & this.#cmos[CmosReg.B] & (RegC.PF | RegC.AF | RegC.UF);
    return this.#flags | (enabled ? RegC.IRQF : 0);
  }

  #updateIrq(): void {
    const level = (this.#regC() & RegC.IRQF) !== 0;
    if (level === this.#irqLevel) return;
    this.#irqLevel = level;
    this.#irq?.set(level);
  }

  #setMemorySize(memoryBytes: number, cpus: number): void {
    const memory = Number.isFinite(memoryBytes) && memoryBytes > 0 ? memoryBytes : 0;
    const [low, high] = ramRegions(memory);
    const below4g = low.size;
    const above4g = high?.size ?? 0;
    const put16 = (index: number, value: number) => {
      this.#cmos[index] = value & 0xff;
      this.#cmos[index + 1] = (value >> 8) & 0xff;
    };
    put16(CmosReg.BASE_MEMORY_LO, Math.min(Math.floor(below4g / KiB), 640));
    const extended = Math.min(Math.max(0, Math.floor((below4g - MiB) / KiB)), 0xffff);
    put16(CmosReg.EXTENDED_MEMORY_LO, extended);
    put16(CmosReg.EXTENDED_MEMORY2_LO, extended);
    const above16m = Math.min(Math.max(0, Math.floor((below4g - 16 * MiB) / (64 * KiB))), 0xffff);
    put16(CmosReg.MEMORY_ABOVE_16M_LO, above16m);
    const above4gUnits = Math.floor(above4g / (64 * KiB));
    this.#cmos[CmosReg.MEMORY_ABOVE_4G] = above4gUnits & 0xff;
    this.#cmos[CmosReg.MEMORY_ABOVE_4G + 1] = Math.floor(above4gUnits / 0x100) & 0xff;
    this.#cmos[CmosReg.MEMORY_ABOVE_4G + 2] = Math.floor(above4gUnits / 0x10000) & 0xff;
    this.#cmos[CmosReg.CPU_COUNT_MINUS_ONE] = clamp(Math.floor(cpus) - 1, 0, 0xff);
  }
}

/** A broken-down UTC time. */
interface DateFields {
  /** Full year, e.g. 2024. */
  year: number;
  /** 1-12. */
  month: number;
  /** 1-31. */
  day: number;
  /** 0-23. */
  hour: number;
  /** 0-59. */
  minute: number;
  /** 0-59. */
  second: number;
  /** 0 = Sunday. */
  weekday: number;
}

function fieldsOf(ms: number): DateFields {
  const d = new Date(ms);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
    weekday: d.getUTCDay(),
  };
}

function toBcd(value: number): number {
  return (Math.floor(value / 10) % 10) * 16 + (value % 10);
}

function fromBcd(value: number): number {
  return (value >> 4) * 10 + (value & 0x0f);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
