import copyEngine, {
  COPY_BARS,
  COPY_ENGINE_ID,
  COPY_REG,
  COPY_STATUS,
  COPY_VECTOR,
} from "../../examples/copy_engine.ts";
import { DeviceRegistry } from "../../devices/registry.ts";
import { registerBuiltinDevices } from "../../devices/builtin.ts";
import {
  MSIX_CAP,
  MSIX_CAP_ID,
  MSIX_CONTROL,
  MSIX_ENTRY,
  MSIX_ENTRY_SIZE,
} from "../../devices/msix.ts";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { CFG, COMMAND, STATUS } from "../../pci/config_regs.ts";
import { FakePciPlatform } from "./pci_fake_platform.ts";
import { assertEquals, busRead, bytes, cfgRead, cfgWrite, makeRig } from "./pci_harness.ts";

const SLOT = 5;
const RAM = 1 << 20;

/** The engine on a fresh root with 1 MiB of RAM, decode and bus mastering on. */
function plugged(options: Record<string, string> = {}) {
  const platform = new FakePciPlatform();
  const memory = GuestMemory.ofSize(RAM);
  const rig = makeRig({ platform, memory });
  const fn = rig.root.addDevice(copyEngine, { slot: SLOT, options });
  const cfg = {
    read: (offset: number, width: 1 | 2 | 4 = 4) => cfgRead(rig.root, SLOT, offset, width),
    write: (offset: number, value: number, width: 1 | 2 | 4 = 4) =>
      cfgWrite(rig.root, SLOT, offset, width, value),
  };
  cfg.write(CFG.COMMAND, COMMAND.MEMORY | COMMAND.BUS_MASTER, 2);
  const bar = (index: number) => BigInt((cfg.read(CFG.BAR0 + 4 * index) & ~0xf) >>> 0);
  const regs = bar(COPY_BARS.REGS);
  const table = bar(COPY_BARS.MSIX) + BigInt(COPY_BARS.TABLE_OFFSET);
  const pba = bar(COPY_BARS.MSIX) + BigInt(COPY_BARS.PBA_OFFSET);
  const reg = {
    read: (r: number) => busRead(rig.mmio, regs + BigInt(r)),
    write: (r: number, value: number) => rig.mmio.write(regs + BigInt(r), bytes(value, 4)),
  };
  /** Program SRC, DST, LEN and ring the doorbell. */
  const copy = (src: number, dst: number, length: number) => {
    reg.write(COPY_REG.SRC_LO, src % 2 ** 32);
    reg.write(COPY_REG.SRC_HI, Math.floor(src / 2 ** 32));
    reg.write(COPY_REG.DST_LO, dst % 2 ** 32);
    reg.write(COPY_REG.DST_HI, Math.floor(dst / 2 ** 32));
    reg.write(COPY_REG.LEN, length);
    reg.write(COPY_REG.CTRL, 1);
  };
  // The MSI-X capability, found by walking the list like a driver.
  let cap = cfg.read(CFG.CAPABILITY_POINTER, 1);
  while (cap && cfg.read(cap, 1) !== MSIX_CAP_ID) cap = cfg.read(cap + 1, 1);
  const msix = {
    cap,
    control: () => cfg.read(cap + MSIX_CAP.MESSAGE_CONTROL.offset, 2),
    setControl: (v: number) => cfg.write(cap + MSIX_CAP.MESSAGE_CONTROL.offset, v, 2),
    /** Program entry `v` with `address`/`data`, masked or not. */
    entry(v: number, address: number, data: number, masked: boolean) {
      const at = table + BigInt(v * MSIX_ENTRY_SIZE);
      rig.mmio.write(at + BigInt(MSIX_ENTRY.ADDR_LO.offset), bytes(address, 4));
      rig.mmio.write(at + BigInt(MSIX_ENTRY.ADDR_HI.offset), bytes(0, 4));
      rig.mmio.write(at + BigInt(MSIX_ENTRY.DATA.offset), bytes(data, 4));
      rig.mmio.write(at + BigInt(MSIX_ENTRY.VECTOR_CONTROL.offset), bytes(masked ? 1 : 0, 4));
    },
    pba: () => busRead(rig.mmio, pba),
  };
  const intx = () => rig.lines.get(fn.gsi!)?.level ?? false;
  return { ...rig, platform, memory, fn, cfg, reg, copy, msix, intx };
}

