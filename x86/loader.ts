/**
 * Load a Linux bzImage (and initrd) into guest memory for a 64-bit entry, and
 * compute the bootstrap vCPU's state. Pure logic: it writes into a
 * {@linkcode GuestMemory} and returns plain values; the KVM layer applies them.
 *
 * Guest memory layout (addresses in x86/boot_layout.ts and x86/layout.ts):
 *
 * ```
 * 0x0000_0500  GDT: 0x10 = 64-bit code, 0x18 = data, 0x20 = TSS
 * 0x0000_0540  IDT (empty)
 * 0x0000_7000  zero page (struct boot_params)          -> RSI
 * 0x0000_8ff0  initial stack                           -> RSP
 * 0x0000_9000  PML4, 0xa000 PDPT, 0xb000-0xefff PDs    -> CR3 (identity map of 0-4 GiB, 2 MiB pages)
 * 0x0002_0000  command line (NUL terminated)
 * 0x0009_fc00  EBDA / VGA / ROM area                   E820 reserved
 * 0x000e_0000  RSDP, FACS, DSDT, FADT, MADT, MCFG, XSDT, RSDT   E820 ACPI
 * 0x0010_0000  protected-mode kernel                   RIP = 0x100200 (startup_64)
 *              the kernel decompresses to max(pref_address, aligned load address),
 *              needing init_size bytes from there (16 MiB + ~40-60 MiB for Debian)
 * top of low RAM, below initrd_addr_max: initrd (page aligned, as high as possible)
 * 0xC000_0000 - 4 GiB: MMIO hole (PCI window, ECAM, IOAPIC, LAPIC); RAM resumes at 4 GiB
 * ```
 *
 * @module
 */

import type { GuestMemory } from "../kvm/guest_memory.ts";
import {
  type BzImage,
  BzImageError,
  formatVersion,
  parseBzImage,
  STARTUP_64_OFFSET,
} from "./bzimage.ts";
import { buildBootParams } from "./boot_params.ts";
import { ElfError, parseElfKernel } from "./elf_kernel.ts";
import { buildE820Map, checkE820Map, type E820Entry } from "./e820.ts";
import { type AcpiTables, buildAcpiTables, MAX_ACPI_CPUS, type PciInterruptRoute } from "./acpi.ts";
import { writeIdentityPageTables } from "./page_tables.ts";
import { buildBootGdt } from "./gdt.ts";
import { type BootCpuState, bootCpuState } from "./boot_cpu_state.ts";
import {
  BIOS_END,
  BOOT_GDT,
  BOOT_IDT,
  BOOT_STACK_TOP,
  CMDLINE,
  CMDLINE_MAX,
  INITRD_ALIGN,
  KERNEL_LOAD,
  PD,
  PD_COUNT,
  PDPT,
  PML4,
  ZERO_PAGE,
} from "./boot_layout.ts";
import { LOW_RAM_END, MiB, ramRegions } from "./layout.ts";

/**
 * Bytes to load, with a faster way to copy a range of them into guest memory
 * where there is one: a file read straight into it (guest/vmlinux.ts
 * `FileBytes`). `readInto` fills `dest` with the bytes at `offset`.
 */
export interface LoadableBytes {
  /** The bytes (parsed in place: headers, ELF program headers). */
  readonly bytes: Uint8Array;
  /** Copy `dest.length` bytes from `offset` into `dest`; default: copied out of `bytes`. */
  readonly readInto?: (dest: Uint8Array, offset: number) => void;
}

/** What to boot. */
export interface LoadLinuxOptions {
  /** The bzImage file. */
  readonly kernel: Uint8Array;
  /**
   * The bzImage's kernel already decompressed (its ELF vmlinux, see
   * guest/vmlinux.ts): loaded at its physical addresses and entered at its
   * `startup_64`, so the guest skips its own decompression (and with it the
   * decompressor's KASLR). The zero page still carries the bzImage's header.
   */
  readonly vmlinux?: Uint8Array | LoadableBytes;
  /** The initramfs, if any. */
  readonly initrd?: Uint8Array | LoadableBytes;
  /** Kernel command line. */
  readonly cmdline: string;
  /** Guest RAM size in bytes (as laid out by `ramRegions`; `memory` must cover it). */
  readonly memorySize: number;
  /** Number of vCPUs (1..254). */
  readonly cpus: number;
  /** Legacy PCI INTx routes for the DSDT `_PRT` (default none). */
  readonly pciInterrupts?: readonly PciInterruptRoute[];
  /** FADT reset register (I/O port and value); default none (Linux then resets via the 8042). */
  readonly reset?: { readonly port: number; readonly value: number };
}

