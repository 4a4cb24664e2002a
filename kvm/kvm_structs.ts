/**
 * The `<linux/kvm.h>` structures dvmm passes to and from KVM (x86-64), declared
 * once as typed layouts. `tests/unit/kvm_abi_test.ts` compiles C against the
 * system header and checks every size and offset here.
 *
 * @module
 */

import { type Layout, struct, union } from "./layout.ts";

/** `struct kvm_userspace_memory_region`. */
export const kvmUserspaceMemoryRegion: Layout = struct("kvm_userspace_memory_region", [
  ["slot", "u32"],
  ["flags", "u32"],
  ["guest_phys_addr", "u64"],
  ["memory_size", "u64"],
  ["userspace_addr", "u64"],
]);

/** `struct kvm_regs`: general purpose registers. */
export const kvmRegs: Layout = struct(
  "kvm_regs",
  ([
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rsp",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rip",
    "rflags",
  ] as const)
    .map((r) => [r, "u64"] as const),
);

/** `struct kvm_segment`. */
export const kvmSegment: Layout = struct("kvm_segment", [
  ["base", "u64"],
  ["limit", "u32"],
  ["selector", "u16"],
  ["type", "u8"],
  ["present", "u8"],
  ["dpl", "u8"],
  ["db", "u8"],
  ["s", "u8"],
  ["l", "u8"],
  ["g", "u8"],
  ["avl", "u8"],
  ["unusable", "u8"],
  ["padding", "u8"],
]);

/** `struct kvm_dtable`. */
export const kvmDtable: Layout = struct("kvm_dtable", [
  ["base", "u64"],
  ["limit", "u16"],
  ["padding", "u16", 3],
]);

/** `struct kvm_sregs`: segment and control registers. */
export const kvmSregs: Layout = struct("kvm_sregs", [
  ["cs", kvmSegment],
  ["ds", kvmSegment],
  ["es", kvmSegment],
  ["fs", kvmSegment],
  ["gs", kvmSegment],
  ["ss", kvmSegment],
  ["tr", kvmSegment],
  ["ldt", kvmSegment],
  ["gdt", kvmDtable],
  ["idt", kvmDtable],
  ["cr0", "u64"],
  ["cr2", "u64"],
  ["cr3", "u64"],
  ["cr4", "u64"],
  ["cr8", "u64"],
  ["efer", "u64"],
  ["apic_base", "u64"],
  ["interrupt_bitmap", "u64", 4],
]);

/** `struct kvm_fpu`. */
export const kvmFpu: Layout = struct("kvm_fpu", [
  ["fpr", "u8", 128],
  ["fcw", "u16"],
  ["fsw", "u16"],
  ["ftwx", "u8"],
  ["pad1", "u8"],
  ["last_opcode", "u16"],
  ["last_ip", "u64"],
  ["last_dp", "u64"],
  ["xmm", "u8", 256],
  ["mxcsr", "u32"],
  ["pad2", "u32"],
]);

/** `struct kvm_cpuid_entry2`. */
export const kvmCpuidEntry2: Layout = struct("kvm_cpuid_entry2", [
  ["function", "u32"],
  ["index", "u32"],
  ["flags", "u32"],
  ["eax", "u32"],
  ["ebx", "u32"],
  ["ecx", "u32"],
  ["edx", "u32"],
  ["padding", "u32", 3],
]);

/** `struct kvm_cpuid2` header (followed by `nent` entries). */
export const kvmCpuid2: Layout = struct("kvm_cpuid2", [["nent", "u32"], ["padding", "u32"]]);

/** `struct kvm_msr_entry`. */
export const kvmMsrEntry: Layout = struct("kvm_msr_entry", [
  ["index", "u32"],
  ["reserved", "u32"],
  ["data", "u64"],
]);

/** `struct kvm_msrs` header (followed by `nmsrs` entries). */
export const kvmMsrs: Layout = struct("kvm_msrs", [["nmsrs", "u32"], ["pad", "u32"]]);

/** `struct kvm_pit_config`. */
export const kvmPitConfig: Layout = struct("kvm_pit_config", [["flags", "u32"], [
  "pad",
  "u32",
  15,
]]);

/** `struct kvm_ioapic_state` (each redirection entry as the raw u64 of its C union). */
export const kvmIoapicState: Layout = struct("kvm_ioapic_state", [
  ["base_address", "u64"],
  ["ioregsel", "u32"],
  ["id", "u32"],
  ["irr", "u32"],
  ["pad", "u32"],
  ["redirtbl", "u64", 24],
]);

