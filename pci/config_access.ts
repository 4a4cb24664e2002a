/**
 * How the guest reaches config space: configuration mechanism #1 (the
 * 0xCF8 address register and the 0xCFC-0xCFF data window on the port bus,
 * its register layout in conf1_shared.ts) and
 * the ECAM / MMCONFIG window on the memory bus. Both decode an address and
 * forward to a {@linkcode ConfigTarget} (the PCI core).
 *
 * @module
 */

import type { BusDevice } from "../devices/bus.ts";
import { Conf1Shared, decodeConf1 } from "./conf1_shared.ts";

/** Something that answers config accesses by bus/device/function/offset. */
export interface ConfigTarget {
  /** Read `data.length` bytes at `offset`; absent functions read all-ones. */
  configRead(bus: number, device: number, fn: number, offset: number, data: Uint8Array): void;
  /** Write `data` at `offset`; writes to absent functions are dropped. */
  configWrite(bus: number, device: number, fn: number, offset: number, data: Uint8Array): void;
}

/** Bytes of config space per function in the ECAM window, and the shifts of the ECAM address. */
export const ECAM = {
  /** Bus number: bits 27:20. */
  BUS_SHIFT: 20,
  /** Device number: bits 19:15. */
  DEVICE_SHIFT: 15,
  /** Function number: bits 14:12. */
  FUNCTION_SHIFT: 12,
  /** Register: bits 11:0. */
  REGISTER_MASK: 0xfff,
} as const;

/**
 * Configuration mechanism #1. Map {@linkcode addressPort} at 0xCF8 (4 ports)
 * and {@linkcode dataPort} at 0xCFC (4 ports) on the port bus. CONFIG_ADDRESS
 * lives in a {@linkcode Conf1Shared}, so that vCPU threads can serve the
 * common accesses themselves (see conf1_shared.ts).
 */
export class ConfigMechanism1 {
  /** The CONFIG_ADDRESS register value. */
  get address(): number {
    return this.shared.address;
  }

  /** 0xCF8: only dword accesses reach the address register; narrower ones read all-ones / are dropped. */
  readonly addressPort: BusDevice = {
    read: (offset, data) => {
      if (offset !== 0 || data.length !== 4) return void data.fill(0xff);
      new DataView(data.buffer, data.byteOffset, 4).setUint32(0, this.address, true);
    },
    write: (offset, data) => {
      if (offset !== 0 || data.length !== 4) return;
      this.shared.writeAddress(new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true));
    },
  };

  /** 0xCFC-0xCFF: 1-, 2- and 4-byte accesses at any offset that stays inside the dword. */
  readonly dataPort: BusDevice = {
    read: (offset, data) => {
      const at = decodeConf1(this.address, offset, data.length);
      if (!at) return void data.fill(0xff);
      this.target.configRead(at.bus, at.device, at.fn, at.offset, data);
    },
    write: (offset, data) => {
      const at = decodeConf1(this.address, offset, data.length);
      if (at) this.target.configWrite(at.bus, at.device, at.fn, at.offset, data);
    },
  };

  /**
   * Mechanism #1 in front of `target`.
   * @param target the PCI core
   * @param shared where CONFIG_ADDRESS lives (default: memory of its own)
   */
  constructor(readonly target: ConfigTarget, readonly shared: Conf1Shared = new Conf1Shared()) {}
}

/** The ECAM window as a bus device: map it at `PCI_ECAM.base` with `PCI_ECAM.size` on the memory bus. */
export class EcamWindow implements BusDevice {
  /** An ECAM window in front of `target`. @param target the PCI core */
  constructor(readonly target: ConfigTarget) {}

  /** Read config space at the window offset (bus, device, function and register decoded from it). */
  read(offset: number, data: Uint8Array): void {
    const at = decodeEcam(offset);
    this.target.configRead(at.bus, at.device, at.fn, at.offset, data);
  }

  /** Write config space at the window offset. */
  write(offset: number, data: Uint8Array): void {
    const at = decodeEcam(offset);
    this.target.configWrite(at.bus, at.device, at.fn, at.offset, data);
  }
}

/** Split an ECAM window offset into bus, device, function and register offset. */
export function decodeEcam(
  offset: number,
): { bus: number; device: number; fn: number; offset: number } {
  return {
    bus: (offset >>> ECAM.BUS_SHIFT) & 0xff,
    device: (offset >>> ECAM.DEVICE_SHIFT) & 0x1f,
    fn: (offset >>> ECAM.FUNCTION_SHIFT) & 0x7,
    offset: offset & ECAM.REGISTER_MASK,
  };
}

/** The ECAM window offset of a function's config register. */
export function ecamOffset(bus: number, device: number, fn: number, offset: number): number {
  return bus * (1 << ECAM.BUS_SHIFT) + (device << ECAM.DEVICE_SHIFT) +
    (fn << ECAM.FUNCTION_SHIFT) + offset;
}
