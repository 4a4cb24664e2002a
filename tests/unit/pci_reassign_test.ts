import { CFG, COMMAND } from "../../pci/config_regs.ts";
import { MAX_LOGGED_FAULTS } from "../../pci/pci_function.ts";
import {
  assertEquals,
  assertMatch,
  barOffset,
  busRead,
  cfgRead,
  cfgWrite,
  makeRig,
  type Probe,
  probeDevice,
} from "./pci_harness.ts";

/** Devices A (slot 1: BAR0, BAR1 4 KiB), B (slot 2: BAR0 8 KiB) and C (slot 3: BAR0 4 KiB). */
function threeDevices() {
  const rig = makeRig();
  const a = probeDevice({
    deviceId: 0x0a00,
    bars: [{ index: 0, kind: "mem32", size: 0x1000 }, { index: 1, kind: "mem32", size: 0x1000 }],
  });
  const b = probeDevice({ deviceId: 0x0b00, bars: [{ index: 0, kind: "mem32", size: 0x2000 }] });
  const c = probeDevice({ deviceId: 0x0c00, bars: [{ index: 0, kind: "mem32", size: 0x1000 }] });
  rig.root.addDevice(a.def, { slot: 1 });
  rig.root.addDevice(b.def, { slot: 2 });
  rig.root.addDevice(c.def, { slot: 3 });
  const addr = (slot: number, bar: number) =>
    rig.root.assignments().find((x) => x.bdf === `00:0${slot}.0` && x.bar === bar)!;
  const A0 = addr(1, 0).address, A1 = addr(1, 1).address;
  const B0 = addr(2, 0).address, C0 = addr(3, 0).address;
  for (const p of [a.probe, b.probe, c.probe]) p.calls.length = 0;
  return { ...rig, a: a.probe, b: b.probe, c: c.probe, A0, A1, B0, C0, addr };
}

const calls = (p: Probe) =>
  p.calls.map((c) => `${c.hook}${c.ok ? "" : "!"} ${c.address.toString(16)}`);
const FREE = 0xd000_0000n;

Deno.test("moving a BAR onto another device's BAR hides it; moving away brings it back", () => {
  const t = threeDevices();
  assertEquals(busRead(t.mmio, t.B0), 0x00000000, "B0 answers 0x00 (0x0b00 + 0)");
  cfgWrite(t.root, 1, barOffset(0), 4, Number(t.B0));
  assertEquals(busRead(t.mmio, t.B0), 0x00000000 + 0, "A0 answers at B's address now");
  assertEquals(t.addr(2, 0).active, false);
  assertEquals(t.addr(1, 0).activeAddress, t.B0);
  assertEquals(busRead(t.mmio, t.A0), 0xffffffff, "nothing at A's old address");
  assertEquals(calls(t.a), [`deactivate ${t.A0.toString(16)}`, `activate ${t.B0.toString(16)}`]);
  assertEquals(calls(t.b), [`deactivate ${t.B0.toString(16)}`]);
  // Which device answers: the probe records accesses.
  t.a.accesses.length = t.b.accesses.length = 0;
  busRead(t.mmio, t.B0 + 0x10n);
  assertEquals([t.a.accesses.length, t.b.accesses.length], [1, 0]);
  // Away again: B must answer again through the bus.
  cfgWrite(t.root, 1, barOffset(0), 4, Number(FREE));
  assertEquals(t.addr(2, 0).active, true);
  busRead(t.mmio, t.B0 + 0x10n);
  assertEquals([t.a.accesses.length, t.b.accesses.length], [1, 1]);
  assertEquals(calls(t.b), [`deactivate ${t.B0.toString(16)}`, `activate ${t.B0.toString(16)}`]);
  assertEquals(t.addr(1, 0).activeAddress, FREE);
  for (const p of [t.a, t.b, t.c]) assertEquals(p.violations, []);
});

