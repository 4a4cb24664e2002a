import { assert, assertEquals, assertThrows } from "./x86_assert.ts";
import { BzImageError, parseBzImage, readHeaderField, SETUP_HEADER } from "../../x86/bzimage.ts";
import { fakeBzImage, findCachedKernel } from "./x86_fake_bzimage.ts";

Deno.test("parseBzImage decodes the setup header fields a loader needs", () => {
  const img = parseBzImage(fakeBzImage({ kernelSize: 4096, initSize: 0x123_4000 }));
  assertEquals(img.header.version, 0x20f);
  assertEquals(img.header.setupSects, 27);
  assertEquals(img.setupSize, 28 * 512);
  assertEquals(img.header.syssize, 256);
  assertEquals(img.header.loadflags, 0x01);
  assertEquals(img.header.xloadflags, 0x3);
  assertEquals(img.header.kernelAlignment, 0x20_0000);
  assertEquals(img.header.relocatable, true);
  assertEquals(img.header.prefAddress, 0x100_0000);
  assertEquals(img.header.initSize, 0x123_4000);
  assertEquals(img.header.initrdAddrMax, 0x7fff_ffff);
  assertEquals(img.header.cmdlineSize, 2047);
  assertEquals(img.header.headerEnd, 0x26c);
  assertEquals(img.has64BitEntry, true);
  assertEquals(img.kernel.length, 4096);
  assertEquals(img.kernel[0], 3); // pattern starts right after the setup sectors
  assertEquals(img.headerBytes.length, 0x26c - 0x1f1);
  assertEquals(img.headerBytes[0], 27);
});

Deno.test("setup_sects 0 means 4", () => {
  const img = parseBzImage(fakeBzImage({ setupSects: 0, kernelSize: 512 }));
  assertEquals(img.header.setupSects, 4);
  assertEquals(img.setupSize, 5 * 512);
  assertEquals(img.kernel.length, 512);
});

Deno.test("the typed header layout matches the boot protocol offsets", () => {
  assertEquals(SETUP_HEADER.header.offset, 0x202);
  assertEquals(SETUP_HEADER.xloadflags.offset, 0x236);
  assertEquals(SETUP_HEADER.pref_address, { offset: 0x258, size: 8, since: 0x20a });
  const raw = fakeBzImage();
  assertEquals(readHeaderField(raw, "header"), 0x5372_6448);
  // Fields are contiguous and do not overlap, from setup_sects to kernel_info_offset.
  const fields = Object.values(SETUP_HEADER).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < fields.length; i++) {
    assertEquals(fields[i - 1].offset + fields[i - 1].size, fields[i].offset);
  }
});

Deno.test("a file without HdrS is rejected as not a bzImage", () => {
  const junk = new Uint8Array(8192).map((_, i) => (i * 31) & 0xff);
  const e = assertThrows(() => parseBzImage(junk), BzImageError);
  assert(e.message.includes("not a bzImage"), e.message);
  const elf = fakeBzImage();
  elf[0x202] = 0x7f; // break the magic
  assert(assertThrows(() => parseBzImage(elf), BzImageError).message.includes('"HdrS"'));
  const noFlag = fakeBzImage();
  noFlag[0x1fe] = 0;
  assert(assertThrows(() => parseBzImage(noFlag), BzImageError).message.includes("boot_flag"));
});

Deno.test("a file too small for a header is rejected", () => {
  const e = assertThrows(() => parseBzImage(new Uint8Array(100)), BzImageError);
  assert(e.message.includes("too small"), e.message);
});

Deno.test("a truncated image is rejected with the sizes", () => {
  const full = fakeBzImage({ kernelSize: 8192 });
  const e = assertThrows(() => parseBzImage(full.subarray(0, full.length - 100)), BzImageError);
  assert(e.message.includes("truncated"), e.message);
  assert(e.message.includes(`${full.length - 100} bytes`), e.message);
  const headerCut = assertThrows(() => parseBzImage(full.subarray(0, 0x240)), BzImageError);
  assert(headerCut.message.includes("truncated"), headerCut.message);
});

Deno.test("a protocol older than 2.06 is rejected as too old", () => {
  const e = assertThrows(() => parseBzImage(fakeBzImage({ version: 0x204 })), BzImageError);
  assert(e.message.includes("2.04 is too old"), e.message);
  assert(e.message.includes("2.06"), e.message);
  parseBzImage(fakeBzImage({ version: 0x206 })); // the oldest accepted
});

Deno.test("older protocols fall back to defaults for fields they lack", () => {
  const img = parseBzImage(fakeBzImage({ version: 0x206, xloadflags: 0x1, prefAddress: 0x4000 }));
  assertEquals(img.header.xloadflags, 0);
  assertEquals(img.has64BitEntry, false);
  assertEquals(img.header.prefAddress, 0x10_0000);
  assertEquals(img.header.initSize, img.kernel.length);
});

Deno.test("a zImage (LOADED_HIGH clear) is rejected", () => {
  const e = assertThrows(() => parseBzImage(fakeBzImage({ loadflags: 0 })), BzImageError);
  assert(e.message.includes("LOADED_HIGH"), e.message);
});

const realKernel = findCachedKernel();

Deno.test({
  name: "the cached Debian kernel parses as a relocatable 64-bit bzImage",
  ignore: realKernel === undefined,
  fn() {
    const img = parseBzImage(Deno.readFileSync(realKernel!));
    assert(img.header.version >= 0x20f, `protocol 0x${img.header.version.toString(16)}`);
    assert(img.has64BitEntry);
    assert(img.header.relocatable);
    assertEquals(img.header.prefAddress, 0x100_0000);
    assert(img.header.initSize > img.kernel.length);
    assert(img.header.cmdlineSize >= 2047);
  },
});
