import assert from "node:assert/strict";
import { readCpio } from "../../guest/cpio.ts";
import {
  buildGuestInitramfs,
  ensureGuestInitramfs,
  GUEST_INIT_MARKER,
  initScript,
  POWER_BUTTON_HANDLER,
} from "../../guest/initramfs.ts";
import { findOnPath } from "../../guest/host_tool.ts";
import { makeFakeKernel } from "./fake_kernel.ts";

const haveBusybox = findOnPath("/bin/busybox") !== undefined ||
  (Deno.env.get("DVMM_BUSYBOX") ?? "") !== "";
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function withFakeKernel(fn: (root: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "initramfs_test_" });
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const fakeModules = [
  { path: "kernel/drivers/virtio/virtio.ko" },
  { path: "kernel/drivers/virtio/virtio_ring.ko" },
  { path: "kernel/drivers/virtio/virtio_pci_modern_dev.ko" },
  { path: "kernel/drivers/virtio/virtio_pci_legacy_dev.ko" },
  {
    path: "kernel/drivers/virtio/virtio_pci.ko",
    depends: ["virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_ring"],
  },
  { path: "kernel/drivers/block/virtio_blk.ko", depends: ["virtio", "virtio_ring"] },
  { path: "kernel/drivers/net/failover.ko" },
  { path: "kernel/drivers/net/net_failover.ko", depends: ["failover"] },
  { path: "kernel/drivers/net/virtio_net.ko", depends: ["virtio_ring", "virtio", "net_failover"] },
  { path: "kernel/fs/jbd2/jbd2.ko" },
  { path: "kernel/fs/mbcache.ko" },
  { path: "kernel/lib/crc16.ko" },
  { path: "kernel/fs/ext4/ext4.ko", depends: ["jbd2", "mbcache", "crc16"] },
  { path: "kernel/drivers/input/evdev.ko" },
  { path: "kernel/drivers/acpi/button.ko" },
];

Deno.test({
  name: "guest initramfs holds /init, busybox with applets and the modules in load order",
  ignore: !haveBusybox,
  fn: () =>
    withFakeKernel(async (root) => {
      const kernel = await makeFakeKernel(root, fakeModules);
      const archive = await buildGuestInitramfs({ kernel });
      const byPath = new Map(readCpio(archive).map((r) => [r.path, r]));
      const init = byPath.get("init")!;
      assert.equal(init.kind, "file");
      assert.equal(init.perm, 0o755);
      assert.match(text(init.data), /^#!\/bin\/sh\n/);
      assert.ok(text(init.data).includes(`echo "${GUEST_INIT_MARKER}"`));
      assert.ok(text(init.data).includes("setsid cttyhack sh"));
      const busybox = byPath.get("bin/busybox")!;
      assert.equal(busybox.perm, 0o755);
      assert.deepEqual(busybox.data.subarray(0, 4), new Uint8Array([0x7f, 0x45, 0x4c, 0x46]));
      for (
        const applet of ["bin/sh", "sbin/insmod", "bin/mount", "usr/bin/setsid", "bin/cttyhack"]
      ) {
        const link = byPath.get(applet);
        assert.ok(link, `${applet} missing`);
        assert.equal(link.kind, "symlink");
        assert.equal(text(link.data), "/bin/busybox");
      }
      assert.equal(byPath.get("dev/console")?.kind, "char");
      const order = text(byPath.get("etc/dvmm/modules")!.data).trim().split("\n");
      const dir = `/lib/modules/${kernel.version}`;
      const pos = (name: string) => order.indexOf(`${dir}/${name}.ko`);
      for (const m of ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "jbd2", "failover"]) {
        assert.ok(pos(m) >= 0, `${m} not listed`);
        assert.ok(byPath.has(`${dir.slice(1)}/${m}.ko`), `${m}.ko not in the archive`);
      }
      assert.ok(pos("virtio") < pos("virtio_pci"));
      assert.ok(pos("failover") < pos("net_failover"));
      assert.ok(pos("net_failover") < pos("virtio_net"));
      assert.ok(pos("jbd2") < pos("ext4"));
      // Absent modules (virtio_console, virtio-rng, crc32c_generic here) are skipped.
      assert.equal(pos("virtio_console"), -1);
      assert.equal(byPath.get("bin/dvmm-load-modules")?.perm, 0o755);
    }),
});

Deno.test({
  name: "guest initramfs takes extra files and an init snippet that runs before the shell",
  ignore: !haveBusybox,
  fn: () =>
    withFakeKernel(async (root) => {
      const kernel = await makeFakeKernel(root, fakeModules);
      const archive = await buildGuestInitramfs({
        kernel,
        files: [{ path: "/opt/run.sh", data: "echo hi\n", mode: 0o700 }],
        initSnippet: "sh /opt/run.sh\npoweroff -f",
        loadModules: true,
      });
      const byPath = new Map(readCpio(archive).map((r) => [r.path, r]));
      assert.equal(text(byPath.get("opt/run.sh")!.data), "echo hi\n");
      assert.equal(byPath.get("opt/run.sh")!.perm, 0o700);
      const init = text(byPath.get("init")!.data);
      const marker = init.indexOf(GUEST_INIT_MARKER);
      const load = init.indexOf("dvmm-load-modules");
      const snippet = init.indexOf("sh /opt/run.sh");
      const shell = init.indexOf("setsid cttyhack sh");
      assert.ok(marker > 0 && marker < load && load < snippet && snippet < shell);
    }),
});

