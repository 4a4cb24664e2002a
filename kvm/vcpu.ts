/**
 * A KVM vCPU: register state, CPUID, MSRs, FPU and `KVM_RUN`. Created and used
 * only inside its own worker thread (KVM wants vCPU ioctls from the thread that
 * created the vCPU). Modelled on rust-vmm's `kvm-ioctls::VcpuFd`.
 *
 * @module
 */

import { KVM } from "./ioctls.ts";
import {
  close,
  errno,
  ioctl,
  ioctlBuf,
  libc,
  MAP_SHARED,
  type Mapping,
  mmap,
  OsError,
  PROT_READ,
  PROT_WRITE,
} from "./libc.ts";
import { decode, encode, encodeInto, type StructValue } from "./layout.ts";
import {
  kvmCpuid2,
  kvmCpuidEntry2,
  kvmFpu,
  kvmMsrEntry,
  kvmMsrs,
  kvmRegs,
  kvmSregs,
} from "./kvm_structs.ts";
import type {
  CpuidEntry,
  DeepPartialSregs,
  FpuState,
  MsrEntry,
  Regs,
  Sregs,
  VcpuSetup,
} from "./types.ts";

/** One vCPU fd and its mapped `kvm_run`. */
export class Vcpu {
  /** The mapped `struct kvm_run`. */
  readonly run: DataView;
  /** Same bytes as {@linkcode run}. */
  readonly runBytes: Uint8Array;
  /** Address of the mapping (for kicks from another thread). */
  readonly runAddress: bigint;
  readonly #mapping: Mapping;

  private constructor(readonly fd: number, readonly index: number, mmapSize: number) {
    this.#mapping = mmap(mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
    const buffer = Deno.UnsafePointerView.getArrayBuffer(this.#mapping.pointer, mmapSize);
    this.run = new DataView(buffer);
    this.runBytes = new Uint8Array(buffer);
    this.runAddress = Deno.UnsafePointer.value(this.#mapping.pointer) as bigint;
  }

  /** `KVM_CREATE_VCPU` on `vmFd` with id `index`, and map its `kvm_run`. */
  static create(vmFd: number, index: number, mmapSize: number): Vcpu {
    const fd = ioctl(vmFd, KVM.CREATE_VCPU, BigInt(index), "KVM_CREATE_VCPU");
    return new Vcpu(fd, index, mmapSize);
  }

  /** `KVM_GET_REGS`. */
  getRegs(): Regs {
    const buf = new Uint8Array(kvmRegs.size);
    ioctlBuf(this.fd, KVM.GET_REGS, buf, "KVM_GET_REGS");
    return decode(kvmRegs, buf) as unknown as Regs;
  }

  /** `KVM_SET_REGS`; fields left out keep their current value. */
  setRegs(regs: Partial<Regs>): void {
    const buf = encode(kvmRegs, { ...this.getRegs(), ...regs } as unknown as StructValue);
    ioctlBuf(this.fd, KVM.SET_REGS, buf, "KVM_SET_REGS");
  }

  /** `KVM_GET_SREGS`. */
  getSregs(): Sregs {
    const buf = new Uint8Array(kvmSregs.size);
    ioctlBuf(this.fd, KVM.GET_SREGS, buf, "KVM_GET_SREGS");
    return decode(kvmSregs, buf) as unknown as Sregs;
  }

  /** `KVM_SET_SREGS`; fields (and segment fields) left out keep their current value. */
  setSregs(sregs: DeepPartialSregs): void {
    const buf = new Uint8Array(kvmSregs.size);
    ioctlBuf(this.fd, KVM.GET_SREGS, buf, "KVM_GET_SREGS");
    encodeInto(kvmSregs, new DataView(buf.buffer), 0, sregs as unknown as StructValue);
    ioctlBuf(this.fd, KVM.SET_SREGS, buf, "KVM_SET_SREGS");
  }

  /** `KVM_SET_CPUID2`. */
  setCpuid(entries: readonly CpuidEntry[]): void {
    const buf = new Uint8Array(kvmCpuid2.size + entries.length * kvmCpuidEntry2.size);
    const view = new DataView(buf.buffer);
    encodeInto(kvmCpuid2, view, 0, { nent: entries.length });
    entries.forEach((e, i) =>
      encodeInto(
        kvmCpuidEntry2,
        view,
        kvmCpuid2.size + i * kvmCpuidEntry2.size,
        e as unknown as StructValue,
      )
    );
    ioctlBuf(this.fd, KVM.SET_CPUID2, buf, "KVM_SET_CPUID2");
  }

  /** `KVM_SET_MSRS`; throws if KVM accepted fewer than all of them. */
  setMsrs(msrs: readonly MsrEntry[]): void {
    const buf = new Uint8Array(kvmMsrs.size + msrs.length * kvmMsrEntry.size);
    const view = new DataView(buf.buffer);
    encodeInto(kvmMsrs, view, 0, { nmsrs: msrs.length });
    msrs.forEach((m, i) =>
      encodeInto(kvmMsrEntry, view, kvmMsrs.size + i * kvmMsrEntry.size, {
        index: m.index,
        data: m.data,
      })
    );
    const n = ioctlBuf(this.fd, KVM.SET_MSRS, buf, "KVM_SET_MSRS");
    if (n !== msrs.length) {
      throw new Error(`KVM_SET_MSRS: MSR 0x${msrs[n]?.index.toString(16)} was refused`);
    }
  }

  /** `KVM_SET_FPU`. */
  setFpu(fpu: FpuState): void {
    ioctlBuf(
      this.fd,
      KVM.SET_FPU,
      encode(kvmFpu, { fcw: fpu.fcw, mxcsr: fpu.mxcsr }),
      "KVM_SET_FPU",
    );
  }

  /** Apply a {@linkcode VcpuSetup}: CPUID first, then MSRs, FPU, sregs, regs. */
  apply(setup: VcpuSetup): void {
    if (setup.cpuid) this.setCpuid(setup.cpuid);
    if (setup.msrs) this.setMsrs(setup.msrs);
    if (setup.fpu) this.setFpu(setup.fpu);
    if (setup.sregs) this.setSregs(setup.sregs);
    if (setup.regs) this.setRegs(setup.regs);
  }

  /**
   * `KVM_RUN`. Returns the exit reason, or -1 when interrupted by a signal
   * (EINTR/EAGAIN, e.g. a kick). Other failures throw {@linkcode OsError}.
   */
  runOnce(): number {
    const r = libc().ioctl(this.fd, KVM.RUN, 0n);
    if (r < 0) {
      const e = errno();
      if (e === 4 || e === 11) return -1;
      throw new OsError("KVM_RUN", e);
    }
    return this.run.getUint32(8, true);
  }

  /** Close the vCPU fd (the kvm_run mapping goes with the process). */
  close(): void {
    close(this.fd);
  }
}
