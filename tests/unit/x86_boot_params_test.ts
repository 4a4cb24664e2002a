import { assertEquals } from "./x86_assert.ts";
import { parseBzImage, readHeaderField, SETUP_HEADER } from "../../x86/bzimage.ts";
import { BOOT_PARAMS, buildBootParams, readE820Table } from "../../x86/boot_params.ts";
import { buildE820Map } from "../../x86/e820.ts";
import { GiB, MiB } from "../../x86/layout.ts";
import { fakeBzImage } from "./x86_fake_bzimage.ts";

const u32 = (p: Uint8Array, at: number) => new DataView(p.buffer).getUint32(at, true);
const u64 = (p: Uint8Array, at: number) => Number(new DataView(p.buffer).getBigUint64(at, true));

Deno.test("the zero page carries the image's setup header with the loader's fields patched", () => {
  const raw = fakeBzImage();
  const image = parseBzImage(raw);
  const e820 = buildE820Map(256 * MiB);
  const page = buildBootParams(image, {
    cmdlineAddr: 0x20000,
    initrd: { addr: 0x0f00_0000, size: 0x12_3456 },
    e820,
    acpiRsdpAddr: 0xe0000,
  });
  assertEquals(page.length, 4096);
  // Unpatched header bytes are copied verbatim from 0x1f1 up to the header end.
  for (
    const name of ["setup_sects", "syssize", "version", "kernel_alignment", "init_size"] as const
  ) {
    assertEquals(readHeaderField(page, name), readHeaderField(raw, name), name);
  }
  assertEquals(page[0x26c + 8], 0); // bytes past the header end are not copied
  assertEquals(readHeaderField(page, "type_of_loader"), 0xff);
  assertEquals(readHeaderField(page, "loadflags"), 0x01 | 0x80); // LOADED_HIGH | CAN_USE_HEAP
  assertEquals(readHeaderField(page, "heap_end_ptr"), 0xfe00 - 0x200);
  assertEquals(readHeaderField(page, "cmd_line_ptr"), 0x20000);
  assertEquals(u32(page, BOOT_PARAMS.ext_cmd_line_ptr.offset), 0);
  assertEquals(readHeaderField(page, "ramdisk_image"), 0x0f00_0000);
  assertEquals(readHeaderField(page, "ramdisk_size"), 0x12_3456);
  assertEquals(u64(page, 0x070), 0xe0000); // acpi_rsdp_addr
  assertEquals(page[0x1e8], e820.length); // e820_entries
  assertEquals(readE820Table(page), e820);
  // The table itself at 0x2d0: 20-byte entries (u64 addr, u64 size, u32 type).
  assertEquals(u64(page, 0x2d0 + 20 + 0), e820[1].addr);
  assertEquals(u64(page, 0x2d0 + 20 + 8), e820[1].size);
  assertEquals(u32(page, 0x2d0 + 20 + 16), e820[1].type);
  assertEquals(page[BOOT_PARAMS.sentinel.offset], 0);
  assertEquals(SETUP_HEADER.setup_sects.offset, BOOT_PARAMS.hdr.offset);
});

Deno.test("addresses above 4 GiB are split into the ext_ fields", () => {
  const image = parseBzImage(fakeBzImage());
  const page = buildBootParams(image, {
    cmdlineAddr: 4 * GiB + 0x100,
    initrd: { addr: 12 * GiB + 0x2000, size: 4 * GiB + 7 },
    e820: [],
  });
  assertEquals(readHeaderField(page, "cmd_line_ptr"), 0x100);
  assertEquals(u32(page, BOOT_PARAMS.ext_cmd_line_ptr.offset), 1);
  assertEquals(readHeaderField(page, "ramdisk_image"), 0x2000);
  assertEquals(u32(page, BOOT_PARAMS.ext_ramdisk_image.offset), 3);
  assertEquals(readHeaderField(page, "ramdisk_size"), 7);
  assertEquals(u32(page, BOOT_PARAMS.ext_ramdisk_size.offset), 1);
  assertEquals(page[0x1e8], 0);
});

Deno.test("acpi_rsdp_addr is only written for protocol 2.14 and later", () => {
  const old = buildBootParams(parseBzImage(fakeBzImage({ version: 0x20d })), {
    cmdlineAddr: 0x20000,
    e820: [],
    acpiRsdpAddr: 0xe0000,
  });
  assertEquals(u64(old, 0x070), 0);
});
