/**
 * Reading the `.modinfo` section of a Linux kernel module (an ELF64
 * little-endian relocatable object): NUL-separated `key=value` strings such as
 * `depends=jbd2,mbcache,crc16`, `vermagic=...`, `alias=...`, `softdep=pre: ...`.
 *
 * Debian's kernel package ships without `modules.dep` (depmod runs at install
 * time), so the module dependencies come from here.
 *
 * @module
 */

/** Parsed `.modinfo`: each key with all of its values, in order. */
export type ModInfo = Map<string, string[]>;

/** Thrown when the bytes are not an ELF64 LE object or have no `.modinfo`. */
export class ModInfoError extends Error {
  /**
   * A `.modinfo` read error.
   * @param message what was wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "ModInfoError";
  }
}

/** Parse the `.modinfo` section of module bytes (`what` names the module in errors). */
export function readModInfo(elf: Uint8Array, what = "module"): ModInfo {
  const section = findSection(elf, ".modinfo", what);
  const info: ModInfo = new Map();
  const text = new TextDecoder().decode(section);
  for (const item of text.split("\0")) {
    const eq = item.indexOf("=");
    if (eq <= 0) continue;
    const key = item.slice(0, eq);
    const list = info.get(key) ?? [];
    list.push(item.slice(eq + 1));
    info.set(key, list);
  }
  return info;
}

/** The modules named by `depends=` (empty when it has none). */
export function moduleDepends(info: ModInfo): string[] {
  return (info.get("depends") ?? []).flatMap((v) => v.split(",")).filter((s) => s !== "");
}

/** ELF64 file header fields used here (byte offsets). */
const ElfHeader = {
  ident: 0, // "\x7fELF", class, data
  shoff: 0x28, // u64 section header table offset
  shentsize: 0x3a, // u16
  shnum: 0x3c, // u16
  shstrndx: 0x3e, // u16
  size: 0x40,
} as const;

/** ELF64 section header fields (byte offsets within one entry). */
const SectionHeader = {
  name: 0x00, // u32 offset into the section name string table
  offset: 0x18, // u64 file offset of the contents
  size: 0x20, // u64 size of the contents
  entrySize: 0x40,
} as const;

const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;

function findSection(elf: Uint8Array, wanted: string, what: string): Uint8Array {
  if (
    elf.length < ElfHeader.size || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c ||
    elf[3] !== 0x46
  ) {
    throw new ModInfoError(`${what}: not an ELF file`);
  }
  if (elf[4] !== ELFCLASS64 || elf[5] !== ELFDATA2LSB) {
    throw new ModInfoError(`${what}: not a 64-bit little-endian ELF file`);
  }
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const shoff = Number(view.getBigUint64(ElfHeader.shoff, true));
  const shentsize = view.getUint16(ElfHeader.shentsize, true);
  const shnum = view.getUint16(ElfHeader.shnum, true);
  const shstrndx = view.getUint16(ElfHeader.shstrndx, true);
  if (shentsize < SectionHeader.entrySize || shoff + shnum * shentsize > elf.length) {
    throw new ModInfoError(`${what}: section header table out of bounds`);
  }
  const section = (i: number): Uint8Array => {
    const at = shoff + i * shentsize;
    const off = Number(view.getBigUint64(at + SectionHeader.offset, true));
    const size = Number(view.getBigUint64(at + SectionHeader.size, true));
    if (off + size > elf.length) throw new ModInfoError(`${what}: section ${i} out of bounds`);
    return elf.subarray(off, off + size);
  };
  const names = section(shstrndx);
  const dec = new TextDecoder();
  for (let i = 0; i < shnum; i++) {
    const nameOff = view.getUint32(shoff + i * shentsize + SectionHeader.name, true);
    const end = names.indexOf(0, nameOff);
    const name = dec.decode(names.subarray(nameOff, end < 0 ? names.length : end));
    if (name === wanted) return section(i);
  }
  throw new ModInfoError(`${what}: no ${wanted} section`);
}
