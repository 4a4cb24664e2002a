import type { PciBarSpec } from "../../devices/pci_device.ts";
import { CFG, COMMAND } from "../../pci/config_regs.ts";
import { PCI_IO, PCI_MMIO32, pciMmio64Window } from "../../x86/layout.ts";
import {
  assertEquals,
  barOffset,
  busRead,
  cfgRead,
  cfgWrite,
  makeRig,
  probeDevice,
} from "./pci_harness.ts";

const BARS: PciBarSpec[] = [
  { index: 0, kind: "mem32", size: 0x1000 },
  { index: 1, kind: "io", size: 0x20 },
  { index: 2, kind: "mem64", size: 0x4000, prefetchable: true },
  { index: 4, kind: "mem32", size: 0x10, prefetchable: true },
];

function rig(decode = true) {
  const r = makeRig();
  const { def, probe } = probeDevice({ vendorId: 0x1af4, deviceId: 0x1042, bars: BARS });
  const fn = r.root.addDevice(def, { slot: 1, decode });
  return { ...r, fn, probe };
}

Deno.test("initial assignment: naturally aligned in the right windows, exposed with state", () => {
  const { root, fn } = rig();
  const list = root.assignments();
  assertEquals(list.map((a) => [a.bar, a.kind, a.size, a.active]), [
    [0, "mem32", 0x1000n, true],
    [1, "io", 0x20n, true],
    [2, "mem64", 0x4000n, true],
    [4, "mem32", 0x10n, true],
  ]);
  const mem64 = BigInt(pciMmio64Window(1 << 20).base);
  for (const a of list) {
    assertEquals(a.address % a.size, 0n, `BAR ${a.bar} aligned`);
    assertEquals(a.activeAddress, a.address);
    assertEquals(a.device, "[1af4:1042]");
    assertEquals(a.bdf, "00:01.0");
  }
  assertEquals(list[0].address >= BigInt(PCI_MMIO32.base), true);
  assertEquals(list[1].address >= BigInt(PCI_IO.base), true);
  assertEquals(list[2].address, mem64);
  assertEquals(cfgRead(root, 1, CFG.COMMAND, 2), COMMAND.IO | COMMAND.MEMORY);
  assertEquals(fn.bars.every((b) => b.active !== null), true);
});

Deno.test("registers read the address with the type bits", () => {
  const { root } = rig();
  const [m32, io, m64, pf] = root.assignments();
  assertEquals(cfgRead(root, 1, barOffset(0), 4), Number(m32.address));
  assertEquals(cfgRead(root, 1, barOffset(1), 4), (Number(io.address) | 1) >>> 0);
  assertEquals(cfgRead(root, 1, barOffset(2), 4), (Number(m64.address & 0xffffffffn) | 0xc) >>> 0);
  assertEquals(cfgRead(root, 1, barOffset(3), 4), Number(m64.address >> 32n));
  assertEquals(cfgRead(root, 1, barOffset(4), 4), (Number(pf.address) | 0x8) >>> 0);
  assertEquals(cfgRead(root, 1, barOffset(5), 4), 0, "unimplemented slot reads 0");
  cfgWrite(root, 1, barOffset(5), 4, 0xffffffff);
  assertEquals(cfgRead(root, 1, barOffset(5), 4), 0, "and ignores writes");
});

Deno.test("sizing: exact and masked all-ones writes read back ~(size-1) with type bits", () => {
  // [slot, written value, expected read-back]
  const table: [number, number, number][] = [
    [0, 0xffffffff, 0xfffff000],
    [0, 0xfffffff0, 0xfffff000],
    [1, 0xffffffff, 0xffffffe1],
    [1, 0xfffffffc, 0xffffffe1],
    [2, 0xffffffff, 0xffffc00c],
    [2, 0xfffffff0, 0xffffc00c],
    [3, 0xffffffff, 0xffffffff],
    [4, 0xffffffff, 0xfffffff8],
    [4, 0xfffffff0, 0xfffffff8],
  ];
  for (const decode of [false, true]) {
    for (const [slot, value, expect] of table) {
      const { root } = rig(decode);
      const before = cfgRead(root, 1, barOffset(slot), 4);
      cfgWrite(root, 1, barOffset(slot), 4, value);
      assertEquals(cfgRead(root, 1, barOffset(slot), 4) >>> 0, expect, `slot ${slot} ${value}`);
      cfgWrite(root, 1, barOffset(slot), 4, before);
      assertEquals(cfgRead(root, 1, barOffset(slot), 4), before, `slot ${slot} restored`);
    }
  }
});

