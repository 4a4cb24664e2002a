import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { ensureKernel, KernelError } from "../../guest/debian_kernel.ts";
import { BzImageHeader, bzImagePayload, extractVmlinux } from "../../guest/vmlinux.ts";
import { fakeModuleElf, makeFakeKernel } from "./fake_kernel.ts";

function fakeBzImage(payload: Uint8Array, setupSects = 1, payloadOffset = 16): Uint8Array {
  const pm = (setupSects + 1) * 512;
  const image = new Uint8Array(pm + payloadOffset + payload.length + 4);
  const v = new DataView(image.buffer);
  image[BzImageHeader.setupSects] = setupSects;
  v.setUint32(BzImageHeader.magic, 0x53726448, true);
  v.setUint16(BzImageHeader.version, 0x020f, true);
  v.setUint32(BzImageHeader.payloadOffset, payloadOffset, true);
  v.setUint32(BzImageHeader.payloadLength, payload.length, true);
  image.set(payload, pm + payloadOffset);
  return image;
}

Deno.test("bzImage payload is located from the boot protocol header", () => {
  const gz = gzipSync(new Uint8Array([1, 2, 3]));
  const p = bzImagePayload(fakeBzImage(gz, 3, 100));
  assert.deepEqual(p, { offset: 4 * 512 + 100, length: gz.length, format: "gzip" });
  assert.throws(() => bzImagePayload(new Uint8Array(4096)), /not a bzImage/);
});

Deno.test("extractVmlinux decompresses a gzip payload to the ELF", async () => {
  const elf = fakeModuleElf({ name: "vmlinux" });
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, fakeBzImage(gzipSync(elf)));
    assert.deepEqual(await extractVmlinux(path), elf);
    await Deno.writeFile(path, fakeBzImage(gzipSync(new Uint8Array(64)))); // not ELF
    await assert.rejects(() => extractVmlinux(path), /not an ELF vmlinux/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("DVMM_KERNEL_DIR selects an unpacked kernel tree without apt", async () => {
  const root = await Deno.makeTempDir({ prefix: "kernel_test_" });
  const saved = Deno.env.get("DVMM_KERNEL_DIR");
  try {
    const fake = await makeFakeKernel(root, [{ path: "kernel/a.ko" }], [], "6.9.9-1-amd64");
    Deno.env.set("DVMM_KERNEL_DIR", root);
    const k = await ensureKernel();
    assert.equal(k.version, "6.9.9-1-amd64");
    assert.equal(k.vmlinuz, await Deno.realPath(fake.vmlinuz));
    assert.equal(k.modulesDir, await Deno.realPath(fake.modulesDir));
    Deno.env.set("DVMM_KERNEL_DIR", `${root}/lib`);
    await assert.rejects(() => ensureKernel(), KernelError);
  } finally {
    if (saved === undefined) Deno.env.delete("DVMM_KERNEL_DIR");
    else Deno.env.set("DVMM_KERNEL_DIR", saved);
    await Deno.remove(root, { recursive: true });
  }
});
