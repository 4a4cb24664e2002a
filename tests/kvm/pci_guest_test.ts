/**
 * The PCI core on KVM: a real-mode guest sizes, toggles and reassigns BARs of
 * two register-file devices through 0xCF8/0xCFC and reads through MMIO which
 * device answers at each step.
 */
import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { Bus } from "../../devices/bus.ts";
import { runBareGuest } from "../../kvm/bare_guest.ts";
import { PciRoot } from "../../pci/pci_root.ts";
import registerFile from "../../examples/register_file.ts";
import { assemble } from "./assemble.ts";

Deno.test("a guest sizes, toggles and moves BARs through 0xCF8/0xCFC; the right device answers each time", async () => {
  const code = await assemble(new URL("./guests/pci_reassign.asm", import.meta.url));
  const pio = new Bus("pio"), mmio = new Bus("mmio");
  const reports: number[] = [];
  pio.register(0xe9n, 1n, {
    read: () => {},
    write: (_o, d) =>
      reports.push(new DataView(d.buffer, d.byteOffset, d.length).getUint32(0, true)),
  }, "report port");
  let root: PciRoot | undefined;
  const { exit } = await runBareGuest({
    code,
    pio,
    mmio,
    prepare: (memory) => {
      // BARs below 1 MiB so that real-mode code reaches them.
      root = new PciRoot({
        pio,
        mmio,
        memory,
        windows: { mmio32: { base: 0xd0000, size: 0x20000 } },
      });
      root.addDevice(registerFile, { slot: 1, options: { id: "0xaaaa0001" } });
      root.addDevice(registerFile, { slot: 2, options: { id: "0xbbbb0002" } });
    },
  });
  strictEqual(exit.kind, "hlt", exit.detail);
  const bars = root!.assignments().filter((a) => a.bar === 0 && a.name === "register-file");
  const [a, b] = bars.map((x) => Number(x.address));
  const idA = 0xaaaa0001, idB = 0xbbbb0002, none = 0xffffffff;
  deepStrictEqual(
    reports.map((v) => v.toString(16)),
    [
      0x00f01b36, // A vendor:device
      0x00f01b36, // B vendor:device
      a, // A's BAR as assigned
      0xfffff000, // sizing: ~(4 KiB - 1), mem32 type bits 0
      0xfffff000, // masked probe
      idA,
      idB,
      none, // decode off
      idA, // decode on
      idB, // B moved over A
      none, // B's old place
      idA, // B moved back: A answers again
      idB,
    ].map((v) => v.toString(16)),
  );
  strictEqual(bars.every((x) => x.active), true);
  strictEqual(Number(bars[1].activeAddress), b);
});
