/**
 * Example PCI device plugin: a small register file behind one 4 KiB memory BAR.
 *
 * ```
 * BAR 0 (mem32, 4 KiB), little-endian u32 registers:
 * 0x00 ID          RO  identification value (option `id`, default 0x52454746 "FGER")
 * 0x04 SCRATCH_N   RO  number of scratch registers (option `scratch`)
 * 0x08 DOORBELL    WO  any write rings the doorbell (reads 0)
 * 0x0c RINGS       RO  doorbell rings so far
 * 0x10 IRQ_STATUS  RW1C bit 0: a ring is pending; writing 1 clears it and lowers INTx
 * 0x14 IRQ_ENABLE  RW  bit 0: raise INTx (pin A) when the doorbell rings
 * 0x40 SCRATCH[i]  RW  scratch registers, any access width
 * ```
 *
 * Plug it with `--device ./examples/register_file.ts,scratch=16`.
 *
 * @module
 */

import { z } from "zod";
import { definePciDevice } from "../devices/pci_device.ts";

/** Register offsets within BAR 0. */
export const REG = {
  ID: 0x00,
  SCRATCH_N: 0x04,
  DOORBELL: 0x08,
  RINGS: 0x0c,
  IRQ_STATUS: 0x10,
  IRQ_ENABLE: 0x14,
  SCRATCH: 0x40,
} as const;

/** Default value of the ID register. */
export const REGISTER_FILE_ID = 0x5245_4746;

/** Size of BAR 0. */
export const REGISTER_FILE_BAR_SIZE = 0x1000;

/** The register file plugin. */
export default definePciDevice({
  name: "register-file",
  description: "example register file: ID, doorbell with INTx, scratch registers",
  vendorId: 0x1b36, // Red Hat's QEMU test-device vendor ID; use your own for real devices
  deviceId: 0x00f0,
  subsystemVendorId: 0x1b36,
  subsystemId: 0x0001,
  classCode: 0xff_00_00, // unassigned class: no driver binds by class
  revision: 1,
  bars: [{ index: 0, kind: "mem32", size: REGISTER_FILE_BAR_SIZE }],
  options: z.object({
    scratch: z.coerce.number().int().min(1).max(64).default(8)
      .describe("number of scratch registers"),
    id: z.coerce.number().int().min(0).max(0xffff_ffff).default(REGISTER_FILE_ID)
      .describe("value of the ID register"),
  }),
  create({ options, irq, log }) {
    const scratch = new Uint32Array(options.scratch);
    let rings = 0;
    let pending = false;
    let enabled = false;
    const updateIrq = () => irq.set(pending && enabled);

    /** The u32 register at dword-aligned `reg`. */
    const readReg = (reg: number): number => {
      switch (reg) {
        case REG.ID:
          return options.id;
        case REG.SCRATCH_N:
          return scratch.length;
        case REG.RINGS:
          return rings;
        case REG.IRQ_STATUS:
          return pending ? 1 : 0;
        case REG.IRQ_ENABLE:
          return enabled ? 1 : 0;
      }
      const i = (reg - REG.SCRATCH) >> 2;
      return reg >= REG.SCRATCH && i < scratch.length ? scratch[i] : 0;
    };

    /** A write of `value` to the bytes of `reg` selected by `mask`. */
    const writeReg = (reg: number, value: number, mask: number): void => {
      switch (reg) {
        case REG.DOORBELL:
          rings = (rings + 1) >>> 0;
          pending = true;
          log.debug(`doorbell ring ${rings} (value 0x${value.toString(16)})`);
          return updateIrq();
        case REG.IRQ_STATUS:
          if (value & mask & 1) pending = false;
          return updateIrq();
        case REG.IRQ_ENABLE:
          if (mask & 1) enabled = (value & 1) !== 0;
          return updateIrq();
      }
      const i = (reg - REG.SCRATCH) >> 2;
      if (reg >= REG.SCRATCH && i < scratch.length) {
        scratch[i] = (scratch[i] & ~mask) | (value & mask);
      }
    };

    return {
      bars: {
        0: {
          read(offset, data) {
            for (let i = 0; i < data.length; i++) {
              const at = offset + i;
              data[i] = readReg(at & ~3) >>> (8 * (at & 3));
            }
          },
          write(offset, data) {
            // Split into per-register pieces; an 8-byte write touches two registers.
            for (let i = 0; i < data.length;) {
              const at = offset + i;
              const reg = at & ~3;
              let value = 0, mask = 0;
              for (; i < data.length && ((offset + i) & ~3) === reg; i++) {
                const shift = 8 * ((offset + i) & 3);
                value |= data[i] << shift;
                mask |= 0xff << shift;
              }
              writeReg(reg, value >>> 0, mask >>> 0);
            }
          },
        },
      },
      reset() {
        scratch.fill(0);
        rings = 0;
        pending = false;
        enabled = false;
        updateIrq();
      },
    };
  },
});
