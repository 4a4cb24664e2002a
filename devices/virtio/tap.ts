/**
 * A host TAP interface as a {@linkcode NetBackend}: `/dev/net/tun` opened
 * non-blocking and bound with TUNSETIFF (IFF_TAP | IFF_NO_PI) to the named
 * interface, which the kernel creates if it does not exist and the caller may
 * (CAP_NET_ADMIN); an interface created this way disappears when the TAP is
 * closed, a persistent one (`ip tuntap add NAME mode tap`) stays.
 *
 * How frames come in without blocking the VMM thread: the VMM thread itself
 * reads frames with non-blocking `read(2)` straight into its buffer, and only
 * the wait for "readable" leaves the thread, as one `poll(2)` on the TAP fd
 * and a wake-up eventfd made through Deno's non-blocking FFI (it runs on a
 * runtime blocking-pool thread and resolves a promise on the VMM thread). The
 * wait is one-shot and armed only by {@linkcode Tap.watch}, which virtio-net
 * calls only while it holds a receive buffer and the TAP is drained; so a
 * guest with no receive buffers leaves frames in the TAP's kernel queue
 * (backpressure; the kernel drops beyond its queue length) instead of a
 * readable fd spinning a poller. Compared with a dedicated worker (like the
 * ioeventfd poller, whose worker consumes what it polls and would have to
 * copy frames across threads), this needs no thread, no shared ring and no
 * frame copy; the cost is one thread hop per burst of frames, not per frame.
 * {@linkcode Tap.close} wakes a pending poll through the eventfd and closes
 * both fds once the poll has returned (a pending poll keeps the process alive).
 *
 * @module
 */

import type { Logger } from "../logger.ts";
import { nullLogger } from "../logger.ts";
import {
  close,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  ERRNO,
  errnoName,
  eventfd,
  ioctlBuf,
  libc,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  open,
  OsError,
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  readNonblocking,
  writeFd,
} from "../../kvm/libc.ts";
import type { Field } from "./spec.ts";
import type { NetBackend } from "./net.ts";

/** The TUN/TAP clone device. */
export const TUN_CLONE_PATH = "/dev/net/tun";

/** `TUNSETIFF` = `_IOW('T', 202, int)`. */
export const TUNSETIFF = 0x400454can;

/** `ifr_flags` bits for TUNSETIFF. */
export const IFF = { TUN: 0x0001, TAP: 0x0002, NO_PI: 0x1000, VNET_HDR: 0x4000 } as const;

/** Longest interface name (IFNAMSIZ - 1 bytes; the kernel needs the NUL). */
export const MAX_IFNAME = 15;

/** Interface names accepted (what `ip` accepts, minus the odd characters). */
export const TAP_NAME_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,15}$/;

/** `struct ifreq` as TUNSETIFF uses it. */
export const IFREQ = {
  NAME: { offset: 0, size: 16 },
  FLAGS: { offset: 16, size: 2 },
} as const satisfies Record<string, Field>;

/** Size of `struct ifreq` on x86-64. */
export const IFREQ_SIZE = 40;

/** `struct pollfd`: int fd; short events; short revents. */
const POLLFD = { FD: 0, EVENTS: 4, REVENTS: 6, SIZE: 8 } as const;

/** A TAP that could not be opened; the message starts with `tap=NAME:`. */
export class TapError extends Error {
  /**
   * An error about one TAP.
   * @param tap the interface name
   * @param detail what went wrong and what to do about it
   */
  constructor(readonly tap: string, detail: string, options?: ErrorOptions) {
    super(`tap=${tap}: ${detail}`, options);
    this.name = "TapError";
  }
}

/** Options of {@linkcode Tap.open}. */
export interface TapOptions {
  /** The clone device. Default {@linkcode TUN_CLONE_PATH}. */
  readonly clonePath?: string;
  /** Where send/receive failures are reported (first one of each kind). */
  readonly log?: Logger;
}

/** Counters of a TAP. */
export interface TapStats {
  /** Frames the kernel refused (interface down, queue full). */
  sendErrors: number;
  /** Reads that failed with something other than EAGAIN. */
  readErrors: number;
  /** Waits for readability completed. */
  wakeups: number;
}

/** An open TAP interface. */
export class Tap implements NetBackend {
  /** The interface name. */
  readonly name: string;
  /** Counters. */
  readonly stats: TapStats = { sendErrors: 0, readErrors: 0, wakeups: 0 };
  readonly #fd: number;
  readonly #wake: number;
  readonly #log: Logger;
  readonly #pollfds = new Uint8Array(2 * POLLFD.SIZE);
  #onReadable: (() => void) | null = null;
  #polling: Promise<void> | null = null;
  #closed = false;
  #released = false;
  #gone = false;

