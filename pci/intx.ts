/**
 * Legacy INTx routing: several PCI functions may share one GSI; the line is
 * high while any of them asserts it (wired-OR of level-triggered interrupts).
 *
 * @module
 */

import type { IrqLine } from "../devices/irq.ts";

/** Default GSIs handed out to PCI functions for INTA#: IOAPIC pins 16..23. */
export const DEFAULT_INTX_GSIS: readonly number[] = [16, 17, 18, 19, 20, 21, 22, 23];

/** ORs the INTx levels of the functions sharing each GSI and drives the GSI's line. */
export class IntxRouter {
  readonly #lines = new Map<number, IrqLine>();
  readonly #asserted = new Map<number, Set<object>>();

  /** A router with every line low. @param lineFor the machine's line for a GSI (KVM_IRQ_LINE, or a recorder in tests) */
  constructor(readonly lineFor: (gsi: number) => IrqLine) {}

  /** Set the level that `source` drives on `gsi`; the line changes only when the OR changes. */
  drive(source: object, gsi: number, level: boolean): void {
    let set = this.#asserted.get(gsi);
    if (!set) this.#asserted.set(gsi, set = new Set());
    const before = set.size > 0;
    if (level) set.add(source);
    else set.delete(source);
    const after = set.size > 0;
    if (before !== after) this.#line(gsi).set(after);
  }

  /** Is `gsi` asserted by anyone? */
  level(gsi: number): boolean {
    return (this.#asserted.get(gsi)?.size ?? 0) > 0;
  }

  #line(gsi: number): IrqLine {
    let line = this.#lines.get(gsi);
    if (!line) this.#lines.set(gsi, line = this.lineFor(gsi));
    return line;
  }
}
