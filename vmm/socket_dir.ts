/**
 * Where dvmm puts the control sockets of running VMs:
 * `$XDG_RUNTIME_DIR/dvmm/NAME.sock`, or `~/.dvmm/NAME.sock` when
 * XDG_RUNTIME_DIR is unset. `dvmm list` scans this directory.
 *
 * @module
 */

import { join } from "node:path";

/** File name suffix of a control socket. */
export const SOCKET_SUFFIX = ".sock";

/**
 * The directory holding control sockets (not created), or undefined when
 * neither XDG_RUNTIME_DIR nor HOME is set.
 */
export function controlSocketDir(): string | undefined {
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  if (xdg) return join(xdg, "dvmm");
  const home = Deno.env.get("HOME");
  if (home) return join(home, ".dvmm");
  return undefined;
}

/**
 * The default control socket path of the VM called `name`.
 * Throws when neither XDG_RUNTIME_DIR nor HOME is set.
 */
export function controlSocketPath(name: string): string {
  const dir = controlSocketDir();
  if (!dir) {
    throw new Error(
      `no directory for the control socket of VM ${name}: set XDG_RUNTIME_DIR or HOME`,
    );
  }
  return join(dir, `${name}${SOCKET_SUFFIX}`);
}
