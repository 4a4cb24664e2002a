import { CFG, COMMAND, STATUS } from "../../pci/config_regs.ts";
import { HOST_BRIDGE_DEVICE_ID, HOST_BRIDGE_VENDOR_ID } from "../../pci/host_bridge.ts";
import {
  assertEquals,
  assertMatch,
  cfgRead,
  cfgWrite,
  makeRig,
  probeDevice,
} from "./pci_harness.ts";
import { definePciDevice } from "../../devices/pci_device.ts";

function rigWithProbe() {
  const rig = makeRig();
  const { def, probe } = probeDevice({
    vendorId: 0x1af4,
    deviceId: 0x1042,
    bars: [{ index: 0, kind: "mem32", size: 0x1000 }, { index: 1, kind: "io", size: 0x20 }],
    capabilities: [
      { id: 0x09, size: 8, body: [6, 1, 2, 3], writable: [0, 0, 0xff, 0x0f] },
      { id: 0x05, size: 6 },
    ],
  });
  const fn = rig.root.addDevice(def, { slot: 3 });
  return { ...rig, fn, probe };
}

Deno.test("host bridge at 00:00.0 identifies as a host bridge", () => {
  const { root } = makeRig();
  assertEquals(cfgRead(root, 0, CFG.VENDOR_ID, 2), HOST_BRIDGE_VENDOR_ID);
  assertEquals(cfgRead(root, 0, CFG.DEVICE_ID, 2), HOST_BRIDGE_DEVICE_ID);
  assertEquals(cfgRead(root, 0, 0x08, 4) >>> 8, 0x060000);
  assertEquals(cfgRead(root, 0, CFG.HEADER_TYPE, 1), 0);
  assertEquals(cfgRead(root, 0, CFG.INTERRUPT_PIN, 1), 0);
});

Deno.test("absent devices, functions and buses read all-ones and drop writes", () => {
  const { root } = rigWithProbe();
  assertEquals(cfgRead(root, 7, 0, 4), 0xffffffff);
  const data = new Uint8Array(4);
  root.configRead(0, 3, 1, 0, data);
  assertEquals([...data], [0xff, 0xff, 0xff, 0xff]);
  root.configRead(1, 3, 0, 0, data);
  assertEquals([...data], [0xff, 0xff, 0xff, 0xff]);
  root.configWrite(0, 7, 0, CFG.COMMAND, new Uint8Array([3, 0]));
  assertEquals(cfgRead(root, 7, CFG.COMMAND, 2), 0xffff);
});

Deno.test("identity, class, revision, subsystem and header type are read-only", () => {
  const { root } = rigWithProbe();
  const table: [number, 1 | 2 | 4, number][] = [
    [CFG.VENDOR_ID, 2, 0x1af4],
    [CFG.DEVICE_ID, 2, 0x1042],
    [CFG.REVISION, 1, 0],
    [CFG.PROG_IF, 1, 0],
    [CFG.SUBCLASS, 1, 0],
    [CFG.CLASS, 1, 0xff],
    [CFG.HEADER_TYPE, 1, 0],
    [CFG.BIST, 1, 0],
    [CFG.SUBSYSTEM_VENDOR_ID, 2, 0],
    [CFG.ROM_ADDRESS, 4, 0],
    [CFG.CARDBUS_CIS, 4, 0],
    [CFG.INTERRUPT_PIN, 1, 1],
    [CFG.CAPABILITY_POINTER, 1, 0x40],
  ];
  for (const [offset, width, expect] of table) {
    assertEquals(cfgRead(root, 3, offset, width), expect, `before write @${offset}`);
    cfgWrite(root, 3, offset, width, 0xffffffff >>> (32 - 8 * width));
    assertEquals(cfgRead(root, 3, offset, width), expect, `after write @${offset}`);
    cfgWrite(root, 3, offset, width, 0);
    assertEquals(cfgRead(root, 3, offset, width), expect, `after zero write @${offset}`);
  }
});

