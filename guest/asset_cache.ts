/**
 * Built guest assets (initramfs images) cached under the dvmm cache by a hash
 * of their inputs, so an unchanged build is a single stat. Writes go to a
 * temporary file renamed into place, so readers never see a partial file.
 *
 * @module
 */

import { dvmmCacheDir } from "./cache_dir.ts";

/** Lower-case hex SHA-256 of bytes or of a string's UTF-8 encoding. */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Store `data` (bytes, or a string as UTF-8) at `path` through a temporary
 * file beside it and a rename, creating the directory: readers never see a
 * partial file. Throws if it cannot (the temporary file is removed).
 */
export async function writeFileAtomically(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** A cheap identity of a host file for cache keys: path, size and mtime. */
export async function fileStamp(path: string): Promise<string> {
  const st = await Deno.stat(path);
  return `${path}:${st.size}:${st.mtime?.getTime() ?? 0}`;
}

/**
 * The path of `<cache>/<subdir>/<prefix>-<hash>.<ext>` where hash covers `key`
 * (any JSON value describing every input); `build` runs only when it is missing.
 */
export async function cachedAsset(
  subdir: string,
  prefix: string,
  ext: string,
  key: unknown,
  build: () => Promise<Uint8Array>,
): Promise<string> {
  const hash = (await sha256Hex(JSON.stringify(key))).slice(0, 24);
  const dir = `${dvmmCacheDir()}/${subdir}`;
  const path = `${dir}/${prefix}-${hash}.${ext}`;
  try {
    if ((await Deno.stat(path)).isFile) return path;
  } catch {
    // not built yet
  }
  await writeFileAtomically(path, await build());
  return path;
}
