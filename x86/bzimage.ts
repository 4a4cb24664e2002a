/**
 * Parse the setup header of a Linux x86 bzImage (the Linux/x86 boot protocol,
 * Documentation/arch/x86/boot.rst).
 *
 * A bzImage is: a real-mode part of `(setup_sects + 1) * 512` bytes (the legacy
 * boot sector, then the setup code) that holds the setup header at 0x1f1, then the
 * protected-mode kernel (the compressed kernel and its decompressor). A 64-bit boot
 * loader copies the header into the zero page, loads the protected-mode part and
 * jumps to `startup_64` at load address + 0x200.
 *
 * @module
 */

/** A field of the setup header: its offset in the image (and in the zero page) and size. */
export interface HeaderField {
  /** Byte offset from the start of the image. */
  readonly offset: number;
  /** Size in bytes (1, 2, 4 or 8). */
  readonly size: 1 | 2 | 4 | 8;
  /** Boot protocol version (major << 8 | minor) that introduced the field. */
  readonly since: number;
}

/** The setup header as a typed layout: field name -> offset and size (boot.rst "THE REAL-MODE KERNEL HEADER"). */
export const SETUP_HEADER = {
  setup_sects: { offset: 0x1f1, size: 1, since: 0 },
  root_flags: { offset: 0x1f2, size: 2, since: 0 },
  syssize: { offset: 0x1f4, size: 4, since: 0x204 },
  ram_size: { offset: 0x1f8, size: 2, since: 0 },
  vid_mode: { offset: 0x1fa, size: 2, since: 0 },
  root_dev: { offset: 0x1fc, size: 2, since: 0 },
  boot_flag: { offset: 0x1fe, size: 2, since: 0 },
  jump: { offset: 0x200, size: 2, since: 0x200 },
  header: { offset: 0x202, size: 4, since: 0x200 },
  version: { offset: 0x206, size: 2, since: 0x200 },
  realmode_swtch: { offset: 0x208, size: 4, since: 0x200 },
  start_sys_seg: { offset: 0x20c, size: 2, since: 0x200 },
  kernel_version: { offset: 0x20e, size: 2, since: 0x200 },
  type_of_loader: { offset: 0x210, size: 1, since: 0x200 },
  loadflags: { offset: 0x211, size: 1, since: 0x200 },
  setup_move_size: { offset: 0x212, size: 2, since: 0x200 },
  code32_start: { offset: 0x214, size: 4, since: 0x200 },
  ramdisk_image: { offset: 0x218, size: 4, since: 0x200 },
  ramdisk_size: { offset: 0x21c, size: 4, since: 0x200 },
  bootsect_kludge: { offset: 0x220, size: 4, since: 0x200 },
  heap_end_ptr: { offset: 0x224, size: 2, since: 0x201 },
  ext_loader_ver: { offset: 0x226, size: 1, since: 0x202 },
  ext_loader_type: { offset: 0x227, size: 1, since: 0x202 },
  cmd_line_ptr: { offset: 0x228, size: 4, since: 0x202 },
  initrd_addr_max: { offset: 0x22c, size: 4, since: 0x203 },
  kernel_alignment: { offset: 0x230, size: 4, since: 0x205 },
  relocatable_kernel: { offset: 0x234, size: 1, since: 0x205 },
  min_alignment: { offset: 0x235, size: 1, since: 0x20a },
  xloadflags: { offset: 0x236, size: 2, since: 0x20c },
  cmdline_size: { offset: 0x238, size: 4, since: 0x206 },
  hardware_subarch: { offset: 0x23c, size: 4, since: 0x207 },
  hardware_subarch_data: { offset: 0x240, size: 8, since: 0x207 },
  payload_offset: { offset: 0x248, size: 4, since: 0x208 },
  payload_length: { offset: 0x24c, size: 4, since: 0x208 },
  setup_data: { offset: 0x250, size: 8, since: 0x209 },
  pref_address: { offset: 0x258, size: 8, since: 0x20a },
  init_size: { offset: 0x260, size: 4, since: 0x20a },
  handover_offset: { offset: 0x264, size: 4, since: 0x20b },
  kernel_info_offset: { offset: 0x268, size: 4, since: 0x20f },
} as const satisfies Record<string, HeaderField>;

/** Name of a setup header field. */
export type SetupHeaderFieldName = keyof typeof SETUP_HEADER;