const pattern = (n: number, seed: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

Deno.test("copy engine: identity, BARs and an MSI-X capability pointing at BAR 2", () => {
  const { cfg, reg, msix } = plugged();
  assertEquals(cfg.read(CFG.VENDOR_ID), 0x00f1_1b36);
  assertEquals(reg.read(COPY_REG.ID), COPY_ENGINE_ID);
  assertEquals(cfg.read(CFG.STATUS, 2) & STATUS.CAPABILITY_LIST, STATUS.CAPABILITY_LIST);
  assertEquals(msix.cap !== 0, true, "MSI-X capability in the list");
  assertEquals(msix.control() & MSIX_CONTROL.TABLE_SIZE_MASK, 1, "2 vectors");
  assertEquals(cfg.read(msix.cap + MSIX_CAP.TABLE.offset), COPY_BARS.TABLE_OFFSET | COPY_BARS.MSIX);
  assertEquals(cfg.read(msix.cap + MSIX_CAP.PBA.offset), COPY_BARS.PBA_OFFSET | COPY_BARS.MSIX);
  // Size BAR 2 like Linux.
  const saved = cfg.read(CFG.BAR0 + 8);
  cfg.write(CFG.BAR0 + 8, 0xffff_ffff);
  assertEquals(cfg.read(CFG.BAR0 + 8), 0xffff_f000);
  cfg.write(CFG.BAR0 + 8, saved);
});

Deno.test("copy engine: a doorbell copies SRC to DST through guest memory and counts it", () => {
  const { memory, reg, copy, fn } = plugged();
  const data = pattern(3000, 1);
  memory.write(0x1_0000, data);
  memory.fill(0x2_0000, 4096, 0xee);
  // 64-bit registers: SRC_HI/DST_HI zero, addresses readable back.
  copy(0x1_0000, 0x2_0000, data.length);
  assertEquals(memory.read(0x2_0000, data.length), data);
  assertEquals(memory.readU8(0x2_0000 + data.length), 0xee, "not a byte more");
  assertEquals(reg.read(COPY_REG.STATUS), COPY_STATUS.DONE);
  assertEquals(reg.read(COPY_REG.COMPLETED), 1);
  assertEquals(reg.read(COPY_REG.BYTES_LO), 3000);
  assertEquals(reg.read(COPY_REG.SRC_LO), 0x1_0000);
  assertEquals(reg.read(COPY_REG.DST_LO), 0x2_0000);
  assertEquals(reg.read(COPY_REG.LEN), 3000);

  // Overlapping ranges behave like memmove.
  memory.write(0x3_0000, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
  copy(0x3_0000, 0x3_0002, 6);
  assertEquals([...memory.read(0x3_0000, 8)], [1, 2, 1, 2, 3, 4, 5, 6]);
  assertEquals(reg.read(COPY_REG.COMPLETED), 2);
  assertEquals(reg.read(COPY_REG.BYTES_LO), 3006);
  assertEquals(fn.faults, 0);
});

Deno.test("copy engine: bad addresses and lengths set STATUS.ERROR, copy nothing, never fault", () => {
  const { memory, reg, copy, fn, log } = plugged({ maxLength: "4096" });
  memory.fill(0x2_0000, 16, 0xaa);
  const cases: [number, number, number][] = [
    [RAM - 8, 0x2_0000, 16], // source runs off the end of RAM
    [0x1_0000, RAM, 1], // destination just past RAM
    [0x1_0000, 2 ** 40, 16], // destination far above RAM (SRC_HI/DST_HI in use)
    [0x1_0000, 0x2_0000, 0], // empty copy
    [0x1_0000, 0x2_0000, 4097], // longer than maxLength
  ];
  for (const [i, [src, dst, len]] of cases.entries()) {
    copy(src, dst, len);
    assertEquals(reg.read(COPY_REG.STATUS), COPY_STATUS.ERROR, `case ${i}`);
    assertEquals(reg.read(COPY_REG.ERRORS), i + 1);
    assertEquals(
      reg.read(COPY_REG.DST_HI),
      Math.floor(dst / 2 ** 32),
      "64-bit DST kept as written",
    );
    reg.write(COPY_REG.STATUS, COPY_STATUS.ERROR);
    assertEquals(reg.read(COPY_REG.STATUS), 0, "W1C");
  }
  assertEquals([...memory.read(0x2_0000, 16)], new Array(16).fill(0xaa), "nothing copied");
  assertEquals(reg.read(COPY_REG.COMPLETED), 0);
  assertEquals(fn.faults, 0, "errors are device state, not plugin faults");
  assertEquals(log.messages("warn").some((m) => m.includes("outside guest RAM")), true);
});

Deno.test("copy engine: without MSI-X, INTx is asserted until STATUS is cleared", () => {
  const { reg, copy, intx, platform, cfg } = plugged();
  assertEquals(intx(), false);
  copy(0x1000, 0x2000, 64);
  assertEquals(intx(), true);
  assertEquals(cfg.read(CFG.STATUS, 2) & STATUS.INTERRUPT, STATUS.INTERRUPT);
  reg.write(COPY_REG.STATUS, COPY_STATUS.DONE);
  assertEquals(intx(), false);
  copy(RAM, 0x2000, 64);
  assertEquals(intx(), true, "an error interrupts too");
  reg.write(COPY_REG.STATUS, 0xffff_ffff);
  assertEquals(intx(), false);
  assertEquals(platform.msis.length, 0, "no MSI while MSI-X is disabled");
});

Deno.test("copy engine: with MSI-X enabled a copy sends vector 0's message, an error vector 1's", () => {
  const { reg, copy, intx, platform, msix, fn } = plugged();
  msix.entry(COPY_VECTOR.DONE, 0xfee0_0000, 0x4041, false);
  msix.entry(COPY_VECTOR.ERROR, 0xfee0_1000, 0x4042, false);
  msix.setControl(MSIX_CONTROL.ENABLE);
  copy(0x1000, 0x2000, 64);
  assertEquals(platform.msis, [{ address: 0xfee0_0000n, data: 0x4041 }]);
  assertEquals(intx(), false, "MSI-X enabled: INTx stays low");
  copy(0x1000, RAM + 0x1000, 64);
  assertEquals(platform.msis[1], { address: 0xfee0_1000n, data: 0x4042 });
  assertEquals(fn.msiCounts, { sent: 2, dropped: 0 });
  assertEquals(reg.read(COPY_REG.STATUS), COPY_STATUS.DONE | COPY_STATUS.ERROR);

  // Disabling MSI-X hands the still-set STATUS back to INTx.
  msix.setControl(0);
  assertEquals(intx(), true);
  msix.setControl(MSIX_CONTROL.ENABLE);
  assertEquals(intx(), false);
});

Deno.test("copy engine: a masked vector is left pending in the PBA and sent on unmask", () => {
  const { copy, platform, msix } = plugged();
  msix.entry(COPY_VECTOR.DONE, 0xfee0_0000, 0x4051, true);
  msix.setControl(MSIX_CONTROL.ENABLE);
  copy(0x1000, 0x2000, 8);
  assertEquals(platform.msis.length, 0);
  assertEquals(msix.pba(), 1 << COPY_VECTOR.DONE);
  msix.entry(COPY_VECTOR.DONE, 0xfee0_0000, 0x4051, false);
  assertEquals(platform.msis, [{ address: 0xfee0_0000n, data: 0x4051 }]);
  assertEquals(msix.pba(), 0);

  // Function Mask holds every vector the same way.
  msix.setControl(MSIX_CONTROL.ENABLE | MSIX_CONTROL.FUNCTION_MASK);
  copy(0x1000, 0x2000, 8);
  assertEquals([platform.msis.length, msix.pba()], [1, 1]);
  msix.setControl(MSIX_CONTROL.ENABLE);
  assertEquals(platform.msis.length, 2);
});

Deno.test("copy engine: MSIs are dropped while Bus Master Enable is off", () => {
  const { copy, platform, msix, cfg, fn } = plugged();
  msix.entry(COPY_VECTOR.DONE, 0xfee0_0000, 0x4061, false);
  msix.setControl(MSIX_CONTROL.ENABLE);
  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  copy(0x1000, 0x2000, 8);
  assertEquals(platform.msis.length, 0);
  assertEquals(fn.msiCounts, { sent: 0, dropped: 1 });
});

Deno.test("copy engine: reset clears registers, counters and the MSI-X state", () => {
  const { root, reg, copy, msix, cfg, intx } = plugged();
  msix.setControl(MSIX_CONTROL.ENABLE);
  copy(0x1000, 0x2000, 8);
  root.reset();
  assertEquals(intx(), false);
  cfg.write(CFG.COMMAND, COMMAND.MEMORY | COMMAND.BUS_MASTER, 2);
  assertEquals(msix.control() & MSIX_CONTROL.ENABLE, 0);
  for (const r of [COPY_REG.STATUS, COPY_REG.COMPLETED, COPY_REG.LEN, COPY_REG.SRC_LO]) {
    assertEquals(reg.read(r), 0, `register 0x${r.toString(16)}`);
  }
});

Deno.test("copy engine: registered as the built-in `copy-engine`", async () => {
  const registry = registerBuiltinDevices(new DeviceRegistry());
  const plugin = await registry.load("copy-engine");
  assertEquals([plugin?.definition.deviceId, plugin?.source], [0x00f1, "builtin:copy-engine"]);
});
