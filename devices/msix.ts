/**
 * MSI-X (PCI Local Bus 3.0 §6.8.2): the capability in config space, the
 * vector table and the pending bit array (PBA) that live in a memory BAR.
 *
 * The table is a pure {@linkcode BusDevice}-style region of 16-byte entries
 * (message address low/high, message data, vector control with the per-vector
 * mask bit). A vector fired while MSI-X is enabled is delivered through a
 * {@linkcode MsiSink} unless the function or the vector is masked, in which
 * case its pending bit is set and the message is delivered when it becomes
 * unmasked. With MSI-X disabled nothing is delivered (the device uses INTx).
 *
 * @module
 */

import type { BusDevice } from "./bus.ts";
import type { PciCapabilitySpec, PciConfigHooks } from "./pci_device.ts";
import type { Field } from "./virtio/spec.ts";

/** Capability ID of MSI-X. */
export const MSIX_CAP_ID = 0x11;

/** MSI-X capability layout, offsets from the capability's first byte. */
export const MSIX_CAP = {
  ID: { offset: 0, size: 1 },
  NEXT: { offset: 1, size: 1 },
  MESSAGE_CONTROL: { offset: 2, size: 2 },
  /** Table offset in its BAR (8-byte aligned) | BAR indicator in bits 2:0. */
  TABLE: { offset: 4, size: 4 },
  /** PBA offset in its BAR (8-byte aligned) | BAR indicator in bits 2:0. */
  PBA: { offset: 8, size: 4 },
} as const satisfies Record<string, Field>;

/** Size of the MSI-X capability. */
export const MSIX_CAP_SIZE = 12;

/** Message Control bits. */
export const MSIX_CONTROL = {
  /** Table size minus one (read-only). */
  TABLE_SIZE_MASK: 0x07ff,
  /** All vectors masked. */
  FUNCTION_MASK: 1 << 14,
  /** MSI-X enabled. */
  ENABLE: 1 << 15,
} as const;

/** One table entry's layout. */
export const MSIX_ENTRY = {
  ADDR_LO: { offset: 0, size: 4 },
  ADDR_HI: { offset: 4, size: 4 },
  DATA: { offset: 8, size: 4 },
  VECTOR_CONTROL: { offset: 12, size: 4 },
} as const satisfies Record<string, Field>;

/** Size of one table entry. */
export const MSIX_ENTRY_SIZE = 16;

/** Vector Control bit 0: the vector is masked. */
export const MSIX_VECTOR_MASKED = 1;

/** Most vectors an MSI-X table can have. */
export const MSIX_MAX_VECTORS = 2048;

/** An MSI message: write `data` to `address`. */
export interface MsiMessage {
  /** Message address (64-bit; on x86 0xfeeXXXXX). */
  readonly address: bigint;
  /** Message data (32-bit). */
  readonly data: number;
}

/** Where MSI messages go (KVM_SIGNAL_MSI, or an irqfd with a routing entry). */
export interface MsiSink {
  /** Deliver `message` for table entry `vector`. */
  sendMsi(vector: number, message: MsiMessage): void;
  /**
   * Entry `vector`'s address/data or mask changed, or MSI-X was enabled or
   * disabled or the function (un)masked (for irqfd routing updates). `message`
   * is null while it is not deliverable (masked, function-masked or MSI-X disabled).
   */
  vectorChanged?(vector: number, message: MsiMessage | null): void;
}

/** Where the table and PBA live. */
export interface MsixPlacement {
  /** BAR index holding the table. */
  readonly tableBar: number;
  /** Offset of the table in that BAR (8-byte aligned). */
  readonly tableOffset: number;
  /** BAR index holding the PBA. */
  readonly pbaBar: number;
  /** Offset of the PBA in that BAR (8-byte aligned). */
  readonly pbaOffset: number;
}

