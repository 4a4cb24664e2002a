/**
 * Interrupt lines as devices see them. A device drives a line's level; the
 * machine decides what that means (KVM_IRQ_LINE on the in-kernel irqchip, or
 * a recording stub in unit tests).
 *
 * @module
 */

/** One interrupt line (a GSI on the irqchip) that a device raises and lowers. */
export interface IrqLine {
  /** Drive the line high (`true`) or low (`false`). Repeating a level is harmless. */
  set(level: boolean): void;
}

/** An {@linkcode IrqLine} that records its level and every change (for tests). */
export class RecordingIrqLine implements IrqLine {
  /** Current level. */
  level = false;
  /** Every level set, in order. */
  readonly history: boolean[] = [];

  /** Record the new level. */
  set(level: boolean): void {
    this.level = level;
    this.history.push(level);
  }
}
