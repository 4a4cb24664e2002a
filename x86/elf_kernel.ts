/**
 * The loadable view of an x86-64 ELF `vmlinux`: its entry point and the
 * `PT_LOAD` segments with their physical load addresses (ELF-64 object file
 * format; the x86-64 kernel is linked with `ENTRY(phys_startup_64)`, so
 * `e_entry` is the physical address of `startup_64`, entered in 64-bit mode
 * with RSI pointing at the zero page, as from the bzImage decompressor).
 *
 * @module
 */

import { decodeFrom, struct } from "../kvm/layout.ts";

/** A segment to copy into guest memory. */
export interface ElfSegment {
  /** Guest physical load address (`p_paddr`). */
  readonly paddr: number;
  /** Offset of its bytes in the file. */
  readonly offset: number;
  /** Bytes taken from the file (`p_filesz`). */
  readonly fileSize: number;
  /** Bytes in memory (`p_memsz`; the rest after `fileSize` is zero). */
  readonly memSize: number;
}

/** A parsed kernel ELF. */
export interface ElfKernel {
  /** Physical entry address (`e_entry`). */
  readonly entry: number;
  /** `PT_LOAD` segments in file order. */
  readonly segments: readonly ElfSegment[];
  /** Lowest physical address loaded. */
  readonly start: number;
  /** One past the highest physical address loaded. */
  readonly end: number;
}

/** Thrown for a file that is not a loadable x86-64 ELF kernel. */
export class ElfError extends Error {
  /** @param message what is wrong, with offsets */
  constructor(message: string) {
    super(`ELF kernel: ${message}`);
    this.name = "ElfError";
  }
}

/** `Elf64_Ehdr`. */
export const elf64Ehdr = struct("Elf64_Ehdr", [
  ["e_ident", "u8", 16],
  ["e_type", "u16"],
  ["e_machine", "u16"],
  ["e_version", "u32"],
  ["e_entry", "u64"],
  ["e_phoff", "u64"],
  ["e_shoff", "u64"],
  ["e_flags", "u32"],
  ["e_ehsize", "u16"],
  ["e_phentsize", "u16"],
  ["e_phnum", "u16"],
  ["e_shentsize", "u16"],
  ["e_shnum", "u16"],
  ["e_shstrndx", "u16"],
]);

/** `Elf64_Phdr`. */
export const elf64Phdr = struct("Elf64_Phdr", [
  ["p_type", "u32"],
  ["p_flags", "u32"],
  ["p_offset", "u64"],
  ["p_vaddr", "u64"],
  ["p_paddr", "u64"],
  ["p_filesz", "u64"],
  ["p_memsz", "u64"],
  ["p_align", "u64"],
]);

/** `e_ident` checks, `e_type`, `e_machine` and `p_type` values used here. */
export const ELF = {
  MAGIC: [0x7f, 0x45, 0x4c, 0x46],
  CLASS64: 2,
  DATA2LSB: 1,
  ET_EXEC: 2,
  EM_X86_64: 62,
  PT_LOAD: 1,
} as const;

/** True when `bytes` starts with the ELF magic. */
export function isElf(bytes: Uint8Array): boolean {
  return ELF.MAGIC.every((b, i) => bytes[i] === b);
}

/** Parse the entry point and load segments of an x86-64 executable ELF kernel. */
export function parseElfKernel(bytes: Uint8Array): ElfKernel {
  if (bytes.length < elf64Ehdr.size || !isElf(bytes)) throw new ElfError("no ELF header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = decodeFrom(elf64Ehdr, view);
  const ident = h.e_ident as number[];
  if (ident[4] !== ELF.CLASS64 || ident[5] !== ELF.DATA2LSB) {
    throw new ElfError("not a 64-bit little-endian ELF");
  }
  if (h.e_type !== ELF.ET_EXEC || h.e_machine !== ELF.EM_X86_64) {
    throw new ElfError(`not an x86-64 executable (e_type ${h.e_type}, e_machine ${h.e_machine})`);
  }
  const phoff = Number(h.e_phoff), phnum = h.e_phnum as number;
  if (h.e_phentsize !== elf64Phdr.size || phoff + phnum * elf64Phdr.size > bytes.length) {
    throw new ElfError(`program headers at 0x${phoff.toString(16)} (${phnum}) run past the file`);
  }
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = decodeFrom(elf64Phdr, view, phoff + i * elf64Phdr.size);
    if (p.p_type !== ELF.PT_LOAD) continue;
    const s = {
      paddr: Number(p.p_paddr),
      offset: Number(p.p_offset),
      fileSize: Number(p.p_filesz),
      memSize: Number(p.p_memsz),
    };
    if (s.fileSize > s.memSize || s.offset + s.fileSize > bytes.length) {
      throw new ElfError(
        `segment ${i} (file 0x${s.offset.toString(16)}+0x${s.fileSize.toString(16)}, ` +
          `memory 0x${s.memSize.toString(16)}) does not fit the file`,
      );
    }
    segments.push(s);
  }
  if (segments.length === 0) throw new ElfError("no PT_LOAD segments");
  const start = Math.min(...segments.map((s) => s.paddr));
  const end = Math.max(...segments.map((s) => s.paddr + s.memSize));
  const entry = Number(h.e_entry);
  if (!segments.some((s) => entry >= s.paddr && entry < s.paddr + s.memSize)) {
    throw new ElfError(`entry 0x${entry.toString(16)} is outside every PT_LOAD segment`);
  }
  return { entry, segments, start, end };
}
