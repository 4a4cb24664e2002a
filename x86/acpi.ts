/**
 * The ACPI tables dvmm gives the guest, built as one blob placed at
 * {@linkcode ACPI_TABLES} (0xE0000, in the BIOS area Linux scans for the RSDP; the
 * loader also passes the RSDP address in boot_params.acpi_rsdp_addr):
 *
 * ```
 * RSDP (v2) -> RSDT, XSDT -> FACP (FADT rev 6) -> FACS, DSDT
 *                          -> APIC (MADT): a local APIC per vCPU, the IOAPIC, ISA overrides
 *                          -> MCFG: ECAM for segment 0, bus 0 (the only bus dvmm has)
 * ```
 *
 * The FADT is a full (not hardware-reduced) one so Linux uses the legacy PM1
 * registers: PM1a event/control blocks at `PORTS.ACPI_PM1A_EVT` / `ACPI_PM1A_CNT`,
 * SCI on `IRQS.SCI`, no SMI command port (ACPI is already enabled; the PM1 control
 * register should read back SCI_EN = 1), the fixed-feature power button (PWRBTN in
 * PM1 status/enable). The 8042 boot flag is clear: dvmm's 8042 is only there for
 * the reset line (Linux's keyboard-controller reboot writes port 0x64 itself),
 * and without the flag Linux does not spend time probing a PS/2 controller
 * that has no keyboard behind it (as on QEMU's microvm).
 * The DSDT declares `\_S5` (soft off, SLP_TYP = `ACPI_S5_SLP_TYP`), the PCI host
 * bridge `\_SB.PCI0` with its bus, I/O and memory windows (without it an ACPI
 * kernel does not scan PCI), and a motherboard resource device reserving the ECAM.
 *
 * @module
 */

import {
  ACPI_S5_SLP_TYP,
  IOAPIC,
  IRQS,
  LAPIC,
  PCI_ECAM,
  PCI_IO,
  PCI_MMIO32,
  pciMmio64Window,
  PORTS,
} from "./layout.ts";
import { ACPI_TABLES, BIOS_END } from "./boot_layout.ts";
import * as aml from "./aml.ts";

/** A legacy PCI interrupt route for the host bridge's `_PRT`. */
export interface PciInterruptRoute {
  /** PCI device (slot) number on bus 0. */
  readonly device: number;
  /** Interrupt pin: 0 = INTA .. 3 = INTD. */
  readonly pin: number;
  /** GSI (IOAPIC input) it is wired to (level-triggered, active-low by ACPI convention). */
  readonly gsi: number;
}

/** Options of {@linkcode buildAcpiTables}. */
export interface AcpiOptions {
  /** Number of vCPUs (APIC ids 0..cpus-1), 1..254. */
  readonly cpus: number;
  /** Guest RAM size (places the 64-bit PCI window). */
  readonly memorySize: number;
  /** Where the blob goes (default {@linkcode ACPI_TABLES}). */
  readonly base?: number;
  /** Legacy INTx routes for `_PRT` (default none: devices use MSI/MSI-X). */
  readonly pciInterrupts?: readonly PciInterruptRoute[];
  /** FADT reset register (an I/O port and value, e.g. 0xcf9 / 0x06); default none. */
  readonly reset?: { readonly port: number; readonly value: number };
}

/** Where one table ended up. */
export interface PlacedTable {
  /** Guest physical address. */
  readonly addr: number;
  /** Length in bytes. */
  readonly length: number;
}

/** The built tables. */
export interface AcpiTables {
  /** Guest physical address of the blob. */
  readonly base: number;
  /** The blob, to write at `base`. */
  readonly bytes: Uint8Array;
  /** Address of the RSDP (for boot_params.acpi_rsdp_addr). */
  readonly rsdpAddr: number;
  /** Each table by signature ("RSD PTR ", "FACS", "DSDT", "FACP", "APIC", "MCFG", "XSDT", "RSDT"). */
  readonly tables: Readonly<Record<string, PlacedTable>>;
}

/** OEM fields of every table. */
export const ACPI_OEM = {
  id: "DVMM  ",
  tableId: "DVMMVM  ",
  revision: 1,
  creatorId: "DVMM",
  creatorRevision: 1,
};

