/**
 * The zero page (struct boot_params, 4 KiB) a 64-bit boot loader hands Linux in
 * RSI: the kernel's own setup header copied from the image, patched with what the
 * loader decided (command line, initrd, heap), plus the E820 map and the ACPI RSDP
 * address (Documentation/arch/x86/zero-page.rst).
 *
 * @module
 */

import { type BzImage, LOADFLAGS, SETUP_HEADER, writeHeaderField } from "./bzimage.ts";
import { E820_MAX_ENTRIES, type E820Entry } from "./e820.ts";

/** Size of struct boot_params. */
export const BOOT_PARAMS_SIZE = 4096;

/** Zero page fields outside the setup header: name -> offset and size. */
export const BOOT_PARAMS = {
  acpi_rsdp_addr: { offset: 0x070, size: 8 },
  ext_ramdisk_image: { offset: 0x0c0, size: 4 },
  ext_ramdisk_size: { offset: 0x0c4, size: 4 },
  ext_cmd_line_ptr: { offset: 0x0c8, size: 4 },
  e820_entries: { offset: 0x1e8, size: 1 },
  sentinel: { offset: 0x1ef, size: 1 },
  /** struct setup_header (copied from the image, up to its end). */
  hdr: { offset: 0x1f1, size: 0x7b },
  e820_table: { offset: 0x2d0, size: E820_MAX_ENTRIES * 20 },
} as const;

/** struct boot_e820_entry: `addr` u64, `size` u64, `type` u32 (packed, 20 bytes). */
export const E820_ENTRY = {
  addr: { offset: 0, size: 8 },
  size: { offset: 8, size: 8 },
  type: { offset: 16, size: 4 },
  SIZE: 20,
} as const;

/** End of the room for struct setup_header in the zero page (edd_mbr_sig_buffer follows). */
export const SETUP_HEADER_MAX_END = 0x290;

/** `type_of_loader` for a loader without an assigned id. */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** `heap_end_ptr`: end of the setup heap/stack, relative to the real-mode code start, minus 0x200. */
export const HEAP_END_PTR = 0xfe00 - 0x200;
/** First protocol version that reads `acpi_rsdp_addr`. */
export const ACPI_RSDP_ADDR_SINCE = 0x20e;

/** What the loader decided, to record in the zero page. */
export interface BootParamsOptions {
  /** Guest physical address of the NUL-terminated command line. */
  readonly cmdlineAddr: number;
  /** The initrd, when there is one. */
  readonly initrd?: { readonly addr: number; readonly size: number };
  /** The memory map. */
  readonly e820: readonly E820Entry[];
  /** Guest physical address of the ACPI RSDP (written for protocol 2.14 and later). */
  readonly acpiRsdpAddr?: number;
}

/**
 * Build the zero page for `image`.
 *
 * @throws {RangeError} for more than 128 E820 entries
 */
export function buildBootParams(image: BzImage, opts: BootParamsOptions): Uint8Array {
  if (opts.e820.length > E820_MAX_ENTRIES) {
    throw new RangeError(
      `boot_params: ${opts.e820.length} E820 entries, the zero page holds ${E820_MAX_ENTRIES}`,
    );
  }
  const page = new Uint8Array(BOOT_PARAMS_SIZE);
  const view = new DataView(page.buffer);
  // struct setup_header cannot extend past edd_mbr_sig_buffer (0x290) in struct boot_params.
  page.set(
    image.headerBytes.subarray(0, SETUP_HEADER_MAX_END - SETUP_HEADER.setup_sects.offset),
    SETUP_HEADER.setup_sects.offset,
  );

  writeHeaderField(page, "type_of_loader", LOADER_TYPE_UNDEFINED);
  writeHeaderField(page, "loadflags", image.header.loadflags | LOADFLAGS.CAN_USE_HEAP);
  writeHeaderField(page, "heap_end_ptr", HEAP_END_PTR);
  writeHeaderField(page, "cmd_line_ptr", lo32(opts.cmdlineAddr));
  view.setUint32(BOOT_PARAMS.ext_cmd_line_ptr.offset, hi32(opts.cmdlineAddr), true);
  const initrd = opts.initrd ?? { addr: 0, size: 0 };
  writeHeaderField(page, "ramdisk_image", lo32(initrd.addr));
  writeHeaderField(page, "ramdisk_size", lo32(initrd.size));
  view.setUint32(BOOT_PARAMS.ext_ramdisk_image.offset, hi32(initrd.addr), true);
  view.setUint32(BOOT_PARAMS.ext_ramdisk_size.offset, hi32(initrd.size), true);

  if (opts.acpiRsdpAddr !== undefined && image.header.version >= ACPI_RSDP_ADDR_SINCE) {
    view.setBigUint64(BOOT_PARAMS.acpi_rsdp_addr.offset, BigInt(opts.acpiRsdpAddr), true);
  }

  view.setUint8(BOOT_PARAMS.e820_entries.offset, opts.e820.length);
  opts.e820.forEach((e, i) => {
    const at = BOOT_PARAMS.e820_table.offset + i * E820_ENTRY.SIZE;
    view.setBigUint64(at + E820_ENTRY.addr.offset, BigInt(e.addr), true);
    view.setBigUint64(at + E820_ENTRY.size.offset, BigInt(e.size), true);
    view.setUint32(at + E820_ENTRY.type.offset, e.type, true);
  });
  return page;
}

/** Decode the E820 table of a zero page (for tests and debugging). */
export function readE820Table(page: Uint8Array): E820Entry[] {
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const n = view.getUint8(BOOT_PARAMS.e820_entries.offset);
  const out: E820Entry[] = [];
  for (let i = 0; i < n; i++) {
    const at = BOOT_PARAMS.e820_table.offset + i * E820_ENTRY.SIZE;
    out.push({
      addr: Number(view.getBigUint64(at + E820_ENTRY.addr.offset, true)),
      size: Number(view.getBigUint64(at + E820_ENTRY.size.offset, true)),
      type: view.getUint32(at + E820_ENTRY.type.offset, true) as E820Entry["type"],
    });
  }
  return out;
}

function lo32(n: number): number {
  return n % 0x1_0000_0000;
}

function hi32(n: number): number {
  return Math.floor(n / 0x1_0000_0000);
}
