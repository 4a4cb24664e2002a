/**
 * Typed C struct layouts. A layout is declared once as an ordered field list;
 * offsets, sizes and alignment follow the C rules of the x86-64 SysV ABI
 * (natural alignment, trailing padding to the struct's alignment), so a
 * declaration reads like the header it mirrors. The layouts dvmm uses are
 * checked against `<linux/kvm.h>` by a test that compiles C.
 *
 * @example
 * ```ts
 * const dtable = struct("kvm_dtable", [["base", "u64"], ["limit", "u16"], ["padding", "u16", 3]]);
 * const bytes = encode(dtable, { base: 0x1000n, limit: 0x27 });
 * ```
 *
 * @module
 */

/** Scalar C types. 64-bit fields are `bigint` in JavaScript, the rest `number`. */
export type Scalar = "u8" | "u16" | "u32" | "i32" | "u64";

/** A field declaration: name, type, optional array length. */
export type FieldDecl = readonly [name: string, type: Scalar | Layout, count?: number];

/** One laid-out field. */
export interface Field {
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Scalar type or nested layout. */
  readonly type: Scalar | Layout;
  /** Array length (1 for a plain field). */
  readonly count: number;
}

/** A struct or union layout. */
export interface Layout {
  /** C name, for messages and the ABI test. */
  readonly name: string;
  /** `sizeof`. */
  readonly size: number;
  /** `_Alignof`. */
  readonly align: number;
  /** Fields by name. */
  readonly fields: Readonly<Record<string, Field>>;
}

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, i32: 4, u64: 8 };

function sizeAlign(type: Scalar | Layout): [number, number] {
  if (typeof type === "string") return [SCALAR_SIZE[type], SCALAR_SIZE[type]];
  return [type.size, type.align];
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Declare a C struct. */
export function struct(name: string, decls: readonly FieldDecl[]): Layout {
  const fields: Record<string, Field> = {};
  let offset = 0, align = 1;
  for (const [field, type, count = 1] of decls) {
    const [size, a] = sizeAlign(type);
    offset = alignUp(offset, a);
    fields[field] = { offset, type, count };
    offset += size * count;
    align = Math.max(align, a);
  }
  return { name, size: alignUp(offset, align), align, fields };
}

/** Declare a C union: every member at offset 0. */
export function union(name: string, decls: readonly FieldDecl[]): Layout {
  const fields: Record<string, Field> = {};
  let size = 0, align = 1;
  for (const [field, type, count = 1] of decls) {
    const [s, a] = sizeAlign(type);
    fields[field] = { offset: 0, type, count };
    size = Math.max(size, s * count);
    align = Math.max(align, a);
  }
  return { name, size: alignUp(size, align), align, fields };
}

/** Resolve a dotted path (`"io.port"`) to its field, with the offset from the outer struct. */
export function fieldAt(layout: Layout, path: string): Field {
  let offset = 0;
  let current: Layout = layout;
  const parts = path.split(".");
  for (let i = 0; i < parts.length; i++) {
    const f = current.fields[parts[i]];
    if (!f) throw new Error(`${layout.name} has no field ${path}`);
    offset += f.offset;
    if (i === parts.length - 1) return { offset, type: f.type, count: f.count };
    if (typeof f.type === "string") throw new Error(`${layout.name}.${path}: not a struct`);
    current = f.type;
  }
  throw new Error(`${layout.name}: empty field path`);
}

/** Byte offset of a dotted field path. */
export function offsetOf(layout: Layout, path: string): number {
  return fieldAt(layout, path).offset;
}

/** A JavaScript value for a struct: scalars, bigints for u64, arrays, nested objects. */
export type StructValue = {
  [field: string]: number | bigint | StructValue | StructValue[] | number[] | bigint[];
};

function readScalar(view: DataView, at: number, type: Scalar): number | bigint {
  switch (type) {
    case "u8":
      return view.getUint8(at);
    case "u16":
      return view.getUint16(at, true);
    case "u32":
      return view.getUint32(at, true);
    case "i32":
      return view.getInt32(at, true);
    case "u64":
      return view.getBigUint64(at, true);
  }
}

function writeScalar(view: DataView, at: number, type: Scalar, value: unknown): void {
  switch (type) {
    case "u8":
      return view.setUint8(at, Number(value));
    case "u16":
      return view.setUint16(at, Number(value), true);
    case "u32":
      return view.setUint32(at, Number(value), true);
    case "i32":
      return view.setInt32(at, Number(value), true);
    case "u64":
      return view.setBigUint64(at, BigInt(value as number | bigint), true);
  }
}

/** Write `value` into `view` at `base` following `layout`. Missing fields are left as they are. */
export function encodeInto(layout: Layout, view: DataView, base: number, value: StructValue): void {
  for (const [name, f] of Object.entries(layout.fields)) {
    const v = value[name];
    if (v === undefined) continue;
    const [size] = sizeAlign(f.type);
    const items = f.count === 1 ? [v] : (v as unknown[]);
    items.forEach((item, i) => {
      if (i >= f.count) throw new RangeError(`${layout.name}.${name}: more than ${f.count} items`);
      const at = base + f.offset + i * size;
      if (typeof f.type === "string") writeScalar(view, at, f.type, item);
      else encodeInto(f.type, view, at, item as StructValue);
    });
  }
}

/** Encode `value` as a fresh zero-filled buffer of `layout.size` bytes. */
export function encode(layout: Layout, value: StructValue): Uint8Array {
  const bytes = new Uint8Array(layout.size);
  encodeInto(layout, new DataView(bytes.buffer), 0, value);
  return bytes;
}

/** Decode a struct from `view` at `base`. */
export function decodeFrom(layout: Layout, view: DataView, base = 0): StructValue {
  const out: StructValue = {};
  for (const [name, f] of Object.entries(layout.fields)) {
    const [size] = sizeAlign(f.type);
    const one = (i: number) => {
      const at = base + f.offset + i * size;
      return typeof f.type === "string"
        ? readScalar(view, at, f.type)
        : decodeFrom(f.type, view, at);
    };
    out[name] = f.count === 1
      ? one(0)
      : (Array.from({ length: f.count }, (_, i) => one(i)) as StructValue[]);
  }
  return out;
}

/** Decode a struct from the start of `bytes`. */
export function decode(layout: Layout, bytes: Uint8Array): StructValue {
  return decodeFrom(layout, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
