/**
 * `console: "virtio"` end to end: the guest's console is hvc0 (the default
 * initramfs loads virtio_console before starting its shell, cttyhack picks
 * hvc0), the machine's host input goes to the virtio console instead of the
 * serial port, and shell commands typed on the host run through hvc0.
 */
import { match, strictEqual } from "node:assert/strict";
import { bootShell, waitExit } from "./guest.ts";
import { parseVmConfig } from "../../vmm/config.ts";
import { launchOptionsFromConfig } from "../../vmm/launch.ts";

Deno.test("virtio-console: with console virtio, host input runs commands on hvc0", async () => {
  const options = launchOptionsFromConfig(parseVmConfig({ console: "virtio" }, "config"));
  match(options.cmdline ?? "", /console=hvc0/);
  const { machine, console } = await bootShell(options);
  try {
    const tty = await console.run("tty");
    strictEqual(tty.status, 0, tty.output);
    strictEqual(tty.output.trim(), "/dev/hvc0", "the shell runs on hvc0");
    const sum = await console.run("echo typed-through-hvc0-$((6 * 7))");
    strictEqual(sum.output.trim(), "typed-through-hvc0-42");
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  } catch (e) {
    if (machine.state !== "stopped") await machine.stop();
    throw e;
  }
});
