/**
 * virtio-net on a TAP, end to end: a config with `nets: [{ tap }]` boots the
 * default guest with dvmm's virtio-net plugin, which creates the TAP in the
 * lab's L1 VM (root there); the L1 side of the TAP gets 10.0.2.1/24, the
 * guest's eth0 10.0.2.15/24, and ping works both ways.
 *
 * Runs only inside the lab (DVMM_IN_LAB): it creates a network interface and
 * gives it an address, which belongs in the lab's own throwaway VM, not on a
 * developer's host. The L1 VM has no other network device (QEMU -nodefaults),
 * so every packet stays between the L1 kernel and the guest.
 */
import { match, strictEqual } from "node:assert/strict";
import { bootShell, waitExit } from "./guest.ts";
import { parseVmConfig } from "../../vmm/config.ts";
import { launchOptionsFromConfig } from "../../vmm/launch.ts";
import { defaultMac, formatMac } from "../../devices/virtio/net.ts";
import { sh } from "./host_command.ts";

const TAP = "dvmmtap0";
const HOST_IP = "10.0.2.1";
const GUEST_IP = "10.0.2.15";

const inLab = Deno.env.get("DVMM_IN_LAB") === "1";

Deno.test({
  name: "virtio-net: guest and L1 host ping each other over a TAP the plugin created",
  ignore: !inLab,
  fn: async () => {
    const config = parseVmConfig({ nets: [{ tap: TAP }] }, "config");
    const g = await bootShell(launchOptionsFromConfig(config));
    const { machine, console } = g;
    try {
      // The plugin created the TAP when the machine was built: configure the L1 side.
      await sh("ip", ["addr", "add", `${HOST_IP}/24`, "dev", TAP]);
      await sh("ip", ["link", "set", TAP, "up"]);
      await console.run("dvmm-load-modules 2>/dev/null", 120_000);
      const mac = await console.run("cat /sys/class/net/eth0/address");
      strictEqual(mac.status, 0, `eth0 exists: ${mac.output}`);
      strictEqual(mac.output.trim(), formatMac(defaultMac(TAP)), "MAC derived from the TAP name");
      const up = await console.run(`ip link set eth0 up && ip addr add ${GUEST_IP}/24 dev eth0`);
      strictEqual(up.status, 0, up.output);

      const out = await console.run(`ping -c 3 -W 10 ${HOST_IP}`, 120_000);
      strictEqual(out.status, 0, `guest -> L1 ping:\n${out.output}`);
      match(out.output, /3 packets transmitted, 3 packets received/);

      const back = await sh("busybox", ["ping", "-c", "3", "-W", "10", GUEST_IP]);
      match(back, /3 packets transmitted, 3 packets received/, `L1 -> guest ping:\n${back}`);

      const stats = await sh("ip", ["-s", "link", "show", TAP]);
      match(stats, /[<,]UP,LOWER_UP[,>]/, `the TAP has carrier while dvmm holds it:\n${stats}`);
      await console.write("poweroff -f\n");
      strictEqual((await waitExit(machine)).status, 0);
    } catch (e) {
      if (machine.state !== "stopped") await machine.stop();
      throw e;
    }
    // The plugin's TAP was not persistent: closing it at the machine's end removed it.
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      const r = await new Deno.Command("ip", { args: ["link", "show", TAP], stderr: "null" })
        .output();
      gone = !r.success;
      if (!gone) await new Promise((r) => setTimeout(r, 100));
    }
    strictEqual(gone, true, `${TAP} removed after the machine ended`);
  },
});

Deno.test({
  name: "virtio-net: a TAP that cannot be opened fails the launch with a clear message",
  ignore: !inLab,
  fn: async () => {
    // Busy: a TAP some other fd holds (our own first open) cannot be attached again.
    const { Tap } = await import("../../devices/virtio/tap.ts");
    const held = Tap.open("dvmmbusy0");
    try {
      const config = parseVmConfig({ nets: [{ tap: "dvmmbusy0" }] }, "config");
      let message = "";
      try {
        const g = await bootShell(launchOptionsFromConfig(config));
        await g.machine.stop();
      } catch (e) {
        message = e instanceof Error ? e.message : String(e);
      }
      match(message, /virtio-net.*tap=dvmmbusy0: busy/);
    } finally {
      held.close();
    }
  },
});
