/**
 * Test helpers: a fake unpacked kernel tree with tiny ELF "modules" that carry
 * only a `.modinfo` section, so module and initramfs code can be tested
 * without downloading Debian's kernel.
 *
 * @module
 */

import type { KernelAssets } from "../../guest/debian_kernel.ts";

/** A fake module: its path under `kernel/` and its `depends=` list. */
export interface FakeModule {
  /** Path relative to the modules directory, e.g. `kernel/fs/ext4/ext4.ko`. */
  readonly path: string;
  /** Names for `depends=`. */
  readonly depends?: readonly string[];
}

/** An ELF64 LE relocatable object with sections: null, .modinfo, .shstrtab. */
export function fakeModuleElf(modinfo: Record<string, string>): Uint8Array {
  const enc = new TextEncoder();
  const info = enc.encode(Object.entries(modinfo).map(([k, v]) => `${k}=${v}\0`).join(""));
  const names = enc.encode("\0.modinfo\0.shstrtab\0");
  const infoOff = 64;
  const namesOff = infoOff + info.length;
  const shoff = Math.ceil((namesOff + names.length) / 8) * 8;
  const out = new Uint8Array(shoff + 3 * 64);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setUint16(16, 1, true); // ET_REL
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true);
  v.setBigUint64(40, BigInt(shoff), true);
  v.setUint16(52, 64, true);
  v.setUint16(58, 64, true);
  v.setUint16(60, 3, true);
  v.setUint16(62, 2, true);
  out.set(info, infoOff);
  out.set(names, namesOff);
  const section = (i: number, name: number, off: number, size: number) => {
    const at = shoff + i * 64;
    v.setUint32(at, name, true);
    v.setUint32(at + 4, i === 1 ? 1 : 3, true); // PROGBITS / STRTAB
    v.setBigUint64(at + 0x18, BigInt(off), true);
    v.setBigUint64(at + 0x20, BigInt(size), true);
  };
  section(1, 1, infoOff, info.length);
  section(2, 10, namesOff, names.length);
  return out;
}

/** Create `<root>/boot/vmlinuz-<version>` and `<root>/lib/modules/<version>/...`. */
export async function makeFakeKernel(
  root: string,
  modules: readonly FakeModule[],
  builtin: readonly string[] = [],
  version = "6.1.0-99-test",
): Promise<KernelAssets> {
  const modulesDir = `${root}/lib/modules/${version}`;
  await Deno.mkdir(`${root}/boot`, { recursive: true });
  await Deno.writeTextFile(`${root}/boot/vmlinuz-${version}`, "not really a kernel");
  for (const m of modules) {
    const path = `${modulesDir}/${m.path}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const name = m.path.slice(m.path.lastIndexOf("/") + 1).replace(/\.ko.*$/, "");
    await Deno.writeFile(
      path,
      fakeModuleElf({ name, depends: (m.depends ?? []).join(","), vermagic: version }),
    );
  }
  await Deno.mkdir(modulesDir, { recursive: true });
  await Deno.writeTextFile(`${modulesDir}/modules.builtin`, builtin.map((b) => `${b}\n`).join(""));
  return { version, vmlinuz: `${root}/boot/vmlinuz-${version}`, modulesDir };
}
