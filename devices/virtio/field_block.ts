/**
 * Register blocks described by a table of fields: turns a guest access of
 * any width at any offset into whole-field reads and read-modify-write field
 * writes. Bytes outside every field read as zero and are dropped on write.
 *
 * @module
 */

import type { Field } from "./spec.ts";

/** Reads and writes of named fields of up to 32 bits. */
export interface FieldHandlers<K extends string> {
  /** Current value of `field` (an unsigned integer of the field's width). */
  read(field: K): number;
  /** The guest wrote `value` to `field` (bytes it did not touch hold their current value). */
  write(field: K, value: number): void;
}

/** A block of little-endian registers laid out by a field table. */
export class FieldBlock<K extends string> {
  readonly #fields: readonly [K, Field][];
  readonly #handlers: FieldHandlers<K>;

  /**
   * A block of the fields of `layout`, served by `handlers`.
   * @param layout name -> offset/size (sizes 1, 2 or 4)
   * @param handlers called on guest reads and writes of the fields
   */
  constructor(layout: Readonly<Record<K, Field>>, handlers: FieldHandlers<K>) {
    this.#fields = (Object.entries(layout) as [K, Field][]).sort((a, b) =>
      a[1].offset - b[1].offset
    );
    this.#handlers = handlers;
  }

  /** Fill `data` from the fields it overlaps. */
  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    for (const [name, f] of this.#overlapping(offset, data.length)) {
      const value = this.#handlers.read(name);
      for (let i = 0; i < data.length; i++) {
        const byte = offset + i - f.offset;
        if (byte >= 0 && byte < f.size) data[i] = (value >>> (8 * byte)) & 0xff;
      }
    }
  }

  /** Merge `data` into each field it overlaps and write the fields, lowest first. */
  write(offset: number, data: Uint8Array): void {
    for (const [name, f] of this.#overlapping(offset, data.length)) {
      let value = this.#handlers.read(name);
      for (let i = 0; i < data.length; i++) {
        const byte = offset + i - f.offset;
        if (byte >= 0 && byte < f.size) {
          value = (value & ~(0xff << (8 * byte))) | (data[i] << (8 * byte));
        }
      }
      this.#handlers.write(name, value >>> 0);
    }
  }

  #overlapping(offset: number, length: number): [K, Field][] {
    return this.#fields.filter(([, f]) => offset < f.offset + f.size && f.offset < offset + length);
  }
}
