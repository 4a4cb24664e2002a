/**
 * Configuration mechanism #1 as vCPU threads see it: the CONFIG_ADDRESS
 * register (0xCF8) and which functions exist, in shared memory, so that a
 * vCPU thread serves the two most common config accesses of a booting guest
 * itself, with no round trip to the VMM thread:
 *
 * - a dword write of CONFIG_ADDRESS (the guest writes it before every access);
 * - a read of the data window (0xCFC-0xCFF) that reaches no function: all-ones,
 *   as the bus answers. Linux reads the vendor id of every slot, and AMD's
 *   northbridge probe looks at 00:18.x: most of a boot's config reads.
 *
 * Everything else (reads of present functions, data writes, narrow address
 * accesses) goes to the VMM thread's `ConfigMechanism1` (config_access.ts), which keeps
 * CONFIG_ADDRESS here too. Data-window accesses are never posted, so a
 * CONFIG_ADDRESS write stored at once cannot overtake one. The PCI core marks
 * the state `enabled` when it maps mechanism #1 over it; until then vCPU
 * threads leave the ports alone.
 *
 * @module
 */

import { PORTS } from "../x86/layout.ts";

/** Fields of the 0xCF8 CONFIG_ADDRESS register. */
export const CONFIG_ADDRESS = {
  /** Bit 31: config cycle enable. */
  ENABLE: 0x8000_0000,
  /** Bits that hold state (enable, bus, device, function, dword register). */
  MASK: 0x80ff_fffc,
  /** Bus number: bits 23:16. */
  BUS_SHIFT: 16,
  /** Device number: bits 15:11. */
  DEVICE_SHIFT: 11,
  /** Function number: bits 10:8. */
  FUNCTION_SHIFT: 8,
  /** Register: bits 7:2 (dword aligned offset 0..0xfc). */
  REGISTER_MASK: 0xfc,
} as const;

/** Where a data-window access lands. */
export interface Conf1Target {
  /** Bus number. */
  readonly bus: number;
  /** Device number. */
  readonly device: number;
  /** Function number. */
  readonly fn: number;
  /** Config-space offset of the access. */
  readonly offset: number;
}

/**
 * Decode an access of `length` bytes at `offset` (0-3) of the data window
 * under CONFIG_ADDRESS `address`. Undefined when config cycles are disabled or
 * the access leaves the dword: it reads all-ones and writes go nowhere.
 */
export function decodeConf1(
  address: number,
  offset: number,
  length: number,
): Conf1Target | undefined {
  if (!(address & CONFIG_ADDRESS.ENABLE) || offset + length > 4) return undefined;
  return {
    bus: (address >>> CONFIG_ADDRESS.BUS_SHIFT) & 0xff,
    device: (address >>> CONFIG_ADDRESS.DEVICE_SHIFT) & 0x1f,
    fn: (address >>> CONFIG_ADDRESS.FUNCTION_SHIFT) & 0x7,
    offset: (address & CONFIG_ADDRESS.REGISTER_MASK) + offset,
  };
}

/** Int32 words of the shared state: a flag, CONFIG_ADDRESS, then one bit per bus-0 function. */
const W = { ENABLED: 0, ADDRESS: 1, PRESENT: 2 } as const;

/** Bytes of shared memory a {@linkcode Conf1Shared} needs (bus 0's 256 functions, 8 words). */
export const CONF1_SHARED_BYTES = (W.PRESENT + 256 / 32) * 4;

/**
 * The shared state. Only bus 0 can hold functions (the PCI core has one root
 * bus and no bridges); every function of another bus is absent.
 */
export class Conf1Shared {
  readonly #words: Int32Array;

  /**
   * The state in `buffer` at `byteOffset` ({@linkcode CONF1_SHARED_BYTES}
   * bytes; default: memory of its own).
   */
  constructor(
    buffer: SharedArrayBuffer = new SharedArrayBuffer(CONF1_SHARED_BYTES),
    byteOffset = 0,
  ) {
    this.#words = new Int32Array(buffer, byteOffset, CONF1_SHARED_BYTES / 4);
  }

  /** Whether a PCI core serves mechanism #1 with this state (vCPU threads may answer for it). */
  get enabled(): boolean {
    return Atomics.load(this.#words, W.ENABLED) !== 0;
  }

  set enabled(on: boolean) {
    Atomics.store(this.#words, W.ENABLED, on ? 1 : 0);
  }

  /** The CONFIG_ADDRESS register. */
  get address(): number {
    return Atomics.load(this.#words, W.ADDRESS) >>> 0;
  }

  /** A dword write of CONFIG_ADDRESS: keeps the bits that hold state. */
  writeAddress(value: number): void {
    Atomics.store(this.#words, W.ADDRESS, value & CONFIG_ADDRESS.MASK);
  }

  /** Mark bus 0's `device`.`fn` present (or absent). */
  setPresent(device: number, fn: number, present: boolean): void {
    const bit = (device & 0x1f) * 8 + (fn & 7);
    const at = W.PRESENT + (bit >> 5), mask = 1 << (bit & 31);
    if (present) Atomics.or(this.#words, at, mask);
    else Atomics.and(this.#words, at, ~mask);
  }

  /** Is there a function at `bus`:`device`.`fn`? */
  isPresent(bus: number, device: number, fn: number): boolean {
    if (bus !== 0) return false;
    const bit = device * 8 + fn;
    return (Atomics.load(this.#words, W.PRESENT + (bit >> 5)) & (1 << (bit & 31))) !== 0;
  }
}

/**
 * vCPU thread: serve one port access of `size` bytes at `port` (data in
 * `bytes` at `offset`: the value of an OUT, the buffer of an IN) if it is one
 * of the two accesses described above. Returns false when the VMM thread must
 * serve it.
 */
export function answerConf1(
  shared: Conf1Shared,
  port: number,
  out: boolean,
  size: number,
  bytes: Uint8Array,
  offset: number,
): boolean {
  if (out) {
    if (port !== PORTS.PCI_CONFIG_ADDRESS || size !== 4 || !shared.enabled) return false;
    shared.writeAddress(
      bytes[offset] | bytes[offset + 1] << 8 | bytes[offset + 2] << 16 | bytes[offset + 3] << 24,
    );
    return true;
  }
  if (port < PORTS.PCI_CONFIG_DATA || port >= PORTS.PCI_CONFIG_DATA + 4 || !shared.enabled) {
    return false;
  }
  const at = decodeConf1(shared.address, port - PORTS.PCI_CONFIG_DATA, size);
  if (at && shared.isPresent(at.bus, at.device, at.fn)) return false;
  bytes.fill(0xff, offset, offset + size);
  return true;
}