/** An MSI-X function: table, PBA and the capability's control bits. */
export class MsixTable {
  /** Number of vectors (table entries). */
  readonly vectors: number;
  readonly #entries: Uint8Array;
  readonly #view: DataView;
  readonly #pending: Uint8Array;
  readonly #sink: MsiSink;
  #control = 0;

  /** A table of `vectors` entries (1..2048), all masked, MSI-X disabled. */
  constructor(vectors: number, sink: MsiSink) {
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > MSIX_MAX_VECTORS) {
      throw new RangeError(`MSI-X: ${vectors} vectors (must be 1..${MSIX_MAX_VECTORS})`);
    }
    this.vectors = vectors;
    this.#entries = new Uint8Array(vectors * MSIX_ENTRY_SIZE);
    this.#view = new DataView(this.#entries.buffer);
    this.#pending = new Uint8Array(vectors);
    this.#sink = sink;
    this.reset();
  }

  /** Bytes the table occupies in its BAR. */
  get tableBytes(): number {
    return this.vectors * MSIX_ENTRY_SIZE;
  }

  /** Bytes the PBA occupies in its BAR (whole qwords). */
  get pbaBytes(): number {
    return Math.ceil(this.vectors / 64) * 8;
  }

  /** MSI-X Enable is set. */
  get enabled(): boolean {
    return (this.#control & MSIX_CONTROL.ENABLE) !== 0;
  }

  /** Function Mask is set. */
  get functionMasked(): boolean {
    return (this.#control & MSIX_CONTROL.FUNCTION_MASK) !== 0;
  }

  /** The Message Control register value. */
  get control(): number {
    return this.#control | (this.vectors - 1);
  }

  /** Entry `vector`'s message. */
  message(vector: number): MsiMessage {
    const at = vector * MSIX_ENTRY_SIZE;
    const lo = this.#view.getUint32(at + MSIX_ENTRY.ADDR_LO.offset, true);
    const hi = this.#view.getUint32(at + MSIX_ENTRY.ADDR_HI.offset, true);
    return {
      address: (BigInt(hi) << 32n) | BigInt(lo),
      data: this.#view.getUint32(at + MSIX_ENTRY.DATA.offset, true),
    };
  }

  /** Entry `vector`'s mask bit. */
  vectorMasked(vector: number): boolean {
    return (this.#entries[vector * MSIX_ENTRY_SIZE + MSIX_ENTRY.VECTOR_CONTROL.offset] &
      MSIX_VECTOR_MASKED) !== 0;
  }

  /** Entry `vector`'s pending bit. */
  isPending(vector: number): boolean {
    return this.#pending[vector] !== 0;
  }

  /**
   * Fire `vector`. Returns true if the message was sent now; false if it was
   * left pending (masked), or MSI-X is disabled or `vector` is not in the
   * table (nothing happens then).
   */
  notify(vector: number): boolean {
    if (!this.enabled || !Number.isInteger(vector) || vector < 0 || vector >= this.vectors) {
      return false;
    }
    if (this.functionMasked || this.vectorMasked(vector)) {
      this.#pending[vector] = 1;
      return false;
    }
    this.#sink.sendMsi(vector, this.message(vector));
    return true;
  }

  /** Set Message Control's writable bits (Enable, Function Mask); delivers newly unmasked pending vectors. */
  setControl(value: number): void {
    const before = this.#control;
    this.#control = value & (MSIX_CONTROL.ENABLE | MSIX_CONTROL.FUNCTION_MASK);
    if (before === this.#control) return;
    for (let v = 0; v < this.vectors; v++) this.#routeChanged(v);
    this.#deliverPending();
  }

  /** The table region (offsets relative to the table's start). */
  readonly table: BusDevice = {
    read: (offset, data) => {
      for (let i = 0; i < data.length; i++) {
        const at = offset + i;
        data[i] = at >= 0 && at < this.#entries.length ? this.#entries[at] : 0;
      }
    },
    write: (offset, data) => {
      const touched = new Set<number>();
      for (let i = 0; i < data.length; i++) {
        const at = offset + i;
        if (at < 0 || at >= this.#entries.length) continue;
        const field = at % MSIX_ENTRY_SIZE;
        if (field >= MSIX_ENTRY.VECTOR_CONTROL.offset) {
          // Only the mask bit of Vector Control is writable.
          if (field === MSIX_ENTRY.VECTOR_CONTROL.offset) {
            this.#entries[at] = data[i] & MSIX_VECTOR_MASKED;
          }
        } else {
          this.#entries[at] = data[i];
        }
        touched.add(Math.floor(at / MSIX_ENTRY_SIZE));
      }
      for (const v of touched) this.#routeChanged(v);
      this.#deliverPending();
    },
  };

  /** The PBA region (offsets relative to the PBA's start); read-only. */
  readonly pba: BusDevice = {
    read: (offset, data) => {
      for (let i = 0; i < data.length; i++) {
        let byte = 0;
        for (let b = 0; b < 8; b++) {
          const v = (offset + i) * 8 + b;
          if (v >= 0 && v < this.vectors && this.#pending[v]) byte |= 1 << b;
        }
        data[i] = byte;
      }
    },
    write: () => {},
  };

  /** The capability for a manifest: table size, table and PBA location; Enable and Function Mask writable. */
  capability(placement: MsixPlacement): PciCapabilitySpec {
    const body = new Uint8Array(MSIX_CAP_SIZE - 2);
    const view = new DataView(body.buffer);
    view.setUint16(MSIX_CAP.MESSAGE_CONTROL.offset - 2, this.vectors - 1, true);
    view.setUint32(
      MSIX_CAP.TABLE.offset - 2,
      placement.tableOffset | (placement.tableBar & 7),
      true,
    );
    view.setUint32(MSIX_CAP.PBA.offset - 2, placement.pbaOffset | (placement.pbaBar & 7), true);
    const writable = [0x00, (MSIX_CONTROL.ENABLE | MSIX_CONTROL.FUNCTION_MASK) >> 8];
    return { id: MSIX_CAP_ID, size: MSIX_CAP_SIZE, body: [...body], writable };
  }

  /** Config-space hooks for the capability: tracks Enable / Function Mask, reports the live value. */
  capabilityHooks(): PciConfigHooks {
    const ctl = MSIX_CAP.MESSAGE_CONTROL.offset;
    return {
      read: (offset, data) => {
        for (let i = 0; i < data.length; i++) {
          const byte = offset + i - ctl;
          if (byte === 0 || byte === 1) data[i] = (this.control >> (8 * byte)) & 0xff;
        }
      },
      write: (offset, data) => {
        const high = ctl + 1 - offset;
        if (high >= 0 && high < data.length) this.setControl(data[high] << 8);
      },
    };
  }

  /** Power-on state: MSI-X disabled, not function-masked, every entry zero and masked, nothing pending. */
  reset(): void {
    const wasEnabled = this.enabled;
    this.#control = 0;
    this.#entries.fill(0);
    this.#pending.fill(0);
    for (let v = 0; v < this.vectors; v++) {
      this.#entries[v * MSIX_ENTRY_SIZE + MSIX_ENTRY.VECTOR_CONTROL.offset] = MSIX_VECTOR_MASKED;
    }
    if (wasEnabled) { for (let v = 0; v < this.vectors; v++) this.#routeChanged(v); }
  }

  #deliverPending(): void {
    if (!this.enabled || this.functionMasked) return;
    for (let v = 0; v < this.vectors; v++) {
      if (this.#pending[v] && !this.vectorMasked(v)) {
        this.#pending[v] = 0;
        this.#sink.sendMsi(v, this.message(v));
      }
    }
  }

  #routeChanged(vector: number): void {
    this.#sink.vectorChanged?.(
      vector,
      this.enabled && !this.functionMasked && !this.vectorMasked(vector)
        ? this.message(vector)
        : null,
    );
  }
}
