/**
 * The Debian kernel that the nested-KVM lab boots as L1 and that dvmm boots by
 * default as its guest (L2).
 *
 * {@linkcode ensureKernel} asks apt which package `linux-image-amd64` depends
 * on (`linux-image-6.1.0-NN-amd64` on bookworm), downloads it once with
 * `apt-get download` and unpacks it with `dpkg-deb -x` into
 * `<cache>/kernels/<package>/` (see {@linkcode dvmmCacheDir}). The unpack goes
 * to a temporary directory that is renamed into place, so a concurrent or
 * interrupted download never leaves a half-filled cache entry. The .deb is
 * deleted afterwards; the unpacked tree (kernel, modules) is about 400 MB.
 *
 * Environment overrides:
 * - `DVMM_KERNEL_DIR`: use this unpacked tree instead (it must hold
 *   `boot/vmlinuz-<version>` and `lib/modules/<version>/` or `usr/lib/modules/...`).
 * - `DVMM_KERNEL_PACKAGE`: the package to fetch instead of asking apt.
 *
 * Offline: if apt cannot name the package but a kernel is already cached, the
 * newest cached one is used.
 *
 * @module
 */

import { writeFileAtomically } from "./asset_cache.ts";
import { dvmmCacheDir } from "./cache_dir.ts";
import { runHostTool } from "./host_tool.ts";

/** An unpacked kernel ready to boot. */
export interface KernelAssets {
  /** Kernel release, e.g. `6.1.0-56-amd64` (also the modules directory name). */
  readonly version: string;
  /** Absolute path of the bzImage. */
  readonly vmlinuz: string;
  /** Absolute path of `lib/modules/<version>` (modules not compressed on bookworm). */
  readonly modulesDir: string;
}

/** Options for {@linkcode ensureKernel}. */
export interface EnsureKernelOptions {
  /** Cache root (default {@linkcode dvmmCacheDir}). */
  cacheDir?: string;
  /** Progress messages (download, unpack); default silent. */
  log?: (message: string) => void;
}

/** Thrown when the kernel cannot be located, downloaded or unpacked. */
export class KernelError extends Error {
  /**
   * A kernel lookup error.
   * @param message what failed and what to do about it
   */
  constructor(message: string) {
    super(message);
    this.name = "KernelError";
  }
}

/** The meta package whose dependency names the current kernel. */
export const KERNEL_META_PACKAGE = "linux-image-amd64";

/** Return the Debian kernel, downloading and unpacking it on first use. */
export async function ensureKernel(opts: EnsureKernelOptions = {}): Promise<KernelAssets> {
  const override = Deno.env.get("DVMM_KERNEL_DIR");
  if (override) {
    const found = await locateTree(override);
    if (!found) {
      throw new KernelError(
        `DVMM_KERNEL_DIR=${override} holds no boot/vmlinuz-<version> with a matching lib/modules/<version>`,
      );
    }
    return found;
  }
  const kernelsDir = `${opts.cacheDir ?? dvmmCacheDir()}/kernels`;
  let pkg = Deno.env.get("DVMM_KERNEL_PACKAGE");
  if (!pkg) {
    try {
      pkg = await cachedKernelPackage(kernelsDir);
    } catch (err) {
      const cached = await newestCached(kernelsDir);
      if (cached) {
        opts.log?.(`apt unavailable (${(err as Error).message}); using cached ${cached.version}`);
        return cached;
      }
      throw err;
    }
  }
  const dir = `${kernelsDir}/${pkg}`;
  const ready = await locateTree(dir);
  if (ready) return ready;
  await downloadAndUnpack(pkg, kernelsDir, opts.log);
  const fresh = await locateTree(dir);
  if (!fresh) {
    throw new KernelError(`${pkg} unpacked to ${dir} but holds no boot/vmlinuz-* with modules`);
  }
  return fresh;
}

/** Ask apt which versioned kernel package `linux-image-amd64` depends on. */
export async function currentKernelPackage(): Promise<string> {
  const res = await runHostTool("apt-cache", ["depends", KERNEL_META_PACKAGE], {
    hint: "dvmm fetches its Debian kernel with apt; on a non-Debian host set DVMM_KERNEL_DIR",
  });
  const match = res.stdout.match(/Depends:\s*(linux-image-[0-9][^\s]*)/);
  if (res.code !== 0 || !match) {
    throw new KernelError(
      `apt-cache depends ${KERNEL_META_PACKAGE} did not name a kernel package ` +
        `(exit ${res.code}: ${(res.stderr || res.stdout).trim() || "no output"}); ` +
        `run \`apt-get update\` first, or set DVMM_KERNEL_PACKAGE / DVMM_KERNEL_DIR`,
    );
  }
  return match[1];
}

