/**
 * The newc ("070701", SVR4 without CRC) cpio archive format, as the Linux
 * kernel unpacks it for an initramfs.
 *
 * Each record is a 110-byte ASCII header (magic and thirteen 8-digit hex
 * fields), the NUL-terminated path padded to a 4-byte boundary, then the data
 * padded to a 4-byte boundary. The archive ends with a record named
 * `TRAILER!!!`. Several archives may be concatenated; the kernel unpacks them
 * in turn (later entries replace earlier ones).
 *
 * {@linkcode CpioWriter} builds an archive in memory. Paths are stored relative
 * (no leading `/`), parent directories are added automatically, and the mtime is
 * 0 unless given, so the same input always yields the same bytes (the initramfs
 * cache relies on it). {@linkcode readCpio} parses an archive back (tests,
 * inspection).
 *
 * @module
 */

/** The kind of a cpio entry, from the file-type bits of its mode. */
export type CpioKind = "file" | "dir" | "symlink" | "char" | "block";

/** One record of an archive, as {@linkcode readCpio} returns it. */
export interface CpioRecord {
  /** Path without leading `/`. */
  readonly path: string;
  /** What it is. */
  readonly kind: CpioKind;
  /** Permission bits (`0o755`), without the file type. */
  readonly perm: number;
  /** Owner user id. */
  readonly uid: number;
  /** Owner group id. */
  readonly gid: number;
  /** Modification time, seconds since the epoch. */
  readonly mtime: number;
  /** File contents, or the target of a symlink (UTF-8); empty otherwise. */
  readonly data: Uint8Array;
  /** Device major number (char and block devices). */
  readonly rdevMajor: number;
  /** Device minor number (char and block devices). */
  readonly rdevMinor: number;
}

/** Ownership and time for an entry; all default to 0. */
export interface CpioEntryOptions {
  /** Owner user id (default 0). */
  uid?: number;
  /** Owner group id (default 0). */
  gid?: number;
  /** Modification time in seconds (default 0, for reproducible archives). */
  mtime?: number;
}

/** Thrown for a malformed path, duplicate entry or corrupt archive. */
export class CpioError extends Error {
  /**
   * A cpio error.
   * @param message what was wrong, naming the path or offset
   */
  constructor(message: string) {
    super(message);
    this.name = "CpioError";
  }
}

/** Builds a newc archive in memory. */
export class CpioWriter {
  #chunks: Uint8Array[] = [];
  #size = 0;
  #paths = new Set<string>();
  #nextIno = 1;
  #finished = false;

  /** Add a regular file (parent directories are created as needed). */
  file(path: string, data: Uint8Array | string, perm = 0o644, opts: CpioEntryOptions = {}): this {
    const bytes = typeof data === "string" ? TEXT.encode(data) : data;
    return this.#add(path, S_IFREG | (perm & PERM_MASK), bytes, 1, 0, 0, opts);
  }