Deno.test("guest init script mounts the kernel file systems before printing the marker", () => {
  const init = initScript();
  const marker = init.indexOf(GUEST_INIT_MARKER);
  for (const fs of ["-t proc", "-t sysfs", "-t devtmpfs"]) {
    const at = init.indexOf(`mount ${fs}`);
    assert.ok(at > 0 && at < marker, fs);
  }
  // Modules load only when asked for, or for a virtio console (hvc0 needs virtio_console).
  assert.deepEqual(init.split("\n").filter((l) => l.includes("dvmm-load-modules")), [
    'grep -q "console=hvc0" /proc/cmdline && dvmm-load-modules 2>/dev/null',
  ]);
});

Deno.test({
  name: "guest initramfs is cached by its inputs",
  ignore: !haveBusybox,
  fn: () =>
    withFakeKernel(async (root) => {
      const saved = Deno.env.get("DVMM_CACHE_DIR");
      Deno.env.set("DVMM_CACHE_DIR", `${root}/cache`);
      try {
        const kernel = await makeFakeKernel(root, fakeModules);
        const a = await ensureGuestInitramfs({ kernel });
        const stampA = (await Deno.stat(a)).mtime;
        const again = await ensureGuestInitramfs({ kernel });
        assert.equal(again, a);
        assert.deepEqual((await Deno.stat(again)).mtime, stampA);
        const withFile = await ensureGuestInitramfs({ kernel, files: [{ path: "x", data: "1" }] });
        const withOther = await ensureGuestInitramfs({ kernel, files: [{ path: "x", data: "2" }] });
        assert.notEqual(withFile, a);
        assert.notEqual(withFile, withOther);
        assert.ok(a.startsWith(`${root}/cache/initramfs/`));
        const records = readCpio(await Deno.readFile(withOther));
        assert.equal(text(records.find((r) => r.path === "x")!.data), "2");
      } finally {
        if (saved === undefined) Deno.env.delete("DVMM_CACHE_DIR");
        else Deno.env.set("DVMM_CACHE_DIR", saved);
      }
    }),
});

Deno.test({
  name:
    "guest initramfs arms the ACPI power button: init starts acpid whose PWRF handler powers off",
  ignore: !haveBusybox,
  fn: () =>
    withFakeKernel(async (root) => {
      const kernel = await makeFakeKernel(root, fakeModules);
      const byPath = new Map(
        readCpio(await buildGuestInitramfs({ kernel })).map((r) => [r.path, r]),
      );
      const order = text(byPath.get("etc/dvmm/modules")!.data);
      assert.ok(order.includes("/evdev.ko\n") && order.includes("/button.ko\n"), order);
      const setup = text(byPath.get("bin/dvmm-power-button")!.data);
      assert.equal(byPath.get("bin/dvmm-power-button")!.perm, 0o755);
      assert.match(setup, /for m in evdev button; do/);
      assert.match(setup, /acpid -c \/etc\/acpi /);
      const handler = byPath.get(POWER_BUTTON_HANDLER.slice(1))!;
      assert.equal(handler.perm, 0o755);
      assert.match(text(handler.data), /^#!\/bin\/sh\n[^]*poweroff -f\n$/);
      assert.equal(byPath.get("etc/acpi/PWRF")?.kind, "dir");
      const init = text(byPath.get("init")!.data);
      const marker = init.indexOf(GUEST_INIT_MARKER);
      const arm = init.indexOf("dvmm-power-button");
      assert.ok(marker > 0 && arm > marker && arm < init.indexOf("setsid cttyhack sh"));
      assert.ok(!initScript({ powerButton: false }).includes("dvmm-power-button"));
    }),
});

Deno.test({
  name: "dvmm-load-modules skips modules already loaded (power-button ones loaded by init)",
  ignore: !haveBusybox,
  fn: () =>
    withFakeKernel(async (root) => {
      const kernel = await makeFakeKernel(root, fakeModules);
      const byPath = new Map(
        readCpio(await buildGuestInitramfs({ kernel })).map((r) => [r.path, r]),
      );
      const script = text(byPath.get("bin/dvmm-load-modules")!.data);
      // Run it under busybox sh with a fake /sys/module and insmod that records its argument.
      const dir = `${root}/run`;
      await Deno.mkdir(`${dir}/sys/module/virtio_rng`, { recursive: true });
      await Deno.mkdir(`${dir}/sys/module/evdev`, { recursive: true });
      const list = "/l/virtio.ko\n/l/virtio-rng.ko\n/l/evdev.ko\n/l/button.ko\n";
      await Deno.writeTextFile(`${dir}/modules`, list);
      const patched = script.replaceAll("/sys/module", `${dir}/sys/module`)
        .replace("/etc/dvmm/modules", `${dir}/modules`);
      const busybox = Deno.env.get("DVMM_BUSYBOX") || "/bin/busybox";
      const out = await new Deno.Command(busybox, {
        args: ["sh", "-c", `insmod() { echo "$1"; }\n${patched}`],
        stdout: "piped",
      }).output();
      assert.equal(text(out.stdout), "/l/virtio.ko\n/l/button.ko\n");
    }),
});
