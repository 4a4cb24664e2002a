/**
 * The platform side of the plugin API with a fake platform: doorbells
 * (ioeventfds) follow their BAR through moves, decode toggles and resets, are
 * validated, fall back to trapping when the host refuses them, and contain
 * plugin faults; MSIs need Bus Master Enable; the host console reaches plugins.
 */
import { strictEqual, throws } from "node:assert/strict";
import {
  definePciDevice,
  type PciDeviceContext,
  type PciIoeventfd,
} from "../../devices/pci_device.ts";
import { assertEquals, barOffset, cfgWrite, makeRig } from "./pci_harness.ts";
import { FakePciPlatform } from "./pci_fake_platform.ts";

interface Captured {
  ctx?: PciDeviceContext<unknown>;
  doors: PciIoeventfd[];
  kicks: number[];
  trapped: number[];
}

function doorbellDevice(captured: Captured, throwOnKick = false) {
  return definePciDevice({
    name: "doorbells",
    vendorId: 0x1234,
    deviceId: 0x5678,
    classCode: 0xff0000,
    bars: [
      { index: 0, kind: "mem32", size: 0x1000 },
      { index: 2, kind: "mem64", size: 0x4000 },
      { index: 4, kind: "io", size: 0x20 },
    ],
    create(ctx) {
      captured.ctx = ctx;
      captured.doors.push(ctx.ioeventfd(2, 0x3000, 2, () => {
        if (throwOnKick) throw new Error("kick failed");
        captured.kicks.push(0x3000);
      }));
      captured.doors.push(ctx.ioeventfd(4, 0x10, 1, () => captured.kicks.push(0x10)));
      return {
        bars: {
          2: { read: (_o, d) => d.fill(0), write: (o) => captured.trapped.push(o) },
        },
      };
    },
  });
}

function setup(throwOnKick = false) {
  const platform = new FakePciPlatform();
  const rig = makeRig({ platform });
  const captured: Captured = { doors: [], kicks: [], trapped: [] };
  const fn = rig.root.addDevice(doorbellDevice(captured, throwOnKick), { slot: 3 });
  return { platform, rig, captured, fn };
}

const bar2 = (s: ReturnType<typeof setup>) => s.fn.bars.find((b) => b.index === 2)!;

Deno.test("doorbells are registered at BAR base + offset when the device is plugged with decode on", () => {
  const s = setup();
  const mem = bar2(s).active!.address + 0x3000n;
  const io = s.fn.bars.find((b) => b.index === 4)!.active!.address + 0x10n;
  assertEquals(
    s.platform.registrations(),
    [`io:${io.toString(16)}/1`, `mem:${mem.toString(16)}/2`].sort(),
  );
  strictEqual(s.captured.doors[0].address, mem);
  strictEqual(s.platform.ring("mem", mem), true);
  strictEqual(s.platform.ring("io", io), true);
  assertEquals(s.captured.kicks, [0x3000, 0x10]);
});

Deno.test("a doorbell moves with its BAR and follows memory decode off and on", () => {
  const s = setup();
  const old = bar2(s).active!.address;
  const target = old + 0x10_0000n;
  cfgWrite(s.rig.root, 3, barOffset(2), 4, Number(target & 0xffff_ffffn));
  cfgWrite(s.rig.root, 3, barOffset(3), 4, Number(target >> 32n));
  strictEqual(bar2(s).active!.address, target);
  strictEqual(s.captured.doors[0].address, target + 0x3000n);
  strictEqual(s.platform.ring("mem", old + 0x3000n), false, "nothing at the old address");
  strictEqual(s.platform.ring("mem", target + 0x3000n), true);

  cfgWrite(s.rig.root, 3, 0x04, 2, 0x1); // memory decode off, I/O on
  strictEqual(s.captured.doors[0].address, null);
  strictEqual(s.platform.registrations().filter((r) => r.startsWith("mem")).length, 0);
  strictEqual(s.captured.doors[1].address !== null, true, "the I/O doorbell stays");
  cfgWrite(s.rig.root, 3, 0x04, 2, 0x3);
  strictEqual(s.captured.doors[0].address, target + 0x3000n);
  assertEquals(s.platform.violations, []);
});

