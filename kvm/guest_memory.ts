/**
 * Guest physical memory: a set of regions, each backed by host memory
 * (an mmap for a real VM, a plain buffer in tests), accessed only through
 * bounds-checked reads and writes by guest physical address (GPA).
 *
 * An access that leaves guest RAM throws {@linkcode GuestMemoryError}; it never
 * touches host memory outside a region. Views handed out by {@linkcode GuestMemory.slice}
 * alias guest RAM and become invalid after {@linkcode GuestMemory.close}.
 *
 * @module
 */

/** One contiguous piece of guest RAM. */
export interface MemoryRegion {
  /** Guest physical address of the first byte. */
  readonly gpa: number;
  /** Host bytes backing the region. */
  readonly bytes: Uint8Array;
}

/** Thrown on an access outside guest RAM, or after the memory was closed. */
export class GuestMemoryError extends Error {
  /**
   * A failed access of `length` bytes at `gpa`.
   * @param gpa guest physical address of the access
   * @param length its length in bytes
   * @param reason what was wrong
   */
  constructor(readonly gpa: number, readonly length: number, reason = "outside guest memory") {
    super(`guest memory access 0x${gpa.toString(16)}+${length}: ${reason}`);
    this.name = "GuestMemoryError";
  }
}

interface Region extends MemoryRegion {
  readonly end: number;
  readonly view: DataView;
}

/** Bounds-checked guest physical memory. */
export class GuestMemory {
  #regions: Region[];

  /**
   * A memory over `regions`. Throws if they overlap.
   * @param regions non-overlapping regions (any order)
   */
  constructor(regions: MemoryRegion[]) {
    const sorted = [...regions].sort((a, b) => a.gpa - b.gpa);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      if (prev.gpa + prev.bytes.length > sorted[i].gpa) {
        throw new Error(`guest memory regions overlap at 0x${sorted[i].gpa.toString(16)}`);
      }
    }
    this.#regions = sorted.map((r) => ({
      gpa: r.gpa,
      bytes: r.bytes,
      end: r.gpa + r.bytes.length,
      view: new DataView(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength),
    }));
  }

  /** A memory of `size` zeroed bytes at GPA 0 backed by a plain buffer (for tests and tools). */
  static ofSize(size: number): GuestMemory {
    return new GuestMemory([{ gpa: 0, bytes: new Uint8Array(size) }]);
  }

  /** The regions, sorted by address. */
  get regions(): readonly MemoryRegion[] {
    return this.#regions;
  }

  /** Total bytes of RAM. */
  get size(): number {
    return this.#regions.reduce((n, r) => n + r.bytes.length, 0);
  }

  /** True when `[gpa, gpa+length)` lies inside one region. */
  contains(gpa: number, length = 1): boolean {
    return this.#find(gpa, length) !== undefined;
  }

  /** A live view of `[gpa, gpa+length)`; it aliases guest RAM (zero copy, for DMA). */
  slice(gpa: number, length: number): Uint8Array {
    const r = this.#region(gpa, length);
    const at = r.bytes.byteOffset + (gpa - r.gpa);
    return new Uint8Array(r.bytes.buffer, at, length);
  }

  /** A copy of `[gpa, gpa+length)`. */
  read(gpa: number, length: number): Uint8Array {
    return this.slice(gpa, length).slice();
  }

  /** Copy `data` into guest RAM at `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    this.slice(gpa, data.length).set(data);
  }

  /** Fill `[gpa, gpa+length)` with `value`. */
  fill(gpa: number, length: number, value = 0): void {
    this.slice(gpa, length).fill(value);
  }

  /** Read a byte. */
  readU8(gpa: number): number {
    const r = this.#region(gpa, 1);
    return r.view.getUint8(gpa - r.gpa);
  }
  /** Read a little-endian u16. */
  readU16(gpa: number): number {
    const r = this.#region(gpa, 2);
    return r.view.getUint16(gpa - r.gpa, true);
  }
  /** Read a little-endian u32. */
  readU32(gpa: number): number {
    const r = this.#region(gpa, 4);
    return r.view.getUint32(gpa - r.gpa, true);
  }
  /** Read a little-endian u64. */
  readU64(gpa: number): bigint {
    const r = this.#region(gpa, 8);
    return r.view.getBigUint64(gpa - r.gpa, true);
  }
  /** Write a byte. */
  writeU8(gpa: number, value: number): void {
    const r = this.#region(gpa, 1);
    r.view.setUint8(gpa - r.gpa, value);
  }
  /** Write a little-endian u16. */
  writeU16(gpa: number, value: number): void {
    const r = this.#region(gpa, 2);
    r.view.setUint16(gpa - r.gpa, value, true);
  }
  /** Write a little-endian u32. */
  writeU32(gpa: number, value: number): void {
    const r = this.#region(gpa, 4);
    r.view.setUint32(gpa - r.gpa, value, true);
  }
  /** Write a little-endian u64. */
  writeU64(gpa: number, value: bigint): void {
    const r = this.#region(gpa, 8);
    r.view.setBigUint64(gpa - r.gpa, value, true);
  }

  /**
   * Forget every region: later accesses throw instead of touching host memory.
   * Call before the backing mapping is unmapped.
   */
  close(): void {
    this.#regions = [];
  }

  #find(gpa: number, length: number): Region | undefined {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(length) || gpa < 0 || length < 0) {
      return undefined;
    }
    for (const r of this.#regions) {
      if (gpa >= r.gpa && gpa + length <= r.end) return r;
    }
    return undefined;
  }

  #region(gpa: number, length: number): Region {
    const r = this.#find(gpa, length);
    if (!r) {
      throw new GuestMemoryError(
        gpa,
        length,
        this.#regions.length ? "outside guest memory" : "guest memory is closed",
      );
    }
    return r;
  }
}
