/**
 * Example PCI device plugin: a tiny DMA copy engine that signals completion
 * with MSI-X (or INTx while MSI-X is off).
 *
 * The guest programs a source and a destination guest-physical address and a
 * length, then writes START to CTRL. The engine copies the bytes through
 * {@linkcode PciDeviceContext.memory} (bounds-checked guest RAM: a range
 * outside RAM sets STATUS.ERROR instead of throwing out of the device), sets
 * STATUS.DONE or STATUS.ERROR and raises an interrupt.
 *
 * ```
 * BAR 0 (mem32, 4 KiB), little-endian u32 registers:
 * 0x00 ID         RO   identification value 0x434f5059 ("COPY")
 * 0x04 SRC_LO     RW   source address, bits 31:0
 * 0x08 SRC_HI     RW   source address, bits 63:32
 * 0x0c DST_LO     RW   destination address, bits 31:0
 * 0x10 DST_HI     RW   destination address, bits 63:32
 * 0x14 LEN        RW   bytes to copy (1..option `maxLength`)
 * 0x18 CTRL       WO   bit 0 START: copy now (the doorbell; reads 0)
 * 0x1c STATUS     RW1C bit 0 DONE: last copy succeeded; bit 1 ERROR: it failed
 * 0x20 COMPLETED  RO   copies done so far
 * 0x24 ERRORS     RO   copies failed so far
 * 0x28 BYTES_LO   RO   bytes copied so far, bits 31:0
 * 0x2c BYTES_HI   RO   bytes copied so far, bits 63:32
 *
 * BAR 2 (mem32, 4 KiB): MSI-X table at 0x000 (2 entries), PBA at 0x800.
 * MSI-X vector 0: a copy completed; vector 1: a copy failed.
 * INTx (pin A) while MSI-X is disabled: asserted while STATUS is non-zero.
 * ```
 *
 * The copy runs synchronously inside the CTRL write, so STATUS is final when
 * the write returns. A real device would work in the background (see
 * {@linkcode PciDeviceContext.ioeventfd} for doorbells that do not trap).
 *
 * Plug it with `--device copy-engine` (built in) or
 * `--device ./examples/copy_engine.ts,maxLength=65536`.
 *
 * @module
 */

import { z } from "zod";
import type { BusDevice } from "../devices/bus.ts";
import { MsixTable } from "../devices/msix.ts";
import {
  definePciDevice,
  type PciDeviceContext,
  type PciDeviceInstance,
} from "../devices/pci_device.ts";

/** Register offsets within BAR 0. */
export const COPY_REG = {
  ID: 0x00,
  SRC_LO: 0x04,
  SRC_HI: 0x08,
  DST_LO: 0x0c,
  DST_HI: 0x10,
  LEN: 0x14,
  CTRL: 0x18,
  STATUS: 0x1c,
  COMPLETED: 0x20,
  ERRORS: 0x24,
  BYTES_LO: 0x28,
  BYTES_HI: 0x2c,
} as const;

/** CTRL bits. */
export const COPY_CTRL = {
  /** Start a copy with the programmed SRC, DST and LEN. */
  START: 1 << 0,
} as const;

/** STATUS bits (write 1 to clear). */
export const COPY_STATUS = {
  /** The last copy succeeded. */
  DONE: 1 << 0,
  /** The last copy failed (range outside guest RAM, or a bad length). */
  ERROR: 1 << 1,
} as const;

/** MSI-X vectors the engine raises. */
export const COPY_VECTOR = {
  /** A copy completed. */
  DONE: 0,
  /** A copy failed. */
  ERROR: 1,
} as const;

/** Value of the ID register ("COPY" read as a big-endian u32). */
export const COPY_ENGINE_ID = 0x434f_5059;

/** PCI identity: Red Hat's QEMU test-device vendor ID; use your own for real devices. */
export const COPY_ENGINE_PCI_ID = { vendorId: 0x1b36, deviceId: 0x00f1 } as const;

/** BAR layout: registers in BAR 0, MSI-X table and PBA in BAR 2. */
export const COPY_BARS = {
  /** Register BAR index. */
  REGS: 0,
  /** MSI-X BAR index. */
  MSIX: 2,
  /** Size of each BAR. */
  SIZE: 0x1000,
  /** Offset of the MSI-X table in the MSI-X BAR. */
  TABLE_OFFSET: 0x000,
  /** Offset of the PBA in the MSI-X BAR. */
  PBA_OFFSET: 0x800,
} as const;