/**
 * {@linkcode currentKernelPackage}, remembered in `<kernelsDir>/current.json`
 * until apt's package lists change (apt-cache takes about a second).
 */
async function cachedKernelPackage(kernelsDir: string): Promise<string> {
  let stamp: string | undefined;
  try {
    stamp = String((await Deno.stat(APT_LISTS)).mtime?.getTime());
  } catch {
    stamp = undefined;
  }
  const memo = `${kernelsDir}/current.json`;
  if (stamp) {
    try {
      const saved = JSON.parse(await Deno.readTextFile(memo));
      if (saved.stamp === stamp && typeof saved.package === "string") return saved.package;
    } catch {
      // no memo yet
    }
  }
  const pkg = await currentKernelPackage();
  if (stamp) await writeFileAtomically(memo, JSON.stringify({ stamp, package: pkg }) + "\n");
  return pkg;
}

/** apt's package lists; its mtime changes on every `apt-get update`. */
const APT_LISTS = "/var/lib/apt/lists";

async function downloadAndUnpack(
  pkg: string,
  kernelsDir: string,
  log?: (message: string) => void,
): Promise<void> {
  await Deno.mkdir(kernelsDir, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: kernelsDir, prefix: `.tmp-${pkg}-` });
  try {
    log?.(`downloading ${pkg} with apt-get download`);
    const dl = await runHostTool("apt-get", ["download", pkg], {
      cwd: tmp,
      hint: "install apt, or set DVMM_KERNEL_DIR to an unpacked kernel",
    });
    const debs = [...Deno.readDirSync(tmp)].filter((e) => e.name.endsWith(".deb"));
    if (dl.code !== 0 || debs.length !== 1) {
      throw new KernelError(
        `apt-get download ${pkg} failed (exit ${dl.code}): ${dl.stderr.trim()}` +
          (/Unable to locate|No packages found|has no installation candidate/.test(dl.stderr)
            ? "; run `apt-get update` first"
            : ""),
      );
    }
    log?.(`unpacking ${debs[0].name}`);
    const root = `${tmp}/root`;
    const unpack = await runHostTool("dpkg-deb", ["-x", `${tmp}/${debs[0].name}`, root], {
      hint: "install dpkg",
    });
    if (unpack.code !== 0) {
      throw new KernelError(`dpkg-deb -x ${debs[0].name} failed: ${unpack.stderr.trim()}`);
    }
    try {
      await Deno.rename(root, `${kernelsDir}/${pkg}`);
    } catch (err) {
      // Another process finished first: its tree is as good as ours.
      if (!(await locateTree(`${kernelsDir}/${pkg}`))) throw err;
    }
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Find `boot/vmlinuz-<v>` and the matching modules directory under `dir`. */
async function locateTree(dir: string): Promise<KernelAssets | undefined> {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(`${dir}/boot`)];
  } catch {
    return undefined;
  }
  const abs = await Deno.realPath(dir);
  for (const e of entries) {
    if (!e.name.startsWith("vmlinuz-")) continue;
    const version = e.name.slice("vmlinuz-".length);
    for (const mods of [`${abs}/lib/modules/${version}`, `${abs}/usr/lib/modules/${version}`]) {
      try {
        if ((await Deno.stat(mods)).isDirectory) {
          return { version, vmlinuz: `${abs}/boot/${e.name}`, modulesDir: mods };
        }
      } catch {
        // try the next layout
      }
    }
  }
  return undefined;
}

async function newestCached(kernelsDir: string): Promise<KernelAssets | undefined> {
  let names: string[];
  try {
    names = [...Deno.readDirSync(kernelsDir)]
      .filter((e) => e.isDirectory && !e.name.startsWith("."))
      .map((e) => e.name)
      .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  } catch {
    return undefined;
  }
  for (const name of names.reverse()) {
    const found = await locateTree(`${kernelsDir}/${name}`);
    if (found) return found;
  }
  return undefined;
}