Deno.test("a PCI reset unregisters doorbells and registers them again at the power-on address", () => {
  const s = setup();
  const initial = bar2(s).active!.address;
  const moved = initial + 0x10_0000n;
  cfgWrite(s.rig.root, 3, barOffset(2), 4, Number(moved & 0xffff_ffffn));
  cfgWrite(s.rig.root, 3, barOffset(3), 4, Number(moved >> 32n));
  s.rig.root.reset();
  strictEqual(s.captured.doors[0].address, initial + 0x3000n);
  strictEqual(s.platform.live.size, 2);
  assertEquals(s.platform.violations, []);
});

Deno.test("remove() stops serving a doorbell for good", () => {
  const s = setup();
  s.captured.doors[0].remove();
  s.captured.doors[0].remove();
  strictEqual(s.captured.doors[0].address, null);
  strictEqual(s.platform.live.size, 1);
  cfgWrite(s.rig.root, 3, 0x04, 2, 0x0);
  cfgWrite(s.rig.root, 3, 0x04, 2, 0x3);
  strictEqual(s.platform.live.size, 1, "not re-registered on activation");
  strictEqual(s.fn.doorbells().length, 1);
});

Deno.test("a refused doorbell leaves writes trapping to the BAR handler, with a warning", () => {
  const platform = new FakePciPlatform();
  platform.refuse = () => true;
  const rig = makeRig({ platform });
  const captured: Captured = { doors: [], kicks: [], trapped: [] };
  const fn = rig.root.addDevice(doorbellDevice(captured), { slot: 3 });
  strictEqual(captured.doors[0].address, null);
  const base = fn.bars.find((b) => b.index === 2)!.active!.address;
  rig.mmio.write(base + 0x3000n, new Uint8Array(2));
  assertEquals(captured.trapped, [0x3000]);
  strictEqual(
    rig.log.records.some((r) => r.level === "warn" && /ioeventfd .* refused/.test(r.message)),
    true,
  );
});

Deno.test("ioeventfd arguments are validated", () => {
  const s = setup();
  const ctx = s.captured.ctx!;
  throws(() => ctx.ioeventfd(1, 0, 4, () => {}), /no BAR 1/);
  throws(() => ctx.ioeventfd(3, 0, 4, () => {}), /no BAR 3/, "the upper half of a mem64 BAR");
  throws(() => ctx.ioeventfd(0, 0xffe, 4, () => {}), /outside/);
  throws(() => ctx.ioeventfd(4, 0, 0, () => {}), /memory BAR/);
  throws(() => ctx.ioeventfd(0, 0, 3 as 2, () => {}), /length 3/);
});

Deno.test("a throwing doorbell callback is a contained plugin fault", () => {
  const s = setup(true);
  const at = s.captured.doors[0].address!;
  s.platform.ring("mem", at);
  strictEqual(s.fn.faults, 1);
  strictEqual(
    s.rig.log.records.some((r) => /doorbell at \+0x3000 failed: kick failed/.test(r.message)),
    true,
  );
});

Deno.test("MSIs reach the platform only while Bus Master Enable is set", () => {
  const s = setup();
  const ctx = s.captured.ctx!;
  strictEqual(ctx.msi.send(0xfee0_0000n, 0x41), false);
  assertEquals(s.platform.msis, []);
  strictEqual(s.fn.msiCounts.dropped, 1);
  cfgWrite(s.rig.root, 3, 0x04, 2, 0x7);
  strictEqual(ctx.msi.send(0xfee0_1000n, 0x42), true);
  assertEquals(s.platform.msis, [{ address: 0xfee0_1000n, data: 0x42 }]);
  strictEqual(s.fn.msiCounts.sent, 1);
});

Deno.test("without a platform, MSIs are dropped and doorbells trap", () => {
  const rig = makeRig();
  const captured: Captured = { doors: [], kicks: [], trapped: [] };
  rig.root.addDevice(doorbellDevice(captured), { slot: 3 });
  cfgWrite(rig.root, 3, 0x04, 2, 0x7);
  strictEqual(captured.ctx!.msi.send(0xfee0_0000n, 1), false);
  strictEqual(captured.doors[0].address, null);
});

Deno.test("plugins write to the host console the core was given", () => {
  const out: string[] = [];
  const rig = makeRig({ hostConsole: { write: (b) => out.push(new TextDecoder().decode(b)) } });
  const captured: Captured = { doors: [], kicks: [], trapped: [] };
  rig.root.addDevice(doorbellDevice(captured), { slot: 3 });
  captured.ctx!.hostConsole.write(new TextEncoder().encode("hi"));
  assertEquals(out, ["hi"]);
});