Deno.test("Command keeps only IO, MEM, bus master, parity, SERR and INTx-disable", () => {
  const { root } = rigWithProbe();
  cfgWrite(root, 3, CFG.COMMAND, 2, 0xffff);
  assertEquals(cfgRead(root, 3, CFG.COMMAND, 2), 0x0547);
  cfgWrite(root, 3, CFG.COMMAND, 2, 0);
  assertEquals(cfgRead(root, 3, CFG.COMMAND, 2), 0);
  cfgWrite(root, 3, CFG.COMMAND + 1, 1, 0xff);
  assertEquals(cfgRead(root, 3, CFG.COMMAND, 2), 0x0500);
});

Deno.test("Status error bits are write-1-to-clear and a Command write does not clobber Status", () => {
  const { root, fn } = rigWithProbe();
  const base = STATUS.CAPABILITY_LIST;
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2), base);
  fn.signalStatus(STATUS.RECEIVED_MASTER_ABORT | STATUS.DETECTED_PARITY_ERROR);
  const set = base | STATUS.RECEIVED_MASTER_ABORT | STATUS.DETECTED_PARITY_ERROR;
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2), set);
  // A dword write to Command with zeros in the Status half changes nothing there.
  cfgWrite(root, 3, CFG.COMMAND, 4, COMMAND.BUS_MASTER);
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2), set);
  assertEquals(cfgRead(root, 3, CFG.COMMAND, 2), COMMAND.BUS_MASTER);
  // Writing 1 to the read-only bits (capability list, interrupt) does not set or clear them.
  cfgWrite(root, 3, CFG.STATUS, 2, STATUS.CAPABILITY_LIST | STATUS.INTERRUPT);
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2), set);
  // Clear one error bit with a 1-byte write to the high byte.
  cfgWrite(root, 3, CFG.STATUS + 1, 1, STATUS.RECEIVED_MASTER_ABORT >> 8);
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2), base | STATUS.DETECTED_PARITY_ERROR);
  cfgWrite(root, 3, CFG.STATUS, 2, 0xffff);
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2), base);
});

Deno.test("interrupt line is writable, pin is not; the core puts its chosen GSI in the line", () => {
  const { root, fn } = rigWithProbe();
  assertEquals(fn.gsi, 16);
  assertEquals(cfgRead(root, 3, CFG.INTERRUPT_LINE, 1), 16);
  cfgWrite(root, 3, CFG.INTERRUPT_LINE, 2, 0xffff);
  assertEquals(cfgRead(root, 3, CFG.INTERRUPT_LINE, 1), 0xff);
  assertEquals(cfgRead(root, 3, CFG.INTERRUPT_PIN, 1), 1);
  cfgWrite(root, 3, CFG.CACHE_LINE_SIZE, 1, 0x10);
  assertEquals(cfgRead(root, 3, CFG.CACHE_LINE_SIZE, 1), 0x10);
});

Deno.test("capability list: status bit 4, pointer 0x34, chained entries with masks", () => {
  const { root } = rigWithProbe();
  assertEquals(cfgRead(root, 3, CFG.STATUS, 2) & STATUS.CAPABILITY_LIST, STATUS.CAPABILITY_LIST);
  assertEquals(cfgRead(root, 3, CFG.CAPABILITY_POINTER, 1), 0x40);
  assertEquals(cfgRead(root, 3, 0x40, 2), 0x4809); // id 0x09, next 0x48
  assertEquals(cfgRead(root, 3, 0x42, 4), 0x03020106);
  assertEquals(cfgRead(root, 3, 0x48, 2), 0x0005); // id 0x05, end of list
  cfgWrite(root, 3, 0x40, 4, 0xffffffff); // header is read-only
  assertEquals(cfgRead(root, 3, 0x40, 2), 0x4809);
  cfgWrite(root, 3, 0x44, 2, 0xabcd); // masks [0xff, 0x0f] on bytes 4..5
  assertEquals(cfgRead(root, 3, 0x44, 2), 0x0bcd); // byte 5 keeps its read-only high nibble (0)
  cfgWrite(root, 3, 0x42, 2, 0xffff); // bytes 2..3 read-only
  assertEquals(cfgRead(root, 3, 0x42, 2), 0x0106);
});