Deno.test("a move hides exactly what it overlaps, including a BAR of the same device", () => {
  const t = threeDevices();
  // Put C0 right after B0, then move A1 (4 KiB) over B's second page; only B is hidden.
  cfgWrite(t.root, 3, barOffset(0), 4, Number(t.B0 + 0x2000n));
  cfgWrite(t.root, 1, barOffset(1), 4, Number(t.B0 + 0x1000n));
  assertEquals([t.addr(2, 0).active, t.addr(3, 0).active], [false, true]);
  // Move A0 onto A1's new place: A1 (same device) is hidden.
  cfgWrite(t.root, 1, barOffset(0), 4, Number(t.B0 + 0x1000n));
  assertEquals([t.addr(1, 0).active, t.addr(1, 1).active], [true, false]);
  // Move A0 away: A1 comes back; B0 stays hidden under A1.
  cfgWrite(t.root, 1, barOffset(0), 4, Number(FREE));
  assertEquals([t.addr(1, 1).active, t.addr(2, 0).active], [true, false]);
  // Move A1 away: B0 comes back.
  cfgWrite(t.root, 1, barOffset(1), 4, Number(FREE + 0x1000n));
  assertEquals(t.addr(2, 0).active, true);
  for (const p of [t.a, t.b, t.c]) assertEquals(p.violations, []);
});

Deno.test("failure injection: each hook in a move, with the rollback checked", async (ctx) => {
  const cases: {
    name: string;
    inject: (t: ReturnType<typeof threeDevices>) => void;
    check: (t: ReturnType<typeof threeDevices>) => void;
  }[] = [
    {
      name: "moving BAR's deactivate fails: register keeps the old value, nothing moves",
      inject: (t) => (t.a.fail.deactivate = (bar) => bar === 0),
      check: (t) => {
        assertEquals(cfgRead(t.root, 1, barOffset(0), 4), Number(t.A0));
        assertEquals(t.addr(1, 0).activeAddress, t.A0);
        assertEquals(t.addr(2, 0).activeAddress, t.B0);
        assertEquals(calls(t.b), []);
        assertMatch(t.log.messages("warn")[0], /^\[1234:0a00\] BAR 0: deactivate failed at/);
      },
    },
    {
      name: "overlapped BAR's deactivate fails: moving BAR back at its old address, old value",
      inject: (t) => (t.b.fail.deactivate = () => true),
      check: (t) => {
        assertEquals(cfgRead(t.root, 1, barOffset(0), 4), Number(t.A0));
        assertEquals(t.addr(1, 0).activeAddress, t.A0);
        assertEquals(t.addr(2, 0).activeAddress, t.B0);
        assertEquals(calls(t.a), [
          `deactivate ${t.A0.toString(16)}`,
          `activate ${t.A0.toString(16)}`,
        ]);
        assertEquals(calls(t.b), [`deactivate! ${t.B0.toString(16)}`]);
        assertEquals(busRead(t.mmio, t.A0), 0x00000000);
        assertMatch(t.log.messages("warn").join("\n"), /\[1234:0a00\] BAR 0: move to .* refused/);
      },
    },
    {
      name: "moving BAR's activate fails: the hidden BAR is re-activated, the new value stays",
      inject: (t) => (t.a.fail.activate = (bar) => bar === 0),
      check: (t) => {
        assertEquals(cfgRead(t.root, 1, barOffset(0), 4), Number(t.B0));
        assertEquals(t.addr(1, 0).active, false);
        assertEquals(t.addr(2, 0).activeAddress, t.B0);
        assertEquals(calls(t.b), [
          `deactivate ${t.B0.toString(16)}`,
          `activate ${t.B0.toString(16)}`,
        ]);
        assertEquals(busRead(t.mmio, t.A0), 0xffffffff);
        assertMatch(
          t.log.messages("warn")[0],
          /^\[1234:0a00\] BAR 0: activate failed at 0x[0-9a-f]+: injected activate failure/,
        );
      },
    },
  ];
  for (const c of cases) {
    await ctx.step(c.name, () => {
      const t = threeDevices();
      c.inject(t);
      cfgWrite(t.root, 1, barOffset(0), 4, Number(t.B0));
      c.check(t);
      // Registered ranges and active flags agree, nothing overlaps.
      const pci = t.mmio.ranges.filter((r) => r.name.includes("BAR"));
      assertEquals(pci.length, t.root.assignments().filter((x) => x.active).length);
      for (const p of [t.a, t.b, t.c]) assertEquals(p.violations, []);
    });
  }
});

Deno.test("re-activating the BAR a move uncovers can fail: it stays off, the move still happens", () => {
  const t = threeDevices();
  cfgWrite(t.root, 1, barOffset(0), 4, Number(t.B0));
  t.b.fail.activate = () => true;
  cfgWrite(t.root, 1, barOffset(0), 4, Number(FREE));
  assertEquals(t.addr(1, 0).activeAddress, FREE);
  assertEquals(t.addr(2, 0).active, false);
  assertMatch(t.log.messages("warn")[0], /^\[1234:0b00\] BAR 0: activate failed/);
  // Once B's plugin recovers, a decode toggle brings it back.
  t.b.fail.activate = undefined;
  cfgWrite(t.root, 2, CFG.COMMAND, 2, 0);
  cfgWrite(t.root, 2, CFG.COMMAND, 2, COMMAND.MEMORY);
  assertEquals(t.addr(2, 0).activeAddress, t.B0);
});

