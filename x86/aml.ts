/**
 * A tiny ACPI Machine Language (AML) encoder for the static objects dvmm's DSDT
 * needs: names, integers, strings, packages, buffers, scopes and devices, and the
 * resource descriptors that go into `_CRS` buffers (ACPI 6.x, sections 20.2 and 6.4).
 * There are no methods: every object is data.
 *
 * @module
 */

/** AML opcodes used here. */
export const AML = {
  ZERO: 0x00,
  ONE: 0x01,
  NAME: 0x08,
  BYTE_PREFIX: 0x0a,
  WORD_PREFIX: 0x0b,
  DWORD_PREFIX: 0x0c,
  STRING_PREFIX: 0x0d,
  QWORD_PREFIX: 0x0e,
  SCOPE: 0x10,
  BUFFER: 0x11,
  PACKAGE: 0x12,
  DUAL_NAME_PREFIX: 0x2e,
  MULTI_NAME_PREFIX: 0x2f,
  ROOT_CHAR: 0x5c,
  EXT_OP_PREFIX: 0x5b,
  DEVICE: 0x82,
  ONES: 0xff,
} as const;

/** Concatenate byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * PkgLength for a body of `bodyLength` bytes: the encoded length counts itself.
 * One byte up to 63; otherwise a lead byte (count of following bytes in bits 7:6,
 * low nibble of the length in 3:0) and 1-3 more bytes.
 */
export function pkgLength(bodyLength: number): Uint8Array {
  if (bodyLength + 1 <= 0x3f) return Uint8Array.of(bodyLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = bodyLength + 1 + extra;
    if (total < 1 << (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0xf);
      for (let i = 1; i <= extra; i++) out[i] = (total >>> (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`AML: package of ${bodyLength} bytes is too long`);
}

/** One 4-character NameSeg ("_S5" is padded to "_S5_"). */
export function nameSeg(seg: string): Uint8Array {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(seg)) throw new RangeError(`AML: bad name segment "${seg}"`);
  return new TextEncoder().encode(seg.padEnd(4, "_"));
}

/** A NameString: optional leading `\`, then dot-separated segments ("\\_SB_.PCI0"). */
export function nameString(path: string): Uint8Array {
  const root = path.startsWith("\\");
  const segs = (root ? path.slice(1) : path).split(".").filter((s) => s.length > 0);
  const prefix = root ? [Uint8Array.of(AML.ROOT_CHAR)] : [];
  const encoded = segs.map(nameSeg);
  if (segs.length === 0) return concat([...prefix, Uint8Array.of(0)]);
  if (segs.length === 1) return concat([...prefix, ...encoded]);
  if (segs.length === 2) {
    return concat([...prefix, Uint8Array.of(AML.DUAL_NAME_PREFIX), ...encoded]);
  }
  return concat([...prefix, Uint8Array.of(AML.MULTI_NAME_PREFIX, segs.length), ...encoded]);
}

/** An integer in its shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWord prefix). */
export function integer(value: number | bigint): Uint8Array {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`AML: integer ${v} out of range`);
  if (v === 0n) return Uint8Array.of(AML.ZERO);
  if (v === 1n) return Uint8Array.of(AML.ONE);
  const sized = (prefix: number, bytes: number) => {
    const out = new Uint8Array(1 + bytes);
    out[0] = prefix;
    for (let i = 0; i < bytes; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
    return out;
  };
  if (v <= 0xffn) return sized(AML.BYTE_PREFIX, 1);
  if (v <= 0xffffn) return sized(AML.WORD_PREFIX, 2);
  if (v <= 0xffff_ffffn) return sized(AML.DWORD_PREFIX, 4);
  return sized(AML.QWORD_PREFIX, 8);
}

/** An ASCII string constant. */
export function string(s: string): Uint8Array {
  return concat([Uint8Array.of(AML.STRING_PREFIX), new TextEncoder().encode(s), Uint8Array.of(0)]);
}

/** `Name(path, value)`. */
export function name(path: string, value: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(AML.NAME), nameString(path), value]);
}

/** `Package() { elements }`. */
export function pkg(elements: readonly Uint8Array[]): Uint8Array {
  if (elements.length > 255) throw new RangeError(`AML: package of ${elements.length} elements`);
  const body = concat([Uint8Array.of(elements.length), ...elements]);
  return concat([Uint8Array.of(AML.PACKAGE), pkgLength(body.length), body]);
}

/** `Buffer() { bytes }`. */
export function buffer(bytes: Uint8Array): Uint8Array {
  const body = concat([integer(bytes.length), bytes]);
  return concat([Uint8Array.of(AML.BUFFER), pkgLength(body.length), body]);
}