/** `struct kvm_irqchip`, for `KVM_GET_IRQCHIP` (the PIC states are left as the union's bytes). */
export const kvmIrqchip: Layout = struct("kvm_irqchip", [
  ["chip_id", "u32"],
  ["pad", "u32"],
  ["chip", union("kvm_irqchip_chip", [["dummy", "u8", 512], ["ioapic", kvmIoapicState]])],
]);

/** `struct kvm_irq_level`. */
export const kvmIrqLevel: Layout = struct("kvm_irq_level", [["irq", "u32"], ["level", "u32"]]);

/** `struct kvm_irq_routing_irqchip`. */
const kvmIrqRoutingIrqchip = struct("kvm_irq_routing_irqchip", [["irqchip", "u32"], [
  "pin",
  "u32",
]]);

/** `struct kvm_irq_routing_msi`. */
const kvmIrqRoutingMsi = struct("kvm_irq_routing_msi", [
  ["address_lo", "u32"],
  ["address_hi", "u32"],
  ["data", "u32"],
  ["devid", "u32"],
]);

/** `struct kvm_irq_routing_entry`. */
export const kvmIrqRoutingEntry: Layout = struct("kvm_irq_routing_entry", [
  ["gsi", "u32"],
  ["type", "u32"],
  ["flags", "u32"],
  ["pad", "u32"],
  [
    "u",
    union("kvm_irq_routing_entry_u", [
      ["irqchip", kvmIrqRoutingIrqchip],
      ["msi", kvmIrqRoutingMsi],
      ["pad", "u32", 8],
    ]),
  ],
]);

/** `struct kvm_irq_routing` header (followed by `nr` entries). */
export const kvmIrqRouting: Layout = struct("kvm_irq_routing", [["nr", "u32"], ["flags", "u32"]]);

/** `struct kvm_ioeventfd`. */
export const kvmIoeventfd: Layout = struct("kvm_ioeventfd", [
  ["datamatch", "u64"],
  ["addr", "u64"],
  ["len", "u32"],
  ["fd", "i32"],
  ["flags", "u32"],
  ["pad", "u8", 36],
]);

/** `struct kvm_irqfd`. */
export const kvmIrqfd: Layout = struct("kvm_irqfd", [
  ["fd", "u32"],
  ["gsi", "u32"],
  ["flags", "u32"],
  ["resamplefd", "u32"],
  ["pad", "u8", 16],
]);

/** `struct kvm_msi`. */
export const kvmMsi: Layout = struct("kvm_msi", [
  ["address_lo", "u32"],
  ["address_hi", "u32"],
  ["data", "u32"],
  ["flags", "u32"],
  ["devid", "u32"],
  ["pad", "u8", 12],
]);

/** `struct kvm_run` exit payloads used by dvmm (members of its anonymous union). */
const kvmRunExit = union("kvm_run_exit", [
  [
    "io",
    struct("kvm_run_io", [["direction", "u8"], ["size", "u8"], ["port", "u16"], ["count", "u32"], [
      "data_offset",
      "u64",
    ]]),
  ],
  [
    "mmio",
    struct("kvm_run_mmio", [["phys_addr", "u64"], ["data", "u8", 8], ["len", "u32"], [
      "is_write",
      "u8",
    ]]),
  ],
  ["hw", struct("kvm_run_hw", [["hardware_exit_reason", "u64"]])],
  [
    "fail_entry",
    struct("kvm_run_fail_entry", [["hardware_entry_failure_reason", "u64"], ["cpu", "u32"]]),
  ],
  [
    "internal",
    struct("kvm_run_internal", [["suberror", "u32"], ["ndata", "u32"], ["data", "u64", 16]]),
  ],
  [
    "system_event",
    struct("kvm_run_system_event", [["type", "u32"], ["ndata", "u32"], ["data", "u64", 16]]),
  ],
  ["padding", "u8", 256],
]);

/** `struct kvm_run`, the vCPU's shared page (the sync-regs union `s` is kept as bytes). */
export const kvmRun: Layout = struct("kvm_run", [
  ["request_interrupt_window", "u8"],
  ["immediate_exit", "u8"],
  ["padding1", "u8", 6],
  ["exit_reason", "u32"],
  ["ready_for_interrupt_injection", "u8"],
  ["if_flag", "u8"],
  ["flags", "u16"],
  ["cr8", "u64"],
  ["apic_base", "u64"],
  ["exit", kvmRunExit],
  ["kvm_valid_regs", "u64"],
  ["kvm_dirty_regs", "u64"],
  ["s", "u8", 2048],
]);
