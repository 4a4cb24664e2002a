import assert from "node:assert/strict";
import { dropZeroPages, ELF, elf64Ehdr, elf64Phdr, parseElfKernel } from "../../x86/elf_kernel.ts";
import { fakeVmlinux } from "./x86_fake_vmlinux.ts";

Deno.test("an ELF kernel yields its entry and PT_LOAD segments at their physical addresses", () => {
  const elf = fakeVmlinux(0x100_0000, [
    { paddr: 0x100_0000, bytes: new Uint8Array([1, 2, 3]) },
    { paddr: 0x200_0000, bytes: new Uint8Array(4), type: 4 }, // PT_NOTE: ignored
    { paddr: 0x300_0000, bytes: new Uint8Array([9]), memSize: 0x1000 },
  ]);
  const k = parseElfKernel(elf);
  assert.equal(k.entry, 0x100_0000);
  assert.deepEqual(k.segments.map((s) => [s.paddr, s.fileSize, s.memSize]), [
    [0x100_0000, 3, 3],
    [0x300_0000, 1, 0x1000],
  ]);
  assert.deepEqual([...elf.subarray(k.segments[0].offset, k.segments[0].offset + 3)], [1, 2, 3]);
  assert.equal(k.start, 0x100_0000);
  assert.equal(k.end, 0x300_1000);
});

Deno.test("malformed ELF kernels are refused with what is wrong", () => {
  const seg = { paddr: 0x100_0000, bytes: new Uint8Array(16) };
  assert.throws(() => parseElfKernel(new Uint8Array(100)), /no ELF header/);
  assert.throws(() => parseElfKernel(fakeVmlinux(0x5000, [seg])), /entry 0x5000 is outside/);
  assert.throws(() => parseElfKernel(fakeVmlinux(0, [{ ...seg, type: 4 }])), /no PT_LOAD/);
  const truncated = fakeVmlinux(0x100_0000, [seg]).subarray(0, elf64Ehdr.size + elf64Phdr.size + 4);
  assert.throws(() => parseElfKernel(truncated), /does not fit the file/);
  const i386 = fakeVmlinux(0x100_0000, [seg]);
  i386[18] = 3; // e_machine EM_386
  assert.throws(() => parseElfKernel(i386), /not an x86-64 executable/);
});

Deno.test("dropping zero pages loads the same memory into zeroed RAM, from fewer bytes", () => {
  // Pages: data, zero x20 (a long gap: dropped), data, zero x2 (short: kept), data, zero tail.
  const page = (fill: number) => new Uint8Array(4096).fill(fill);
  const parts = [page(1), ...Array(20).fill(page(0)), page(2), page(0), page(0), page(3), page(0)];
  const text = new Uint8Array(parts.length * 4096);
  parts.forEach((p, i) => text.set(p, i * 4096));
  const note = new Uint8Array([4, 0, 0, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
  const elf = fakeVmlinux(0x100_0000, [
    { paddr: 0x100_0000, bytes: text },
    { paddr: 0x180_0000, bytes: note, type: ELF.PT_NOTE },
    { paddr: 0x200_0000, bytes: new Uint8Array([9, 9]), memSize: 0x10000 },
  ]);
  const small = dropZeroPages(elf);
  assert.ok(small.length < elf.length - 19 * 4096);
  const full = parseElfKernel(elf), compact = parseElfKernel(small);
  assert.equal(compact.entry, full.entry);
  assert.deepEqual(compact.segments.map((s) => [s.paddr, s.memSize]), [
    [0x100_0000, 0x1000],
    [0x101_5000, 0x4000],
    [0x200_0000, 2],
  ]);
  const load = (bytes: Uint8Array, k: typeof full) => {
    const ram = new Uint8Array(0x210_0000);
    for (const s of k.segments) ram.set(bytes.subarray(s.offset, s.offset + s.fileSize), s.paddr);
    return ram;
  };
  assert.deepEqual(load(small, compact), load(elf, full));
  // The PT_NOTE segment is kept (QEMU's PVH entry lives there).
  const phnum = new DataView(small.buffer).getUint16(elf64Ehdr.fields.e_phnum.offset, true);
  assert.equal(phnum, 4);
});