/** Number of MSI-X vectors ({@linkcode COPY_VECTOR}). */
export const COPY_MSIX_VECTORS = 2;

/** Default and largest value of the `maxLength` option (1 MiB). */
export const COPY_MAX_LENGTH = 1 << 20;

/** Index of the MSI-X capability in the manifest's `capabilities`. */
const MSIX_CAP_INDEX = 0;

/** The manifest's MSI-X capability (a throwaway table describes the layout). */
const msixCapability = new MsixTable(COPY_MSIX_VECTORS, { sendMsi() {} }).capability({
  tableBar: COPY_BARS.MSIX,
  tableOffset: COPY_BARS.TABLE_OFFSET,
  pbaBar: COPY_BARS.MSIX,
  pbaOffset: COPY_BARS.PBA_OFFSET,
});

const options = z.object({
  maxLength: z.coerce.number().int().min(1).max(COPY_MAX_LENGTH).default(COPY_MAX_LENGTH)
    .describe("largest LEN accepted; longer copies fail with STATUS.ERROR"),
});

/** The copy engine plugin. */
export default definePciDevice({
  name: "copy-engine",
  description:
    "example DMA copy engine: SRC/DST/LEN registers, doorbell, MSI-X or INTx on completion",
  ...COPY_ENGINE_PCI_ID,
  subsystemVendorId: 0x1b36,
  subsystemId: 0x0002,
  classCode: 0xff_00_00, // unassigned class: no driver binds by class
  revision: 1,
  bars: [
    { index: COPY_BARS.REGS, kind: "mem32", size: COPY_BARS.SIZE },
    { index: COPY_BARS.MSIX, kind: "mem32", size: COPY_BARS.SIZE },
  ],
  capabilities: [msixCapability],
  options,
  create: (ctx) => createCopyEngine(ctx),
});

