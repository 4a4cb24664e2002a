/**
 * The copy-engine example device driven by a real Linux userspace program:
 * the stock Debian kernel binds it to uio_pci_generic, and
 * tests/kvm/guests/copy_engine_user.c (static, in the test initramfs) makes
 * the device DMA between its locked pages, waits for INTx on /dev/uioN, then
 * aims MSI-X at an unused guest vector and watches the guest kernel report
 * each delivery. The host side checks the device's counters and the MSIs the
 * PCI core sent.
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { bootShell, waitExit } from "./guest.ts";
import { COPY_ENGINE_USER_BIN, kvmTestAssets } from "./test_assets.ts";
import { COPY_ENGINE_PCI_ID, COPY_REG } from "../../examples/copy_engine.ts";

const hex4 = (v: number) => v.toString(16).padStart(4, "0");

/** The program's progress lines, one per step (see copy_engine_user.c). */
const STEPS = [
  "INTx copy of 4096 bytes ok",
  "failed with STATUS.ERROR and INTx",
  "MSI-X vector 0 held pending while masked, delivered on unmask",
  "MSI-X vector 0 on completion and vector 1 on error delivered",
  "completed 3, errors 2",
];

Deno.test("copy engine: a Linux userspace program copies by DMA and gets INTx and MSI-X", async () => {
  const assets = await kvmTestAssets();
  const { machine, console, log } = await bootShell({
    initrd: assets.copyEngineInitrd,
    devices: [{ plugin: "copy-engine" }],
  });
  try {
    const fn = machine.pci.functions.find((f) => f.def.name === "copy-engine");
    ok(fn, "copy engine plugged");
    const sysfs = `/sys/bus/pci/devices/0000:${fn.bdf}`;

    // Bind it to the generic PCI UIO driver: no device-specific kernel code.
    strictEqual((await console.run("dvmm-load-modules")).status, 0);
    const { vendorId, deviceId } = COPY_ENGINE_PCI_ID;
    const bind = await console.run(
      `echo ${hex4(vendorId)} ${hex4(deviceId)} > /sys/bus/pci/drivers/uio_pci_generic/new_id && ` +
        `basename $(readlink ${sysfs}/driver) && ls ${sysfs}/uio`,
    );
    strictEqual(bind.status, 0, bind.output);
    match(bind.output, /^uio_pci_generic\nuio\d+\n$/);

    // Its output goes through a file: the guest kernel's reports of the MSI-X deliveries reach
    // the console meanwhile and would otherwise interleave with it.
    const run = await console.run(
      `${COPY_ENGINE_USER_BIN} >/tmp/out 2>&1; r=$?; cat /tmp/out; (exit $r)`,
      60_000,
    );
    const lines = run.output.split("\n").filter((l) => l.startsWith("copy-engine-user:"));
    strictEqual(run.status, 0, run.output);
    deepStrictEqual(lines.at(-1), "copy-engine-user: PASS");
    for (const step of STEPS) ok(lines.some((l) => l.includes(step)), step);
    // The guest kernel saw vector 0xdc (completion) and 0xdd (error) arrive at CPU 0.
    match(console.output, /__common_interrupt: 0\.220 No irq handler for vector/);
    match(console.output, /__common_interrupt: 0\.221 No irq handler for vector/);

    // Host side: the device did 3 copies (INTx, 2 with MSI-X) and failed 2 (bad source, bad destination).
    const bar = machine.pci.assignments().find((a) => a.bdf === fn.bdf && a.bar === 0)!;
    const reg = (r: number) => {
      const data = new Uint8Array(4);
      machine.pci.mmio.read(bar.activeAddress! + BigInt(r), data);
      return new DataView(data.buffer).getUint32(0, true);
    };
    strictEqual(bar.active, true);
    strictEqual(reg(COPY_REG.COMPLETED), 3);
    strictEqual(reg(COPY_REG.ERRORS), 2);
    strictEqual(reg(COPY_REG.BYTES_LO), 3 * 4096);
    // MSI-X: the pending vector 0 on unmask, vector 0 on the next copy, vector 1 on the error.
    deepStrictEqual(fn.msiCounts, { sent: 3, dropped: 0 });
    strictEqual(fn.faults, 0);
    const warnings = log.messages("warn").filter((m) => m.includes("outside guest RAM"));
    strictEqual(warnings.length, 2, warnings.join("\n"));

    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  } finally {
    if (machine.state !== "stopped") await machine.stop();
  }
});
