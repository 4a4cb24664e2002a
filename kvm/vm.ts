/**
 * A KVM virtual machine: guest memory slots, the in-kernel irqchip and PIT,
 * interrupt lines, GSI routing, ioeventfds, irqfds and MSIs. Modelled on
 * rust-vmm's `kvm-ioctls::VmFd`. vCPUs are created in their own worker threads
 * from this VM's fd (see `vcpu.ts`).
 *
 * @module
 */

import {
  KVM,
  KVM_IOEVENTFD_FLAG,
  KVM_IRQ_ROUTING,
  KVM_IRQCHIP,
  KVM_IRQFD_FLAG,
  KVM_PIT_SPEAKER_DUMMY,
} from "./ioctls.ts";
import { close, ioctl, ioctlBuf, type Mapping, mmapAnonymousAligned, munmap } from "./libc.ts";
import { decodeFrom, encode, encodeInto, offsetOf } from "./layout.ts";
import {
  kvmIoapicState,
  kvmIoeventfd,
  kvmIrqchip,
  kvmIrqfd,
  kvmIrqLevel,
  kvmIrqRouting,
  kvmIrqRoutingEntry,
  kvmMsi,
  kvmPitConfig,
  kvmUserspaceMemoryRegion,
} from "./kvm_structs.ts";
import { GuestMemory } from "./guest_memory.ts";

/** A range of guest RAM to back with host memory. */
export interface RamRange {
  /** Guest physical base address. */
  base: number;
  /** Size in bytes (a multiple of 4 KiB). */
  size: number;
}

/** Guest RAM is host-aligned to this, so guest and host 2 MiB pages line up. */
const HUGE_PAGE_SIZE = 2 << 20;

/** A GSI routing entry: an irqchip pin or an MSI message. */
export type GsiRoute =
  | { gsi: number; kind: "irqchip"; irqchip: number; pin: number }
  | { gsi: number; kind: "msi"; addressLo: number; addressHi: number; data: number };

/** An MSI message (address and data as the device would write them). */
export interface MsiMessage {
  /** Low 32 bits of the address. */
  addressLo: number;
  /** High 32 bits of the address. */
  addressHi: number;
  /** Data. */
  data: number;
}

/** Bits of an IOAPIC redirection entry (82093AA datasheet). */
export const IOAPIC_REDIRECTION = {
  /** Interrupt vector. */
  VECTOR: 0xffn,
  /** Remote IRR: a level-triggered interrupt is in service. */
  REMOTE_IRR: 1n << 14n,
  /** The pin is masked. */
  MASKED: 1n << 16n,
} as const;

/** The in-kernel IOAPIC's state, as `KVM_GET_IRQCHIP` reports it. */
export interface IoapicState {
  /** Interrupt request register: one bit per pin with a request latched. */
  irr: number;
  /** The 24 redirection entries (vector, delivery, mask, remote IRR, destination). */
  redirection: bigint[];
}

/** Where an ioeventfd listens. */
export interface IoeventfdSpec {
  /** Guest address (port number for PIO). */
  addr: bigint;
  /** Access width to match (1, 2, 4 or 8; 0 for any with MMIO). */
  len: number;
  /** The eventfd to signal. */
  fd: number;
  /** Port I/O rather than MMIO. */
  pio?: boolean;
  /** Only signal when the written value equals this. */
  datamatch?: bigint;
}

/** A KVM VM file descriptor and what it owns. */
export class Vm {
  #mappings: Mapping[] = [];
  #memory: GuestMemory | undefined;
  #nextSlot = 0;

  /**
   * Wrap the VM fd `fd`.
   * @param fd the VM fd from KVM_CREATE_VM
   * @param vcpuMmapSize bytes of a vCPU's kvm_run mapping
   */
  constructor(readonly fd: number, readonly vcpuMmapSize: number) {}

  /** `KVM_SET_USER_MEMORY_REGION`. */
  setUserMemoryRegion(
    slot: number,
    gpa: number,
    size: number,
    hostAddress: bigint,
    flags = 0,
  ): void {
    const buf = encode(kvmUserspaceMemoryRegion, {
      slot,
      flags,
      guest_phys_addr: BigInt(gpa),
      memory_size: BigInt(size),
      userspace_addr: hostAddress,
    });
    ioctlBuf(this.fd, KVM.SET_USER_MEMORY_REGION, buf, "KVM_SET_USER_MEMORY_REGION");
  }

