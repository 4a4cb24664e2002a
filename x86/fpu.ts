/**
 * The initial x87/SSE state of a vCPU (KVM_SET_FPU): the values FNINIT and a
 * processor reset give, which KVM does not set on its own.
 *
 * @module
 */

import type { FpuState } from "../kvm/types.ts";

export type { FpuState } from "../kvm/types.ts";

/** x87 control word after FNINIT: all exceptions masked, 64-bit precision, round to nearest. */
export const FCW_DEFAULT = 0x37f;
/** MXCSR after reset: all SIMD exceptions masked, round to nearest. */
export const MXCSR_DEFAULT = 0x1f80;

/** The FPU state for every vCPU at boot. */
export function bootFpu(): FpuState {
  return { fcw: FCW_DEFAULT, mxcsr: MXCSR_DEFAULT };
}
