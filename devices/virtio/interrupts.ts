/**
 * The usual PCI interrupt routing of a virtio device: MSI-X vectors while the
 * driver has MSI-X enabled, otherwise the INTx line, asserted while ISR
 * status is non-zero (the driver's ISR read deasserts it).
 *
 * @module
 */

import type { IrqLine } from "../irq.ts";
import type { MsixTable } from "../msix.ts";
import { VIRTIO_MSI_NO_VECTOR } from "./pci_layout.ts";
import type { VirtioInterruptSink } from "./transport.ts";

/** A {@linkcode VirtioInterruptSink} over an MSI-X table (optional) and an INTx line. */
export class VirtioPciInterrupts implements VirtioInterruptSink {
  readonly #msix: MsixTable | null;
  readonly #intx: IrqLine;

  /** Route through `msix` when it is enabled, else `intx`. */
  constructor(msix: MsixTable | null, intx: IrqLine) {
    this.#msix = msix;
    this.#intx = intx;
  }

  /** MSI-X is enabled. */
  get msixEnabled(): boolean {
    return this.#msix?.enabled ?? false;
  }

  /** Fire the queue's vector (MSI-X only; INTx follows ISR). */
  signalQueue(vector: number): void {
    if (this.msixEnabled && vector !== VIRTIO_MSI_NO_VECTOR) this.#msix!.notify(vector);
  }

  /** Fire the config vector (MSI-X only; INTx follows ISR). */
  signalConfig(vector: number): void {
    if (this.msixEnabled && vector !== VIRTIO_MSI_NO_VECTOR) this.#msix!.notify(vector);
  }

  /** `vector`'s message while MSI-X is enabled and neither the entry nor the function is masked. */
  directMessage(vector: number): { readonly address: bigint; readonly data: number } | null {
    const m = this.#msix;
    if (!m?.enabled || m.functionMasked || vector >= m.vectors || m.vectorMasked(vector)) {
      return null;
    }
    return m.message(vector);
  }

  /** Drive INTx from ISR status while MSI-X is off. */
  isrChanged(isr: number): void {
    this.#intx.set(!this.msixEnabled && isr !== 0);
  }
}