/** struct acpi_table_header: 36 bytes at the start of every table except RSDP and FACS. */
export const SDT_HEADER = {
  signature: { offset: 0, size: 4 },
  length: { offset: 4, size: 4 },
  revision: { offset: 8, size: 1 },
  checksum: { offset: 9, size: 1 },
  oem_id: { offset: 10, size: 6 },
  oem_table_id: { offset: 16, size: 8 },
  oem_revision: { offset: 24, size: 4 },
  creator_id: { offset: 28, size: 4 },
  creator_revision: { offset: 32, size: 4 },
  SIZE: 36,
} as const;

/** RSDP (ACPI 2.0+), 36 bytes. */
export const RSDP = {
  signature: { offset: 0, size: 8 },
  checksum: { offset: 8, size: 1 },
  oem_id: { offset: 9, size: 6 },
  revision: { offset: 15, size: 1 },
  rsdt_address: { offset: 16, size: 4 },
  length: { offset: 20, size: 4 },
  xsdt_address: { offset: 24, size: 8 },
  extended_checksum: { offset: 32, size: 1 },
  SIZE: 36,
  /** The first checksum covers the ACPI 1.0 part. */
  V1_SIZE: 20,
} as const;

/** FADT (revision 6) field offsets used here. */
export const FADT = {
  firmware_ctrl: 36,
  dsdt: 40,
  preferred_pm_profile: 45,
  sci_int: 46,
  smi_cmd: 48,
  pm1a_evt_blk: 56,
  pm1a_cnt_blk: 64,
  pm1_evt_len: 88,
  pm1_cnt_len: 89,
  iapc_boot_arch: 109,
  flags: 112,
  reset_reg: 116,
  reset_value: 128,
  minor_version: 131,
  x_firmware_ctrl: 132,
  x_dsdt: 140,
  x_pm1a_evt_blk: 148,
  x_pm1a_cnt_blk: 172,
  SIZE: 276,
  REVISION: 6,
} as const;

/** FADT flag bits. */
export const FADT_FLAGS = {
  WBINVD: 1 << 0,
  PROC_C1: 1 << 2,
  /** Set: the power button is a control-method device (dvmm leaves it clear: fixed feature). */
  PWR_BUTTON: 1 << 4,
  /** There is no fixed-feature sleep button. */
  SLP_BUTTON: 1 << 5,
  RESET_REG_SUP: 1 << 10,
  HW_REDUCED_ACPI: 1 << 20,
} as const;

/** IAPC_BOOT_ARCH bits. */
export const IAPC_BOOT_ARCH = {
  LEGACY_DEVICES: 1 << 0,
  /** An 8042 keyboard controller is present: Linux probes i8042 without a PNP device. */
  I8042: 1 << 1,
  VGA_NOT_PRESENT: 1 << 2,
} as const;

/** MADT entry types. */
export const MADT_TYPE = {
  LOCAL_APIC: 0,
  IO_APIC: 1,
  INTERRUPT_OVERRIDE: 2,
  LOCAL_APIC_NMI: 4,
} as const;

/** MPS INTI flags of an interrupt source override (polarity bits 1:0, trigger mode bits 3:2). */
export const MPS_INTI = {
  CONFORMING: 0,
  ACTIVE_HIGH: 0x1,
  ACTIVE_LOW: 0x3,
  EDGE: 0x1 << 2,
  LEVEL: 0x3 << 2,
} as const;

/**
 * The last PCI bus dvmm describes (MCFG, host bridge `_CRS`). dvmm has only bus
 * 0; declaring 0-255 made Linux probe every device slot of 255 empty buses
 * through 0xCF8/0xCFC at boot (~8,000 synchronous exits).
 */
export const PCI_LAST_BUS = 0;

/** Highest vCPU count the xAPIC MADT entries (8-bit APIC ids, 0xff = broadcast) can describe. */
export const MAX_ACPI_CPUS = 254;

/** ACPI generic address space ids. */
const GAS_SYSTEM_IO = 1;