Deno.test("a device without capabilities has status bit 4 clear and pointer 0", () => {
  const { root } = makeRig();
  const { def } = probeDevice({ bars: [] });
  root.addDevice(def, { slot: 1 });
  assertEquals(cfgRead(root, 1, CFG.STATUS, 2) & STATUS.CAPABILITY_LIST, 0);
  assertEquals(cfgRead(root, 1, CFG.CAPABILITY_POINTER, 1), 0);
});

Deno.test("capability hooks see offsets within the capability; device hooks see config offsets", () => {
  const { root, log } = makeRig();
  const seen: string[] = [];
  const def = definePciDevice({
    name: "hooks",
    vendorId: 0x1af4,
    deviceId: 0x1050,
    classCode: 0xff0000,
    bars: [],
    capabilities: [{ id: 0x11, size: 12, writable: [0x00, 0xc0] }],
    create: () => ({
      capabilities: {
        0: {
          read(offset, data) {
            seen.push(`cap read ${offset}/${data.length}`);
            if (offset === 8) data.set([0x78, 0x56, 0x34, 0x12]);
          },
          write(offset, data) {
            seen.push(`cap write ${offset}=${[...data]}`);
          },
        },
      },
      config: {
        read(offset, data) {
          if (offset === 0x80) data.set([1, 2, 3, 4]);
          if (offset === 0x90) throw new Error("broken register");
        },
        write(offset) {
          if (offset === 0x90) throw new Error("broken register");
        },
      },
    }),
  });
  root.addDevice(def, { slot: 2 });
  assertEquals(cfgRead(root, 2, 0x48, 4), 0x12345678);
  cfgWrite(root, 2, 0x42, 2, 0xffff);
  assertEquals(cfgRead(root, 2, 0x42, 2), 0xc000); // only the writable mask bits stuck
  assertEquals(seen, ["cap read 8/4", "cap write 2=255,255", "cap read 2/2"]);
  assertEquals(cfgRead(root, 2, 0x80, 4), 0x04030201);
  // A failing config hook reads all-ones and its write is dropped, logged with the device tag.
  assertEquals(cfgRead(root, 2, 0x90, 4), 0xffffffff);
  cfgWrite(root, 2, 0x90, 4, 1);
  const warnings = log.messages("warn");
  assertMatch(warnings[0], /^\[1af4:1050\] config read at 0x90 failed: broken register$/);
  assertMatch(warnings[1], /^\[1af4:1050\] config write at 0x90 failed: broken register$/);
});

Deno.test("INTx: level shows in Status bit 3, INTx-disable masks it, shared GSIs are ORed", () => {
  const rig = makeRig({ intxGsis: [20] });
  let irqA = (_: boolean) => {};
  let irqB = (_: boolean) => {};
  const mk = (id: number, set: (f: (l: boolean) => void) => void) =>
    definePciDevice({
      name: `irq${id}`,
      vendorId: 0x1234,
      deviceId: id,
      classCode: 0xff0000,
      bars: [],
      create: ({ irq }) => {
        set((l) => irq.set(l));
        return {};
      },
    });
  rig.root.addDevice(mk(1, (f) => (irqA = f)), { slot: 1 });
  rig.root.addDevice(mk(2, (f) => (irqB = f)), { slot: 2 });
  const line = () => rig.lines.get(20)?.level ?? false;
  irqA(true);
  assertEquals(line(), true);
  assertEquals(cfgRead(rig.root, 1, CFG.STATUS, 2) & STATUS.INTERRUPT, STATUS.INTERRUPT);
  irqB(true);
  irqA(false);
  assertEquals(line(), true, "B still asserts the shared line");
  assertEquals(cfgRead(rig.root, 1, CFG.STATUS, 2) & STATUS.INTERRUPT, 0);
  cfgWrite(rig.root, 2, CFG.COMMAND + 1, 1, COMMAND.INTX_DISABLE >> 8);
  assertEquals(line(), false, "INTx-disable masks B");
  assertEquals(cfgRead(rig.root, 2, CFG.STATUS, 2) & STATUS.INTERRUPT, STATUS.INTERRUPT);
  cfgWrite(rig.root, 2, CFG.COMMAND, 2, 0);
  assertEquals(line(), true);
});
