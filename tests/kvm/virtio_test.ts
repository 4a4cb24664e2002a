/**
 * virtio on dvmm with Linux guests: the stock virtio_pci driver binds
 * dvmm's virtio-blk, virtio-rng and virtio-console plugins (MSI-X through
 * KVM_SIGNAL_MSI, queue doorbells through KVM ioeventfds and the poller
 * worker), an ext2 image made on the host is read and written by the guest
 * and checked on the host afterwards, a read-only image refuses writes, and
 * virtio-blk (its I/O worker) and virtio-rng keep working after the guest
 * moves their BARs (resource_alignment, remove, rescan: the BARs are
 * re-programmed at new addresses and the doorbells re-registered there).
 *
 * Images live in a temporary directory (inside the lab: TMPDIR on tmpfs),
 * made with the host's mke2fs and read back with debugfs.
 */
import { match, ok, strictEqual } from "node:assert/strict";
import { bootShell, type TestGuest, waitExit } from "./guest.ts";
import type { Machine } from "../../vmm/machine.ts";
import { type Ext2Image, makeExt2Image, readExt2File } from "./ext2_image.ts";

const HOST_TEXT = "hello from the host";

/** An 8 MiB ext2 image holding /hello.txt, in a fresh temporary directory. */
function makeImage(): Promise<Ext2Image> {
  return makeExt2Image({ "hello.txt": `${HOST_TEXT}\n` });
}

/** The guest's PCI address (`0000:00:03.0`) of the plugin called `name`. */
function bdfOf(machine: Machine, name: string): string {
  const d = machine.pci.summary().find((s) => s.name === name);
  if (!d) throw new Error(`no ${name} device`);
  return `0000:${d.bdf}`;
}

/** The doorbells of `name` and where KVM serves them, checked against its active BAR 4. */
function checkDoorbells(machine: Machine, name: string): bigint {
  const d = machine.pci.summary().find((s) => s.name === name)!;
  const fn = machine.pci.device(d.slot)!;
  const bar4 = fn.bars.find((b) => b.index === 4)!;
  ok(bar4.active, `${name}: BAR 4 is decoded`);
  for (const door of fn.doorbells()) {
    strictEqual(door.address, bar4.active!.address + BigInt(door.offset), `${name}: doorbell`);
  }
  return bar4.active!.address;
}

async function loadModules(g: TestGuest): Promise<void> {
  await g.console.run("dvmm-load-modules 2>/dev/null", 120_000);
}

/** Remove `bdf` and rescan the bus; wait until a virtio driver is bound again. */
async function removeAndRescan(g: TestGuest, bdf: string): Promise<void> {
  const r = await g.console.run(
    `echo 1 > /sys/bus/pci/devices/${bdf}/remove; echo 1 > /sys/bus/pci/rescan; sleep 1; ` +
      `basename $(readlink /sys/bus/pci/devices/${bdf}/driver)`,
    60_000,
  );
  strictEqual(r.output.trim(), "virtio-pci");
}

function assignmentsOf(machine: Machine, name: string): string {
  return machine.pci.assignments().filter((a) => a.name === name)
    .map((a) => `BAR${a.bar}@${a.activeAddress?.toString(16)}`).join(" ");
}