/** Build every table and lay them out from `base`. */
export function buildAcpiTables(opts: AcpiOptions): AcpiTables {
  const base = opts.base ?? ACPI_TABLES;
  const placed: Record<string, PlacedTable> = {};
  const parts: { at: number; bytes: Uint8Array }[] = [];
  let cursor = base;
  const place = (sig: string, bytes: Uint8Array, align: number) => {
    cursor = Math.ceil(cursor / align) * align;
    const at = cursor;
    parts.push({ at, bytes });
    placed[sig] = { addr: at, length: bytes.length };
    cursor += bytes.length;
    return at;
  };
  // RSDP first (it refers to RSDT/XSDT, so it is filled last at this fixed spot).
  const rsdpAt = place("RSD PTR ", new Uint8Array(RSDP.SIZE), 16);
  const facs = place("FACS", buildFacs(), 64);
  const dsdt = place("DSDT", buildDsdt(opts), 16);
  const facp = place("FACP", buildFadt({ facs, dsdt, reset: opts.reset }), 16);
  const apic = place("APIC", buildMadt(opts.cpus), 16);
  const mcfg = place("MCFG", buildMcfg(), 16);
  const xsdt = place("XSDT", buildXsdt([facp, apic, mcfg]), 16);
  const rsdt = place("RSDT", buildRsdt([facp, apic, mcfg]), 16);
  parts[0].bytes = buildRsdp({ rsdt, xsdt });

  const bytes = new Uint8Array(cursor - base);
  for (const p of parts) bytes.set(p.bytes, p.at - base);
  if (base === ACPI_TABLES && base + bytes.length > BIOS_END) {
    throw new RangeError(
      `ACPI tables (${bytes.length} bytes) overflow the BIOS area 0x${base.toString(16)}-0x${
        BIOS_END.toString(16)
      }`,
    );
  }
  return { base, bytes, rsdpAddr: rsdpAt, tables: placed };
}

/** The 8-bit checksum byte that makes `bytes` sum to 0 (with that byte currently 0). */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** RSDP v2 pointing at the RSDT and XSDT, with both checksums. */
export function buildRsdp(addrs: { rsdt: number; xsdt: number }): Uint8Array {
  const b = new Uint8Array(RSDP.SIZE);
  const v = new DataView(b.buffer);
  ascii(b, RSDP.signature.offset, "RSD PTR ");
  ascii(b, RSDP.oem_id.offset, ACPI_OEM.id);
  b[RSDP.revision.offset] = 2;
  v.setUint32(RSDP.rsdt_address.offset, addrs.rsdt, true);
  v.setUint32(RSDP.length.offset, RSDP.SIZE, true);
  v.setBigUint64(RSDP.xsdt_address.offset, BigInt(addrs.xsdt), true);
  b[RSDP.checksum.offset] = checksum(b.subarray(0, RSDP.V1_SIZE));
  b[RSDP.extended_checksum.offset] = checksum(b);
  return b;
}

/** FACS (64 bytes, no checksum): the firmware control structure a full FADT refers to. */
export function buildFacs(): Uint8Array {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  ascii(b, 0, "FACS");
  v.setUint32(4, 64, true);
  b[32] = 2; // version
  return b;
}

/** DSDT: `\_S5`, the PCI host bridge and the ECAM reservation. */
export function buildDsdt(opts: AcpiOptions): Uint8Array {
  return table("DSDT", 2, buildDsdtAml(opts));
}

/** The AML body of the DSDT (without the table header). */
export function buildDsdtAml(opts: Pick<AcpiOptions, "memorySize" | "pciInterrupts">): Uint8Array {
  const mmio64 = pciMmio64Window(opts.memorySize);
  const pci0: Uint8Array[] = [
    aml.name("_HID", aml.eisaId("PNP0A08")),
    aml.name("_CID", aml.eisaId("PNP0A03")),
    aml.name("_SEG", aml.integer(0)),
    aml.name("_BBN", aml.integer(0)),
    aml.name("_UID", aml.integer(0)),
    aml.name(
      "_CRS",
      aml.resourceTemplate([
        aml.Resource.busNumbers(0, PCI_LAST_BUS),
        aml.Resource.io(PORTS.PCI_CONFIG_ADDRESS, PORTS.PCI_CONFIG_ADDRESS, 1, 8),
        aml.Resource.ioWindow(PCI_IO.base, PCI_IO.base + PCI_IO.size - 1),
        aml.Resource.memory32Window(PCI_MMIO32.base, PCI_MMIO32.base + PCI_MMIO32.size - 1),
        aml.Resource.memory64Window(mmio64.base, mmio64.base + mmio64.size - 1),
      ]),
    ),
  ];
  if (opts.pciInterrupts?.length) {
    pci0.push(aml.name(
      "_PRT",
      aml.pkg(opts.pciInterrupts.map((r) =>
        aml.pkg([
          aml.integer(r.device * 0x10000 + 0xffff),
          aml.integer(r.pin),
          aml.integer(0),
          aml.integer(r.gsi),
        ])
      )),
    ));
  }
  const mres = [
    aml.name("_HID", aml.eisaId("PNP0C02")),
    aml.name("_UID", aml.integer(1)),
    aml.name(
      "_CRS",
      aml.resourceTemplate([aml.Resource.memory32Fixed(PCI_ECAM.base, PCI_ECAM.size)]),
    ),
  ];
  return aml.concat([
    s5Aml(),
    aml.scope("_SB", [aml.device("PCI0", pci0), aml.device("MRES", mres)]),
  ]);
}

