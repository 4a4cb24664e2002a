/**
 * The scripting API and the control socket on KVM: startVm with await using,
 * console.run, pause (the guest really stops) and resume, two VMs at once,
 * the HTTP control socket, and the CLI verbs against a live VM.
 */
import { deepStrictEqual, match, notStrictEqual, ok, strictEqual } from "node:assert/strict";
import { startVm } from "../../mod.ts";
import { GUEST_INIT_MARKER } from "../../guest/initramfs.ts";
import { SHELL_PROMPT } from "../../vmm/demo.ts";
import { requestSocket } from "../../vmm/control_client.ts";

const runtimeDir = await Deno.makeTempDir({ prefix: "dvmm-api-test-" });
Deno.env.set("XDG_RUNTIME_DIR", runtimeDir);

async function shell(vm: Awaited<ReturnType<typeof startVm>>) {
  await vm.console.waitFor(GUEST_INIT_MARKER, 180_000);
  await vm.console.waitFor(SHELL_PROMPT, 60_000);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const totalExits = (stats: { vcpus: readonly { exits: Readonly<Record<string, number>> }[] }) =>
  stats.vcpus.reduce(
    (n, v) =>
      n + Object.entries(v.exits).reduce((a, [kind, count]) => kind === "LOCAL" ? a : a + count, 0),
    0,
  );

Deno.test("startVm: run a command, pause stops the guest, resume continues it, await using stops it", async () => {
  let exited: Promise<{ status: number }> | undefined;
  {
    await using vm = await startVm({ memory: "256M", cpus: 1, cmdline: "quiet", name: "api-one" });
    exited = vm.exited;
    await shell(vm);
    strictEqual((await vm.console.run("uname -s")).output, "Linux\n");
    // A guest loop that prints continuously.
    await vm.console.write("while :; do echo tick; sleep 0.05; done &\n");
    await vm.console.waitFor("tick");
    await vm.pause();
    strictEqual(vm.info().state, "paused");
    const outputAtPause = vm.console.output.length;
    const exitsAtPause = totalExits(vm.stats());
    await sleep(1500);
    strictEqual(vm.console.output.length, outputAtPause, "the guest printed while paused");
    strictEqual(totalExits(vm.stats()), exitsAtPause, "a vCPU ran while paused");
    await vm.resume();
    // A tick printed after the resume: ticks printed between the first one and the pause may
    // still be unread, so waitFor("tick") could match output from before the pause.
    const deadline = performance.now() + 10_000;
    while (!vm.console.output.slice(outputAtPause).includes("tick")) {
      ok(performance.now() < deadline, "no tick within 10 s of the resume");
      await sleep(50);
    }
    ok(totalExits(vm.stats()) > exitsAtPause);
    // Quick pause/resume cycles: a kick that lands after its pause must not wedge the vCPU.
    for (let i = 0; i < 10; i++) {
      await vm.pause();
      await vm.resume();
      strictEqual((await vm.console.run("true", 20_000)).status, 0);
    }
    // The guest clock is sane after the pause: still moving forward.
    const t1 = Number((await vm.console.run("kill %1; cat /proc/uptime")).output.split(" ")[0]);
    await sleep(500);
    const t2 = Number((await vm.console.run("cat /proc/uptime")).output.split(" ")[0]);
    ok(t2 > t1, `guest uptime went from ${t1} to ${t2}`);
  }
  strictEqual((await exited!).status, 0);
});

Deno.test("two VMs in one process are independent", async () => {
  await using a = await startVm({ memory: "128M", cpus: 1, cmdline: "quiet", name: "api-a" });
  // One vCPU each: the lab's L1 has two CPUs, and overcommitting them under TCG makes a guest
  // crawl (its vCPUs wait on each other's IPIs) without telling us anything about isolation.
  await using b = await startVm({ memory: "192M", cpus: 1, cmdline: "quiet", name: "api-b" });
  await Promise.all([shell(a), shell(b)]);
  await a.console.run("echo only-in-a > /tmp/mark");
  strictEqual((await a.console.run("cat /tmp/mark")).output, "only-in-a\n");
  notStrictEqual((await b.console.run("cat /tmp/mark")).status, 0);
  const memTotal = async (vm: typeof a) =>
    Number(
      /MemTotal:\s+(\d+)/.exec((await vm.console.run("grep MemTotal /proc/meminfo")).output)![1],
    );
  const [memA, memB] = [await memTotal(a), await memTotal(b)];
  ok(memB - memA > 50_000, `each guest has its own RAM: ${memA} kB vs ${memB} kB`);
  await a.console.write("poweroff -f\n");
  strictEqual((await a.exited).reason, "poweroff");
  // b is unaffected by a's end.
  strictEqual((await b.console.run("echo still here")).output, "still here\n");
});

Deno.test("control socket: GET /vm, /stats, pause/resume, errors, stop; CLI verbs against the live VM", async () => {
  await using vm = await startVm({ memory: "128M", cpus: 1, cmdline: "quiet", name: "api-sock" });
  await shell(vm);
  const socket = `${runtimeDir}/dvmm/api-sock.sock`;
  const info = await requestSocket(socket, "GET", "/vm");
  strictEqual(info.status, 200);
  const body = info.body as {
    name: string;
    state: string;
    vcpus: number;
    devices: { bdf: string }[];
  };
  deepStrictEqual([body.name, body.state, body.vcpus], ["api-sock", "running", 1]);
  strictEqual(body.devices[0].bdf, "00:00.0");
  strictEqual((await requestSocket(socket, "GET", "/stats")).status, 200);
  strictEqual((await requestSocket(socket, "PUT", "/vm/pause")).status, 200);
  strictEqual((await requestSocket(socket, "PUT", "/vm/pause")).status, 409);
  strictEqual((await requestSocket(socket, "GET", "/nope")).status, 404);
  strictEqual((await requestSocket(socket, "DELETE", "/vm")).status, 405);

  const cli = async (...args: string[]) => {
    const main = new URL("../../main.ts", import.meta.url).pathname;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", "--cached-only", main, ...args],
      env: { XDG_RUNTIME_DIR: runtimeDir },
    }).output();
    return {
      code: r.code,
      out: new TextDecoder().decode(r.stdout),
      err: new TextDecoder().decode(r.stderr),
    };
  };
  const list = await cli("list");
  strictEqual(list.code, 0, list.err);
  match(list.out, /api-sock\s+paused/);
  const resumed = await cli("resume", "api-sock");
  strictEqual(resumed.code, 0, resumed.err);
  strictEqual(vm.info().state, "running");
  const stat = await cli("stat", "api-sock", "--json");
  strictEqual(stat.code, 0, stat.err);
  strictEqual(JSON.parse(stat.out).info.name, "api-sock");
  strictEqual((await vm.console.run("echo alive")).output, "alive\n");
  const stopped = await cli("stop", "api-sock");
  strictEqual(stopped.code, 0, stopped.err);
  strictEqual((await vm.exited).reason, "stopped");
  // The socket is removed with the VM.
  strictEqual(await Deno.stat(socket).then(() => true, () => false), false);
});
