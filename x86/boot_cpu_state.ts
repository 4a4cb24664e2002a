/**
 * The bootstrap vCPU's state at Linux's 64-bit entry (boot.rst "64-bit BOOT
 * PROTOCOL"): long mode with paging on, CS = `__BOOT_CS` (flat 64-bit code),
 * DS/ES/FS/GS/SS = `__BOOT_DS`, interrupts off, RSI = the zero page, RIP =
 * `startup_64`. Shapes are those of kvm/types.ts (`struct kvm_regs` /
 * `struct kvm_sregs`), ready for KVM_SET_REGS / KVM_SET_SREGS.
 *
 * @module
 */

import type { Regs, Sregs } from "../kvm/types.ts";
import { CODE64_SEGMENT, DATA_SEGMENT, LDT_SEGMENT, TSS_SEGMENT } from "./gdt.ts";

/** CR0 bits. */
export const CR0 = {
  /** Protected mode. */
  PE: 1n << 0n,
  /** Monitor coprocessor. */
  MP: 1n << 1n,
  /** Extension type (always 1 on modern CPUs). */
  ET: 1n << 4n,
  /** Native x87 error reporting. */
  NE: 1n << 5n,
  /** Paging. */
  PG: 1n << 31n,
} as const;

/** CR4 bits. */
export const CR4 = {
  /** Physical address extension (required for long mode). */
  PAE: 1n << 5n,
} as const;

/** EFER bits. */
export const EFER = {
  /** Long mode enable. */
  LME: 1n << 8n,
  /** Long mode active. */
  LMA: 1n << 10n,
} as const;

/** RFLAGS at entry: only the always-one bit 1 (IF clear). */
export const BOOT_RFLAGS = 0x2n;

/**
 * Segment and control registers dvmm sets at boot: cs (`__BOOT_CS`), ds/es/fs/gs/ss
 * (`__BOOT_DS`), tr (a busy 64-bit TSS, as VMX requires), ldt (none), gdt, idt (empty),
 * cr0 (PE | ET | NE | PG), cr3 (the PML4), cr4 (PAE), efer (LME | LMA). The rest of
 * kvm_sregs keeps KVM's reset state.
 */
export type BootSregs = Pick<
  Sregs,
  | "cs"
  | "ds"
  | "es"
  | "fs"
  | "gs"
  | "ss"
  | "tr"
  | "ldt"
  | "gdt"
  | "idt"
  | "cr0"
  | "cr3"
  | "cr4"
  | "efer"
>;

/** The full entry state of the bootstrap processor. */
export interface BootCpuState {
  /** General purpose registers: all zero except RIP, RSI, RSP and RFLAGS. */
  regs: Regs;
  /** Segment and control registers. */
  sregs: BootSregs;
}

/** Where things are, for {@linkcode bootCpuState}. */
export interface BootCpuStateOptions {
  /** `startup_64`: protected-mode load address + 0x200. */
  readonly rip: number;
  /** Zero page address. */
  readonly zeroPage: number;
  /** Initial stack pointer. */
  readonly rsp: number;
  /** PML4 address. */
  readonly cr3: number;
  /** GDT placement. */
  readonly gdt: { readonly base: number; readonly size: number };
  /** IDT address (an empty table). */
  readonly idt: number;
}

/** The bootstrap vCPU state for a 64-bit Linux entry. */
export function bootCpuState(o: BootCpuStateOptions): BootCpuState {
  const zero = 0n;
  return {
    regs: {
      rax: zero,
      rbx: zero,
      rcx: zero,
      rdx: zero,
      rsi: BigInt(o.zeroPage),
      rdi: zero,
      rsp: BigInt(o.rsp),
      rbp: zero,
      r8: zero,
      r9: zero,
      r10: zero,
      r11: zero,
      r12: zero,
      r13: zero,
      r14: zero,
      r15: zero,
      rip: BigInt(o.rip),
      rflags: BOOT_RFLAGS,
    },
    sregs: {
      cs: { ...CODE64_SEGMENT },
      ds: { ...DATA_SEGMENT },
      es: { ...DATA_SEGMENT },
      fs: { ...DATA_SEGMENT },
      gs: { ...DATA_SEGMENT },
      ss: { ...DATA_SEGMENT },
      tr: { ...TSS_SEGMENT },
      ldt: { ...LDT_SEGMENT },
      gdt: { base: BigInt(o.gdt.base), limit: o.gdt.size - 1 },
      idt: { base: BigInt(o.idt), limit: 0 },
      cr0: CR0.PE | CR0.ET | CR0.NE | CR0.PG,
      cr3: BigInt(o.cr3),
      cr4: CR4.PAE,
      efer: EFER.LME | EFER.LMA,
    },
  };
}
