/**
 * ext2 images for virtio-blk tests, made and inspected on the host with
 * e2fsprogs: `mke2fs -d` fills a new image from a directory, `debugfs`
 * reads a file out of it and `e2fsck -fn` checks it without changing it.
 * Images live in a fresh temporary directory (inside the lab: TMPDIR on
 * tmpfs) that the caller removes.
 *
 * @module
 */

import { sh } from "./host_command.ts";

/** A new image and the directory that holds it. */
export interface Ext2Image {
  /** Temporary directory to remove when done. */
  readonly dir: string;
  /** Path of the raw image file. */
  readonly image: string;
}

/**
 * Make an ext2 image of `size` (an mke2fs size such as `8M`) whose root
 * holds `files` (name to text content), in a fresh temporary directory.
 */
export async function makeExt2Image(
  files: Readonly<Record<string, string>>,
  size = "8M",
): Promise<Ext2Image> {
  const dir = await Deno.makeTempDir({ prefix: "dvmm-ext2-" });
  try {
    await Deno.mkdir(`${dir}/content`);
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/content/${name}`, text);
    }
    const image = `${dir}/disk.img`;
    await sh("mke2fs", ["-q", "-F", "-t", "ext2", "-d", `${dir}/content`, image, size]);
    return { dir, image };
  } catch (e) {
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
}

/** The content of `path` inside `image`, read with debugfs (empty if it is absent). */
export function readExt2File(image: string, path: string): Promise<string> {
  return sh("debugfs", ["-R", `cat ${path}`, image]);
}

/**
 * Check `image` with `e2fsck -fn` (full check, change nothing); throws with
 * e2fsck's report if it finds any problem. A file system that was mounted
 * when its VMM died is "not clean" but passes if its metadata is consistent.
 */
export async function checkExt2(image: string): Promise<string> {
  return await sh("e2fsck", ["-fn", image]);
}