Deno.test("a move onto a non-PCI range is a failed activation; moving on recovers", () => {
  const t = threeDevices();
  t.mmio.register(FREE, 0x1000n, { read: (_, d) => d.fill(0x77), write() {} }, "rtc-ish");
  cfgWrite(t.root, 1, barOffset(0), 4, Number(FREE));
  assertEquals(t.addr(1, 0).active, false);
  assertEquals(busRead(t.mmio, FREE), 0x77777777, "the platform device is untouched");
  assertMatch(t.log.messages("warn")[0], /BAR 0: activate failed: mmio: .* overlaps rtc-ish/);
  assertEquals(calls(t.a), [`deactivate ${t.A0.toString(16)}`]);
  cfgWrite(t.root, 1, barOffset(0), 4, Number(FREE + 0x1000n));
  assertEquals(t.addr(1, 0).activeAddress, FREE + 0x1000n);
});

Deno.test("decode toggles with failing hooks: activate retried, failed deactivate stays mapped", () => {
  const t = threeDevices();
  t.a.fail.deactivate = (bar) => bar === 1;
  cfgWrite(t.root, 1, CFG.COMMAND, 1, 0);
  assertEquals([t.addr(1, 0).active, t.addr(1, 1).active], [false, true]);
  assertEquals(busRead(t.mmio, t.A1), 0x01010101, "BAR 1 still mapped and answering");
  t.a.fail.deactivate = undefined;
  t.a.fail.activate = (bar) => bar === 0;
  cfgWrite(t.root, 1, CFG.COMMAND, 1, COMMAND.MEMORY);
  assertEquals([t.addr(1, 0).active, t.addr(1, 1).active], [false, true]);
  t.a.fail.activate = undefined;
  cfgWrite(t.root, 1, CFG.COMMAND, 1, 0);
  cfgWrite(t.root, 1, CFG.COMMAND, 1, COMMAND.MEMORY);
  assertEquals([t.addr(1, 0).active, t.addr(1, 1).active], [true, true]);
  assertEquals(t.a.violations, []);
  assertEquals(calls(t.a), [
    `deactivate ${t.A0.toString(16)}`,
    `deactivate! ${t.A1.toString(16)}`,
    `activate! ${t.A0.toString(16)}`,
    `deactivate ${t.A1.toString(16)}`,
    `activate ${t.A0.toString(16)}`,
    `activate ${t.A1.toString(16)}`,
  ]);
});

Deno.test("a failed deactivate during decode-off is healed when decode comes back at a new address", () => {
  const t = threeDevices();
  t.a.fail.deactivate = (bar) => bar === 0;
  cfgWrite(t.root, 1, CFG.COMMAND, 1, 0);
  t.a.fail.deactivate = undefined;
  cfgWrite(t.root, 1, barOffset(0), 4, Number(FREE)); // decode off: only stored
  assertEquals(t.addr(1, 0).activeAddress, t.A0);
  cfgWrite(t.root, 1, CFG.COMMAND, 1, COMMAND.MEMORY);
  assertEquals(t.addr(1, 0).activeAddress, FREE);
  assertEquals(busRead(t.mmio, t.A0), 0xffffffff);
  assertEquals(t.a.violations, []);
});

Deno.test("failing access handlers read all-ones, drop writes, log with the tag, then go quiet", () => {
  const t = threeDevices();
  t.a.failAccess = true;
  assertEquals(busRead(t.mmio, t.A0), 0xffffffff);
  t.mmio.write(t.A0, new Uint8Array(4));
  for (let i = 0; i < 40; i++) busRead(t.mmio, t.A0 + 4n);
  const warns = t.log.messages("warn");
  assertMatch(warns[0], /^\[1234:0a00\] BAR 0: read at \+0x0 failed: probe access failure$/);
  assertMatch(warns[1], /^\[1234:0a00\] BAR 0: write at \+0x0 failed/);
  assertEquals(warns.length, MAX_LOGGED_FAULTS + 1);
  assertEquals(t.root.device(1)!.faults, 42);
  assertEquals(busRead(t.mmio, t.B0), 0x00000000, "other devices are unaffected");
});