/** "HdrS" as a little-endian u32 (the `header` field). */
export const HDRS_MAGIC = 0x5372_6448;
/** The `boot_flag` value at 0x1fe. */
export const BOOT_FLAG_MAGIC = 0xaa55;
/** Oldest boot protocol dvmm accepts (2.06: `cmdline_size`). */
export const MIN_PROTOCOL_VERSION = 0x206;
/** Offset of the 64-bit entry point (`startup_64`) from the protected-mode load address. */
export const STARTUP_64_OFFSET = 0x200;

/** `loadflags` bits. */
export const LOADFLAGS = {
  /** The protected-mode code is loaded at 0x100000 (a bzImage). */
  LOADED_HIGH: 0x01,
  /** KASLR was used (set by the kernel). */
  KASLR_FLAG: 0x02,
  /** Suppress early messages. */
  QUIET_FLAG: 0x20,
  /** Do not reload segment registers in the 32-bit entry. */
  KEEP_SEGMENTS: 0x40,
  /** `heap_end_ptr` is valid. */
  CAN_USE_HEAP: 0x80,
} as const;

/** `xloadflags` bits. */
export const XLOADFLAGS = {
  /** The kernel has the legacy 64-bit entry point at 0x200. */
  XLF_KERNEL_64: 0x01,
  /** Kernel, boot_params, cmdline and ramdisk may live above 4 GiB. */
  XLF_CAN_BE_LOADED_ABOVE_4G: 0x02,
  /** 32-bit EFI handover entry. */
  XLF_EFI_HANDOVER_32: 0x04,
  /** 64-bit EFI handover entry. */
  XLF_EFI_HANDOVER_64: 0x08,
  /** Kexec EFI runtime support. */
  XLF_EFI_KEXEC: 0x10,
} as const;

/** The setup header fields a loader needs, decoded. */
export interface SetupHeader {
  /** Boot protocol version, major << 8 | minor (0x20f = 2.15). */
  readonly version: number;
  /** Setup sectors after the boot sector (0 in the image already replaced by 4). */
  readonly setupSects: number;
  /** Size of the protected-mode code in 16-byte paragraphs. */
  readonly syssize: number;
  /** `loadflags` as in the image. */
  readonly loadflags: number;
  /** `xloadflags` (0 before protocol 2.12). */
  readonly xloadflags: number;
  /** Physical alignment the kernel requires (`kernel_alignment`). */
  readonly kernelAlignment: number;
  /** The protected-mode part may be loaded at any `kernelAlignment`-aligned address. */
  readonly relocatable: boolean;
  /** Preferred load address (`pref_address`; 0x100000 before protocol 2.10). */
  readonly prefAddress: number;
  /** Linear memory the kernel needs from its runtime start before it reads the memory map. */
  readonly initSize: number;
  /** Highest address the initrd may occupy (`initrd_addr_max`). */
  readonly initrdAddrMax: number;
  /** Maximum command line length, excluding the terminating NUL (`cmdline_size`). */
  readonly cmdlineSize: number;
  /** End of the setup header in the image: 0x202 + the byte at 0x201. */
  readonly headerEnd: number;
}

/** A parsed bzImage. */
export interface BzImage {
  /** Decoded header fields. */
  readonly header: SetupHeader;
  /** The raw setup header, image bytes `[0x1f1, headerEnd)`, to copy into the zero page. */
  readonly headerBytes: Uint8Array;
  /** Size of the real-mode part: `(setupSects + 1) * 512`. */
  readonly setupSize: number;
  /** The protected-mode kernel (a view into the image), to load at the kernel load address. */
  readonly kernel: Uint8Array;
  /** The kernel has a 64-bit entry point (`XLF_KERNEL_64`). */
  readonly has64BitEntry: boolean;
}

/** Thrown for an image dvmm cannot boot; the message says what is wrong. */
export class BzImageError extends Error {
  /**
   * An image error; the message gets a `bzImage: ` prefix.
   * @param message what is wrong with the image
   */
  constructor(message: string) {
    super(`bzImage: ${message}`);
    this.name = "BzImageError";
  }
}

/** Read a header field from an image (or a zero page); 8-byte fields as numbers (addresses < 2^53). */
export function readHeaderField(bytes: Uint8Array, name: SetupHeaderFieldName): number {
  const f: HeaderField = SETUP_HEADER[name];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (f.size) {
    case 1:
      return view.getUint8(f.offset);
    case 2:
      return view.getUint16(f.offset, true);
    case 4:
      return view.getUint32(f.offset, true);
    case 8:
      return Number(view.getBigUint64(f.offset, true));
  }
}

