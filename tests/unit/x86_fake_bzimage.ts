/**
 * Synthetic bzImages for the x86 boot tests: a real-mode part with a setup
 * header at 0x1f1 and a protected-mode part filled with a recognizable pattern.
 *
 * @module
 */

import { dvmmCacheDir } from "../../guest/cache_dir.ts";
import { SETUP_HEADER, type SetupHeaderFieldName, writeHeaderField } from "../../x86/bzimage.ts";

/** Header values of a fake image; defaults look like a Debian 6.1 kernel. */
export interface FakeBzImageOptions {
  /** Protocol version (default 0x20f, 2.15). */
  version?: number;
  /** Raw setup_sects byte (default 27). */
  setupSects?: number;
  /** Size of the protected-mode part (a multiple of 16; default 64 KiB). */
  kernelSize?: number;
  /** loadflags (default LOADED_HIGH). */
  loadflags?: number;
  /** xloadflags (default XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G). */
  xloadflags?: number;
  /** relocatable_kernel (default 1). */
  relocatable?: number;
  /** kernel_alignment (default 2 MiB). */
  kernelAlignment?: number;
  /** pref_address (default 16 MiB). */
  prefAddress?: number;
  /** init_size (default 8 MiB). */
  initSize?: number;
  /** initrd_addr_max (default 0x7fffffff). */
  initrdAddrMax?: number;
  /** cmdline_size (default 2047). */
  cmdlineSize?: number;
  /** Header end (0x202 + byte at 0x201; default 0x26c). */
  headerEnd?: number;
}

/** Build a fake bzImage. */
export function fakeBzImage(o: FakeBzImageOptions = {}): Uint8Array {
  const sects = o.setupSects ?? 27;
  const setupSize = ((sects === 0 ? 4 : sects) + 1) * 512;
  const kernelSize = o.kernelSize ?? 64 * 1024;
  const image = new Uint8Array(setupSize + kernelSize);
  const set = (name: SetupHeaderFieldName, v: number) => writeHeaderField(image, name, v);
  set("setup_sects", sects);
  set("syssize", kernelSize / 16);
  set("boot_flag", 0xaa55);
  image[0x200] = 0xeb; // jmp short
  image[0x201] = (o.headerEnd ?? 0x26c) - 0x202;
  set("header", 0x5372_6448);
  set("version", o.version ?? 0x20f);
  set("loadflags", o.loadflags ?? 0x01);
  set("initrd_addr_max", o.initrdAddrMax ?? 0x7fff_ffff);
  set("kernel_alignment", o.kernelAlignment ?? 0x20_0000);
  set("relocatable_kernel", o.relocatable ?? 1);
  set("xloadflags", o.xloadflags ?? 0x3);
  set("cmdline_size", o.cmdlineSize ?? 2047);
  set("pref_address", o.prefAddress ?? 0x100_0000);
  set("init_size", o.initSize ?? 0x80_0000);
  for (let i = 0; i < kernelSize; i++) image[setupSize + i] = (i * 7 + 3) & 0xff;
  // Something recognizable past the header that must not reach the zero page.
  image[SETUP_HEADER.kernel_info_offset.offset + 8] = 0xee;
  return image;
}

/** Path of a Debian vmlinuz in the dvmm cache (guest/debian_kernel.ts puts it there), if any. */
export function findCachedKernel(): string | undefined {
  try {
    const dir = `${dvmmCacheDir()}/kernels`;
    for (const pkg of Deno.readDirSync(dir)) {
      try {
        for (const f of Deno.readDirSync(`${dir}/${pkg.name}/boot`)) {
          if (f.name.startsWith("vmlinuz-")) return `${dir}/${pkg.name}/boot/${f.name}`;
        }
      } catch { /* no boot dir */ }
    }
  } catch { /* no cache */ }
  return undefined;
}