  private constructor(name: string, fd: number, wake: number, log: Logger) {
    this.name = name;
    this.#fd = fd;
    this.#wake = wake;
    this.#log = log;
    const view = new DataView(this.#pollfds.buffer);
    view.setInt32(POLLFD.FD, fd, true);
    view.setInt16(POLLFD.EVENTS, POLLIN, true);
    view.setInt32(POLLFD.SIZE + POLLFD.FD, wake, true);
    view.setInt16(POLLFD.SIZE + POLLFD.EVENTS, POLLIN, true);
  }

  /** Open (creating if absent and permitted) the TAP `name`. Throws {@linkcode TapError}. */
  static open(name: string, options: TapOptions = {}): Tap {
    if (!TAP_NAME_PATTERN.test(name)) {
      throw new TapError(name, `not a valid interface name (1-${MAX_IFNAME} of A-Z a-z 0-9 _ . -)`);
    }
    const path = options.clonePath ?? TUN_CLONE_PATH;
    let fd: number;
    try {
      fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    } catch (e) {
      throw new TapError(name, openProblem(path, e), { cause: e });
    }
    try {
      const ifr = new Uint8Array(IFREQ_SIZE);
      ifr.set(new TextEncoder().encode(name), IFREQ.NAME.offset);
      new DataView(ifr.buffer).setUint16(IFREQ.FLAGS.offset, IFF.TAP | IFF.NO_PI, true);
      try {
        ioctlBuf(fd, TUNSETIFF, ifr, "TUNSETIFF");
      } catch (e) {
        throw new TapError(name, setIffProblem(name, e), { cause: e });
      }
      const end = ifr.indexOf(0);
      const actual = new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFREQ.NAME.size : end));
      return new Tap(
        actual || name,
        fd,
        eventfd(EFD_CLOEXEC | EFD_NONBLOCK),
        options.log ?? nullLogger,
      );
    } catch (e) {
      close(fd);
      throw e;
    }
  }

  /** Write one frame; false if the kernel refused it (counted, first failure logged). */
  send(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    try {
      return writeFd(this.#fd, frame, `tap ${this.name}: write`) === frame.length;
    } catch (e) {
      if (this.stats.sendErrors++ === 0) this.#log.warn(`${errorText(e)} (frames are dropped)`);
      return false;
    }
  }

  /** Read one frame into `into` (non-blocking): its length, or null when none waits. */
  receive(into: Uint8Array): number | null {
    if (this.#closed || this.#gone) return null;
    try {
      return readNonblocking(this.#fd, into, `tap ${this.name}: read`);
    } catch (e) {
      if (this.stats.readErrors++ === 0) this.#log.warn(errorText(e));
      return null;
    }
  }

  /** Call `onReadable` once when the TAP may have a frame (poll on a runtime thread). */
  watch(onReadable: () => void): void {
    if (this.#closed || this.#gone) return;
    this.#onReadable = onReadable;
    this.#polling ??= this.#poll();
  }

  /** Stop watching and close the TAP (after a pending poll returned). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onReadable = null;
    if (this.#polling) writeFd(this.#wake, new Uint8Array(new BigUint64Array([1n]).buffer));
    else this.#release();
  }

  /** Resolves once the file descriptors are closed (after {@linkcode close}). */
  async closed(): Promise<void> {
    await this.#polling;
  }

  async #poll(): Promise<void> {
    const view = new DataView(this.#pollfds.buffer);
    try {
      for (;;) {
        view.setInt16(POLLFD.REVENTS, 0, true);
        view.setInt16(POLLFD.SIZE + POLLFD.REVENTS, 0, true);
        const n = await libc().poll_nb(this.#pollfds as Uint8Array<ArrayBuffer>, 2n, -1);
        if (this.#closed) return;
        if (n < 0) { // EINTR (errno lives on the pool thread): wait a little and poll again
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        const revents = view.getInt16(POLLFD.REVENTS, true);
        if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
          this.#gone = true;
          this.#log.error(
            `tap ${this.name}: the interface is gone (poll revents 0x${
              revents.toString(16)
            }); no more frames are received`,
          );
          return;
        }
        if (revents & POLLIN) break;
      }
      this.stats.wakeups++;
    } finally {
      this.#polling = null;
      if (this.#closed) this.#release();
    }
    const cb = this.#onReadable;
    this.#onReadable = null;
    cb?.();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    close(this.#fd);
    close(this.#wake);
  }
}

function openProblem(path: string, e: unknown): string {
  const errno = e instanceof OsError ? e.errno : -1;
  if (errno === ERRNO.EACCES || errno === ERRNO.EPERM) {
    return `${path}: permission denied (run as root, or give this user read/write access to ${path})`;
  }
  if (errno === ERRNO.ENOENT || errno === ERRNO.ENODEV) {
    return `${path}: not found (is the tun module loaded? modprobe tun)`;
  }
  return `${path}: ${errorText(e)}`;
}

function setIffProblem(name: string, e: unknown): string {
  const errno = e instanceof OsError ? e.errno : -1;
  switch (errno) {
    case ERRNO.EPERM:
      return `not permitted to create or attach it (needs CAP_NET_ADMIN, or create it first: ip tuntap add ${name} mode tap user <you>)`;
    case ERRNO.EBUSY:
      return "busy (another process has it open)";
    case ERRNO.EINVAL:
      return "exists but is not a TAP interface (or was created with other flags)";
    default:
      return `TUNSETIFF: ${errno >= 0 ? errnoName(errno) : errorText(e)}`;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