  /** Add a directory; adding one that already exists (made implicitly or not) is a no-op. */
  dir(path: string, perm = 0o755, opts: CpioEntryOptions = {}): this {
    if (this.#paths.has(normalizePath(path))) return this;
    return this.#add(path, S_IFDIR | (perm & PERM_MASK), EMPTY, 2, 0, 0, opts);
  }

  /** Add a symbolic link at `path` pointing to `target`. */
  symlink(path: string, target: string, opts: CpioEntryOptions = {}): this {
    if (target.length === 0) throw new CpioError(`cpio: symlink ${path} has an empty target`);
    return this.#add(path, S_IFLNK | 0o777, TEXT.encode(target), 1, 0, 0, opts);
  }

  /** Add a character device node (`/dev/console` is 5:1). */
  charDevice(
    path: string,
    major: number,
    minor: number,
    perm = 0o600,
    opts: CpioEntryOptions = {},
  ): this {
    return this.#add(path, S_IFCHR | (perm & PERM_MASK), EMPTY, 1, major, minor, opts);
  }

  /** Add a block device node. */
  blockDevice(
    path: string,
    major: number,
    minor: number,
    perm = 0o600,
    opts: CpioEntryOptions = {},
  ): this {
    return this.#add(path, S_IFBLK | (perm & PERM_MASK), EMPTY, 1, major, minor, opts);
  }

  /** Whether an entry (explicit or implied parent directory) exists at `path`. */
  has(path: string): boolean {
    return this.#paths.has(normalizePath(path));
  }

  /**
   * Append the trailer and return the archive. `blockSize` pads the total
   * length to a multiple of it (cpio(1) uses 512); the default 4 is the minimum
   * for an archive that another one is concatenated to.
   */
  finish(blockSize = 4): Uint8Array<ArrayBuffer> {
    if (this.#finished) throw new CpioError("cpio: archive already finished");
    this.#finished = true;
    this.#record(TRAILER, 0, EMPTY, 1, 0, 0, 0, {});
    const total = align(this.#size, blockSize);
    const out = new Uint8Array(total);
    let at = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  #add(
    path: string,
    mode: number,
    data: Uint8Array,
    nlink: number,
    rdevMajor: number,
    rdevMinor: number,
    opts: CpioEntryOptions,
  ): this {
    if (this.#finished) throw new CpioError(`cpio: cannot add ${path}: archive finished`);
    const name = normalizePath(path);
    if (this.#paths.has(name)) throw new CpioError(`cpio: duplicate entry ${name}`);
    const slash = name.lastIndexOf("/");
    if (slash > 0) this.dir(name.slice(0, slash));
    this.#paths.add(name);
    this.#record(name, mode, data, nlink, rdevMajor, rdevMinor, this.#nextIno++, opts);
    return this;
  }

  #record(
    name: string,
    mode: number,
    data: Uint8Array,
    nlink: number,
    rdevMajor: number,
    rdevMinor: number,
    ino: number,
    opts: CpioEntryOptions,
  ): void {
    const nameBytes = TEXT.encode(name + "\0");
    const fields = [
      ino,
      mode,
      opts.uid ?? 0,
      opts.gid ?? 0,
      nlink,
      opts.mtime ?? 0,
      data.length,
      0, // devmajor of the file system holding the entry
      0, // devminor
      rdevMajor,
      rdevMinor,
      nameBytes.length,
      0, // check (CRC only in the 070702 variant)
    ];
    const header = MAGIC + fields.map(hex8).join("");
    const headerLen = align(HEADER_SIZE + nameBytes.length, 4);
    const head = new Uint8Array(headerLen);
    head.set(TEXT.encode(header), 0);
    head.set(nameBytes, HEADER_SIZE);
    this.#push(head);
    if (data.length > 0) {
      this.#push(data);
      const pad = align(data.length, 4) - data.length;
      if (pad > 0) this.#push(new Uint8Array(pad));
    }
  }

  #push(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }
}

/**
 * Parse every record of one or more concatenated newc archives (zero padding
 * between archives is skipped). Trailers are not returned.
 */
export function readCpio(archive: Uint8Array): CpioRecord[] {
  const records: CpioRecord[] = [];
  let at = 0;
  while (at < archive.length) {
    if (archive[at] === 0) {
      at++;
      continue;
    }
    if (at + HEADER_SIZE > archive.length) {
      throw new CpioError(`cpio: truncated header at offset ${at}`);
    }
    const magic = TEXT_DECODER.decode(archive.subarray(at, at + 6));
    if (magic !== MAGIC) throw new CpioError(`cpio: bad magic ${JSON.stringify(magic)} at ${at}`);
    const field = (i: number): number => {
      const text = TEXT_DECODER.decode(archive.subarray(at + 6 + i * 8, at + 14 + i * 8));
      const value = parseInt(text, 16);
      if (!/^[0-9a-fA-F]{8}$/.test(text)) {
        throw new CpioError(`cpio: bad header field ${i} ${JSON.stringify(text)} at ${at}`);
      }
      return value;
    };
    const [mode, uid, gid, mtime, fileSize, rdevMajor, rdevMinor, nameSize] = [
      field(Field.mode),
      field(Field.uid),
      field(Field.gid),
      field(Field.mtime),
      field(Field.filesize),
      field(Field.rdevmajor),
      field(Field.rdevminor),
      field(Field.namesize),
    ];
    const nameEnd = at + HEADER_SIZE + nameSize;
    const dataStart = align(nameEnd, 4);
    const dataEnd = dataStart + fileSize;
    if (nameSize === 0 || dataEnd > archive.length) {
      throw new CpioError(`cpio: record at ${at} runs past the end of the archive`);
    }
    const path = TEXT_DECODER.decode(archive.subarray(at + HEADER_SIZE, nameEnd - 1));
    at = align(dataEnd, 4);
    if (path === TRAILER) continue;
    records.push({
      path,
      kind: kindOf(mode, path),
      perm: mode & PERM_MASK,
      uid,
      gid,
      mtime,
      data: archive.slice(dataStart, dataEnd),
      rdevMajor,
      rdevMinor,
    });
  }
  return records;
}

/** The record name that ends an archive. */
export const TRAILER = "TRAILER!!!";

const MAGIC = "070701";
const HEADER_SIZE = 110;
const PERM_MASK = 0o7777;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

/** Index of each 8-digit field after the magic. */
enum Field {
  ino = 0,
  mode = 1,
  uid = 2,
  gid = 3,
  nlink = 4,
  mtime = 5,
  filesize = 6,
  devmajor = 7,
  devminor = 8,
  rdevmajor = 9,
  rdevminor = 10,
  namesize = 11,
  check = 12,
}

const TEXT = new TextEncoder();
const TEXT_DECODER = new TextDecoder();
const EMPTY = new Uint8Array(0);

function kindOf(mode: number, path: string): CpioKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "char";
    case S_IFBLK:
      return "block";
    default:
      throw new CpioError(`cpio: ${path} has unsupported mode 0o${mode.toString(8)}`);
  }
}

function normalizePath(path: string): string {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0) throw new CpioError(`cpio: empty path ${JSON.stringify(path)}`);
  if (parts.includes("..")) throw new CpioError(`cpio: path ${path} contains ".."`);
  return parts.join("/");
}

function hex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new CpioError(`cpio: header value ${value} does not fit 32 bits`);
  }
  return value.toString(16).padStart(8, "0");
}

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}
