/**
 * Linux on dvmm: the stock Debian kernel boots the default initramfs to a
 * shell, on 1, 2 and 4 vCPUs, sees the PCI devices dvmm placed, and every
 * way the guest can end maps to its documented exit status.
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { bootShell, retryIfGuestCrashed, waitExit } from "./guest.ts";
import { PROBE_AFTER_S } from "../../vmm/machine.ts";
import { IDLE_RECHECK_MS, QUIET_AFTER_MS } from "../../kvm/io_dispatcher.ts";
import { REGISTER_FILE_ID } from "../../examples/register_file.ts";

const hex = (v: bigint | number, width: number) => `0x${v.toString(16).padStart(width, "0")}`;

Deno.test("Linux boots to a shell on 2 vCPUs, runs commands, sees dvmm's PCI devices, powers off with 0", () =>
  retryIfGuestCrashed(async (track) => {
    const { machine, console } = await bootShell({
      cpus: 2,
      devices: [{ plugin: "register-file", options: { scratch: "8" } }],
    });
    track(machine);
    strictEqual((await console.run("nproc")).output.trim(), "2");
    strictEqual((await console.run("echo hello from $(uname -s)")).output, "hello from Linux\n");
    strictEqual((await console.run("exit_with() { return $1; }; exit_with 7")).status, 7);
    // The CMOS RTC gave the guest the host's time (kvm-clock keeps it since).
    const guestNow = Number((await console.run("date -u +%s")).output.trim());
    const hostNow = Date.now() / 1000;
    ok(Math.abs(guestNow - hostNow) < 30, `guest clock ${guestNow}, host ${hostNow}`);
    // The RTC itself, read through the guest's driver (index and data port per register).
    const rtcTime = (await console.run("cat /sys/class/rtc/rtc0/time")).output.trim();
    match(rtcTime, /^\d\d:\d\d:\d\d$/);
    const [h, m, sec] = rtcTime.split(":").map(Number);
    const hostSeconds = Math.floor(Date.now() / 1000) % 86400;
    const rtcDrift = (h * 3600 + m * 60 + sec - hostSeconds + 86400) % 86400; // across midnight
    ok(
      Math.min(rtcDrift, 86400 - rtcDrift) < 30,
      `RTC ${rtcTime} UTC, host ${new Date().toISOString()}`,
    );

    // The guest sees the host bridge and the register file with the ids and BARs dvmm decodes now.
    const ids = await console.run(
      "for d in /sys/bus/pci/devices/*; do echo $(basename $d) $(cat $d/vendor) $(cat $d/device); done",
    );
    const bar = machine.pci.assignments().find((a) => a.name === "register-file" && a.bar === 0)!;
    const slot = bar.bdf; // "00:01.0"
    deepStrictEqual(ids.output.trim().split("\n"), [
      "0000:00:00.0 0x8086 0x29c0",
      `0000:${slot} 0x1b36 0x00f0`,
    ]);
    strictEqual(bar.active, true);
    // Linux read config space of every absent slot (and AMD's northbridge at 00:18.x): the vCPU
    // threads answered those reads themselves; none reached the PCI core on the VMM thread.
    strictEqual(machine.pci.absentConfigReads, 0);
    const local = machine.vcpuStats().reduce((n, s) => n + s.LOCAL, 0);
    ok(local >= 2 * 31, `vCPUs served ${local} port accesses themselves`);
    const resource = await console.run(`head -1 /sys/bus/pci/devices/0000:${slot}/resource`);
    const [start, end] = resource.output.trim().split(" ");
    strictEqual(start, hex(bar.activeAddress!, 16));
    strictEqual(end, hex(bar.activeAddress! + bar.size - 1n, 16));

    // Drive the device's registers from the guest through its BAR.
    const base = Number(bar.activeAddress!);
    const id = await console.run(`devmem ${hex(base, 8)} 32`);
    strictEqual(Number(id.output.trim()), REGISTER_FILE_ID);
    await console.run(`devmem ${hex(base + 0x40, 8)} 32 0x12345678`);
    strictEqual(
      Number((await console.run(`devmem ${hex(base + 0x40, 8)} 32`)).output.trim()),
      0x12345678,
    );

    // An idle guest: the VMM thread looks at the doorbell every IDLE_RECHECK_MS, not every few
    // milliseconds (it did 150 times a second before). Exits still wake it at once.
    await new Promise((r) => setTimeout(r, 2 * QUIET_AFTER_MS));
    const idleMs = 3000;
    const turns = machine.ioStats().turns;
    await new Promise((r) => setTimeout(r, idleMs));
    const idleTurns = machine.ioStats().turns - turns;
    ok(
      idleTurns <= 4 * (idleMs / IDLE_RECHECK_MS),
      `${idleTurns} wake-ups of the VMM thread in ${idleMs} ms of an idle guest`,
    );

    await console.write("poweroff -f\n");
    const exit = await waitExit(machine);
    strictEqual(exit.reason, "poweroff");
    strictEqual(exit.status, 0);
  }));

Deno.test("--cpus 4 brings 4 CPUs online", () =>
  retryIfGuestCrashed(async (track) => {
    const { machine, console } = await bootShell({ cpus: 4 });
    track(machine);
    strictEqual((await console.run("cat /sys/devices/system/cpu/online")).output.trim(), "0-3");
    strictEqual((await console.run("nproc")).output.trim(), "4");
    // The stall report sees every running vCPU, COM1 with its interrupts on, and the IOAPIC's
    // COM1 pin (4) unmasked with a vector.
    const report = machine.describe();
    for (let i = 0; i < 4; i++) match(report, new RegExp(`^vcpu${i}: RUNNING control=RUN`, "m"));
    match(report, /^COM1: IER=0x0[1-7] .* MCR=0x0[89a-f] /m);
    match(report, /^IOAPIC irr=0x[0-9a-f]+ unmasked .*\b4:v\d+/m);
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  }));

Deno.test("a stall report kicks a vCPU that stayed inside KVM_RUN and says where the guest was", () =>
  retryIfGuestCrashed(async (track) => {
    const { machine, console } = await bootShell();
    track(machine);
    // A shell loop in the background: the only vCPU computes and makes no exits.
    await console.write("while :; do :; done &\n");
    // Reports before PROBE_AFTER_S seconds without an exit only look; the first one after kicks.
    let first = "";
    for (let i = 0; i < 6 * PROBE_AFTER_S && !/probe: kicked/.test(first); i++) {
      await new Promise((r) => setTimeout(r, 1000));
      first = machine.describe();
    }
    match(first, /^vcpu0: .* in KVM_RUN for \d+\.\d s or more .*probe: kicked 0\.\d s ago/m);
    await new Promise((r) => setTimeout(r, 1000));
    match(
      machine.describe(),
      /^vcpu0: .*probe: kicked \d\.\d s ago, left KVM_RUN at guest rip=0x[0-9a-f]+$/m,
    );
    await console.run("kill %1");
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  }));

Deno.test("reboot -f ends the VMM with the reboot status (3)", async () => {
  const { machine, console } = await bootShell();
  await console.write("reboot -f\n");
  const exit = await waitExit(machine);
  strictEqual(exit.reason, "reboot");
  strictEqual(exit.status, 3);
});

Deno.test("a guest kernel panic ends the VMM with the panic status (4)", async () => {
  const { machine, console } = await bootShell();
  await console.write("echo c > /proc/sysrq-trigger\n");
  const exit = await waitExit(machine);
  strictEqual(exit.reason, "panic");
  strictEqual(exit.status, 4);
  match(console.output, /Kernel panic - not syncing/);
});

Deno.test("a bzImage boots through its cached vmlinux by default, and as it is without the cache", async () => {
  for (const kernelCache of [true, false]) {
    const { machine, console } = await bootShell({ kernelCache });
    strictEqual(machine.boot.decompressed, kernelCache);
    // The decompressor randomizes the kernel's virtual base (KASLR); the vmlinux runs where linked.
    const text = (await console.run("grep ' _text$' /proc/kallsyms")).output.split(" ")[0];
    if (kernelCache) strictEqual(text, "ffffffff81000000");
    strictEqual((await console.run("echo booted $((6 * 7))")).output, "booted 42\n");
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  }
});
