/**
 * The guest physical and port address map of a dvmm x86 machine. Every part
 * that places something in the guest (boot code, E820, ACPI, PCI allocation,
 * legacy devices) takes its addresses from here.
 *
 * ```
 * 0x0000_0000  RAM (low), up to min(memory, LOW_RAM_END)
 * 0xC000_0000  PCI 32-bit MMIO window (BARs)          PCI_MMIO32
 * 0xE000_0000  PCI ECAM (MMCONFIG), 256 buses          PCI_ECAM
 * 0xFEC0_0000  IOAPIC                                  IOAPIC
 * 0xFEE0_0000  local APIC                              LAPIC
 * 0x1_0000_0000 RAM (high), the rest of memory
 * above RAM    PCI 64-bit MMIO window, 1 GiB aligned   pciMmio64Window()
 * ```
 *
 * @module
 */

/** A half-open address range `[base, base + size)`. */
export interface AddressRange {
  /** First address. */
  readonly base: number;
  /** Length in bytes. */
  readonly size: number;
}

/** 1 KiB, 1 MiB, 1 GiB, 4 GiB. */
export const KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB, FOUR_GIB = 4 * GiB;

/** Low RAM ends where the MMIO hole below 4 GiB starts. */
export const LOW_RAM_END = 0xC000_0000;

/** PCI 32-bit memory window for BARs. */
export const PCI_MMIO32: AddressRange = { base: 0xC000_0000, size: 0x2000_0000 };

/** PCI Express enhanced configuration access (ECAM / MMCONFIG), buses 0-255. */
export const PCI_ECAM: AddressRange = { base: 0xE000_0000, size: 0x1000_0000 };

/** IOAPIC registers. */
export const IOAPIC: AddressRange = { base: 0xFEC0_0000, size: 0x1000 };

/** Local APIC registers. */
export const LAPIC: AddressRange = { base: 0xFEE0_0000, size: 0x1000 };

/** The whole reserved hole below 4 GiB (PCI windows, ECAM, APICs, up to 4 GiB). */
export const MMIO_HOLE: AddressRange = { base: LOW_RAM_END, size: FOUR_GIB - LOW_RAM_END };

/** Size of the PCI 64-bit memory window. */
export const PCI_MMIO64_SIZE = 64 * GiB;

/** PCI I/O port window for I/O BARs. */
export const PCI_IO: AddressRange = { base: 0xC000, size: 0x4000 };

/** Legacy I/O ports. */
export const PORTS = {
  /** 8250 UART COM1, 8 ports. */
  COM1: 0x3f8,
  /** i8042 data port. */
  I8042_DATA: 0x60,
  /** i8042 command/status port. */
  I8042_CMD: 0x64,
  /** CMOS RTC index port (data at +1). */
  RTC: 0x70,
  /** PCI configuration mechanism #1 address register (data at 0xCFC-0xCFF). */
  PCI_CONFIG_ADDRESS: 0xcf8,
  /** PCI configuration mechanism #1 data window. */
  PCI_CONFIG_DATA: 0xcfc,
  /** ACPI PM1a event block (4 bytes: status, enable). */
  ACPI_PM1A_EVT: 0x600,
  /** ACPI PM1a control block (2 bytes; SLP_EN|SLP_TYP=5 powers off). */
  ACPI_PM1A_CNT: 0x604,
} as const;

/** Legacy interrupt lines (GSI numbers on the in-kernel IOAPIC/PIC). */
export const IRQS = {
  /** COM1. */
  COM1: 4,
  /** i8042 keyboard. */
  KEYBOARD: 1,
  /** RTC. */
  RTC: 8,
  /** ACPI SCI. */
  SCI: 9,
} as const;

/** ACPI SLP_TYP value for S5 (soft off), as the DSDT's `_S5` package declares it. */
export const ACPI_S5_SLP_TYP = 5;

/** Guest RAM regions for `memory` bytes: low RAM below the hole, the rest above 4 GiB. */
export function ramRegions(memory: number): AddressRange[] {
  const low = Math.min(memory, LOW_RAM_END);
  const regions: AddressRange[] = [{ base: 0, size: low }];
  if (memory > low) regions.push({ base: FOUR_GIB, size: memory - low });
  return regions;
}

/** The PCI 64-bit window: the first 1 GiB boundary at or above the end of RAM (and 4 GiB). */
export function pciMmio64Window(memory: number): AddressRange {
  const regions = ramRegions(memory);
  const last = regions[regions.length - 1];
  const end = Math.max(last.base + last.size, FOUR_GIB);
  return { base: Math.ceil(end / GiB) * GiB, size: PCI_MMIO64_SIZE };
}