/** Write a header field into an image or a zero page. */
export function writeHeaderField(
  bytes: Uint8Array,
  name: SetupHeaderFieldName,
  value: number,
): void {
  const f: HeaderField = SETUP_HEADER[name];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (f.size) {
    case 1:
      view.setUint8(f.offset, value);
      break;
    case 2:
      view.setUint16(f.offset, value, true);
      break;
    case 4:
      view.setUint32(f.offset, value, true);
      break;
    case 8:
      view.setBigUint64(f.offset, BigInt(value), true);
      break;
  }
}

/**
 * Parse and validate a bzImage.
 *
 * @throws {BzImageError} not a bzImage (no "HdrS" / boot flag), truncated, protocol older than 2.06,
 *   or a zImage (LOADED_HIGH clear)
 */
export function parseBzImage(image: Uint8Array): BzImage {
  const minimum = SETUP_HEADER.version.offset + 2;
  if (image.length < minimum) {
    throw new BzImageError(
      `image is ${image.length} bytes, too small to hold a setup header (needs at least 0x${
        minimum.toString(16)
      }); not a bzImage or truncated`,
    );
  }
  const magic = readHeaderField(image, "header");
  if (magic !== HDRS_MAGIC) {
    throw new BzImageError(
      `not a bzImage: no "HdrS" magic at 0x202 (found 0x${magic.toString(16).padStart(8, "0")})`,
    );
  }
  const bootFlag = readHeaderField(image, "boot_flag");
  if (bootFlag !== BOOT_FLAG_MAGIC) {
    throw new BzImageError(
      `not a bzImage: boot_flag at 0x1fe is 0x${bootFlag.toString(16)}, expected 0xaa55`,
    );
  }
  const version = readHeaderField(image, "version");
  if (version < MIN_PROTOCOL_VERSION) {
    throw new BzImageError(
      `boot protocol ${formatVersion(version)} is too old: dvmm needs 2.06 or later`,
    );
  }
  const headerEnd = 0x202 + image[0x201];
  if (headerEnd <= SETUP_HEADER.cmdline_size.offset + 4) {
    throw new BzImageError(
      `setup header ends at 0x${headerEnd.toString(16)} (0x202 + byte at 0x201), ` +
        `before the protocol ${formatVersion(version)} fields`,
    );
  }
  if (image.length < headerEnd) {
    throw new BzImageError(
      `truncated: image is ${image.length} bytes, setup header ends at 0x${headerEnd.toString(16)}`,
    );
  }
  const has = (name: SetupHeaderFieldName) => version >= SETUP_HEADER[name].since;
  const field = (name: SetupHeaderFieldName, fallback: number) =>
    has(name) && SETUP_HEADER[name].offset + SETUP_HEADER[name].size <= headerEnd
      ? readHeaderField(image, name)
      : fallback;

  const rawSects = readHeaderField(image, "setup_sects");
  const setupSects = rawSects === 0 ? 4 : rawSects;
  const setupSize = (setupSects + 1) * 512;
  const syssize = readHeaderField(image, "syssize");
  const loadflags = readHeaderField(image, "loadflags");
  if (!(loadflags & LOADFLAGS.LOADED_HIGH)) {
    throw new BzImageError("LOADED_HIGH is clear in loadflags: a zImage, not a bzImage");
  }
  const kernelBytes = syssize * 16;
  if (image.length < setupSize + kernelBytes) {
    throw new BzImageError(
      `truncated: image is ${image.length} bytes but its header declares ${setupSize} bytes of ` +
        `setup and ${kernelBytes} bytes of kernel (syssize ${syssize}), ${
          setupSize + kernelBytes
        } in all`,
    );
  }
  const xloadflags = field("xloadflags", 0);
  const kernel = image.subarray(setupSize);
  const header: SetupHeader = {
    version,
    setupSects,
    syssize,
    loadflags,
    xloadflags,
    kernelAlignment: field("kernel_alignment", 0x100000) || 0x100000,
    relocatable: field("relocatable_kernel", 0) !== 0,
    prefAddress: field("pref_address", 0x100000) || 0x100000,
    initSize: field("init_size", 0) || kernel.length,
    initrdAddrMax: field("initrd_addr_max", 0x37ffffff),
    cmdlineSize: field("cmdline_size", 255),
    headerEnd,
  };
  return {
    header,
    headerBytes: image.subarray(SETUP_HEADER.setup_sects.offset, headerEnd),
    setupSize,
    kernel,
    has64BitEntry: (xloadflags & XLOADFLAGS.XLF_KERNEL_64) !== 0,
  };
}

/** "2.15" for 0x20f. */
export function formatVersion(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, "0")}`;
}