Deno.test("virtio-blk: the guest reads a host file from an ext2 image, writes one the host reads back, and still works after the guest moves its BARs", async () => {
  const { dir, image } = await makeImage();
  try {
    // virtio-rng first, so its BARs sit where a 1 MiB-aligned virtio-blk would go.
    const g = await bootShell({
      devices: [{ plugin: "virtio-rng" }, { plugin: "virtio-blk", options: { path: image } }],
    });
    const { machine, console } = g;
    await loadModules(g);
    strictEqual((await console.run("cat /sys/block/vda/size")).output.trim(), String(8 * 2048));
    const doorbell = checkDoorbells(machine, "virtio-blk");
    ok(doorbell > 0n);
    let r = await console.run("mount -t ext2 /dev/vda /mnt && cat /mnt/hello.txt");
    strictEqual(r.status, 0, r.output);
    strictEqual(r.output, `${HOST_TEXT}\n`);
    r = await console.run(
      "echo written by the guest > /mnt/from_guest.txt && sync && umount /mnt && echo done",
    );
    strictEqual(r.output.trim(), "done");

    // Move the BARs under the live guest: 1 MiB alignment on the next probe, remove, rescan.
    // The I/O worker's doorbell must follow BAR 4, its MSIs the re-programmed vectors.
    const before = assignmentsOf(machine, "virtio-blk");
    const bdf = bdfOf(machine, "virtio-blk");
    await console.run(`echo -n "20@${bdf}" > /sys/bus/pci/resource_alignment`);
    await removeAndRescan(g, bdf);
    const after = assignmentsOf(machine, "virtio-blk");
    globalThis.console.log(`virtio-blk BARs before the move: ${before}; after: ${after}`);
    const bar4 = checkDoorbells(machine, "virtio-blk");
    ok(after !== before, `virtio-blk BARs did not move: ${after}`);
    const guestView = await console.run(`sed -n 5p /sys/bus/pci/devices/${bdf}/resource`);
    strictEqual(BigInt(guestView.output.trim().split(" ")[0]), bar4);
    r = await console.run("mount -t ext2 /dev/vda /mnt && cat /mnt/from_guest.txt; umount /mnt");
    strictEqual(r.output, "written by the guest\n");
    // The whole disk through the moved doorbell, past any page cache: 128 requests of 64 KiB.
    r = await console.run("dd if=/dev/vda of=/dev/null bs=64k iflag=direct 2>&1 | tail -1");
    strictEqual(r.output, "128+0 records out\n");

    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
    // The VM is gone: the host reads the guest's file out of the image.
    strictEqual(
      await readExt2File(image, "/from_guest.txt"),
      "written by the guest\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("virtio-blk with ro: the guest sees a read-only disk and writes to it fail", async () => {
  const { dir, image } = await makeImage();
  try {
    const g = await bootShell({
      devices: [{ plugin: "virtio-blk", options: { path: image, ro: "true" } }],
    });
    const { machine, console } = g;
    await loadModules(g);
    strictEqual((await console.run("cat /sys/block/vda/ro")).output.trim(), "1");
    const w = await console.run("dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync 2>&1");
    ok(w.status !== 0, `write to a read-only disk succeeded: ${w.output}`);
    const r = await console.run("mount -t ext2 -o ro /dev/vda /mnt && cat /mnt/hello.txt");
    strictEqual(r.output, `${HOST_TEXT}\n`);
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
    match(await readExt2File(image, "/hello.txt"), new RegExp(HOST_TEXT));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Run `body` on a booted guest; on failure show what the VMM logged. */
async function withGuest(g: TestGuest, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    const log = g.log.records.filter((r) => r.level !== "debug").map((r) => r.message);
    throw new Error(`${e instanceof Error ? e.message : e}\nVMM log:\n${log.join("\n")}`);
  } finally {
    if (g.machine.state !== "stopped") await g.machine.stop();
  }
}

Deno.test("virtio-rng feeds /dev/hwrng, and keeps doing so after the guest moves its BARs (resource_alignment, remove, rescan)", async () => {
  const g = await bootShell({
    cpus: 2,
    devices: [{ plugin: "virtio-rng" }, {
      plugin: "virtio-blk",
      options: { path: "/dev/null", ro: "true" },
    }],
  });
  const { machine, console } = g;
  await withGuest(g, async () => {
    await loadModules(g);
    match((await console.run("cat /sys/class/misc/hw_random/rng_current")).output, /virtio/);
    strictEqual((await console.run("head -c 64 /dev/hwrng | wc -c")).output.trim(), "64");
    const sample = await console.run(
      "head -c 4096 /dev/hwrng | od -An -tx1 -v | tr -s ' ' '\\n' | sort -u | wc -l",
    );
    ok(
      Number(sample.output.trim()) > 200,
      `4 KiB from virtio-rng use few byte values: ${sample.output}`,
    );
    const before = checkDoorbells(machine, "virtio-rng");

    // Ask Linux for 1 MiB alignment on the next probe: the neighbour's BARs are in the way of
    // the old 1 MiB block, so the BARs must move. Then remove and rescan.
    const bdf = bdfOf(machine, "virtio-rng");
    await console.run(`echo -n "20@${bdf}" > /sys/bus/pci/resource_alignment`);
    await removeAndRescan(g, bdf);
    const after = checkDoorbells(machine, "virtio-rng");
    globalThis.console.log(`virtio-rng BAR 4: 0x${before.toString(16)} -> 0x${after.toString(16)}`);
    ok(after !== before, "BAR 4 moved");
    const guestView = await console.run(`sed -n 5p /sys/bus/pci/devices/${bdf}/resource`);
    strictEqual(BigInt(guestView.output.trim().split(" ")[0]), after);
    match((await console.run("cat /sys/class/misc/hw_random/rng_current")).output, /virtio/);
    strictEqual((await console.run("head -c 64 /dev/hwrng | wc -c")).output.trim(), "64");
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  });
});

Deno.test("virtio-console: what the guest writes to /dev/hvc0 reaches the host console", async () => {
  const g = await bootShell({ devices: [{ plugin: "virtio-console" }] });
  const { machine, console } = g;
  await withGuest(g, async () => {
    await loadModules(g);
    strictEqual((await console.run("ls /dev/hvc0")).status, 0);
    const seen = console.waitFor("virtio-console-says-42", 30_000);
    await console.run('echo "virtio-console-says-$((40 + 2))" > /dev/hvc0');
    await seen;
    await console.write("poweroff -f\n");
    strictEqual((await waitExit(machine)).status, 0);
  });
});
