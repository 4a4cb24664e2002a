/**
 * Model-specific registers dvmm sets on every vCPU before it first runs (as
 * kvmtool and Firecracker do): SYSENTER and SYSCALL MSRs cleared, TSC = 0, fast
 * strings enabled, and MTRRs enabled with write-back as the default memory type.
 *
 * @module
 */

import type { MsrEntry } from "../kvm/types.ts";

export type { MsrEntry } from "../kvm/types.ts";

/** MSR indices. */
export const MSR = {
  IA32_TSC: 0x10,
  IA32_SYSENTER_CS: 0x174,
  IA32_SYSENTER_ESP: 0x175,
  IA32_SYSENTER_EIP: 0x176,
  IA32_MISC_ENABLE: 0x1a0,
  IA32_MTRR_DEF_TYPE: 0x2ff,
  STAR: 0xc000_0081,
  LSTAR: 0xc000_0082,
  CSTAR: 0xc000_0083,
  SYSCALL_MASK: 0xc000_0084,
  KERNEL_GS_BASE: 0xc000_0102,
} as const;

/** IA32_MISC_ENABLE bit 0: fast string operations (REP MOVS/STOS). */
export const MISC_ENABLE_FAST_STRING = 1n;
/** IA32_MTRR_DEF_TYPE: MTRRs enabled (bit 11), default type write-back (6). */
export const MTRR_DEF_TYPE_ENABLED_WB = (1n << 11n) | 6n;

/** The MSRs to set (KVM_SET_MSRS) on each vCPU at boot. */
export function bootMsrs(): MsrEntry[] {
  return [
    { index: MSR.IA32_SYSENTER_CS, data: 0n },
    { index: MSR.IA32_SYSENTER_ESP, data: 0n },
    { index: MSR.IA32_SYSENTER_EIP, data: 0n },
    { index: MSR.STAR, data: 0n },
    { index: MSR.CSTAR, data: 0n },
    { index: MSR.KERNEL_GS_BASE, data: 0n },
    { index: MSR.SYSCALL_MASK, data: 0n },
    { index: MSR.LSTAR, data: 0n },
    { index: MSR.IA32_TSC, data: 0n },
    { index: MSR.IA32_MISC_ENABLE, data: MISC_ENABLE_FAST_STRING },
    { index: MSR.IA32_MTRR_DEF_TYPE, data: MTRR_DEF_TYPE_ENABLED_WB },
  ];
}