/** `Scope(path) { body }`. */
export function scope(path: string, body: readonly Uint8Array[]): Uint8Array {
  const inner = concat([nameString(path), ...body]);
  return concat([Uint8Array.of(AML.SCOPE), pkgLength(inner.length), inner]);
}

/** `Device(path) { body }`. */
export function device(path: string, body: readonly Uint8Array[]): Uint8Array {
  const inner = concat([nameString(path), ...body]);
  return concat([Uint8Array.of(AML.EXT_OP_PREFIX, AML.DEVICE), pkgLength(inner.length), inner]);
}

/** `EISAID("PNP0A03")` as the compressed 32-bit integer it stands for. */
export function eisaId(id: string): Uint8Array {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`AML: bad EISA id "${id}"`);
  const c = (i: number) => id.charCodeAt(i) - 0x40;
  const b0 = (c(0) << 2) | (c(1) >> 3);
  const b1 = ((c(1) & 7) << 5) | c(2);
  const b2 = parseInt(id.slice(3, 5), 16);
  const b3 = parseInt(id.slice(5, 7), 16);
  return integer((b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) >>> 0);
}

/** Resource descriptors for `_CRS` (ACPI 6.4 "Resource Data Types"). */
export const Resource = {
  /** Word address space: bus number range, producer, fixed min and max. */
  busNumbers(min: number, max: number): Uint8Array {
    return wordAddress(2, 0, min, max);
  },
  /** Word address space: an I/O window, producer, fixed, entire range. */
  ioWindow(min: number, max: number): Uint8Array {
    return wordAddress(1, 0x3, min, max);
  },
  /** I/O port descriptor with 16-bit decode (`IO(Decode16, min, max, align, len)`). */
  io(min: number, max: number, align: number, length: number): Uint8Array {
    const b = new Uint8Array(8);
    const v = new DataView(b.buffer);
    b[0] = 0x47;
    b[1] = 0x01;
    v.setUint16(2, min, true);
    v.setUint16(4, max, true);
    b[6] = align;
    b[7] = length;
    return b;
  },
  /** DWord memory window: producer, fixed, non-cacheable, read-write. */
  memory32Window(min: number, max: number): Uint8Array {
    const b = new Uint8Array(26);
    const v = new DataView(b.buffer);
    b[0] = 0x87;
    v.setUint16(1, 23, true);
    b[3] = 0; // memory
    b[4] = 0x0c; // MinFixed | MaxFixed, producer, positive decode
    b[5] = 0x01; // read-write, non-cacheable
    v.setUint32(6, 0, true);
    v.setUint32(10, min, true);
    v.setUint32(14, max, true);
    v.setUint32(18, 0, true);
    v.setUint32(22, max - min + 1, true);
    return b;
  },
  /** QWord memory window: producer, fixed, non-cacheable, read-write. */
  memory64Window(min: number, max: number): Uint8Array {
    const b = new Uint8Array(46);
    const v = new DataView(b.buffer);
    b[0] = 0x8a;
    v.setUint16(1, 43, true);
    b[3] = 0;
    b[4] = 0x0c;
    b[5] = 0x01;
    v.setBigUint64(6, 0n, true);
    v.setBigUint64(14, BigInt(min), true);
    v.setBigUint64(22, BigInt(max), true);
    v.setBigUint64(30, 0n, true);
    v.setBigUint64(38, BigInt(max - min + 1), true);
    return b;
  },
  /** `Memory32Fixed(ReadWrite, base, length)`. */
  memory32Fixed(base: number, length: number): Uint8Array {
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    b[0] = 0x86;
    v.setUint16(1, 9, true);
    b[3] = 0x01;
    v.setUint32(4, base, true);
    v.setUint32(8, length, true);
    return b;
  },
  /** End tag (checksum 0: "treat as correct"). */
  end(): Uint8Array {
    return Uint8Array.of(0x79, 0x00);
  },
} as const;

/** `ResourceTemplate() { descriptors }`: a buffer ending with an end tag. */
export function resourceTemplate(descriptors: readonly Uint8Array[]): Uint8Array {
  return buffer(concat([...descriptors, Resource.end()]));
}

function wordAddress(type: number, typeFlags: number, min: number, max: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  b[0] = 0x88;
  v.setUint16(1, 13, true);
  b[3] = type;
  b[4] = 0x0c; // MinFixed | MaxFixed, producer, positive decode
  b[5] = typeFlags;
  v.setUint16(6, 0, true);
  v.setUint16(8, min, true);
  v.setUint16(10, max, true);
  v.setUint16(12, 0, true);
  v.setUint16(14, max - min + 1, true);
  return b;
}
