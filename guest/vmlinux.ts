/**
 * Extracting the uncompressed ELF `vmlinux` from a bzImage.
 *
 * A bzImage is real-mode setup code followed by a small decompressor and the
 * compressed kernel. The x86 boot protocol (2.08+) header gives the payload's
 * place: `payload_offset` and `payload_length`, relative to the protected-mode
 * code that starts after `(setup_sects + 1) * 512` bytes. Under TCG the in-guest decompression of
 * Debian's xz kernel costs seconds: QEMU boots an ELF vmlinux that carries a
 * PVH note (Debian sets CONFIG_PVH) directly, so the lab boots that instead,
 * and dvmm boots a bzImage through its cached vmlinux (x86/loader.ts).
 *
 * Payload formats: xz, zstd and gzip, decompressed in-process (./decompress.ts).
 *
 * @module
 */

import { sha256Hex, writeFileAtomically } from "./asset_cache.ts";
import { dvmmCacheDir } from "./cache_dir.ts";
import type { KernelAssets } from "./debian_kernel.ts";
import { type Compression, decompress, detectCompression } from "./decompress.ts";
import { HDRS_MAGIC, readHeaderField, SETUP_HEADER } from "../x86/bzimage.ts";
import { dropZeroPages, isElf } from "../x86/elf_kernel.ts";
import { type MappedRegularFile, mapRegularFile, OsError } from "../kvm/libc.ts";
import { readExactly } from "./read_exactly.ts";

/** Where the compressed kernel is inside a bzImage, and its format. */
export interface BzImagePayload {
  /** Offset in the file. */
  readonly offset: number;
  /** Length in bytes. */
  readonly length: number;
  /** Compression, from the payload's magic bytes. */
  readonly format: Compression | "unknown";
}

/** Locate the compressed payload of a bzImage. Throws if it is not a 2.08+ bzImage. */
export function bzImagePayload(image: Uint8Array, what = "bzImage"): BzImagePayload {
  if (image.length < 0x250 || readHeaderField(image, "header") !== HDRS_MAGIC) {
    throw new Error(`${what}: not a bzImage (no HdrS signature at 0x202)`);
  }
  const version = readHeaderField(image, "version");
  if (version < SETUP_HEADER.payload_offset.since) {
    throw new Error(`${what}: boot protocol 0x${version.toString(16)} has no payload fields`);
  }
  const setup = readHeaderField(image, "setup_sects") || 4;
  const offset = (setup + 1) * 512 + readHeaderField(image, "payload_offset");
  const length = readHeaderField(image, "payload_length");
  if (offset + length > image.length) {
    throw new Error(`${what}: payload 0x${offset.toString(16)}+${length} runs past the end`);
  }
  return {
    offset,
    length,
    format: detectCompression(image.subarray(offset, offset + 6)) ?? "unknown",
  };
}

