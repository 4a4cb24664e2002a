/**
 * A {@linkcode PciPlatform} for unit tests: records MSIs, keeps the set of
 * registered ioeventfds (and checks that handles are removed once), can be
 * told to refuse registrations, and lets a test ring a doorbell by address.
 *
 * @module
 */

import type {
  IoeventfdLength,
  PciIoeventfdHandle,
  PciPlatform,
  PciSpace,
} from "../../devices/pci_device.ts";

/** One registered ioeventfd. */
export interface FakeIoeventfd {
  readonly space: PciSpace;
  readonly address: bigint;
  readonly length: IoeventfdLength;
  readonly onKick: () => void;
  /** The plugin's own eventfd, if it passed one. */
  readonly fd?: number;
}

/** The recording platform. */
export class FakePciPlatform implements PciPlatform {
  /** MSIs delivered, in order. */
  readonly msis: { address: bigint; data: number }[] = [];
  /** Live registrations by handle. */
  readonly live = new Map<PciIoeventfdHandle, FakeIoeventfd>();
  /** Protocol violations (unknown or double removal, overlapping registrations). */
  readonly violations: string[] = [];
  /** Registrations refused so far. */
  refusals = 0;
  /** Refuse the next registrations while this returns true. */
  refuse: () => boolean = () => false;
  #next = 1;

  /** Record the MSI. */
  signalMsi(address: bigint, data: number): void {
    this.msis.push({ address, data });
  }

  /** Register (or refuse) one ioeventfd. */
  addIoeventfd(
    space: PciSpace,
    address: bigint,
    length: IoeventfdLength,
    onKick: () => void,
    fd?: number,
  ): PciIoeventfdHandle {
    if (this.refuse()) {
      this.refusals++;
      throw new Error(`fake platform refuses ${space} ${address.toString(16)}`);
    }
    for (const r of this.live.values()) {
      if (r.space === space && r.address === address && r.length === length) {
        this.violations.push(`duplicate ioeventfd at ${space} 0x${address.toString(16)}`);
      }
    }
    const handle = this.#next++;
    this.live.set(handle, { space, address, length, onKick, ...(fd === undefined ? {} : { fd }) });
    return handle;
  }

  /** Drop one registration. */
  removeIoeventfd(handle: PciIoeventfdHandle): void {
    if (!this.live.delete(handle)) this.violations.push(`remove of unknown handle ${handle}`);
  }

  /** Live registrations as sorted `space:address/len` strings. */
  registrations(): string[] {
    return [...this.live.values()].map((r) => `${r.space}:${r.address.toString(16)}/${r.length}`)
      .sort();
  }

  /** A guest write hit `address` in `space`: call the matching ioeventfd. Returns false if none. */
  ring(space: PciSpace, address: bigint): boolean {
    for (const r of this.live.values()) {
      if (r.space === space && r.address === address) {
        r.onKick();
        return true;
      }
    }
    return false;
  }
}