/** A range of guest memory something was placed in. */
export interface Placement {
  /** Guest physical address. */
  readonly addr: number;
  /** Size in bytes. */
  readonly size: number;
}

/** Where everything went, and how the bootstrap vCPU must start. */
export interface LinuxBoot {
  /** Bootstrap processor (vCPU 0) entry state. Application processors are started by Linux (INIT/SIPI). */
  readonly entry: BootCpuState;
  /** The parsed image. */
  readonly image: BzImage;
  /** The protected-mode kernel as loaded (the vmlinux segments' span when booting those). */
  readonly kernel: Placement;
  /** True when the decompressed vmlinux was loaded instead of the bzImage's own code. */
  readonly decompressed: boolean;
  /** Memory the kernel uses before it reads the E820 map: runtime start + init_size. */
  readonly kernelRuntime: Placement;
  /** The zero page. */
  readonly zeroPage: Placement;
  /** The command line (including its NUL). */
  readonly cmdline: Placement;
  /** The initrd, when given. */
  readonly initrd?: Placement;
  /** The ACPI tables. */
  readonly acpi: AcpiTables;
  /** The E820 map handed to the guest. */
  readonly e820: readonly E820Entry[];
}

/** Thrown when the kernel, command line or initrd cannot be placed. */
export class LoadError extends Error {
  /**
   * A load error; the message gets a `load Linux: ` prefix.
   * @param message what does not fit, with sizes and addresses
   */
  constructor(message: string) {
    super(`load Linux: ${message}`);
    this.name = "LoadError";
  }
}

/**
 * Place the kernel, command line, zero page, initrd, ACPI tables, page tables and
 * GDT in `memory` and return the entry state.
 *
 * @throws {BzImageError} for an image dvmm cannot boot (including no 64-bit entry point)
 * @throws {LoadError} when something does not fit in guest memory
 */
