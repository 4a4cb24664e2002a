import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { ModInfoError, moduleDepends, readModInfo } from "../../guest/elf_modinfo.ts";
import { canonical, ModuleError, ModuleIndex } from "../../guest/modules.ts";
import { fakeModuleElf, makeFakeKernel } from "./fake_kernel.ts";

async function fakeTree() {
  const root = await Deno.makeTempDir({ prefix: "modules_test_" });
  const kernel = await makeFakeKernel(root, [
    { path: "kernel/lib/crc16.ko" },
    { path: "kernel/fs/mbcache.ko" },
    { path: "kernel/fs/jbd2/jbd2.ko" },
    { path: "kernel/fs/ext4/ext4.ko", depends: ["jbd2", "mbcache", "crc16"] },
    { path: "kernel/virt/lib/irqbypass.ko" },
    { path: "kernel/arch/x86/kvm/kvm.ko", depends: ["irqbypass"] },
    { path: "kernel/arch/x86/kvm/kvm-amd.ko", depends: ["kvm", "ccp"] },
    { path: "kernel/drivers/crypto/ccp/ccp.ko" },
    { path: "kernel/drivers/char/hw_random/virtio-rng.ko", depends: ["virtio", "virtio_ring"] },
    { path: "kernel/broken/needs_ghost.ko", depends: ["ghost"] },
  ], ["virtio", "virtio_ring"]);
  return { root, kernel };
}

Deno.test("modinfo parser reads depends and other keys from the .modinfo section", () => {
  const info = readModInfo(fakeModuleElf({ depends: "a,b-c", alias: "x", vermagic: "6.1" }));
  assert.deepEqual(moduleDepends(info), ["a", "b-c"]);
  assert.deepEqual(info.get("alias"), ["x"]);
  assert.deepEqual(moduleDepends(readModInfo(fakeModuleElf({ depends: "" }))), []);
  assert.throws(() => readModInfo(new Uint8Array(100)), ModInfoError);
});

Deno.test("module resolution puts dependencies first, each once", async () => {
  const { root, kernel } = await fakeTree();
  try {
    const index = await ModuleIndex.load(kernel.modulesDir);
    const order = (await index.resolve(["ext4", "kvm-amd", "jbd2"])).map((m) => m.name);
    assert.deepEqual(order, [
      "jbd2",
      "mbcache",
      "crc16",
      "ext4",
      "irqbypass",
      "kvm",
      "ccp",
      "kvm_amd",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("module names match with dashes or underscores; file names keep the original", async () => {
  const { root, kernel } = await fakeTree();
  try {
    const index = await ModuleIndex.load(kernel.modulesDir);
    assert.equal(canonical("kvm-amd"), "kvm_amd");
    const [rng] = await index.resolve(["virtio_rng"]);
    assert.equal(rng.name, "virtio_rng");
    assert.equal(rng.fileName, "virtio-rng.ko");
    assert.ok(index.find("kvm_amd")?.endsWith("/kvm-amd.ko"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("built-in modules are skipped; missing ones throw unless optional", async () => {
  const { root, kernel } = await fakeTree();
  try {
    const index = await ModuleIndex.load(kernel.modulesDir);
    assert.ok(index.isBuiltin("virtio"));
    assert.deepEqual((await index.resolve(["virtio", "virtio-rng"])).map((m) => m.name), [
      "virtio_rng",
    ]);
    await assert.rejects(() => index.resolve(["nope"]), ModuleError);
    assert.deepEqual(await index.resolve(["nope"], { optional: true }), []);
    // A missing dependency is an error even in optional mode.
    await assert.rejects(() => index.resolve(["needs_ghost"], { optional: true }), /ghost/);
    await assert.rejects(() => index.read("virtio"), /built into the kernel/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("compressed modules are returned decompressed", async () => {
  const root = await Deno.makeTempDir({ prefix: "modules_test_" });
  try {
    const kernel = await makeFakeKernel(root, []);
    const elf = fakeModuleElf({ depends: "" });
    await Deno.mkdir(`${kernel.modulesDir}/kernel`, { recursive: true });
    await Deno.writeFile(`${kernel.modulesDir}/kernel/zipped.ko.gz`, gzipSync(elf));
    const index = await ModuleIndex.load(kernel.modulesDir);
    const [m] = await index.resolve(["zipped"]);
    assert.equal(m.fileName, "zipped.ko");
    assert.deepEqual(m.data, elf);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("modules.dep is used when present", async () => {
  const root = await Deno.makeTempDir({ prefix: "modules_test_" });
  try {
    const kernel = await makeFakeKernel(root, [{ path: "kernel/a.ko" }, { path: "kernel/b.ko" }]);
    // modinfo says nothing; modules.dep says b needs a.
    await Deno.writeTextFile(
      `${kernel.modulesDir}/modules.dep`,
      "kernel/a.ko:\nkernel/b.ko: kernel/a.ko\n",
    );
    const index = await ModuleIndex.load(kernel.modulesDir);
    assert.deepEqual((await index.resolve(["b"])).map((m) => m.name), ["a", "b"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
