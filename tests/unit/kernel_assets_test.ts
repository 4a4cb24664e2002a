import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { ensureKernel, KernelError } from "../../guest/debian_kernel.ts";
import {
  bzImagePayload,
  cachedVmlinux,
  extractVmlinux,
  readFileWithIdentity,
} from "../../guest/vmlinux.ts";
import { SETUP_HEADER } from "../../x86/bzimage.ts";
import { dropZeroPages, parseElfKernel } from "../../x86/elf_kernel.ts";
import { fakeVmlinux } from "./x86_fake_vmlinux.ts";
import { fakeModuleElf, makeFakeKernel } from "./fake_kernel.ts";

function fakeBzImage(payload: Uint8Array, setupSects = 1, payloadOffset = 16): Uint8Array {
  const pm = (setupSects + 1) * 512;
  const image = new Uint8Array(pm + payloadOffset + payload.length + 4);
  const v = new DataView(image.buffer);
  image[SETUP_HEADER.setup_sects.offset] = setupSects;
  v.setUint32(SETUP_HEADER.header.offset, 0x53726448, true);
  v.setUint16(SETUP_HEADER.version.offset, 0x020f, true);
  v.setUint32(SETUP_HEADER.payload_offset.offset, payloadOffset, true);
  v.setUint32(SETUP_HEADER.payload_length.offset, payload.length, true);
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

Deno.test("a bzImage's vmlinux is decompressed once into the cache, keyed by the image", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = new Uint8Array(0x3000).fill(0x90);
    text.fill(0, 0x1000, 0x2000); // a zero page inside: kept (short gap)
    const bss = new Uint8Array(0x40000); // zero pages: dropped
    bss[0x3f000] = 1;
    const elf = fakeVmlinux(0x100_0000, [
      { paddr: 0x100_0000, bytes: text },
      { paddr: 0x200_0000, bytes: bss },
    ]);
    const image = fakeBzImage(gzipSync(elf));
    const first = await cachedVmlinux(image, { cacheDir: dir });
    assert.ok(first);
    assert.deepEqual(first.elf, dropZeroPages(elf));
    assert.deepEqual(
      parseElfKernel(first.elf).segments.map((s) => [s.paddr, s.fileSize]),
      [[0x100_0000, 0x3000], [0x203_f000, 0x1000]],
    );
    assert.match(first.path, new RegExp(`^${dir}/vmlinux/[0-9a-f]{32}\\.boot\\.elf$`));
    assert.deepEqual(await Deno.readFile(first.path), first.elf);
    // A hit reads the cache: what is stored there is what boots.
    const marked = first.elf.slice();
    marked[100] ^= 1;
    await Deno.writeFile(first.path, marked);
    const hit = await cachedVmlinux(image, { cacheDir: dir });
    assert.deepEqual(hit?.elf, marked);
    hit?.close();
    // Another image, another entry.
    const other = await cachedVmlinux(fakeBzImage(gzipSync(elf), 2), { cacheDir: dir });
    assert.notEqual(other?.path, first.path);
    assert.deepEqual([...Deno.readDirSync(`${dir}/vmlinux`)].length, 2, "no temp files left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a kernel file boots again through its identity, without hashing; a changed file is hashed anew", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const elf = fakeVmlinux(0x100_0000, [{ paddr: 0x100_0000, bytes: new Uint8Array(64).fill(7) }]);
    const kernel = `${dir}/bzImage`;
    await Deno.writeFile(kernel, fakeBzImage(gzipSync(elf)));
    const read = await readFileWithIdentity(kernel);
    assert.ok(read.identity?.startsWith(`${await Deno.realPath(kernel)}:`));
    const first = await cachedVmlinux(read.bytes, { cacheDir: dir, identity: read.identity });
    first?.close();
    read.close();
    assert.equal([...Deno.readDirSync(`${dir}/vmlinux/by-file`)].length, 1);
    // Same identity: the index answers, the bytes are not even looked at.
    const hit = await cachedVmlinux(new Uint8Array(16), { cacheDir: dir, identity: read.identity });
    assert.equal(hit?.path, first?.path);
    hit?.close();
    // The file rewritten (another kernel): another identity, so its own bytes decide.
    await new Promise((r) => setTimeout(r, 20));
    await Deno.writeFile(kernel, fakeBzImage(gzipSync(elf), 2));
    const again = await readFileWithIdentity(kernel);
    assert.notEqual(again.identity, read.identity);
    const other = await cachedVmlinux(again.bytes, { cacheDir: dir, identity: again.identity });
    assert.notEqual(other?.path, first?.path);
    other?.close();
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with no writable cache, the vmlinux is not decompressed at all", async () => {
  const file = await Deno.makeTempFile();
  try {
    const elf = fakeVmlinux(0x100_0000, [{ paddr: 0x100_0000, bytes: new Uint8Array(16).fill(1) }]);
    assert.equal(
      await cachedVmlinux(fakeBzImage(gzipSync(elf)), { cacheDir: `${file}/cache` }),
      undefined,
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("a user's file is mapped when it is a regular file, read otherwise, and missing ones say so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/initrd`;
    const data = new Uint8Array(10_000).map((_, i) => i * 7);
    await Deno.writeFile(path, data);
    const mapped = await readFileWithIdentity(path);
    assert.deepEqual(mapped.bytes, data);
    // A range read straight into a buffer (guest memory, in a launch).
    const dest = new Uint8Array(100);
    mapped.readInto!(dest, 9_900);
    assert.deepEqual(dest, data.subarray(9_900));
    assert.throws(() => mapped.readInto!(new Uint8Array(2), 9_999), RangeError);
    assert.ok(mapped.identity?.startsWith(`${await Deno.realPath(path)}:10000:`));
    // Replaced at its path while mapped: the mapping keeps the file that was opened.
    await Deno.writeFile(`${path}.new`, new Uint8Array(3));
    await Deno.rename(`${path}.new`, path);
    assert.deepEqual(mapped.bytes, data);
    mapped.close();
    // An empty file and a pipe are read, not mapped.
    await Deno.writeFile(`${dir}/empty`, new Uint8Array(0));
    assert.equal((await readFileWithIdentity(`${dir}/empty`)).bytes.length, 0);
    const fifo = `${dir}/fifo`;
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    const writer = Deno.writeFile(fifo, Uint8Array.of(1, 2, 3));
    const piped = await readFileWithIdentity(fifo);
    await writer;
    assert.deepEqual([...piped.bytes], [1, 2, 3]);
    await assert.rejects(readFileWithIdentity(`${dir}/missing`), Deno.errors.NotFound);
    await assert.rejects(readFileWithIdentity(dir), Deno.errors.IsADirectory);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
