/**
 * Finding kernel modules in an unpacked kernel tree and putting them in load
 * order, for an initramfs whose init loads them with busybox `insmod` (which
 * neither resolves dependencies nor decompresses).
 *
 * Names are matched with `-` and `_` treated alike (`kvm-amd` = `kvm_amd`).
 * Dependencies come from `modules.dep` when present, otherwise from each
 * module's `.modinfo` `depends=` (Debian ships no modules.dep). Soft
 * dependencies (`softdep=`, e.g. ext4's crc32c) are not followed: list those
 * modules explicitly. Compressed modules (`.ko.gz`, `.ko.xz`, `.ko.zst`) are
 * returned decompressed (gzip in-process, xz and zstd through the host tools).
 *
 * @module
 */

import { moduleDepends, readModInfo } from "./elf_modinfo.ts";
import { decompress } from "./decompress.ts";

/** A module ready to be put in an initramfs. */
export interface LoadableModule {
  /** Canonical name (underscores), e.g. `kvm_amd`. */
  readonly name: string;
  /** File name to store it under, always ending in `.ko` (e.g. `kvm-amd.ko`). */
  readonly fileName: string;
  /** Path of the source file in the kernel tree. */
  readonly source: string;
  /** Decompressed ELF bytes. */
  readonly data: Uint8Array;
}

/** Options for {@linkcode ModuleIndex.resolve}. */
export interface ResolveOptions {
  /** Skip names that are neither a module file nor built in, instead of throwing. */
  optional?: boolean;
}

/** Thrown when a module is not found or cannot be read. */
export class ModuleError extends Error {
  /**
   * A module lookup error.
   * @param message what was wrong, naming the module and kernel tree
   */
  constructor(message: string) {
    super(message);
    this.name = "ModuleError";
  }
}

/** The modules of one kernel tree (`lib/modules/<version>`). */
export class ModuleIndex {
  readonly #paths: Map<string, string>;
  readonly #builtin: Set<string>;
  readonly #deps: Map<string, string[]>;

  private constructor(
    readonly modulesDir: string,
    paths: Map<string, string>,
    builtin: Set<string>,
    deps: Map<string, string[]>,
  ) {
    this.#paths = paths;
    this.#builtin = builtin;
    this.#deps = deps;
  }

  /** Index `modulesDir`: modules.dep if present, else a walk for `*.ko*`. Cached per directory. */
  static load(modulesDir: string): Promise<ModuleIndex> {
    let index = INDEX_CACHE.get(modulesDir);
    if (!index) {
      index = ModuleIndex.#build(modulesDir);
      INDEX_CACHE.set(modulesDir, index);
      index.catch(() => INDEX_CACHE.delete(modulesDir));
    }
    return index;
  }

  static async #build(modulesDir: string): Promise<ModuleIndex> {
    const paths = new Map<string, string>();
    const deps = new Map<string, string[]>();
    let depFile: string | undefined;
    try {
      depFile = await Deno.readTextFile(`${modulesDir}/modules.dep`);
    } catch {
      depFile = undefined;
    }
    if (depFile !== undefined) {
      for (const line of depFile.split("\n")) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue;
        const rel = line.slice(0, colon);
        const name = moduleName(rel);
        paths.set(name, `${modulesDir}/${rel}`);
        deps.set(name, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean).map(moduleName));
      }
    } else {
      try {
        await walk(modulesDir, paths);
      } catch (err) {
        throw new ModuleError(`cannot read kernel modules in ${modulesDir}: ${err}`);
      }
    }
    const builtin = new Set<string>();
    try {
      for (const line of (await Deno.readTextFile(`${modulesDir}/modules.builtin`)).split("\n")) {
        if (line.trim()) builtin.add(moduleName(line.trim()));
      }
    } catch {
      // no list of built-in modules: treat none as built in
    }
    return new ModuleIndex(modulesDir, paths, builtin, deps);
  }

  /** Path of the module file for `name`, or undefined (absent or built in). */
  find(name: string): string | undefined {
    return this.#paths.get(canonical(name));
  }

  /** Whether `name` is built into the kernel image (no file to load). */
  isBuiltin(name: string): boolean {
    return this.#builtin.has(canonical(name));
  }

  /** The decompressed module for `name`. Throws {@linkcode ModuleError} if there is no file. */
  async read(name: string): Promise<LoadableModule> {
    const source = this.find(name);
    if (!source) {
      const why = this.isBuiltin(name) ? "it is built into the kernel" : "no such module";
      throw new ModuleError(`module ${name} not found in ${this.modulesDir}: ${why}`);
    }
    const base = source.slice(source.lastIndexOf("/") + 1);
    const fileName = base.slice(0, base.indexOf(".ko")) + ".ko";
    return { name: canonical(name), fileName, source, data: await readModuleFile(source) };
  }

  /**
   * The modules for `names` plus their dependencies, each once, dependencies
   * first (the order to insmod them). Built-in modules are left out; a name
   * that is neither built in nor present throws unless `optional`.
   */
  async resolve(names: readonly string[], opts: ResolveOptions = {}): Promise<LoadableModule[]> {
    const order: LoadableModule[] = [];
    const done = new Set<string>();
    const visiting = new Set<string>();
    const visit = async (raw: string, requiredBy?: string): Promise<void> => {
      const name = canonical(raw);
      if (done.has(name) || this.isBuiltin(name)) return;
      if (visiting.has(name)) {
        throw new ModuleError(`module dependency cycle through ${name} in ${this.modulesDir}`);
      }
      if (!this.find(name)) {
        if (opts.optional && !requiredBy) return;
        const by = requiredBy ? ` (needed by ${requiredBy})` : "";
        throw new ModuleError(`module ${name}${by} not found in ${this.modulesDir}`);
      }
      visiting.add(name);
      const mod = await this.read(name);
      const deps = this.#deps.get(name) ?? moduleDepends(readModInfo(mod.data, mod.source));
      for (const dep of deps) await visit(dep, name);
      visiting.delete(name);
      done.add(name);
      order.push(mod);
    };
    for (const name of names) await visit(name);
    return order;
  }
}

/** Canonical module name: `-` becomes `_` (`virtio-rng` → `virtio_rng`). */
export function canonical(name: string): string {
  return name.replaceAll("-", "_");
}

/** Read a module file, decompressing `.gz`, `.xz` or `.zst`. */
export async function readModuleFile(path: string): Promise<Uint8Array> {
  if (path.endsWith(".ko")) return await Deno.readFile(path);
  const format = path.endsWith(".gz")
    ? "gzip"
    : path.endsWith(".xz")
    ? "xz"
    : path.endsWith(".zst")
    ? "zstd"
    : undefined;
  if (format) {
    try {
      return await decompress(format, await Deno.readFile(path));
    } catch (e) {
      throw new ModuleError(`${path}: ${(e as Error).message}`);
    }
  }
  throw new ModuleError(`${path}: unknown module file type`);
}

const INDEX_CACHE = new Map<string, Promise<ModuleIndex>>();
const MODULE_FILE = /\.ko(\.gz|\.xz|\.zst)?$/;

function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return canonical(base.replace(MODULE_FILE, ""));
}

async function walk(dir: string, out: Map<string, string>): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) await walk(path, out);
    else if (MODULE_FILE.test(e.name)) out.set(moduleName(e.name), path);
  }
}