export function loadLinux(memory: GuestMemory, opts: LoadLinuxOptions): LinuxBoot {
  const image = parseBzImage(opts.kernel);
  const hdr = image.header;
  if (!image.has64BitEntry) {
    throw new BzImageError(
      `no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags 0x${
        hdr.xloadflags.toString(16)
      }, protocol ${formatVersion(hdr.version)}); dvmm boots 64-bit kernels only`,
    );
  }
  if (!Number.isInteger(opts.cpus) || opts.cpus < 1 || opts.cpus > MAX_ACPI_CPUS) {
    throw new LoadError(`${opts.cpus} vCPUs requested, dvmm supports 1..${MAX_ACPI_CPUS}`);
  }
  for (const r of ramRegions(opts.memorySize)) {
    if (!memory.contains(r.base, r.size)) {
      throw new LoadError(
        `guest memory does not cover RAM 0x${r.base.toString(16)}-0x${
          (r.base + r.size).toString(16)
        } of the ${mib(opts.memorySize)} memory size`,
      );
    }
  }
  const lowEnd = Math.min(opts.memorySize, LOW_RAM_END);

  // Command line.
  const cmdline = new TextEncoder().encode(opts.cmdline);
  const cmdlineMax = Math.min(hdr.cmdlineSize, CMDLINE_MAX - 1);
  if (cmdline.length > cmdlineMax) {
    throw new LoadError(
      `command line is ${cmdline.length} bytes, the kernel accepts at most ${cmdlineMax}`,
    );
  }

  // Kernel: loaded at 1 MiB; it decompresses to its runtime address. Or its vmlinux, loaded
  // where the decompressor would have put it.
  const vmlinux = opts.vmlinux && loadable(opts.vmlinux);
  const initrdBytes = opts.initrd && loadable(opts.initrd);
  const elf = vmlinux ? parseVmlinux(vmlinux.bytes) : undefined;
  const kernel: Placement = elf
    ? { addr: elf.start, size: elf.end - elf.start }
    : { addr: KERNEL_LOAD, size: image.kernel.length };
  const runtimeStart = hdr.relocatable
    ? Math.max(alignUp(KERNEL_LOAD, hdr.kernelAlignment), hdr.prefAddress)
    : hdr.prefAddress;
  if (elf && elf.start < KERNEL_LOAD) {
    throw new LoadError(`vmlinux loads at 0x${elf.start.toString(16)}, below 1 MiB`);
  }
  const kernelRuntime: Placement = { addr: runtimeStart, size: hdr.initSize };
  const kernelEnd = Math.max(kernel.addr + kernel.size, runtimeStart + hdr.initSize);
  if (kernelEnd > lowEnd) {
    throw new LoadError(
      `the kernel needs RAM up to 0x${kernelEnd.toString(16)} (runtime start 0x${
        runtimeStart.toString(16)
      } + init_size ${mib(hdr.initSize)}) but low RAM ends at 0x${lowEnd.toString(16)} (${
        mib(opts.memorySize)
      } of memory)`,
    );
  }

  // Initrd: as high as allowed, above the kernel.
  let initrd: Placement | undefined;
  if (initrdBytes) {
    const size = initrdBytes.bytes.length;
    const top = Math.min(lowEnd, hdr.initrdAddrMax + 1);
    const addr = Math.floor((top - size) / INITRD_ALIGN) * INITRD_ALIGN;
    if (addr < kernelEnd) {
      throw new LoadError(
        `initrd (${mib(size)}) does not fit below 0x${top.toString(16)} (${
          top === lowEnd ? "top of low RAM" : "initrd_addr_max"
        }) above the kernel, which needs RAM up to 0x${kernelEnd.toString(16)}; ` +
          `${mib(Math.max(0, top - kernelEnd))} free`,
      );
    }
    initrd = { addr, size };
  }

  // ACPI tables and the memory map.
  const acpi = buildAcpiTables({
    cpus: opts.cpus,
    memorySize: opts.memorySize,
    pciInterrupts: opts.pciInterrupts,
    reset: opts.reset,
  });
  const acpiEnd = Math.min(alignUp(acpi.base + acpi.bytes.length, 0x1000), BIOS_END);
  const e820 = buildE820Map(opts.memorySize, {
    acpi: { base: acpi.base, size: acpiEnd - acpi.base },
  });
  checkE820Map(e820);

  // Write everything.
  if (elf && vmlinux) {
    for (const s of elf.segments) {
      copyInto(memory, s.paddr, vmlinux, s.offset, s.fileSize);
      if (s.memSize > s.fileSize) memory.fill(s.paddr + s.fileSize, s.memSize - s.fileSize);
    }
  } else {
    memory.write(kernel.addr, image.kernel);
  }
  if (initrd && initrdBytes) copyInto(memory, initrd.addr, initrdBytes, 0, initrd.size);
  memory.write(acpi.base, acpi.bytes);
  memory.fill(CMDLINE, cmdline.length + 1);
  memory.write(CMDLINE, cmdline);
  const zeroPage = buildBootParams(image, {
    cmdlineAddr: CMDLINE,
    initrd,
    e820,
    acpiRsdpAddr: acpi.rsdpAddr,
  });
  memory.write(ZERO_PAGE, zeroPage);
  const gdt = buildBootGdt();
  memory.write(BOOT_GDT, gdt);
  memory.fill(BOOT_IDT, 8);
  const cr3 = writeIdentityPageTables(memory, { pml4: PML4, pdpt: PDPT, pd: PD, gib: PD_COUNT });

  const entry = bootCpuState({
    rip: elf ? elf.entry : kernel.addr + STARTUP_64_OFFSET,
    zeroPage: ZERO_PAGE,
    rsp: BOOT_STACK_TOP,
    cr3,
    gdt: { base: BOOT_GDT, size: gdt.length },
    idt: BOOT_IDT,
  });
  return {
    entry,
    image,
    kernel,
    decompressed: elf !== undefined,
    kernelRuntime,
    zeroPage: { addr: ZERO_PAGE, size: zeroPage.length },
    cmdline: { addr: CMDLINE, size: cmdline.length + 1 },
    initrd,
    acpi,
    e820,
  };
}

function parseVmlinux(bytes: Uint8Array) {
  try {
    return parseElfKernel(bytes);
  } catch (e) {
    if (e instanceof ElfError) throw new LoadError(`vmlinux: ${e.message}`);
    throw e;
  }
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

function mib(bytes: number): string {
  const m = bytes / MiB;
  return `${Number.isInteger(m) ? m : m.toFixed(1)} MiB`;
}

function loadable(b: Uint8Array | LoadableBytes): LoadableBytes {
  return b instanceof Uint8Array ? { bytes: b } : b;
}

/** Copy `length` bytes of `src` from `offset` to guest address `gpa` (bounds-checked both sides). */
function copyInto(
  memory: GuestMemory,
  gpa: number,
  src: LoadableBytes,
  offset: number,
  length: number,
): void {
  if (offset < 0 || offset + length > src.bytes.length) {
    throw new LoadError(`${length} bytes at offset ${offset} are past the end of the image`);
  }
  if (src.readInto) src.readInto(memory.slice(gpa, length), offset);
  else memory.write(gpa, src.bytes.subarray(offset, offset + length));
}
