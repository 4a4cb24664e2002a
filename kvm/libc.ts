/**
 * The libc calls dvmm makes, through `Deno.dlopen("libc.so.6")`. 64-bit
 * arguments are `bigint` so calls stay on V8's fast path. `errno` is read from
 * a view of `__errno_location()` cached per thread (each worker loads this
 * module anew), right after a failing call.
 *
 * @module
 */

/** errno names for the values dvmm reports. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  28: "ENOSPC",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
};

/** Name of an errno value (`EINVAL`), or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** A failed system call: names the call and the errno (`KVM_RUN: EINTR`). */
export class OsError extends Error {
  /**
   * The error of a failed call; the message names the call and the errno.
   * @param call what was called (ioctl name, `open /dev/kvm`)
   * @param errno the errno value
   */
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${errnoName(errno)}`);
    this.name = "OsError";
  }
}

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_nb: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  pthread_self: { parameters: [], result: "u64" },
  pthread_kill: { parameters: ["u64", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

/** The loaded libc symbols (opened on first use in each thread). */
export function libc(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols;
}

/** The calling thread's current errno. */
export function errno(): number {
  errnoView ??= new Deno.UnsafePointerView(libc().__errno_location()!);
  return errnoView.getInt32(0);
}

/** `open(2)` flags and mmap constants dvmm uses. */
export const O_RDONLY = 0, O_RDWR = 2, O_CLOEXEC = 0o2000000, O_NONBLOCK = 0o4000;
/** mmap protections and flags. */
export const PROT_READ = 1,
  PROT_WRITE = 2,
  MAP_SHARED = 1,
  MAP_PRIVATE = 2,
  MAP_ANONYMOUS = 0x20,
  MAP_NORESERVE = 0x4000;
/** `madvise` advice: back with transparent huge pages. */
export const MADV_HUGEPAGE = 14;
/** eventfd flags. */
export const EFD_CLOEXEC = 0o2000000, EFD_NONBLOCK = 0o4000;
/** poll events. */
export const POLLIN = 1, POLLERR = 8, POLLHUP = 16, POLLNVAL = 32;
/** errno values callers test for. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
} as const;
/** Signals. */
export const SIGUSR2 = 12;

const encoder = new TextEncoder();

/** `open(path, flags)`; throws {@linkcode OsError} naming the path. */
export function open(path: string, flags: number): number {
  const fd = libc().open(encoder.encode(path + "\0"), flags, 0);
  if (fd < 0) throw new OsError(`open ${path}`, errno());
  return fd;
}

/** `close(fd)`; errors are ignored (nothing useful can be done). */
export function close(fd: number): void {
  libc().close(fd);
}

/**
 * `ioctl(fd, request, arg)` with an integer argument. Returns the result
 * (>= 0); throws {@linkcode OsError} named after the request.
 */
export function ioctl(fd: number, request: bigint, arg: bigint, name: string): number {
  const r = libc().ioctl(fd, request, arg);
  if (r < 0) throw new OsError(name, errno());
  return r;
}

/** `ioctl(fd, request, buffer)` with a struct argument. */
export function ioctlBuf(fd: number, request: bigint, buf: Uint8Array, name: string): number {
  const r = libc().ioctl_buf(fd, request, buf as Uint8Array<ArrayBuffer>);
  if (r < 0) throw new OsError(name, errno());
  return r;
}

/** A host mapping: its address and length. */
export interface Mapping {
  /** Start of the mapping. */
  readonly pointer: Deno.PointerObject;
  /** Length in bytes. */
  readonly length: number;
}

/** `mmap`; throws {@linkcode OsError} on MAP_FAILED. */
export function mmap(length: number, prot: number, flags: number, fd = -1, offset = 0n): Mapping {
  const p = libc().mmap(null, BigInt(length), prot, flags, fd, offset);
  if (p === null || Deno.UnsafePointer.value(p) === 0xffff_ffff_ffff_ffffn) {
    throw new OsError(`mmap ${length} bytes`, errno());
  }
  return { pointer: p, length };
}

/** `munmap`. */
export function munmap(m: Mapping): void {
  libc().munmap(m.pointer, BigInt(m.length));
}

/**
 * A regular file mapped read-only by {@linkcode mapRegularFile}, with the
 * `stat` of the file mapped; {@linkcode MappedRegularFile.close} unmaps it.
 */
export interface MappedRegularFile {
  /** The file's bytes (valid until `close`). */
  readonly bytes: Uint8Array;
  /** The file's status, taken on the open file (the one mapped, even if the path moved since). */
  readonly info: Deno.FileInfo;
  /**
   * Read `dest.length` bytes of the file from `offset` straight into `dest`
   * (`pread`; guest memory, say). For large copies this is several times
   * faster than copying out of {@linkcode MappedRegularFile.bytes}: on the host, a
   * 31 MB kernel took 9-11 ms this way and 50-160 ms through the mapping.
   * Throws {@linkcode OsError}, or `RangeError` past the end of the file.
   */
  readInto(dest: Uint8Array, offset: number): void;
  /** Unmap and close the file (the bytes must not be used afterwards). */
  close(): void;
}

/**
 * Open `path` and map it read-only, sized by a `stat` of the open file itself
 * (`/proc/self/fd`), so a file replaced at the path meanwhile cannot make the
 * mapping overrun the file mapped. The file stays open (for
 * {@linkcode MappedRegularFile.readInto}) until `close`. Undefined for what is
 * not a regular file with data (a pipe, a device, an empty file): read those
 * instead. Throws {@linkcode OsError} (ENOENT, EACCES, ...) when it cannot be
 * opened. Unlike a copy, the bytes follow the file: one truncated while mapped
 * makes reading past its new end fault, so map only what nothing rewrites in place.
 */
export function mapRegularFile(path: string): MappedRegularFile | undefined {
  const fd = open(path, O_RDONLY | O_CLOEXEC);
  let m: Mapping, info: Deno.FileInfo;
  try {
    info = Deno.statSync(`/proc/self/fd/${fd}`);
    if (!info.isFile || info.size === 0) {
      close(fd);
      return undefined;
    }
    // Not populated: the bytes are for parsing headers; bulk copies go through readInto.
    m = mmap(info.size, PROT_READ, MAP_PRIVATE, fd);
  } catch (e) {
    close(fd);
    throw e;
  }
  let isOpen = true;
  const size = info.size;
  return {
    bytes: new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(m.pointer, size)),
    info,
    readInto(dest, offset) {
      if (!isOpen) throw new Error(`${path}: read after close`);
      if (offset < 0 || offset + dest.length > size) {
        throw new RangeError(
          `${path}: ${dest.length} bytes at ${offset} are past its end (${size})`,
        );
      }
      for (let done = 0; done < dest.length;) {
        const n = Number(
          libc().pread(fd, dest.subarray(done), BigInt(dest.length - done), BigInt(offset + done)),
        );
        if (n < 0) throw new OsError(`pread ${path}`, errno());
        if (n === 0) throw new RangeError(`${path}: ended at ${offset + done} (was ${size} bytes)`);
        done += n;
      }
    },
    close() {
      if (!isOpen) return;
      isOpen = false;
      munmap(m);
      close(fd);
    },
  };
}

/**
 * Anonymous private memory of `length` bytes starting on an `align` boundary
 * (a power of two), for guest RAM: the over-allocated head and tail are
 * unmapped again. With `MADV_HUGEPAGE` where the kernel has transparent huge
 * pages, so the guest's nested page tables can use 2 MiB entries (far fewer
 * faults while the guest first touches its memory). Throws {@linkcode OsError}.
 */
export function mmapAnonymousAligned(length: number, align: number): Mapping {
  const whole = mmap(
    length + align,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
  );
  const base = Deno.UnsafePointer.value(whole.pointer) as bigint;
  const start = (base + BigInt(align - 1)) & ~BigInt(align - 1);
  const head = Number(start - base), tail = align - head;
  if (head > 0) libc().munmap(whole.pointer, BigInt(head));
  const pointer = Deno.UnsafePointer.create(start)!;
  if (tail > 0) libc().munmap(Deno.UnsafePointer.create(start + BigInt(length))!, BigInt(tail));
  libc().madvise(pointer, BigInt(length), MADV_HUGEPAGE); // advice only: EINVAL without THP is fine
  return { pointer, length };
}

/**
 * `read(fd, into)` on a non-blocking fd: the byte count, or null when nothing
 * is ready (EAGAIN). Throws {@linkcode OsError} named `call` on other errors.
 */
export function readNonblocking(fd: number, into: Uint8Array, call = "read"): number | null {
  const n = Number(libc().read(fd, into as Uint8Array<ArrayBuffer>, BigInt(into.length)));
  if (n >= 0) return n;
  const e = errno();
  if (e === ERRNO.EAGAIN) return null;
  throw new OsError(call, e);
}

/** `write(fd, data)`: the byte count; throws {@linkcode OsError} named `call`. */
export function writeFd(fd: number, data: Uint8Array, call = "write"): number {
  const n = Number(libc().write(fd, data as Uint8Array<ArrayBuffer>, BigInt(data.length)));
  if (n < 0) throw new OsError(call, errno());
  return n;
}

/** `eventfd(0, flags)`. */
export function eventfd(flags = EFD_CLOEXEC): number {
  const fd = libc().eventfd(0, flags);
  if (fd < 0) throw new OsError("eventfd", errno());
  return fd;
}