  /**
   * Back `ranges` with anonymous host memory, register each as a memory slot,
   * and return the bounds-checked {@linkcode GuestMemory} over them.
   */
  allocateMemory(ranges: readonly RamRange[]): GuestMemory {
    if (this.#memory) throw new Error("guest memory is already allocated");
    const regions = ranges.map((r) => {
      const m = mmapAnonymousAligned(r.size, HUGE_PAGE_SIZE);
      this.#mappings.push(m);
      this.setUserMemoryRegion(
        this.#nextSlot++,
        r.base,
        r.size,
        Deno.UnsafePointer.value(m.pointer) as bigint,
      );
      const buffer = Deno.UnsafePointerView.getArrayBuffer(m.pointer, r.size);
      return { gpa: r.base, bytes: new Uint8Array(buffer) };
    });
    this.#memory = new GuestMemory(regions);
    return this.#memory;
  }

  /** `KVM_SET_TSS_ADDR` (needed on Intel VMX; harmless elsewhere). */
  setTssAddress(address: number): void {
    ioctl(this.fd, KVM.SET_TSS_ADDR, BigInt(address), "KVM_SET_TSS_ADDR");
  }

  /** `KVM_SET_IDENTITY_MAP_ADDR`. */
  setIdentityMapAddress(address: number): void {
    const buf = new Uint8Array(8);
    new DataView(buf.buffer).setBigUint64(0, BigInt(address), true);
    ioctlBuf(this.fd, KVM.SET_IDENTITY_MAP_ADDR, buf, "KVM_SET_IDENTITY_MAP_ADDR");
  }

  /** `KVM_CREATE_IRQCHIP`: in-kernel PIC, IOAPIC and local APICs. */
  createIrqchip(): void {
    ioctl(this.fd, KVM.CREATE_IRQCHIP, 0n, "KVM_CREATE_IRQCHIP");
  }

  /** `KVM_CREATE_PIT2`: in-kernel i8254 timer. */
  createPit2(): void {
    ioctlBuf(
      this.fd,
      KVM.CREATE_PIT2,
      encode(kvmPitConfig, { flags: KVM_PIT_SPEAKER_DUMMY }),
      "KVM_CREATE_PIT2",
    );
  }

  /** `KVM_GET_IRQCHIP` for the IOAPIC (callable from any thread, even while vCPUs run). */
  ioapicState(): IoapicState {
    const buf = encode(kvmIrqchip, { chip_id: KVM_IRQCHIP.IOAPIC });
    ioctlBuf(this.fd, KVM.GET_IRQCHIP, buf, "KVM_GET_IRQCHIP");
    const state = decodeFrom(
      kvmIoapicState,
      new DataView(buf.buffer),
      offsetOf(kvmIrqchip, "chip.ioapic"),
    );
    return { irr: state.irr as number, redirection: state.redirtbl as bigint[] };
  }

  #irqLevel = encode(kvmIrqLevel, {});
  #irqLevelView = new DataView(this.#irqLevel.buffer);

  /** `KVM_IRQ_LINE`: drive a GSI's level. */
  irqLine(gsi: number, level: boolean): void {
    this.#irqLevelView.setUint32(0, gsi, true);
    this.#irqLevelView.setUint32(4, level ? 1 : 0, true);
    ioctlBuf(this.fd, KVM.IRQ_LINE, this.#irqLevel, "KVM_IRQ_LINE");
  }

  /** `KVM_SET_GSI_ROUTING`: replace the whole routing table. */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const buf = new Uint8Array(kvmIrqRouting.size + routes.length * kvmIrqRoutingEntry.size);
    const view = new DataView(buf.buffer);
    encodeInto(kvmIrqRouting, view, 0, { nr: routes.length, flags: 0 });
    routes.forEach((r, i) => {
      const at = kvmIrqRouting.size + i * kvmIrqRoutingEntry.size;
      if (r.kind === "irqchip") {
        encodeInto(kvmIrqRoutingEntry, view, at, {
          gsi: r.gsi,
          type: KVM_IRQ_ROUTING.IRQCHIP,
          u: { irqchip: { irqchip: r.irqchip, pin: r.pin } },
        });
      } else {
        encodeInto(kvmIrqRoutingEntry, view, at, {
          gsi: r.gsi,
          type: KVM_IRQ_ROUTING.MSI,
          u: { msi: { address_lo: r.addressLo, address_hi: r.addressHi, data: r.data } },
        });
      }
    });
    ioctlBuf(this.fd, KVM.SET_GSI_ROUTING, buf, "KVM_SET_GSI_ROUTING");
  }

  /** `KVM_IOEVENTFD`: make guest writes at `spec.addr` signal `spec.fd` without an exit. */
  ioeventfd(spec: IoeventfdSpec, deassign = false): void {
    let flags = 0;
    if (spec.pio) flags |= KVM_IOEVENTFD_FLAG.PIO;
    if (spec.datamatch !== undefined) flags |= KVM_IOEVENTFD_FLAG.DATAMATCH;
    if (deassign) flags |= KVM_IOEVENTFD_FLAG.DEASSIGN;
    const buf = encode(kvmIoeventfd, {
      datamatch: spec.datamatch ?? 0n,
      addr: spec.addr,
      len: spec.len,
      fd: spec.fd,
      flags,
    });
    ioctlBuf(this.fd, KVM.IOEVENTFD, buf, "KVM_IOEVENTFD");
  }

  /** `KVM_IRQFD`: signalling `fd` injects `gsi`. */
  irqfd(fd: number, gsi: number, deassign = false): void {
    const flags = deassign ? KVM_IRQFD_FLAG.DEASSIGN : 0;
    ioctlBuf(this.fd, KVM.IRQFD, encode(kvmIrqfd, { fd, gsi, flags }), "KVM_IRQFD");
  }

  /** `KVM_SIGNAL_MSI`: inject one MSI. Returns 0 when the guest blocked it. */
  signalMsi(msi: MsiMessage): number {
    const buf = encode(kvmMsi, {
      address_lo: msi.addressLo,
      address_hi: msi.addressHi,
      data: msi.data,
    });
    return ioctlBuf(this.fd, KVM.SIGNAL_MSI, buf, "KVM_SIGNAL_MSI");
  }

  /** Release guest memory (views first, then the mappings) and the VM fd. */
  close(): void {
    this.#memory?.close();
    for (const m of this.#mappings) munmap(m);
    this.#mappings = [];
    close(this.fd);
  }
}
