/**
 * Boots dvmm's default guest initramfs with the Debian kernel under QEMU TCG
 * on the host (no KVM needed, ~5-10 s). Not a unit test: it needs
 * qemu-system-x86 and downloads the kernel on first use.
 * Run with `deno test -A tests/lab/guest_initramfs_boot_test.ts`.
 */
import assert from "node:assert/strict";
import { ensureKernel } from "../../guest/debian_kernel.ts";
import { ensureGuestInitramfs, GUEST_INIT_MARKER } from "../../guest/initramfs.ts";
import { ensureVmlinux } from "../../guest/vmlinux.ts";

Deno.test("default guest initramfs reaches init, loads the virtio modules and runs the snippet", async () => {
  const kernel = await ensureKernel();
  const initrd = await ensureGuestInitramfs({
    kernel,
    loadModules: true,
    initSnippet: [
      "echo modules: $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')",
      "echo disk: $(ls /dev/vda)",
      "poweroff -f",
    ].join("\n"),
  });
  const disk = await Deno.makeTempFile({ prefix: "guest_boot_disk_" });
  try {
    await Deno.truncate(disk, 1 << 20);
    const out = await new Deno.Command("qemu-system-x86_64", {
      args: [
        ...["-machine", "q35", "-accel", "tcg", "-m", "512", "-nodefaults", "-display", "none"],
        ...["-no-reboot", "-serial", "stdio", "-kernel", await ensureVmlinux(kernel)],
        ...["-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1"],
        ...["-drive", `file=${disk},if=virtio,format=raw`],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    const console = new TextDecoder().decode(out.stdout);
    assert.ok(console.includes(GUEST_INIT_MARKER), console);
    const modules = console.match(/modules: (.*)/)?.[1].trim().split(" ") ?? [];
    for (
      const m of ["virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "ext4"]
    ) {
      assert.ok(modules.includes(m), `${m} not loaded: ${console}`);
    }
    assert.match(console, /disk: \/dev\/vda/);
    assert.ok(!console.includes("dvmm-load-modules: insmod"), console);
  } finally {
    await Deno.remove(disk);
  }
});
