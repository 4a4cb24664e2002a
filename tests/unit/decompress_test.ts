import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { decompress, DecompressError, detectCompression } from "../../guest/decompress.ts";

/** Compress with the system liblzma / libzstd (the same libraries dvmm decodes with). */
function compress(format: "xz" | "zstd", data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 1024);
  if (format === "xz") {
    const lib = Deno.dlopen("liblzma.so.5", {
      lzma_easy_buffer_encode: {
        parameters: ["u32", "u32", "pointer", "buffer", "usize", "buffer", "buffer", "usize"],
        result: "i32",
      },
    });
    const pos = new BigUint64Array(1);
    const CHECK_CRC32 = 1;
    const ret = lib.symbols.lzma_easy_buffer_encode(
      6,
      CHECK_CRC32,
      null,
      data as Uint8Array<ArrayBuffer>,
      BigInt(data.length),
      out,
      pos,
      BigInt(out.length),
    );
    lib.close();
    assert.equal(ret, 0);
    return out.subarray(0, Number(pos[0]));
  }
  const lib = Deno.dlopen("libzstd.so.1", {
    ZSTD_compress: { parameters: ["buffer", "usize", "buffer", "usize", "i32"], result: "usize" },
  });
  const n = lib.symbols.ZSTD_compress(
    out,
    BigInt(out.length),
    data as Uint8Array<ArrayBuffer>,
    BigInt(data.length),
    3,
  );
  lib.close();
  return out.subarray(0, Number(n));
}

/** 1 MiB of compressible but not trivial bytes. */
function sample(): Uint8Array {
  const data = new Uint8Array(1 << 20);
  let x = 1;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = (x >>> 24) & 0x0f;
  }
  return data;
}

Deno.test("xz, zstd and gzip data decompress in-process, with trailing bytes ignored", async () => {
  const data = sample();
  for (const format of ["xz", "zstd"] as const) {
    const packed = compress(format, data);
    assert.equal(detectCompression(packed), format);
    const withSize = new Uint8Array([...packed, 0, 0, 0x10, 0]); // a kernel build appends its size
    assert.deepEqual(await decompress(format, withSize, data.length), data, format);
    assert.deepEqual(await decompress(format, packed), data, `${format} without a size hint`);
    assert.deepEqual(await decompress(format, packed, 100), data, `${format} with a small hint`);
  }
  const gz = new Uint8Array(gzipSync(data));
  assert.equal(detectCompression(gz), "gzip");
  assert.deepEqual(await decompress("gzip", gz), data);
  assert.equal(detectCompression(new Uint8Array(8)), undefined);
});

Deno.test("corrupt or truncated compressed data is a DecompressError naming the format", async () => {
  const data = sample();
  const fails = (format: "xz" | "zstd" | "gzip", bytes: Uint8Array) =>
    assert.rejects(
      () => decompress(format, bytes, data.length),
      (e: unknown) => e instanceof DecompressError && e.message.startsWith(`${format}:`),
    );
  for (const format of ["xz", "zstd"] as const) {
    const packed = compress(format, data);
    await fails(format, packed.subarray(0, packed.length >> 1));
  }
  const xz = compress("xz", data).slice();
  xz[xz.length >> 1] ^= 0xff; // caught by the stream's CRC32
  await fails("xz", xz);
  await fails("gzip", new Uint8Array([0x1f, 0x8b, 1, 2]));
});
