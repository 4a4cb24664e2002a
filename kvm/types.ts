/**
 * Plain JavaScript shapes of the KVM structures that cross module boundaries
 * (register state, CPUID, MSRs). They mirror the layouts in `kvm_structs.ts`
 * and are structured-cloneable, so they can be posted to a vCPU worker.
 *
 * @module
 */

/** General purpose registers (`struct kvm_regs`). */
export interface Regs {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
}

/** A segment register (`struct kvm_segment`). */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** A descriptor table register (`struct kvm_dtable`). */
export interface Dtable {
  base: bigint;
  limit: number;
}

/** Segment and control registers (`struct kvm_sregs`). */
export interface Sregs {
  cs: Segment;
  ds: Segment;
  es: Segment;
  fs: Segment;
  gs: Segment;
  ss: Segment;
  tr: Segment;
  ldt: Segment;
  gdt: Dtable;
  idt: Dtable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apic_base: bigint;
  interrupt_bitmap: bigint[];
}

/** One CPUID leaf (`struct kvm_cpuid_entry2`). */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** One MSR (`struct kvm_msr_entry`). */
export interface MsrEntry {
  index: number;
  data: bigint;
}

/** FPU state fields dvmm sets (`struct kvm_fpu`); the rest is zero. */
export interface FpuState {
  fcw: number;
  mxcsr: number;
}

/** Everything a vCPU needs before its first KVM_RUN. Fields left out keep KVM's reset state. */
export interface VcpuSetup {
  regs?: Partial<Regs>;
  sregs?: DeepPartialSregs;
  cpuid?: CpuidEntry[];
  msrs?: MsrEntry[];
  fpu?: FpuState;
}

/** {@linkcode Sregs} with every field (and segment field) optional. */
export type DeepPartialSregs = {
  [K in keyof Sregs]?: Sregs[K] extends Segment ? Partial<Segment>
    : Sregs[K] extends Dtable ? Partial<Dtable>
    : Sregs[K];
};