Deno.test("sizing with decode on leaves the mapped region alone; hooks do not fire", () => {
  const { root, mmio, pio, probe } = rig(true);
  const [m32, io, m64] = root.assignments();
  const calls = probe.calls.length;
  for (const slot of [0, 1, 2, 3]) {
    const before = cfgRead(root, 1, barOffset(slot), 4);
    cfgWrite(root, 1, barOffset(slot), 4, 0xffffffff);
    assertEquals(busRead(mmio, m32.address), 0x42424242, "BAR 0 still answers");
    assertEquals(busRead(pio, io.address, 1), 0x43, "BAR 1 still answers");
    assertEquals(busRead(mmio, m64.address), 0x44444444, "BAR 2 still answers");
    cfgWrite(root, 1, barOffset(slot), 4, before);
  }
  assertEquals(probe.calls.length, calls);
  assertEquals(root.assignments().map((a) => a.activeAddress), [
    m32.address,
    io.address,
    m64.address,
    root.assignments()[3].address,
  ]);
});

Deno.test("64-bit BAR sizing: both halves size, larger than 4 GiB too", () => {
  const r = makeRig({ windows: { mmio64: { base: 2 ** 40, size: 2 ** 40 } } });
  const { def } = probeDevice({ bars: [{ index: 0, kind: "mem64", size: 1n << 33n }] });
  r.root.addDevice(def, { slot: 1, decode: false });
  cfgWrite(r.root, 1, barOffset(0), 4, 0xffffffff);
  cfgWrite(r.root, 1, barOffset(1), 4, 0xffffffff);
  assertEquals(cfgRead(r.root, 1, barOffset(0), 4), 0x00000004);
  assertEquals(cfgRead(r.root, 1, barOffset(1), 4), 0xfffffffe);
});

Deno.test("decode toggles at 1, 2 and 4 bytes switch every BAR of that type", () => {
  // [offset, width, value] writes that set exactly IO|MEM, then clear them.
  const widths: [number, 1 | 2 | 4][] = [[CFG.COMMAND, 1], [CFG.COMMAND, 2], [CFG.COMMAND, 4]];
  for (const [offset, width] of widths) {
    const { root, mmio, pio, probe } = rig(false);
    assertEquals(mmio.ranges.length, 1, "only ECAM");
    cfgWrite(root, 1, offset, width, COMMAND.MEMORY);
    assertEquals(root.assignments().map((a) => a.active), [true, false, true, true]);
    cfgWrite(root, 1, offset, width, COMMAND.MEMORY | COMMAND.IO);
    assertEquals(root.assignments().map((a) => a.active), [true, true, true, true]);
    assertEquals(pio.ranges.length, 3);
    cfgWrite(root, 1, offset, width, COMMAND.IO);
    assertEquals(root.assignments().map((a) => a.active), [false, true, false, false]);
    assertEquals(mmio.ranges.length, 1);
    cfgWrite(root, 1, offset, width, 0);
    assertEquals(root.assignments().map((a) => a.active), [false, false, false, false]);
    assertEquals(probe.violations, []);
    assertEquals(
      probe.calls.map((c) => `${c.hook} ${c.bar}`),
      [
        "activate 0",
        "activate 2",
        "activate 4",
        "activate 1",
        "deactivate 0",
        "deactivate 2",
        "deactivate 4",
        "deactivate 1",
      ],
      `width ${width}`,
    );
  }
});

Deno.test("a Command write that leaves IO/MEM unchanged does not fire hooks", () => {
  const { root, probe } = rig(true);
  const n = probe.calls.length;
  cfgWrite(root, 1, CFG.COMMAND, 2, COMMAND.IO | COMMAND.MEMORY | COMMAND.BUS_MASTER);
  cfgWrite(root, 1, CFG.COMMAND + 1, 1, COMMAND.INTX_DISABLE >> 8);
  cfgWrite(root, 1, CFG.STATUS, 2, 0xffff);
  assertEquals(probe.calls.length, n);
});

Deno.test("decode off: a BAR write only stores; decode on later maps the stored address", () => {
  const { root, mmio, probe } = rig(false);
  cfgWrite(root, 1, barOffset(0), 4, 0xd000_0000);
  assertEquals(probe.calls.length, 0);
  assertEquals(mmio.find(0xd000_0000n), undefined);
  cfgWrite(root, 1, CFG.COMMAND, 1, COMMAND.MEMORY);
  assertEquals(busRead(mmio, 0xd000_0000n), 0x42424242);
});

