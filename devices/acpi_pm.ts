/**
 * ACPI fixed-hardware PM1a registers: the event block at
 * `PORTS.ACPI_PM1A_EVT` (4 bytes: PM1_STS, PM1_EN) and the control block at
 * `PORTS.ACPI_PM1A_CNT` (2 bytes: PM1_CNT). The two blocks are adjacent, so
 * the device can be registered once as {@linkcode ACPI_PM_PORT_SPAN} bytes at
 * the event block, or as {@linkcode AcpiPm.eventBlock} and
 * {@linkcode AcpiPm.controlBlock} separately.
 *
 * - PM1_STS is write-1-to-clear; PM1_EN is plain storage. The SCI (IRQ 9)
 *   is asserted while SCI_EN and any enabled status bit are set.
 *   {@linkcode AcpiPm.pressPowerButton} sets PWRBTN_STS, for a graceful
 *   shutdown through the fixed power button (FADT flag PWR_BUTTON = 0).
 * - PM1_CNT: SCI_EN (bit 0) always reads 1 (the machine starts in ACPI mode:
 *   there is no SMI command port, so FADT SMI_CMD must be 0). Writing
 *   SLP_EN (bit 13, reads 0) with SLP_TYP (bits 10-12) equal to the `_S5`
 *   value calls {@linkcode AcpiPmOptions.onPowerOff}. Any other sleep type
 *   wakes at once (WAK_STS is set) so the guest does not spin forever.
 * - No PM timer (FADT PM_TMR_BLK = 0).
 *
 * No reset register: 0xCF9 lies inside the PCI configuration address
 * register (0xCF8-0xCFB), so it is not modelled; reboot goes through the
 * i8042 pulse-reset command 0xFE (Linux falls back to it when the FADT has
 * no reset register).
 *
 * Accesses of any width are split into bytes; bytes outside the registers
 * read 0xff and are ignored on write.
 *
 * @module
 */

import type { BusDevice } from "./bus.ts";
import type { IrqLine } from "./irq.ts";
import { readBytewise, writeBytewise } from "./byte_access.ts";
import { ACPI_S5_SLP_TYP, PORTS } from "../x86/layout.ts";

/** PM1_STS bits (write 1 to clear). */
export const Pm1Sts = {
  /** PM timer carry. */
  TMR: 0x0001,
  /** Bus master activity. */
  BM: 0x0010,
  /** Global lock release. */
  GBL: 0x0020,
  /** Power button pressed. */
  PWRBTN: 0x0100,
  /** Sleep button pressed. */
  SLPBTN: 0x0200,
  /** RTC alarm. */
  RTC: 0x0400,
  /** PCI Express wake. */
  PCIEXP_WAKE: 0x4000,
  /** The system woke from a sleep state. */
  WAK: 0x8000,
} as const;

/** PM1_EN bits. */
export const Pm1En = {
  /** PM timer carry interrupt. */
  TMR: 0x0001,
  /** Global lock release interrupt. */
  GBL: 0x0020,
  /** Power button interrupt. */
  PWRBTN: 0x0100,
  /** Sleep button interrupt. */
  SLPBTN: 0x0200,
  /** RTC alarm interrupt. */
  RTC: 0x0400,
} as const;

/** PM1_CNT bits and fields. */
export const Pm1Cnt = {
  /** SCI enabled (ACPI mode); always reads 1 here. */
  SCI_EN: 0x0001,
  /** Bus master requests wake from C3. */
  BM_RLD: 0x0002,
  /** Global lock released (write-only). */
  GBL_RLS: 0x0004,
  /** Sleep type field mask (bits 10-12). */
  SLP_TYP_MASK: 0x1c00,
  /** Sleep type field shift. */
  SLP_TYP_SHIFT: 10,
  /** Enter the sleep state given by SLP_TYP (write-only). */
  SLP_EN: 0x2000,
} as const;

/** Byte offsets of the registers from the event block base. */
export const AcpiPmReg = {
  /** PM1_STS (2 bytes). */
  PM1_STS: 0,
  /** PM1_EN (2 bytes). */
  PM1_EN: 2,
  /** PM1_CNT (2 bytes), the control block. */
  PM1_CNT: PORTS.ACPI_PM1A_CNT - PORTS.ACPI_PM1A_EVT,
} as const;

/** Length of the PM1a event block (FADT PM1_EVT_LEN). */
export const ACPI_PM1_EVT_LEN = 4;

/** Length of the PM1a control block (FADT PM1_CNT_LEN). */
export const ACPI_PM1_CNT_LEN = 2;

/** Bytes from the event block base to the end of the control block: one registration. */
export const ACPI_PM_PORT_SPAN: number = AcpiPmReg.PM1_CNT + ACPI_PM1_CNT_LEN;

/** Construction options for {@linkcode AcpiPm}. */
export interface AcpiPmOptions {
  /** Name for messages; default `"acpi pm"`. */
  name?: string;
  /** The guest entered S5 (soft off). Exceptions propagate to the port access. */
  onPowerOff: () => void;
  /** The SCI line (IRQ 9); optional. */
  sci?: IrqLine;
  /** SLP_TYP value of `_S5` in the DSDT; default {@linkcode ACPI_S5_SLP_TYP}. */
  s5SlpTyp?: number;
}

