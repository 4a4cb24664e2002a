/**
 * Reading a whole file into a buffer of its exact size.
 *
 * @module
 */

/**
 * A file's bytes, read into a buffer of its size (about twice as fast as
 * `Deno.readFile`, which grows its buffer, for a kernel or an initrd), and the
 * `stat` of the open file taken before reading (undefined for a pipe or a
 * device, whose size is unknown).
 */
export async function readExactly(
  path: string,
): Promise<{ bytes: Uint8Array; info?: Deno.FileInfo }> {
  using file = await Deno.open(path);
  const info = await file.stat();
  // A pipe or a device: read what the open file gives (opening a FIFO again would wait for a writer).
  if (!info.isFile) {
    return { bytes: new Uint8Array(await new Response(file.readable).arrayBuffer()) };
  }
  const bytes = new Uint8Array(info.size);
  let at = 0;
  while (at < info.size) {
    const n = await file.read(bytes.subarray(at));
    if (n === null) break;
    at += n;
  }
  return { bytes: bytes.subarray(0, at), info };
}
