/**
 * Initial BAR placement: a bump allocator over one address window handing out
 * naturally aligned ranges (a BAR of size S starts at a multiple of S).
 *
 * @module
 */

import { hex } from "../devices/bus.ts";

/** Thrown when a window has no room left for a BAR. */
export class PciAllocationError extends Error {
  /** A window is full. @param message names the window, the BAR and the sizes */
  constructor(message: string) {
    super(message);
    this.name = "PciAllocationError";
  }
}

/** Hands out naturally aligned ranges from `[base, base + size)`, lowest first. */
export class WindowAllocator {
  #next: bigint;
  readonly #end: bigint;

  /**
   * An allocator with the whole window free.
   * @param name window name for messages (`PCI_MMIO32`)
   * @param base first address
   * @param size window length in bytes
   */
  constructor(readonly name: string, readonly base: bigint, readonly size: bigint) {
    this.#next = base;
    this.#end = base + size;
  }

  /** Allocate `size` bytes (a power of two) aligned to `size`. Throws {@linkcode PciAllocationError} when full. */
  allocate(size: bigint, what: string): bigint {
    const at = (this.#next + size - 1n) & ~(size - 1n);
    if (at + size > this.#end) {
      throw new PciAllocationError(
        `${what}: no room for ${hex(size)} bytes in ${this.name} ${hex(this.base)}+${
          hex(this.size)
        } (next free ${hex(this.#next)})`,
      );
    }
    this.#next = at + size;
    return at;
  }

  /** Bytes still unallocated above the highest allocation. */
  get remaining(): bigint {
    return this.#end - this.#next;
  }
}