/** Build one engine instance. */
function createCopyEngine(ctx: PciDeviceContext<z.output<typeof options>>): PciDeviceInstance {
  const { memory, irq, log, msi } = ctx;
  const { maxLength } = ctx.options;

  // Programmed registers and what the engine reports.
  let src = 0n, dst = 0n, length = 0;
  let status = 0;
  let completed = 0, errors = 0, bytes = 0n;

  // MSI-X messages go out through the core, which drops them while Bus Master is off.
  const msix = new MsixTable(COPY_MSIX_VECTORS, {
    sendMsi: (_vector, message) => msi.send(message.address, message.data),
  });

  /** INTx is level-triggered: asserted while STATUS has a bit set and MSI-X is off. */
  const updateIntx = () => irq.set(status !== 0 && !msix.enabled);

  /** Finish a copy attempt: record it, then interrupt (MSI-X edge, or INTx level). */
  const finish = (ok: boolean, why: string) => {
    status |= ok ? COPY_STATUS.DONE : COPY_STATUS.ERROR;
    if (ok) {
      completed = (completed + 1) >>> 0;
      bytes += BigInt(length);
    } else {
      errors = (errors + 1) >>> 0;
      log.warn(why);
    }
    if (msix.enabled) msix.notify(ok ? COPY_VECTOR.DONE : COPY_VECTOR.ERROR);
    updateIntx();
  };

  /** The DMA: copy `length` bytes from `src` to `dst` in guest RAM (memmove semantics). */
  const runCopy = () => {
    const range = (addr: bigint) =>
      `0x${addr.toString(16)}..0x${(addr + BigInt(length)).toString(16)}`;
    if (length === 0 || length > maxLength) {
      return finish(false, `copy rejected: LEN ${length} (must be 1..${maxLength})`);
    }
    // Guest RAM addresses fit a JS number; anything larger is outside RAM anyway.
    for (const [what, addr] of [["source", src], ["destination", dst]] as const) {
      if (addr > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(addr), length)) {
        return finish(false, `copy failed: ${what} ${range(addr)} is outside guest RAM`);
      }
    }
    try {
      // read() returns a copy, so overlapping ranges behave like memmove.
      memory.write(Number(dst), memory.read(Number(src), length));
    } catch (e) {
      // contains() said yes, but stay inside the device whatever happens.
      return finish(false, `copy failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    log.debug(`copied ${length} bytes ${range(src)} -> ${range(dst)}`);
    finish(true, "");
  };

  /** The u32 register at dword-aligned `reg`. */
  const readReg = (reg: number): number => {
    switch (reg) {
      case COPY_REG.ID:
        return COPY_ENGINE_ID;
      case COPY_REG.SRC_LO:
        return Number(src & 0xffff_ffffn);
      case COPY_REG.SRC_HI:
        return Number(src >> 32n);
      case COPY_REG.DST_LO:
        return Number(dst & 0xffff_ffffn);
      case COPY_REG.DST_HI:
        return Number(dst >> 32n);
      case COPY_REG.LEN:
        return length;
      case COPY_REG.STATUS:
        return status;
      case COPY_REG.COMPLETED:
        return completed;
      case COPY_REG.ERRORS:
        return errors;
      case COPY_REG.BYTES_LO:
        return Number(bytes & 0xffff_ffffn);
      case COPY_REG.BYTES_HI:
        return Number((bytes >> 32n) & 0xffff_ffffn);
    }
    return 0; // CTRL and unused offsets
  };

  /** Replace the bytes of a 64-bit value's 32-bit `half` selected by `mask` with `value`. */
  const merge64 = (old: bigint, half: 0 | 1, value: number, mask: number): bigint => {
    const shift = BigInt(32 * half);
    const m = BigInt(mask >>> 0) << shift;
    return (old & ~m) | ((BigInt(value >>> 0) << shift) & m);
  };

  /** A write of `value` to the bytes of `reg` selected by `mask`. */
  const writeReg = (reg: number, value: number, mask: number): void => {
    switch (reg) {
      case COPY_REG.SRC_LO:
        src = merge64(src, 0, value, mask);
        return;
      case COPY_REG.SRC_HI:
        src = merge64(src, 1, value, mask);
        return;
      case COPY_REG.DST_LO:
        dst = merge64(dst, 0, value, mask);
        return;
      case COPY_REG.DST_HI:
        dst = merge64(dst, 1, value, mask);
        return;
      case COPY_REG.LEN:
        length = ((length & ~mask) | (value & mask)) >>> 0;
        return;
      case COPY_REG.CTRL:
        if (value & mask & COPY_CTRL.START) runCopy();
        return;
      case COPY_REG.STATUS:
        status &= ~(value & mask);
        return updateIntx();
    }
  };

  /** BAR 0: byte-granular access split into u32 registers (like the register file). */
  const regs: BusDevice = {
    read(offset, data) {
      for (let i = 0; i < data.length; i++) {
        const at = offset + i;
        data[i] = readReg(at & ~3) >>> (8 * (at & 3));
      }
    },
    write(offset, data) {
      // An 8-byte write (e.g. SRC_LO+SRC_HI at once) touches two registers in order.
      for (let i = 0; i < data.length;) {
        const reg = (offset + i) & ~3;
        let value = 0, mask = 0;
        for (; i < data.length && ((offset + i) & ~3) === reg; i++) {
          const shift = 8 * ((offset + i) & 3);
          value |= data[i] << shift;
          mask |= 0xff << shift;
        }
        writeReg(reg, value >>> 0, mask >>> 0);
      }
    },
  };

  /** BAR 2: the MSI-X table and PBA; the rest reads 0 and ignores writes. */
  const tableEnd = COPY_BARS.TABLE_OFFSET + msix.tableBytes;
  const pbaEnd = COPY_BARS.PBA_OFFSET + msix.pbaBytes;
  const msixBar: BusDevice = {
    read(offset, data) {
      if (offset >= COPY_BARS.TABLE_OFFSET && offset < tableEnd) {
        msix.table.read(offset - COPY_BARS.TABLE_OFFSET, data);
      } else if (offset >= COPY_BARS.PBA_OFFSET && offset < pbaEnd) {
        msix.pba.read(offset - COPY_BARS.PBA_OFFSET, data);
      } else {
        data.fill(0);
      }
    },
    write(offset, data) {
      if (offset >= COPY_BARS.TABLE_OFFSET && offset < tableEnd) {
        msix.table.write(offset - COPY_BARS.TABLE_OFFSET, data);
      }
    },
  };

  // Enabling MSI-X takes INTx away (and disabling it gives INTx back).
  const msixHooks = msix.capabilityHooks();
  return {
    bars: { [COPY_BARS.REGS]: regs, [COPY_BARS.MSIX]: msixBar },
    capabilities: {
      [MSIX_CAP_INDEX]: {
        read: msixHooks.read,
        write(offset: number, data: Uint8Array) {
          msixHooks.write?.(offset, data);
          updateIntx();
        },
      },
    },
    reset() {
      src = dst = 0n;
      length =
        status =
        completed =
        errors =
          0;
      bytes = 0n;
      msix.reset();
      updateIntx();
    },
  };
}
