/**
 * Host services the PCI core gives plugins beyond register access: the close
 * hook run when the machine ends (once per device, throws logged), and the
 * host console input a plugin can take (virtio-console with `input=on`).
 */
import assert from "node:assert/strict";
import { definePciDevice } from "../../devices/pci_device.ts";
import virtioConsole from "../../devices/virtio/virtio_console_plugin.ts";
import { makeRig } from "./pci_harness.ts";

Deno.test("pci: close runs every device's close hook once and logs one that throws", () => {
  let closed = 0;
  const good = definePciDevice({
    name: "good",
    vendorId: 0x1234,
    deviceId: 1,
    classCode: 0xff0000,
    bars: [],
    create: () => ({ close: () => void closed++ }),
  });
  const bad = definePciDevice({
    name: "bad",
    vendorId: 0x1234,
    deviceId: 2,
    classCode: 0xff0000,
    bars: [],
    create: () => ({
      close: () => {
        throw new Error("cannot let go");
      },
    }),
  });
  const rig = makeRig();
  rig.root.addDevice(bad, { slot: 3 });
  rig.root.addDevice(good, { slot: 4 });
  rig.root.close();
  rig.root.close();
  assert.equal(closed, 1, "good closed once, after bad threw");
  assert.ok(
    rig.log.records.some((r) => /\[1234:0002\].*close failed.*cannot let go/.test(r.message)),
  );
});

Deno.test("virtio-console: input=on takes the host console input, off leaves it alone", () => {
  const sinks: ((b: Uint8Array) => number)[] = [];
  const hostConsole = {
    write() {},
    takeInput(sink: (b: Uint8Array) => number) {
      sinks.push(sink);
      return () => {};
    },
  };
  makeRig({ hostConsole }).root.addDevice(virtioConsole, { slot: 3 });
  assert.equal(sinks.length, 0, "input defaults to off");
  makeRig({ hostConsole }).root.addDevice(virtioConsole, { slot: 3, options: { input: "on" } });
  assert.equal(sinks.length, 1);
  assert.equal(sinks[0](new TextEncoder().encode("ls\n")), 3, "input is queued for hvc0");
  assert.equal(sinks[0](new Uint8Array(70000)), 65536 - 3, "bounded: the rest is offered again");
});
