/**
 * In-process decompression of xz, zstd and gzip data: xz through liblzma
 * (`lzma_stream_buffer_decode`) and zstd through libzstd (`ZSTD_decompress`),
 * both over Deno FFI (Debian's dpkg depends on both libraries, so every Debian
 * system has them), gzip through the web `DecompressionStream` (node:zlib
 * would cost the VMM's start-up more than all of this). Used for kernel
 * payloads and `.ko.xz`/`.ko.zst`/`.ko.gz` modules; no helper process.
 *
 * @module
 */

/** The formats {@linkcode decompress} handles. */
export type Compression = "xz" | "zstd" | "gzip";

/** Thrown when data cannot be decompressed (or its library is missing). */
export class DecompressError extends Error {
  /**
   * A decompression error.
   * @param message what failed, naming the format
   */
  constructor(message: string) {
    super(message);
    this.name = "DecompressError";
  }
}

/** The compression of `data` from its magic bytes, or undefined. */
export function detectCompression(data: Uint8Array): Compression | undefined {
  if (data[0] === 0xfd && data[1] === 0x37 && data[2] === 0x7a && data[3] === 0x58) return "xz";
  if (data[0] === 0x28 && data[1] === 0xb5 && data[2] === 0x2f && data[3] === 0xfd) return "zstd";
  if (data[0] === 0x1f && data[1] === 0x8b) return "gzip";
  return undefined;
}

/**
 * Decompress one xz stream, zstd frame or gzip member at the start of `data`
 * (trailing bytes, such as the size a kernel build appends, are ignored).
 * `sizeHint` is the expected output size when known.
 */
export async function decompress(
  format: Compression,
  data: Uint8Array,
  sizeHint?: number,
): Promise<Uint8Array> {
  switch (format) {
    case "gzip":
      try {
        const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
          .pipeThrough(new DecompressionStream("gzip"));
        return new Uint8Array(await new Response(stream).arrayBuffer());
      } catch (e) {
        throw new DecompressError(`gzip: ${(e as Error).message}`);
      }
    case "xz":
      return withGrowingOutput("xz", data, sizeHint, xzDecode);
    case "zstd":
      return withGrowingOutput("zstd", data, sizeHint ?? zstdContentSize(data), zstdDecode);
  }
}

/** The largest output tried (a kernel is well under this). */
const MAX_OUTPUT = 1 << 30;

/** Decode into a buffer of the hinted size, doubling it while the decoder says it is too small. */
function withGrowingOutput(
  format: Compression,
  data: Uint8Array,
  hint: number | undefined,
  decode: (data: Uint8Array, out: Uint8Array) => number | "short",
): Uint8Array {
  let size = Math.max(hint ?? data.length * 4, 4096);
  for (;;) {
    const out = new Uint8Array(size);
    const n = decode(data, out);
    if (n !== "short") return out.subarray(0, n);
    if (size >= MAX_OUTPUT) throw new DecompressError(`${format}: output larger than 1 GiB`);
    size = Math.min(size * 2, MAX_OUTPUT);
  }
}

const lzmaSymbols = {
  lzma_stream_buffer_decode: {
    parameters: [
      "buffer",
      "u32",
      "pointer",
      "buffer",
      "buffer",
      "usize",
      "buffer",
      "buffer",
      "usize",
    ],
    result: "i32",
  },
} as const;

const zstdSymbols = {
  ZSTD_decompress: { parameters: ["buffer", "usize", "buffer", "usize"], result: "usize" },
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
  ZSTD_findFrameCompressedSize: { parameters: ["buffer", "usize"], result: "usize" },
  ZSTD_getFrameContentSize: { parameters: ["buffer", "usize"], result: "u64" },
} as const;

let lzma: Deno.DynamicLibrary<typeof lzmaSymbols>["symbols"] | undefined;
let zstd: Deno.DynamicLibrary<typeof zstdSymbols>["symbols"] | undefined;

function open<S extends Deno.ForeignLibraryInterface>(name: string, symbols: S, pkg: string) {
  try {
    return Deno.dlopen(name, symbols).symbols;
  } catch (e) {
    throw new DecompressError(`cannot load ${name} (install ${pkg}): ${(e as Error).message}`);
  }
}

/** liblzma's `lzma_ret` names, by value. */
const LZMA_RET = [
  "OK",
  "STREAM_END",
  "NO_CHECK",
  "UNSUPPORTED_CHECK",
  "GET_CHECK",
  "MEM_ERROR",
  "MEMLIMIT_ERROR",
  "FORMAT_ERROR",
  "OPTIONS_ERROR",
  "DATA_ERROR",
  "BUF_ERROR",
  "PROG_ERROR",
];
const LZMA_OK = 0, LZMA_BUF_ERROR = 10;

function xzDecode(data: Uint8Array, out: Uint8Array): number | "short" {
  lzma ??= open("liblzma.so.5", lzmaSymbols, "liblzma5");
  const memlimit = new BigUint64Array([0xffff_ffff_ffff_ffffn]);
  const inPos = new BigUint64Array(1), outPos = new BigUint64Array(1);
  const ret = lzma.lzma_stream_buffer_decode(
    memlimit,
    0,
    null,
    data as Uint8Array<ArrayBuffer>,
    inPos,
    BigInt(data.length),
    out as Uint8Array<ArrayBuffer>,
    outPos,
    BigInt(out.length),
  );
  if (ret === LZMA_OK) return Number(outPos[0]);
  if (ret === LZMA_BUF_ERROR && Number(inPos[0]) < data.length) return "short";
  throw new DecompressError(`xz: liblzma says LZMA_${LZMA_RET[ret] ?? ret}`);
}

/** `ZSTD_CONTENTSIZE_UNKNOWN` and `ZSTD_CONTENTSIZE_ERROR`. */
const ZSTD_SIZE_UNKNOWN = 0xffff_ffff_ffff_ffffn, ZSTD_SIZE_ERROR = 0xffff_ffff_ffff_fffen;

function zstdContentSize(data: Uint8Array): number | undefined {
  zstd ??= open("libzstd.so.1", zstdSymbols, "libzstd1");
  const n = zstd.ZSTD_getFrameContentSize(data as Uint8Array<ArrayBuffer>, BigInt(data.length));
  return n === ZSTD_SIZE_UNKNOWN || n === ZSTD_SIZE_ERROR ? undefined : Number(n);
}

function zstdError(code: number | bigint): string {
  const name = zstd!.ZSTD_getErrorName(code as bigint);
  return name ? Deno.UnsafePointerView.getCString(name) : String(code);
}

function zstdDecode(data: Uint8Array, out: Uint8Array): number | "short" {
  zstd ??= open("libzstd.so.1", zstdSymbols, "libzstd1");
  const src = data as Uint8Array<ArrayBuffer>;
  const frame = zstd.ZSTD_findFrameCompressedSize(src, BigInt(data.length));
  if (zstd.ZSTD_isError(frame)) throw new DecompressError(`zstd: ${zstdError(frame)}`);
  const n = zstd.ZSTD_decompress(out as Uint8Array<ArrayBuffer>, BigInt(out.length), src, frame);
  if (!zstd.ZSTD_isError(n)) return Number(n);
  const message = zstdError(n);
  if (/too small/i.test(message)) return "short";
  throw new DecompressError(`zstd: ${message}`);
}