/**
 * PM1a event and control blocks: a {@linkcode BusDevice} of
 * {@linkcode ACPI_PM_PORT_SPAN} bytes at the event block, or the two
 * sub-devices {@linkcode AcpiPm.eventBlock} and {@linkcode AcpiPm.controlBlock}.
 */
export class AcpiPm implements BusDevice {
  /** Name for messages. */
  readonly name: string;
  /** The event block alone ({@linkcode ACPI_PM1_EVT_LEN} bytes at `PORTS.ACPI_PM1A_EVT`). */
  readonly eventBlock: BusDevice;
  /** The control block alone ({@linkcode ACPI_PM1_CNT_LEN} bytes at `PORTS.ACPI_PM1A_CNT`). */
  readonly controlBlock: BusDevice;

  readonly #onPowerOff: () => void;
  readonly #sci?: IrqLine;
  readonly #s5SlpTyp: number;
  #status = 0;
  #enable = 0;
  #control: number = Pm1Cnt.SCI_EN;
  #sciLevel = false;

  /**
   * Create the blocks with all status and enable bits clear and SCI_EN set.
   * @param options the power-off callback and optional SCI line
   */
  constructor(options: AcpiPmOptions) {
    this.name = options.name ?? "acpi pm";
    this.#onPowerOff = options.onPowerOff;
    this.#sci = options.sci;
    this.#s5SlpTyp = options.s5SlpTyp ?? ACPI_S5_SLP_TYP;
    this.eventBlock = {
      read: (offset, data) => {
        data.fill(0xff);
        this.read(offset, data.subarray(0, clampWidth(offset, data, ACPI_PM1_EVT_LEN)));
      },
      write: (offset, data) =>
        this.write(offset, data.subarray(0, clampWidth(offset, data, ACPI_PM1_EVT_LEN))),
    };
    const cnt = AcpiPmReg.PM1_CNT;
    this.controlBlock = {
      read: (offset, data) => {
        data.fill(0xff);
        this.read(cnt + offset, data.subarray(0, clampWidth(offset, data, ACPI_PM1_CNT_LEN)));
      },
      write: (offset, data) =>
        this.write(cnt + offset, data.subarray(0, clampWidth(offset, data, ACPI_PM1_CNT_LEN))),
    };
  }

  /** PM1_STS as the guest reads it. */
  get status(): number {
    return this.#status;
  }

  /** PM1_EN. */
  get enable(): number {
    return this.#enable;
  }

  /** Whether this device asserts the SCI. */
  get sciLevel(): boolean {
    return this.#sciLevel;
  }

  /** Signal a power-button press (PWRBTN_STS); raises the SCI if the guest enabled it. */
  pressPowerButton(): void {
    this.#status |= Pm1Sts.PWRBTN;
    this.#updateSci();
  }

  /** Read registers at `offset` from the event block base. */
  read(offset: number, data: Uint8Array): void {
    readBytewise(offset, data, ACPI_PM_PORT_SPAN, (at) => this.#readByte(at));
  }

  /** Write registers at `offset` from the event block base. */
  write(offset: number, data: Uint8Array): void {
    writeBytewise(offset, data, ACPI_PM_PORT_SPAN, (at, value) => this.#writeByte(at, value));
    this.#updateSci();
  }

  #readByte(offset: number): number {
    const shift = (offset & 1) * 8;
    switch (offset & ~1) {
      case AcpiPmReg.PM1_STS:
        return this.#status >> shift;
      case AcpiPmReg.PM1_EN:
        return this.#enable >> shift;
      case AcpiPmReg.PM1_CNT:
        return (this.#control | Pm1Cnt.SCI_EN) >> shift;
      default:
        return 0xff;
    }
  }

  #writeByte(offset: number, value: number): void {
    const shift = (offset & 1) * 8;
    const bits = value << shift;
    const mask = 0xff << shift;
    switch (offset & ~1) {
      case AcpiPmReg.PM1_STS:
        this.#status &= ~bits;
        return;
      case AcpiPmReg.PM1_EN:
        this.#enable = (this.#enable & ~mask) | bits;
        return;
      case AcpiPmReg.PM1_CNT:
        this.#writeControl((this.#control & ~mask) | bits);
        return;
    }
  }

  #writeControl(value: number): void {
    // SLP_EN and GBL_RLS are write-only strobes; SCI_EN is stuck at 1.
    this.#control = (value & ~(Pm1Cnt.SLP_EN | Pm1Cnt.GBL_RLS)) | Pm1Cnt.SCI_EN;
    if (!(value & Pm1Cnt.SLP_EN)) return;
    const slpTyp = (value & Pm1Cnt.SLP_TYP_MASK) >> Pm1Cnt.SLP_TYP_SHIFT;
    if (slpTyp === this.#s5SlpTyp) {
      this.#onPowerOff();
    } else {
      // No sleep states besides S5: wake up immediately.
      this.#status |= Pm1Sts.WAK;
    }
  }

  #updateSci(): void {
    const level = (this.#status & this.#enable) !== 0;
    if (level === this.#sciLevel) return;
    this.#sciLevel = level;
    this.#sci?.set(level);
  }
}

/** Bytes of `data` that fall inside a block of `size` bytes when accessed at `offset`. */
function clampWidth(offset: number, data: Uint8Array, size: number): number {
  if (!Number.isInteger(offset) || offset < 0 || offset >= size) return 0;
  return Math.min(data.length, size - offset);
}
