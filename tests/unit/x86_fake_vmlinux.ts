/** A fake ELF vmlinux for loader tests. @module */

import { encodeInto } from "../../kvm/layout.ts";
import { ELF, elf64Ehdr, elf64Phdr } from "../../x86/elf_kernel.ts";

/** One segment of {@linkcode fakeVmlinux}: where it loads, its file bytes, its memory size. */
export interface FakeSegment {
  paddr: number;
  bytes: Uint8Array;
  memSize?: number;
  type?: number;
}

/** An x86-64 ELF executable with the given segments (data after the headers, in order). */
export function fakeVmlinux(entry: number, segments: FakeSegment[]): Uint8Array {
  const phoff = elf64Ehdr.size;
  let offset = phoff + segments.length * elf64Phdr.size;
  const placed = segments.map((s) => {
    const at = offset;
    offset += s.bytes.length;
    return at;
  });
  const file = new Uint8Array(offset);
  const view = new DataView(file.buffer);
  encodeInto(elf64Ehdr, view, 0, {
    e_ident: [...ELF.MAGIC, ELF.CLASS64, ELF.DATA2LSB, 1],
    e_type: ELF.ET_EXEC,
    e_machine: ELF.EM_X86_64,
    e_version: 1,
    e_entry: BigInt(entry),
    e_phoff: BigInt(phoff),
    e_ehsize: elf64Ehdr.size,
    e_phentsize: elf64Phdr.size,
    e_phnum: segments.length,
  });
  segments.forEach((s, i) => {
    encodeInto(elf64Phdr, view, phoff + i * elf64Phdr.size, {
      p_type: s.type ?? ELF.PT_LOAD,
      p_offset: BigInt(placed[i]),
      p_paddr: BigInt(s.paddr),
      p_vaddr: BigInt(s.paddr) + 0xffff_ffff_8000_0000n,
      p_filesz: BigInt(s.bytes.length),
      p_memsz: BigInt(s.memSize ?? s.bytes.length),
    });
    file.set(s.bytes, placed[i]);
  });
  return file;
}
