/**
 * Plain JavaScript shapes of the KVM structures that cross module boundaries
 * (register state, CPUID, MSRs). They mirror the layouts in `kvm_structs.ts`
 * and are structured-cloneable, so they can be posted to a vCPU worker.
 *
 * @module
 */

/** General purpose registers (`struct kvm_regs`). */
export interface Regs {
  /** RAX. */
  rax: bigint;
  /** RBX. */
  rbx: bigint;
  /** RCX. */
  rcx: bigint;
  /** RDX. */
  rdx: bigint;
  /** RSI. */
  rsi: bigint;
  /** RDI. */
  rdi: bigint;
  /** Stack pointer (RSP). */
  rsp: bigint;
  /** Frame pointer (RBP). */
  rbp: bigint;
  /** R8. */
  r8: bigint;
  /** R9. */
  r9: bigint;
  /** R10. */
  r10: bigint;
  /** R11. */
  r11: bigint;
  /** R12. */
  r12: bigint;
  /** R13. */
  r13: bigint;
  /** R14. */
  r14: bigint;
  /** R15. */
  r15: bigint;
  /** Guest RIP. */
  rip: bigint;
  /** RFLAGS (bit 1 is always set). */
  rflags: bigint;
}

/** A segment register (`struct kvm_segment`). */
export interface Segment {
  /** Segment base address. */
  base: bigint;
  /** Segment limit (in bytes, already scaled by `g`). */
  limit: number;
  /** Selector. */
  selector: number;
  /** Descriptor type (4 bits). */
  type: number;
  /** Present bit (0 or 1). */
  present: number;
  /** Descriptor privilege level (0-3). */
  dpl: number;
  /** Default operation size bit: 1 for 32-bit (0 or 1). */
  db: number;
  /** Descriptor type bit: 1 for code/data, 0 for system (0 or 1). */
  s: number;
  /** Long mode (64-bit code) bit (0 or 1). */
  l: number;
  /** Granularity bit: limit in 4 KiB units (0 or 1). */
  g: number;
  /** Available-for-software bit (0 or 1). */
  avl: number;
  /** Unusable bit (0 or 1). */
  unusable: number;
}

/** A descriptor table register (`struct kvm_dtable`). */
export interface Dtable {
  /** Table base address. */
  base: bigint;
  /** Table limit (size in bytes minus 1). */
  limit: number;
}

/** Segment and control registers (`struct kvm_sregs`). */
export interface Sregs {
  /** Code segment. */
  cs: Segment;
  /** Data segment. */
  ds: Segment;
  /** ES segment. */
  es: Segment;
  /** FS segment. */
  fs: Segment;
  /** GS segment. */
  gs: Segment;
  /** Stack segment. */
  ss: Segment;
  /** Task register. */
  tr: Segment;
  /** Local descriptor table. */
  ldt: Segment;
  /** Global descriptor table register. */
  gdt: Dtable;
  /** Interrupt descriptor table register. */
  idt: Dtable;
  /** CR0. */
  cr0: bigint;
  /** CR2 (page fault address). */
  cr2: bigint;
  /** CR3 (page table base). */
  cr3: bigint;
  /** CR4. */
  cr4: bigint;
  /** CR8 (task priority). */
  cr8: bigint;
  /** EFER MSR. */
  efer: bigint;
  /** APIC base MSR. */
  apic_base: bigint;
  /** Pending external interrupts, one bit per vector (4 words of 64 bits). */
  interrupt_bitmap: bigint[];
}

/** One CPUID leaf (`struct kvm_cpuid_entry2`). */
export interface CpuidEntry {
  /** Leaf (EAX input). */
  function: number;
  /** Subleaf (ECX input). */
  index: number;
  /** KVM_CPUID_FLAG_* bits. */
  flags: number;
  /** EAX output. */
  eax: number;
  /** EBX output. */
  ebx: number;
  /** ECX output. */
  ecx: number;
  /** EDX output. */
  edx: number;
}

/** One MSR (`struct kvm_msr_entry`). */
export interface MsrEntry {
  /** MSR number. */
  index: number;
  /** Value. */
  data: bigint;
}

/** FPU state fields dvmm sets (`struct kvm_fpu`); the rest is zero. */
export interface FpuState {
  /** x87 FPU control word. */
  fcw: number;
  /** SSE control/status register (MXCSR). */
  mxcsr: number;
}

/** Everything a vCPU needs before its first KVM_RUN. Fields left out keep KVM's reset state. */
export interface VcpuSetup {
  /** General purpose registers to set. */
  regs?: Partial<Regs>;
  /** Segment and control registers to set. */
  sregs?: DeepPartialSregs;
  /** CPUID leaves (KVM_SET_CPUID2). */
  cpuid?: CpuidEntry[];
  /** MSRs to set (KVM_SET_MSRS). */
  msrs?: MsrEntry[];
  /** FPU state to set (KVM_SET_FPU). */
  fpu?: FpuState;
}

/** {@linkcode Sregs} with every field (and segment field) optional. */
export type DeepPartialSregs = {
  [K in keyof Sregs]?: Sregs[K] extends Segment ? Partial<Segment>
    : Sregs[K] extends Dtable ? Partial<Dtable>
    : Sregs[K];
};