/** `Name(_S5, Package() { S5, S5, 0, 0 })`: SLP_TYPa, SLP_TYPb and two reserved values. */
export function s5Aml(): Uint8Array {
  return aml.name(
    "_S5",
    aml.pkg([
      aml.integer(ACPI_S5_SLP_TYP),
      aml.integer(ACPI_S5_SLP_TYP),
      aml.integer(0),
      aml.integer(0),
    ]),
  );
}

/** FADT revision 6, full (not hardware-reduced) ACPI with PM1a event/control blocks. */
export function buildFadt(
  refs: { facs: number; dsdt: number; reset?: { port: number; value: number } },
): Uint8Array {
  const body = new Uint8Array(FADT.SIZE - SDT_HEADER.SIZE);
  const b = new Uint8Array(FADT.SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(FADT.firmware_ctrl, refs.facs, true);
  v.setUint32(FADT.dsdt, refs.dsdt, true);
  b[FADT.preferred_pm_profile] = 0; // unspecified
  v.setUint16(FADT.sci_int, IRQS.SCI, true);
  v.setUint32(FADT.smi_cmd, 0, true); // no SMI command port: ACPI mode is always on
  v.setUint32(FADT.pm1a_evt_blk, PORTS.ACPI_PM1A_EVT, true);
  v.setUint32(FADT.pm1a_cnt_blk, PORTS.ACPI_PM1A_CNT, true);
  b[FADT.pm1_evt_len] = 4;
  b[FADT.pm1_cnt_len] = 2;
  v.setUint16(FADT.iapc_boot_arch, IAPC_BOOT_ARCH.VGA_NOT_PRESENT, true);
  // PWR_BUTTON clear: the power button is the fixed-feature one (PM1 PWRBTN_STS/EN), so a
  // power-button event raises the SCI and Linux shuts down gracefully. No sleep button.
  let flags = FADT_FLAGS.WBINVD | FADT_FLAGS.PROC_C1 | FADT_FLAGS.SLP_BUTTON;
  if (refs.reset) {
    flags |= FADT_FLAGS.RESET_REG_SUP;
    writeGas(v, FADT.reset_reg, {
      space: GAS_SYSTEM_IO,
      bits: 8,
      access: 1,
      address: refs.reset.port,
    });
    b[FADT.reset_value] = refs.reset.value;
  }
  v.setUint32(FADT.flags, flags, true);
  b[FADT.minor_version] = 0;
  v.setBigUint64(FADT.x_firmware_ctrl, BigInt(refs.facs), true);
  v.setBigUint64(FADT.x_dsdt, BigInt(refs.dsdt), true);
  writeGas(v, FADT.x_pm1a_evt_blk, {
    space: GAS_SYSTEM_IO,
    bits: 32,
    access: 2,
    address: PORTS.ACPI_PM1A_EVT,
  });
  writeGas(v, FADT.x_pm1a_cnt_blk, {
    space: GAS_SYSTEM_IO,
    bits: 16,
    access: 2,
    address: PORTS.ACPI_PM1A_CNT,
  });
  body.set(b.subarray(SDT_HEADER.SIZE));
  return table("FACP", FADT.REVISION, body);
}

/** MADT: one enabled local APIC per vCPU (APIC id = UID = index), the IOAPIC, ISA overrides, LINT1 NMI. */
export function buildMadt(cpus: number): Uint8Array {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_ACPI_CPUS) {
    throw new RangeError(`MADT: ${cpus} vCPUs, must be 1..${MAX_ACPI_CPUS}`);
  }
  const entries: Uint8Array[] = [];
  const head = new Uint8Array(8);
  const hv = new DataView(head.buffer);
  hv.setUint32(0, LAPIC.base, true);
  hv.setUint32(4, 1, true); // PCAT_COMPAT: dual 8259s present
  entries.push(head);
  for (let id = 0; id < cpus; id++) {
    const e = new Uint8Array(8);
    e[0] = MADT_TYPE.LOCAL_APIC;
    e[1] = 8;
    e[2] = id; // ACPI processor UID
    e[3] = id; // APIC id
    new DataView(e.buffer).setUint32(4, 1, true); // enabled
    entries.push(e);
  }
  const io = new Uint8Array(12);
  const iv = new DataView(io.buffer);
  io[0] = MADT_TYPE.IO_APIC;
  io[1] = 12;
  io[2] = 0; // IOAPIC id
  iv.setUint32(4, IOAPIC.base, true);
  iv.setUint32(8, 0, true); // GSI base
  entries.push(io);
  entries.push(interruptOverride(0, 2, MPS_INTI.CONFORMING));
  entries.push(interruptOverride(IRQS.SCI, IRQS.SCI, MPS_INTI.LEVEL | MPS_INTI.ACTIVE_HIGH));
  const nmi = new Uint8Array(6);
  nmi[0] = MADT_TYPE.LOCAL_APIC_NMI;
  nmi[1] = 6;
  nmi[2] = 0xff; // all processors
  new DataView(nmi.buffer).setUint16(3, MPS_INTI.CONFORMING, true);
  nmi[5] = 1; // LINT1
  entries.push(nmi);
  return table("APIC", 4, aml.concat(entries));
}

