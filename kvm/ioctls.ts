/**
 * KVM ioctl request numbers, computed from the `_IOC` encoding and the struct
 * layouts (never pasted as numbers), and the KVM constants dvmm uses.
 *
 * @module
 */

import type { Layout } from "./layout.ts";
import {
  kvmCpuid2,
  kvmFpu,
  kvmIoeventfd,
  kvmIrqchip,
  kvmIrqfd,
  kvmIrqLevel,
  kvmIrqRouting,
  kvmMsi,
  kvmMsrs,
  kvmPitConfig,
  kvmRegs,
  kvmSregs,
  kvmUserspaceMemoryRegion,
} from "./kvm_structs.ts";

/** `_IOC` direction bits. */
export const IOC = { NONE: 0, WRITE: 1, READ: 2 } as const;

/** The KVM ioctl type byte. */
export const KVMIO = 0xae;

/** `_IOC(dir, type, nr, size)` as on x86-64 (nr 8 bits, type 8, size 14, dir 2). */
export function ioc(dir: number, type: number, nr: number, size: number): bigint {
  return (BigInt(dir) << 30n) | (BigInt(size) << 16n) | (BigInt(type) << 8n) | BigInt(nr);
}

const io = (nr: number) => ioc(IOC.NONE, KVMIO, nr, 0);
const ior = (nr: number, l: Layout | number) =>
  ioc(IOC.READ, KVMIO, nr, typeof l === "number" ? l : l.size);
const iow = (nr: number, l: Layout | number) =>
  ioc(IOC.WRITE, KVMIO, nr, typeof l === "number" ? l : l.size);
const iowr = (nr: number, l: Layout | number) =>
  ioc(IOC.READ | IOC.WRITE, KVMIO, nr, typeof l === "number" ? l : l.size);

/** The KVM ioctls dvmm issues, by their `<linux/kvm.h>` names. */
export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, kvmCpuid2),
  CREATE_VCPU: io(0x41),
  SET_USER_MEMORY_REGION: iow(0x46, kvmUserspaceMemoryRegion),
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  IRQ_LINE: iow(0x61, kvmIrqLevel),
  GET_IRQCHIP: iowr(0x62, kvmIrqchip),
  SET_GSI_ROUTING: iow(0x6a, kvmIrqRouting),
  IRQFD: iow(0x76, kvmIrqfd),
  CREATE_PIT2: iow(0x77, kvmPitConfig),
  IOEVENTFD: iow(0x79, kvmIoeventfd),
  SIGNAL_MSI: iow(0xa5, kvmMsi),
  RUN: io(0x80),
  GET_REGS: ior(0x81, kvmRegs),
  SET_REGS: iow(0x82, kvmRegs),
  GET_SREGS: ior(0x83, kvmSregs),
  SET_SREGS: iow(0x84, kvmSregs),
  SET_MSRS: iow(0x89, kvmMsrs),
  GET_FPU: ior(0x8c, kvmFpu),
  SET_FPU: iow(0x8d, kvmFpu),
  SET_CPUID2: iow(0x90, kvmCpuid2),
} as const;

/** Names of the requests, for error messages (`KVM_SET_USER_MEMORY_REGION: EINVAL`). */
export const KVM_NAMES: ReadonlyMap<bigint, string> = new Map(
  Object.entries(KVM).map(([name, nr]) => [nr, `KVM_${name}`]),
);

/** `KVM_API_VERSION`. */
export const KVM_API_VERSION = 12;

/** Capabilities dvmm checks (`KVM_CAP_*`). */
export const KVM_CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  NR_VCPUS: 9,
  PIT2: 33,
  IRQ_ROUTING: 25,
  IRQFD: 32,
  IOEVENTFD: 36,
  SIGNAL_MSI: 77,
  IMMEDIATE_EXIT: 136,
  MAX_VCPUS: 66,
  TSC_DEADLINE_TIMER: 72,
} as const;

/** `KVM_EXIT_*` reasons. */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
} as const;

/** Names of exit reasons for messages. */
export const KVM_EXIT_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(KVM_EXIT).map(([name, nr]) => [nr, name]),
);

/** `KVM_EXIT_IO_*` directions. */
export const KVM_EXIT_IO = { IN: 0, OUT: 1 } as const;

/** `KVM_SYSTEM_EVENT_*` types. */
export const KVM_SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

/** `KVM_IOEVENTFD_FLAG_*`. */
export const KVM_IOEVENTFD_FLAG = { DATAMATCH: 1 << 0, PIO: 1 << 1, DEASSIGN: 1 << 2 } as const;

/** `KVM_IRQFD_FLAG_*`. */
export const KVM_IRQFD_FLAG = { DEASSIGN: 1 << 0, RESAMPLE: 1 << 1 } as const;

/** `KVM_IRQ_ROUTING_*` entry types. */
export const KVM_IRQ_ROUTING = { IRQCHIP: 1, MSI: 2 } as const;

/** `KVM_IRQCHIP_*` chips for routing entries. */
export const KVM_IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

/** `KVM_PIT_SPEAKER_DUMMY`. */
export const KVM_PIT_SPEAKER_DUMMY = 1;
