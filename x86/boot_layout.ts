/**
 * Where the boot code puts things in guest RAM (below the machine-wide map in
 * x86/layout.ts). Only the boot code (loader, E820, ACPI) uses these.
 *
 * ```
 * 0x0000_0000  IVT / BDA, left zero (usable RAM; Linux keeps the first 1 MiB for itself)
 * 0x0000_0500  GDT                                   BOOT_GDT
 * 0x0000_0540  IDT (empty, limit 0)                  BOOT_IDT
 * 0x0000_7000  zero page (struct boot_params)        ZERO_PAGE
 * 0x0000_8ff0  initial stack pointer (grows down)    BOOT_STACK_TOP
 * 0x0000_9000  PML4                                  PML4
 * 0x0000_a000  PDPT                                  PDPT
 * 0x0000_b000  4 page directories, 2 MiB pages       PD (identity map of the first 4 GiB)
 * 0x0002_0000  kernel command line (<= 64 KiB)       CMDLINE
 * 0x0009_fc00  EBDA                                  reserved
 * 0x000a_0000  VGA / option ROM hole                 reserved
 * 0x000e_0000  RSDP, then the other ACPI tables      ACPI_TABLES (E820 type ACPI)
 * 0x0010_0000  protected-mode kernel                 KERNEL_LOAD
 *              kernel runtime area: max(pref_address, aligned load address) + init_size
 * top of low RAM (<= initrd_addr_max): initrd, page aligned, as high as it fits
 * ```
 *
 * @module
 */

/** The GDT: null, unused, 64-bit code (0x10 = __BOOT_CS), data (0x18 = __BOOT_DS), TSS (16 bytes). */
export const BOOT_GDT = 0x500;
/** An empty IDT (limit 0): any exception before Linux installs its own is a triple fault. */
export const BOOT_IDT = 0x540;
/** struct boot_params ("zero page"), 4 KiB. */
export const ZERO_PAGE = 0x7000;
/** Initial RSP (16-byte aligned, below the page tables). */
export const BOOT_STACK_TOP = 0x8ff0;
/** Page map level 4. */
export const PML4 = 0x9000;
/** Page directory pointer table (the first 512 GiB). */
export const PDPT = 0xa000;
/** First of {@linkcode PD_COUNT} page directories, one per GiB. */
export const PD = 0xb000;
/** Page directories: 4 identity-map the first 4 GiB with 2 MiB pages. */
export const PD_COUNT = 4;
/** Kernel command line. */
export const CMDLINE = 0x2_0000;
/** Room for the command line (bytes, including the NUL). */
export const CMDLINE_MAX = 0x1_0000;
/** Extended BIOS data area: reserved from here to the VGA hole. */
export const EBDA_START = 0x9_fc00;
/** Legacy VGA / option ROM hole: reserved up to the BIOS area. */
export const VGA_HOLE_START = 0xa_0000;
/** The BIOS area: ACPI tables start here (the RSDP is found by a scan of 0xE0000-0xFFFFF). */
export const ACPI_TABLES = 0xe_0000;
/** End of the BIOS area (1 MiB). */
export const BIOS_END = 0x10_0000;
/** Where the protected-mode kernel is loaded. */
export const KERNEL_LOAD = 0x10_0000;
/** Alignment of the initrd. */
export const INITRD_ALIGN = 0x1000;
