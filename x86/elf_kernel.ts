/**
 * The loadable view of an x86-64 ELF `vmlinux`: its entry point and the
 * `PT_LOAD` segments with their physical load addresses (ELF-64 object file
 * format; the x86-64 kernel is linked with `ENTRY(phys_startup_64)`, so
 * `e_entry` is the physical address of `startup_64`, entered in 64-bit mode
 * with RSI pointing at the zero page, as from the bzImage decompressor).
 *
 * @module
 */

import { decodeFrom, encodeInto, struct, type StructValue } from "../kvm/layout.ts";

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
  /**
   * An ELF error; the message gets an `ELF kernel: ` prefix.
   * @param message what is wrong, with offsets
   */
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
  PT_NOTE: 4,
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

/** Page size for {@linkcode dropZeroPages}. */
const PAGE = 4096;
/** Zero runs shorter than this many pages stay inside their segment (fewer, larger segments). */
const MIN_ZERO_RUN_PAGES = 16;

/**
 * A copy of the ELF kernel `bytes` for loading into fresh (all-zero) guest
 * RAM: each `PT_LOAD` segment is cut into the runs of pages that are not all
 * zero (about half of Debian's kernel is zero pages, mostly `.bss` and
 * page-aligned tables), which become the new `PT_LOAD` segments; `PT_NOTE`
 * segments are kept; section headers are dropped. Loading the result into
 * zeroed memory gives the same memory as loading the original, while reading
 * and copying half the bytes.
 */
export function dropZeroPages(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = decodeFrom(elf64Ehdr, view);
  parseElfKernel(bytes); // validates the headers and segments
  const out: { p: StructValue; data: Uint8Array }[] = [];
  for (let i = 0; i < (h.e_phnum as number); i++) {
    const p = decodeFrom(elf64Phdr, view, Number(h.e_phoff) + i * elf64Phdr.size);
    const data = bytes.subarray(Number(p.p_offset), Number(p.p_offset) + Number(p.p_filesz));
    if (p.p_type === ELF.PT_NOTE) out.push({ p, data });
    if (p.p_type !== ELF.PT_LOAD) continue;
    for (const [from, to] of nonZeroRuns(data)) {
      const run = data.subarray(from, to);
      const at = BigInt(from);
      out.push({
        p: {
          ...p,
          p_vaddr: (p.p_vaddr as bigint) + at,
          p_paddr: (p.p_paddr as bigint) + at,
          p_filesz: BigInt(run.length),
          p_memsz: BigInt(run.length),
          p_align: BigInt(PAGE),
        },
        data: run,
      });
    }
  }
  const headers = elf64Ehdr.size + out.length * elf64Phdr.size;
  let offset = Math.ceil(headers / PAGE) * PAGE;
  const placed = out.map(({ p, data }) => {
    // Keep p_offset congruent to p_vaddr modulo the page size, as loaders expect.
    const skew = Number((p.p_vaddr as bigint) % BigInt(PAGE));
    offset = Math.ceil((offset - skew) / PAGE) * PAGE + skew;
    const at = offset;
    offset += data.length;
    return at;
  });
  const file = new Uint8Array(offset);
  const w = new DataView(file.buffer);
  encodeInto(elf64Ehdr, w, 0, {
    ...h,
    e_phoff: BigInt(elf64Ehdr.size),
    e_phnum: out.length,
    e_shoff: 0n,
    e_shnum: 0,
    e_shentsize: 0,
    e_shstrndx: 0,
  });
  out.forEach(({ p, data }, i) => {
    encodeInto(elf64Phdr, w, elf64Ehdr.size + i * elf64Phdr.size, {
      ...p,
      p_offset: BigInt(placed[i]),
    });
    file.set(data, placed[i]);
  });
  return file;
}

/** `[from, to)` byte ranges of `data` holding its non-zero pages (short zero gaps kept inside). */
function nonZeroRuns(data: Uint8Array): [number, number][] {
  const runs: [number, number][] = [];
  const words = data.byteOffset % 4 === 0 && data.length >= 4
    ? new Uint32Array(data.buffer, data.byteOffset, data.length >> 2)
    : undefined;
  const isZero = (at: number, end: number) => {
    if (words && at % 4 === 0 && end % 4 === 0) {
      for (let i = at >> 2; i < end >> 2; i++) if (words[i] !== 0) return false;
      return true;
    }
    for (let i = at; i < end; i++) if (data[i] !== 0) return false;
    return true;
  };
  let zeros = 0;
  for (let at = 0; at < data.length; at += PAGE) {
    const end = Math.min(at + PAGE, data.length);
    if (isZero(at, end)) {
      zeros++;
      continue;
    }
    const last = runs.at(-1);
    if (last && zeros < MIN_ZERO_RUN_PAGES) last[1] = end;
    else runs.push([at, end]);
    zeros = 0;
  }
  return runs;
}
