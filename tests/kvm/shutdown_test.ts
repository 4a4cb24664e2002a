/**
 * Graceful shutdown of dvmm's default guest: the VMM presses the ACPI power
 * button (`Machine.requestShutdown`, what `dvmm shutdown` and
 * `PUT /vm/shutdown` do), the guest's button driver reports KEY_POWER,
 * busybox acpid runs the PWRF handler from the default initramfs, and the
 * guest powers itself off through ACPI S5: exit reason "poweroff", status 0.
 */
import { match, strictEqual } from "node:assert/strict";
import { bootShell, waitExit } from "./guest.ts";

Deno.test("shutdown: the ACPI power button powers the default guest off (poweroff, status 0)", async () => {
  const g = await bootShell();
  const { machine, console: guest } = g;
  try {
    // Init armed the button before the shell: the driver, the input node and acpid are there.
    const armed = await guest.run(
      "ls /sys/module | grep -cx -e button -e evdev; ls /dev/input/event0; pidof acpid >/dev/null && echo acpid-up",
      30_000,
    );
    match(armed.output, /^2$/m, armed.output);
    match(armed.output, /acpid-up/, armed.output);
    const t0 = performance.now();
    machine.requestShutdown();
    const exit = await waitExit(machine, 60_000);
    const seconds = (performance.now() - t0) / 1000;
    strictEqual(exit.reason, "poweroff", exit.message);
    strictEqual(exit.status, 0);
    match(guest.output, /power button pressed, powering off/);
    console.log(`shutdown: guest powered off ${seconds.toFixed(2)} s after the press`);
  } finally {
    if (machine.state !== "stopped") await machine.stop();
  }
});