Deno.test("a BAR holding the sizing pattern or 0 is not decoded when decode goes on", () => {
  const { root, mmio } = rig(false);
  cfgWrite(root, 1, barOffset(0), 4, 0xffffffff);
  cfgWrite(root, 1, barOffset(4), 4, 0);
  cfgWrite(root, 1, CFG.COMMAND, 1, COMMAND.MEMORY);
  assertEquals(root.assignments().map((a) => a.active), [false, false, true, false]);
  assertEquals(mmio.find(0xfffff000n), undefined);
});

Deno.test("64-bit move with decode on: low then high moves once to the full address", () => {
  const { root, mmio, probe } = rig(true);
  const old = root.assignments()[2].address;
  const target = 0x20_0000_0000n;
  probe.calls.length = 0;
  cfgWrite(root, 1, barOffset(2), 4, Number(target & 0xffffffffn));
  assertEquals(root.assignments()[2].activeAddress, old, "low half alone does not move it");
  cfgWrite(root, 1, barOffset(3), 4, Number(target >> 32n));
  assertEquals(root.assignments()[2].activeAddress, target);
  assertEquals(probe.calls.map((c) => [c.hook, c.address]), [
    ["deactivate", old],
    ["activate", target],
  ]);
  assertEquals(busRead(mmio, target), 0x44444444);
  assertEquals(busRead(mmio, old), 0xffffffff);
});

Deno.test("64-bit move with decode on: high then low also moves once", () => {
  const { root, probe } = rig(true);
  const old = root.assignments()[2].address;
  const target = 0x3_8000_8000n;
  probe.calls.length = 0;
  cfgWrite(root, 1, barOffset(3), 4, Number(target >> 32n));
  cfgWrite(root, 1, barOffset(2), 4, Number(target & 0xffffffffn));
  assertEquals(root.assignments()[2].activeAddress, target);
  assertEquals(probe.calls.map((c) => [c.hook, c.address]), [
    ["deactivate", old],
    ["activate", target],
  ]);
});

Deno.test("64-bit move with decode on: a lone half commits at the next other config access", () => {
  const { root, probe } = rig(true);
  const old = root.assignments()[2].address;
  const target = (old & ~0xffffffffn) | 0x1000_0000n;
  probe.calls.length = 0;
  cfgWrite(root, 1, barOffset(2), 4, Number(target & 0xffffffffn));
  cfgRead(root, 1, barOffset(2), 4); // reading the BAR itself does not commit
  assertEquals(root.assignments()[2].activeAddress, old);
  cfgRead(root, 1, CFG.VENDOR_ID, 2);
  assertEquals(root.assignments()[2].activeAddress, target);
  assertEquals(probe.calls.length, 2);
});

Deno.test("64-bit BAR with decode off: halves store, decode on maps the full address", () => {
  const { root, mmio } = rig(false);
  cfgWrite(root, 1, barOffset(3), 4, 0x10);
  cfgWrite(root, 1, barOffset(2), 4, 0x0004_0000);
  cfgWrite(root, 1, CFG.COMMAND, 2, COMMAND.MEMORY);
  assertEquals(root.assignments()[2].activeAddress, 0x10_0004_0000n);
  assertEquals(busRead(mmio, 0x10_0004_0000n + 0x3ffcn), 0x44444444);
});

Deno.test("byte-wise BAR writes merge into the register", () => {
  const { root } = rig(false);
  cfgWrite(root, 1, barOffset(0) + 3, 1, 0xd1);
  cfgWrite(root, 1, barOffset(0) + 2, 1, 0x23);
  cfgWrite(root, 1, barOffset(0) + 1, 1, 0x45); // bits 8..11 are below 4 KiB: read-only zero
  assertEquals(cfgRead(root, 1, barOffset(0), 4), 0xd1234000);
  assertEquals(cfgRead(root, 1, barOffset(0) + 2, 2), 0xd123);
});

Deno.test("reset restores power-on BARs and Command, calls the reset hook, re-activates", () => {
  const { root, mmio, probe } = rig(true);
  const before = root.assignments();
  cfgWrite(root, 1, CFG.COMMAND, 2, 0);
  cfgWrite(root, 1, barOffset(0), 4, 0xd000_0000);
  cfgWrite(root, 1, CFG.COMMAND, 2, COMMAND.MEMORY | COMMAND.BUS_MASTER);
  root.reset();
  assertEquals(root.assignments(), before);
  assertEquals(cfgRead(root, 1, CFG.COMMAND, 2), COMMAND.IO | COMMAND.MEMORY);
  assertEquals(probe.resets, 1);
  assertEquals(mmio.find(0xd000_0000n), undefined);
  assertEquals(busRead(mmio, before[0].address), 0x42424242);
  assertEquals(probe.violations, []);
});
