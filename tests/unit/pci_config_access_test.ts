import { CFG, COMMAND } from "../../pci/config_regs.ts";
import { decodeEcam, ecamOffset } from "../../pci/config_access.ts";
import { PCI_ECAM, PORTS } from "../../x86/layout.ts";
import { assertEquals, busRead, bytes, le, makeRig, probeDevice } from "./pci_harness.ts";

const CF8 = BigInt(PORTS.PCI_CONFIG_ADDRESS);
const CFC = BigInt(PORTS.PCI_CONFIG_DATA);
const ECAM = BigInt(PCI_ECAM.base);

function rig() {
  const r = makeRig();
  const { def } = probeDevice({
    vendorId: 0x1af4,
    deviceId: 0x1042,
    bars: [{ index: 0, kind: "mem32", size: 0x1000 }],
  });
  r.root.addDevice(def, { slot: 5, decode: false });
  return r;
}

function selectReg(pio: ReturnType<typeof makeRig>["pio"], dev: number, reg: number, bus = 0) {
  pio.write(CF8, bytes((0x8000_0000 | (bus << 16) | (dev << 11) | reg) >>> 0, 4));
}

function pioRead(pio: ReturnType<typeof makeRig>["pio"], port: bigint, width: number): number {
  const d = new Uint8Array(width);
  pio.read(port, d);
  return le(d);
}

Deno.test("mechanism #1: 0xCF8 holds enable/bus/device/function/register, low bits read 0", () => {
  const { pio } = rig();
  pio.write(CF8, bytes(0xffff_ffff, 4));
  assertEquals(pioRead(pio, CF8, 4), 0x80ff_fffc);
  // Narrow accesses do not touch the address register.
  pio.write(CF8, bytes(0, 1));
  pio.write(CF8 + 2n, bytes(0, 2));
  assertEquals(pioRead(pio, CF8, 4), 0x80ff_fffc);
  assertEquals(pioRead(pio, CF8, 1), 0xff);
});

Deno.test("mechanism #1: reads at every width and offset within the dword", () => {
  const { pio } = rig();
  selectReg(pio, 5, 0x00);
  const dword = 0x1042_1af4;
  for (const width of [1, 2, 4]) {
    for (let off = 0; off + width <= 4; off++) {
      const expect = Math.floor(dword / 2 ** (8 * off)) % 2 ** (8 * width);
      assertEquals(pioRead(pio, CFC + BigInt(off), width), expect, `width ${width} @${off}`);
    }
  }
  // An access running off the end of the data window reads all-ones.
  assertEquals(pioRead(pio, CFC + 3n, 2), 0xffff);
});

Deno.test("mechanism #1: writes at every width and offset within the dword", () => {
  const { pio, root } = rig();
  for (const width of [1, 2, 4]) {
    for (let off = 0; off + width <= 4; off++) {
      selectReg(pio, 5, CFG.CACHE_LINE_SIZE); // 0x0c: cache line, latency writable
      pio.write(CFC, bytes(0, 4));
      const value = 0xa5a5a5a5 % 2 ** (8 * width);
      pio.write(CFC + BigInt(off), bytes(value, width));
      const d = new Uint8Array(4);
      root.configRead(0, 5, 0, CFG.CACHE_LINE_SIZE, d);
      const expect = [0, 0, 0, 0];
      for (let i = off; i < off + width && i < 2; i++) expect[i] = 0xa5; // bytes 2,3 read-only
      assertEquals([...d], expect, `width ${width} @${off}`);
    }
  }
  // Command through 0xCFC with a 1-byte write at offset 0 of dword 0x04.
  selectReg(pio, 5, CFG.COMMAND);
  pio.write(CFC, bytes(COMMAND.MEMORY, 1));
  assertEquals(root.assignments().find((a) => a.bdf === "00:05.0")!.active, true);
});

Deno.test("mechanism #1: disabled cycles, absent devices and other buses read all-ones", () => {
  const { pio } = rig();
  pio.write(CF8, bytes((5 << 11) >>> 0, 4)); // enable bit clear
  assertEquals(pioRead(pio, CFC, 4), 0xffff_ffff);
  selectReg(pio, 9, 0);
  assertEquals(pioRead(pio, CFC, 4), 0xffff_ffff);
  selectReg(pio, 5, 0, 1);
  assertEquals(pioRead(pio, CFC, 2), 0xffff);
  selectReg(pio, 0, 0);
  assertEquals(pioRead(pio, CFC, 4), 0x29c0_8086, "host bridge");
});

Deno.test("ECAM: offsets decode to bus/device/function/register", () => {
  assertEquals(decodeEcam(ecamOffset(3, 31, 7, 0xffc)), {
    bus: 3,
    device: 31,
    fn: 7,
    offset: 0xffc,
  });
  assertEquals(ecamOffset(0, 5, 0, 0x10), 0x28010);
});

Deno.test("ECAM: reads and writes through the MMIO bus at every width and offset", () => {
  const { mmio, root } = rig();
  const base = ECAM + BigInt(ecamOffset(0, 5, 0, 0));
  assertEquals(busRead(mmio, base, 4), 0x1042_1af4);
  assertEquals(busRead(mmio, base + 2n, 2), 0x1042);
  assertEquals(busRead(mmio, base + 3n, 1), 0x10);
  // An 8-byte read spans two dwords: vendor/device then command/status.
  assertEquals(busRead(mmio, base, 8) % 2 ** 32, 0x1042_1af4);
  for (const width of [1, 2, 4]) {
    for (let off = 0; off + width <= 4; off++) {
      mmio.write(base + 0x3cn, bytes(0, 1));
      mmio.write(base + 0x3cn + BigInt(off), bytes(0x77777777 % 2 ** (8 * width), width));
      const line = busRead(mmio, base + 0x3cn, 1);
      assertEquals(line, off === 0 ? 0x77 : 0, `width ${width} @${off}`);
    }
  }
  // Extended config space exists (reads 0), absent functions read all-ones.
  assertEquals(busRead(mmio, base + 0x100n, 4), 0);
  assertEquals(busRead(mmio, ECAM + BigInt(ecamOffset(0, 6, 0, 0)), 4), 0xffff_ffff);
  assertEquals(busRead(mmio, ECAM + BigInt(ecamOffset(0, 5, 1, 0)), 4), 0xffff_ffff);
  // BAR sizing through ECAM.
  mmio.write(base + 0x10n, bytes(0xffff_ffff, 4));
  assertEquals(busRead(mmio, base + 0x10n, 4), 0xffff_f000);
  assertEquals(root.device(5)!.bars[0].address, 0xffff_f000n);
});
