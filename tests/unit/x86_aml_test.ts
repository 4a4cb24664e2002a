import { assertEquals, assertThrows } from "./x86_assert.ts";
import * as aml from "../../x86/aml.ts";
import { s5Aml } from "../../x86/acpi.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
const ascii = (s: string) => hex(new TextEncoder().encode(s));

/** Decode a PkgLength as the AML spec defines it: [length, bytes used]. */
function decodePkgLength(b: Uint8Array): [number, number] {
  const follow = b[0] >> 6;
  if (follow === 0) return [b[0] & 0x3f, 1];
  let len = b[0] & 0x0f;
  for (let i = 1; i <= follow; i++) len |= b[i] << (4 + 8 * (i - 1));
  return [len, 1 + follow];
}

Deno.test("_S5 is Name(_S5_, Package(4){5, 5, 0, 0}) byte for byte", () => {
  assertEquals(hex(s5Aml()), "08 5f 53 35 5f 12 08 04 0a 05 0a 05 00 00");
});

Deno.test("PkgLength counts its own bytes and switches encoding at 63 bytes", () => {
  assertEquals(hex(aml.pkgLength(0)), "01");
  assertEquals(hex(aml.pkgLength(62)), "3f");
  assertEquals(hex(aml.pkgLength(63)), "41 04"); // 63 + 2 = 65 = 0x41
  for (const body of [0, 10, 62, 63, 100, 4000, 4093, 4094, 70000, 1 << 20]) {
    const enc = aml.pkgLength(body);
    const [len, used] = decodePkgLength(enc);
    assertEquals(used, enc.length);
    assertEquals(len, body + enc.length, `body ${body}`);
  }
});

Deno.test("integers use the shortest encoding", () => {
  assertEquals(hex(aml.integer(0)), "00");
  assertEquals(hex(aml.integer(1)), "01");
  assertEquals(hex(aml.integer(5)), "0a 05");
  assertEquals(hex(aml.integer(0x1234)), "0b 34 12");
  assertEquals(hex(aml.integer(0xe000_0000)), "0c 00 00 00 e0");
  assertEquals(hex(aml.integer(2 ** 36 + 1)), "0e 01 00 00 00 10 00 00 00");
});

Deno.test("name strings: single, rooted dual and multi-segment paths", () => {
  assertEquals(hex(aml.nameString("_S5")), ascii("_S5_"));
  assertEquals(hex(aml.nameString("\\_SB.PCI0")), `5c 2e ${ascii("_SB_PCI0")}`);
  assertEquals(hex(aml.nameString("A.B.C")), `2f 03 ${ascii("A___B___C___")}`);
  assertThrows(() => aml.nameSeg("toolong"), RangeError);
});

Deno.test("EISAID compresses vendor letters into the classic constants", () => {
  assertEquals(hex(aml.eisaId("PNP0A03")), "0c 41 d0 0a 03");
  assertEquals(hex(aml.eisaId("PNP0C02")), "0c 41 d0 0c 02");
});

Deno.test("device, scope, buffer and resource template encodings", () => {
  const dev = aml.device("DEV0", [aml.name("_UID", aml.integer(0))]);
  assertEquals(hex(dev), `5b 82 0b ${ascii("DEV0")} 08 ${ascii("_UID")} 00`);
  assertEquals(hex(aml.scope("_SB", [])), `10 05 ${ascii("_SB_")}`);
  assertEquals(hex(aml.buffer(Uint8Array.of(0xaa, 0xbb))), "11 05 0a 02 aa bb");
  assertEquals(hex(aml.string("AB")), "0d 41 42 00");
  const crs = aml.resourceTemplate([aml.Resource.io(0xcf8, 0xcf8, 1, 8)]);
  assertEquals(hex(crs), "11 0d 0a 0a 47 01 f8 0c f8 0c 01 08 79 00");
  assertEquals(aml.Resource.memory64Window(0, 0xfff).length, 46);
  assertEquals(aml.Resource.memory32Window(0, 0xfff).length, 26);
  assertEquals(aml.Resource.busNumbers(0, 255).length, 16);
});