/** MCFG: the ECAM window for PCI segment 0, buses 0 to {@linkcode PCI_LAST_BUS}. */
export function buildMcfg(): Uint8Array {
  const body = new Uint8Array(8 + 16);
  const v = new DataView(body.buffer);
  v.setBigUint64(8, BigInt(PCI_ECAM.base), true);
  v.setUint16(16, 0, true); // segment
  body[18] = 0; // start bus
  body[19] = PCI_LAST_BUS; // end bus
  return table("MCFG", 1, body);
}

/** XSDT: 64-bit pointers to the other tables. */
export function buildXsdt(addrs: readonly number[]): Uint8Array {
  const body = new Uint8Array(addrs.length * 8);
  const v = new DataView(body.buffer);
  addrs.forEach((a, i) => v.setBigUint64(i * 8, BigInt(a), true));
  return table("XSDT", 1, body);
}

/** RSDT: 32-bit pointers to the other tables. */
export function buildRsdt(addrs: readonly number[]): Uint8Array {
  const body = new Uint8Array(addrs.length * 4);
  const v = new DataView(body.buffer);
  addrs.forEach((a, i) => v.setUint32(i * 4, a, true));
  return table("RSDT", 1, body);
}

/** A table: the standard header (with length and checksum) followed by `body`. */
export function table(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(SDT_HEADER.SIZE + body.length);
  const v = new DataView(b.buffer);
  ascii(b, SDT_HEADER.signature.offset, signature);
  v.setUint32(SDT_HEADER.length.offset, b.length, true);
  b[SDT_HEADER.revision.offset] = revision;
  ascii(b, SDT_HEADER.oem_id.offset, ACPI_OEM.id);
  ascii(b, SDT_HEADER.oem_table_id.offset, ACPI_OEM.tableId);
  v.setUint32(SDT_HEADER.oem_revision.offset, ACPI_OEM.revision, true);
  ascii(b, SDT_HEADER.creator_id.offset, ACPI_OEM.creatorId);
  v.setUint32(SDT_HEADER.creator_revision.offset, ACPI_OEM.creatorRevision, true);
  b.set(body, SDT_HEADER.SIZE);
  b[SDT_HEADER.checksum.offset] = checksum(b);
  return b;
}

function interruptOverride(source: number, gsi: number, flags: number): Uint8Array {
  const e = new Uint8Array(10);
  const v = new DataView(e.buffer);
  e[0] = MADT_TYPE.INTERRUPT_OVERRIDE;
  e[1] = 10;
  e[2] = 0; // ISA bus
  e[3] = source;
  v.setUint32(4, gsi, true);
  v.setUint16(8, flags, true);
  return e;
}

function writeGas(
  v: DataView,
  at: number,
  g: { space: number; bits: number; access: number; address: number },
): void {
  v.setUint8(at, g.space);
  v.setUint8(at + 1, g.bits);
  v.setUint8(at + 2, 0);
  v.setUint8(at + 3, g.access);
  v.setBigUint64(at + 4, BigInt(g.address), true);
}

function ascii(b: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[at + i] = s.charCodeAt(i);
}
