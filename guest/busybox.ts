/**
 * The static busybox that guest initramfs images are built around
 * (Debian's busybox-static puts it at /bin/busybox).
 *
 * `DVMM_BUSYBOX` names another binary. It must be statically linked: the
 * initramfs has no dynamic loader or libc.
 *
 * @module
 */

import type { CpioWriter } from "./cpio.ts";
import { hostToolBytes } from "./host_tool.ts";

/** A static busybox binary and its applets. */
export interface Busybox {
  /** Host path of the binary. */
  readonly path: string;
  /** The binary. */
  readonly data: Uint8Array;
  /** Applet install paths without leading `/` (`bin/sh`, `sbin/insmod`, `usr/bin/[`). */
  readonly applets: readonly string[];
}

/** Thrown when no usable static busybox is found. */
export class BusyboxError extends Error {
  /**
   * A busybox lookup error.
   * @param message what is missing and how to install it
   */
  constructor(message: string) {
    super(message);
    this.name = "BusyboxError";
  }
}

/** Path of the busybox to use: `$DVMM_BUSYBOX`, /bin/busybox or /usr/bin/busybox. */
export async function findBusybox(): Promise<string> {
  for (const path of [Deno.env.get("DVMM_BUSYBOX"), "/bin/busybox", "/usr/bin/busybox"]) {
    if (!path) continue;
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // try the next one
    }
  }
  throw new BusyboxError(
    "no busybox at /bin/busybox or $DVMM_BUSYBOX; install busybox-static " +
      "(apt-get install busybox-static)",
  );
}

/**
 * Read the static busybox at `path` (default {@linkcode findBusybox}); its
 * applet list comes from `busybox --list-full`. Throws if it is dynamically linked.
 */
export async function loadBusybox(path?: string): Promise<Busybox> {
  const file = path ?? await findBusybox();
  const data = await Deno.readFile(file);
  if (hasInterpreter(data)) {
    throw new BusyboxError(
      `${file} is dynamically linked; install busybox-static (apt-get install busybox-static)`,
    );
  }
  const list = new TextDecoder().decode(
    await hostToolBytes(file, ["--list-full"], "install busybox-static"),
  );
  const applets = list.split("\n").map((s) => s.trim()).filter((s) => s && s !== "bin/busybox");
  return { path: file, data, applets };
}

/** Add `bin/busybox` and a symlink for every applet to `cpio`. */
export function addBusybox(cpio: CpioWriter, busybox: Busybox): void {
  cpio.file("bin/busybox", busybox.data, 0o755);
  for (const applet of busybox.applets) {
    if (!cpio.has(applet)) cpio.symlink(applet, "/bin/busybox");
  }
}

/** Whether an ELF64 file has a PT_INTERP program header (i.e. is dynamically linked). */
function hasInterpreter(elf: Uint8Array): boolean {
  if (elf.length < 64 || elf[0] !== 0x7f || elf[4] !== 2) return false;
  const view = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const phoff = Number(view.getBigUint64(0x20, true)); // e_phoff
  const phentsize = view.getUint16(0x36, true); // e_phentsize
  const phnum = view.getUint16(0x38, true); // e_phnum
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length) break;
    if (view.getUint32(at, true) === PT_INTERP) return true;
  }
  return false;
}

const PT_INTERP = 3;
