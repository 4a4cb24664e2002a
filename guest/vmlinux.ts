/**
 * Extracting the uncompressed ELF `vmlinux` from a bzImage.
 *
 * A bzImage is real-mode setup code followed by a small decompressor and the
 * compressed kernel. The x86 boot protocol (2.08+) header gives the payload's
 * place: `setup_sects` at 0x1f1, `payload_offset` and `payload_length` at
 * 0x248/0x24c, relative to the protected-mode code that starts after
 * `(setup_sects + 1) * 512` bytes. Under TCG the in-guest decompression of
 * Debian's xz kernel costs seconds; QEMU boots an ELF vmlinux that carries a
 * PVH note (Debian sets CONFIG_PVH) directly, so the lab boots that instead.
 *
 * Payload formats: xz (host `xz`), gzip (in-process), zstd (host `zstd`).
 *
 * @module
 */

import { gunzipSync } from "node:zlib";
import { dvmmCacheDir } from "./cache_dir.ts";
import type { KernelAssets } from "./debian_kernel.ts";
import { hostToolBytes } from "./host_tool.ts";

/** bzImage header fields (byte offsets from the start of the file). */
export const BzImageHeader = {
  setupSects: 0x1f1, // u8: setup code size in 512-byte sectors (0 means 4)
  magic: 0x202, // u32 "HdrS"
  version: 0x206, // u16 boot protocol version
  payloadOffset: 0x248, // u32, from the protected-mode code start
  payloadLength: 0x24c, // u32
} as const;

/** Where the compressed kernel is inside a bzImage, and its format. */
export interface BzImagePayload {
  /** Offset in the file. */
  readonly offset: number;
  /** Length in bytes. */
  readonly length: number;
  /** Compression, from the payload's magic bytes. */
  readonly format: "xz" | "gzip" | "zstd" | "unknown";
}

/** Locate the compressed payload of a bzImage. Throws if it is not a 2.08+ bzImage. */
export function bzImagePayload(image: Uint8Array, what = "bzImage"): BzImagePayload {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (image.length < 0x250 || view.getUint32(BzImageHeader.magic, true) !== HDRS) {
    throw new Error(`${what}: not a bzImage (no HdrS signature at 0x202)`);
  }
  const version = view.getUint16(BzImageHeader.version, true);
  if (version < 0x208) {
    throw new Error(`${what}: boot protocol 0x${version.toString(16)} has no payload fields`);
  }
  const setup = image[BzImageHeader.setupSects] || 4;
  const offset = (setup + 1) * 512 + view.getUint32(BzImageHeader.payloadOffset, true);
  const length = view.getUint32(BzImageHeader.payloadLength, true);
  if (offset + length > image.length) {
    throw new Error(`${what}: payload 0x${offset.toString(16)}+${length} runs past the end`);
  }
  const p = image.subarray(offset, offset + 6);
  const format = p[0] === 0xfd && p[1] === 0x37 && p[2] === 0x7a && p[3] === 0x58
    ? "xz"
    : p[0] === 0x1f && p[1] === 0x8b
    ? "gzip"
    : p[0] === 0x28 && p[1] === 0xb5 && p[2] === 0x2f && p[3] === 0xfd
    ? "zstd"
    : "unknown";
  return { offset, length, format };
}

/** Decompress the kernel inside a bzImage file and return the ELF vmlinux bytes. */
export async function extractVmlinux(bzImagePath: string): Promise<Uint8Array> {
  const image = await Deno.readFile(bzImagePath);
  const payload = bzImagePayload(image, bzImagePath);
  const data = image.subarray(payload.offset, payload.offset + payload.length);
  let elf: Uint8Array;
  switch (payload.format) {
    case "gzip":
      elf = new Uint8Array(gunzipSync(data));
      break;
    case "xz":
    case "zstd": {
      const tool = payload.format;
      const tmp = await Deno.makeTempFile({ prefix: "dvmm-payload-" });
      try {
        await Deno.writeFile(tmp, data);
        // The kernel build appends the uncompressed size (4 bytes) after the stream.
        const args = tool === "xz" ? ["-dc", "--single-stream", tmp] : ["-dc", tmp];
        elf = await hostToolBytes(tool, args, `install ${tool} to unpack the kernel`);
      } finally {
        await Deno.remove(tmp).catch(() => {});
      }
      break;
    }
    default:
      throw new Error(`${bzImagePath}: unsupported kernel compression (payload magic)`);
  }
  if (elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) {
    throw new Error(`${bzImagePath}: decompressed payload is not an ELF vmlinux`);
  }
  return elf;
}

/**
 * Path of the uncompressed vmlinux of `kernel`, extracted once into
 * `<cache>/vmlinux/vmlinux-<version>` (about 65 MB for Debian's kernel).
 */
export async function ensureVmlinux(kernel: KernelAssets): Promise<string> {
  const dir = `${dvmmCacheDir()}/vmlinux`;
  const path = `${dir}/vmlinux-${kernel.version}`;
  try {
    if ((await Deno.stat(path)).size > 0) return path;
  } catch {
    // not extracted yet
  }
  const elf = await extractVmlinux(kernel.vmlinuz);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(tmp, elf);
  await Deno.rename(tmp, path);
  return path;
}

const HDRS = 0x53726448; // "HdrS" little-endian