/** Decompress the kernel inside bzImage bytes and return the ELF vmlinux bytes. */
export async function decompressVmlinux(
  image: Uint8Array,
  what = "bzImage",
): Promise<Uint8Array> {
  const payload = bzImagePayload(image, what);
  if (payload.format === "unknown") {
    throw new Error(`${what}: unsupported kernel compression (payload magic)`);
  }
  const data = image.subarray(payload.offset, payload.offset + payload.length);
  // The kernel build appends the uncompressed size (u32) after the compressed stream.
  const size = new DataView(data.buffer, data.byteOffset + data.length - 4).getUint32(0, true);
  let elf: Uint8Array;
  try {
    elf = await decompress(payload.format, data, size);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
  if (!isElf(elf)) throw new Error(`${what}: decompressed payload is not an ELF vmlinux`);
  return elf;
}

/** Decompress the kernel inside a bzImage file and return the ELF vmlinux bytes. */
export async function extractVmlinux(bzImagePath: string): Promise<Uint8Array> {
  return await decompressVmlinux(await Deno.readFile(bzImagePath), bzImagePath);
}

/**
 * What identifies a file's contents without reading them: its absolute path,
 * size, and modification and change times (`info` is a `stat` of the open
 * file). Not the inode: the lab's 9p share renumbers those. Replacing or
 * rewriting a file changes its ctime. Undefined where the platform gives no times.
 */
export function fileIdentity(absolutePath: string, info: Deno.FileInfo): string | undefined {
  if (!info.mtime || !info.ctime) return undefined;
  return [absolutePath, info.size, info.mtime.getTime(), info.ctime.getTime()].join(":");
}

/** A vmlinux from the cache. */
export interface CachedVmlinux {
  /** The ELF bytes (valid until `close`). */
  readonly elf: Uint8Array;
  /** Its file in the cache. */
  readonly path: string;
  /** Read a range of the ELF straight into `dest` (guest memory), when it is a cached file. */
  readonly readInto?: (dest: Uint8Array, offset: number) => void;
  /** Release the bytes. */
  close(): void;
}

/** Options for {@linkcode cachedVmlinux}. */
export interface CachedVmlinuxOptions {
  /** Name of the image in messages. */
  what?: string;
  /** Cache directory (default {@linkcode dvmmCacheDir}). */
  cacheDir?: string;
  /**
   * {@linkcode fileIdentity} of the file the image was read from, taken
   * before reading it. A boot of the same file then finds its kernel through
   * `<cache>/vmlinux/by-file/` without hashing the image (a quarter second
   * under nested virtualization); a file changed since has another identity.
   */
  identity?: string;
}

/**
 * The bzImage `image`'s kernel ready to boot, from the cache keyed by the
 * image's SHA-256 (`<cache>/vmlinux/<sha256>.boot.elf`), else decompressed
 * now and stored there (atomically) for the next boot. What is cached is the vmlinux without its all-zero pages
 * ({@linkcode dropZeroPages}: about half the bytes), for loading into fresh
 * guest RAM. Undefined when it is not cached and the cache cannot be written
 * (read-only, full): decompressing on every boot would cost what the guest's
 * own decompression costs. A cached kernel is mapped, not read: call `close`
 * once its bytes have been copied into the guest.
 */
export async function cachedVmlinux(
  image: Uint8Array,
  opts: CachedVmlinuxOptions = {},
): Promise<CachedVmlinux | undefined> {
  const dir = `${opts.cacheDir ?? dvmmCacheDir()}/vmlinux`;
  const index = opts.identity ? `${dir}/by-file/${await shortHash(opts.identity)}` : undefined;
  if (index) {
    const name = await Deno.readTextFile(index).catch(() => "");
    const hit = /^[0-9a-f]{32}$/.test(name) ? mapCached(`${dir}/${name}.boot.elf`) : undefined;
    if (hit) return hit;
  }
  const digest = await shortHash(image);
  const path = `${dir}/${digest}.boot.elf`;
  // Best effort: without the index entry the next boot hashes the image again.
  const remember = () => index && writeFileAtomically(index, digest).catch(() => {});
  const hit = mapCached(path);
  if (hit) {
    await remember();
    return hit;
  }
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  let file: Deno.FsFile;
  try {
    await Deno.mkdir(dir, { recursive: true });
    file = await Deno.open(tmp, { write: true, createNew: true });
  } catch {
    return undefined;
  }
  const elf = await storeAs(
    file,
    tmp,
    path,
    async () => dropZeroPages(await decompressVmlinux(image, opts.what)),
  );
  await remember();
  return { elf, path, close() {} };
}

/** The cached ELF at `path`, mapped (and read ahead in one go); undefined if there is none. */
function mapCached(path: string): CachedVmlinux | undefined {
  try {
    const mapped = mapRegularFile(path);
    if (mapped && isElf(mapped.bytes)) {
      return { elf: mapped.bytes, path, readInto: mapped.readInto, close: mapped.close };
    }
    mapped?.close();
  } catch {
    // not cached
  }
  return undefined;
}

/** The first 16 bytes of the SHA-256 of `data` (a string as UTF-8), in hex: cache file names. */
async function shortHash(data: Uint8Array | string): Promise<string> {
  return (await sha256Hex(data)).slice(0, 32);
}

/**
 * Put the kernel of the bzImage at `bzImagePath` into the cache now (on the
 * host before a lab run, whose view of the cache is read-only). Returns the
 * cached file, or undefined when the cache cannot be written.
 */
export async function fillKernelCache(bzImagePath: string): Promise<string | undefined> {
  const image = await readFileWithIdentity(bzImagePath);
  try {
    const cached = await cachedVmlinux(image.bytes, {
      what: bzImagePath,
      identity: image.identity,
    });
    cached?.close();
    return cached?.path;
  } finally {
    image.close();
  }
}

/**
 * Path of the whole uncompressed vmlinux of `kernel` (for booting the lab's
 * L1 with QEMU), extracted once into `<cache>/vmlinux/vmlinux-<version>`
 * (about 65 MB for Debian's kernel). Throws when it cannot be stored.
 */
export async function ensureVmlinux(kernel: KernelAssets): Promise<string> {
  const dir = `${dvmmCacheDir()}/vmlinux`;
  const path = `${dir}/vmlinux-${kernel.version}`;
  try {
    if ((await Deno.stat(path)).size > 0) return path;
  } catch {
    // not extracted yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  await storeAs(file, tmp, path, () => extractVmlinux(kernel.vmlinuz));
  return path;
}

/** A file's bytes and its {@linkcode fileIdentity}, from {@linkcode readFileWithIdentity}. */
export interface FileBytes {
  /** The bytes (valid until `close`). */
  readonly bytes: Uint8Array;
  /** The identity, taken on the open file; undefined where the platform gives no times. */
  readonly identity?: string;
  /** Read a range straight into `dest` (a mapped file: `pread`); see kvm/libc.ts `mapRegularFile`. */
  readonly readInto?: (dest: Uint8Array, offset: number) => void;
  /** Release the bytes (unmap them; nothing for bytes that were read). */
  close(): void;
}

/**
 * A file's bytes and its {@linkcode fileIdentity} (taken on the open file,
 * before reading). A regular file is mapped, not read: reading Debian's 8 MB
 * bzImage took 30 ms on the host (an 8 MB `read` through Deno), mapping it
 * 1 ms, and a kernel found in the vmlinux cache needs little more than its
 * header. Anything else (a pipe, say) is read. Call `close` once nothing
 * uses the bytes any more (views into them included).
 */
export async function readFileWithIdentity(path: string): Promise<FileBytes> {
  const absolute = await Deno.realPath(path);
  let mapped: MappedRegularFile | undefined;
  // Only a regular file is opened to be mapped: opening a FIFO would take its one writer's data.
  if ((await Deno.stat(absolute)).isFile) {
    try {
      mapped = mapRegularFile(absolute);
    } catch (e) {
      if (!(e instanceof OsError)) throw e;
      // Not mappable: reading it says what is wrong (permission, say) as Deno's errors do.
    }
  }
  if (mapped) {
    return {
      bytes: mapped.bytes,
      identity: fileIdentity(absolute, mapped.info),
      readInto: mapped.readInto,
      close: mapped.close,
    };
  }
  const { bytes, info } = await readExactly(absolute);
  return { bytes, identity: info && fileIdentity(absolute, info), close() {} };
}

/** Write what `make` returns to `file` (opened at `tmp`), sync it, and rename it to `path`. */
async function storeAs(
  file: Deno.FsFile,
  tmp: string,
  path: string,
  make: () => Promise<Uint8Array>,
): Promise<Uint8Array> {
  try {
    const bytes = await make();
    for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
    await file.syncData();
    file.close();
    await Deno.rename(tmp, path);
    return bytes;
  } catch (e) {
    try {
      file.close();
    } catch { /* closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
