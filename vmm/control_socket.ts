/**
 * The control socket of a running VM: the API of control_api.ts served over
 * HTTP/1.1 on a Unix socket (`Deno.serve` with `transport: "unix"`), by
 * default at `$XDG_RUNTIME_DIR/dvmm/NAME.sock` (socket_dir.ts).
 *
 * Opening it: the directory is created with mode 0700 if missing; a socket
 * left by a killed VMM (connecting is refused) is replaced; a socket another
 * VMM answers on is an error (`VM web is already running`); a path that is not
 * a socket is never removed. The socket gets mode 0600 and is removed by
 * {@linkcode ControlSocket.close} (and, as a fallback, at process unload).
 *
 * @module
 */

import { dirname } from "node:path";
import { type ControlTarget, errorResponse, handleControlRequest } from "./control_api.ts";

/** What is at a socket path. */
export type SocketProbe = "missing" | "live" | "stale" | "not-socket";

/** Options of {@linkcode openControlSocket}. */
export interface ControlSocketOptions {
  /** VM name, for messages. */
  readonly name: string;
  /** Socket path (the config's `api.socket`). */
  readonly path: string;
  /** The VM the API controls. */
  readonly target: ControlTarget;
  /** Called with errors the server could not answer (default: ignored). */
  readonly onError?: (error: unknown) => void;
}

/** A listening control socket. */
export interface ControlSocket {
  /** Its path. */
  readonly path: string;
  /** Stop serving (open connections are finished) and remove the socket file. Idempotent. */
  close(): Promise<void>;
}

/** Thrown when the control socket cannot be opened. */
export class ControlSocketError extends Error {
  /**
   * An error about the control socket at `path`.
   * @param path the socket path
   * @param message what is wrong, naming the VM or path
   */
  constructor(readonly path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlSocketError";
  }
}

/**
 * Find out what is at `path`: nothing, a socket some process answers on, a
 * stale socket (connection refused), or something that is not a socket.
 */
export async function probeSocket(path: string): Promise<SocketProbe> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "missing";
    throw e;
  }
  if (!info.isSocket) return "not-socket";
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return "live";
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) return "stale";
    if (e instanceof Deno.errors.NotFound) return "missing";
    throw e;
  }
}

/**
 * Serve the control API of `options.target` on `options.path`.
 * Throws {@linkcode ControlSocketError} when the VM is already running, the
 * path holds something else, or listening fails.
 */
export async function openControlSocket(options: ControlSocketOptions): Promise<ControlSocket> {
  const { name, path, target } = options;
  await prepareSocketPath(name, path);
  let server: Deno.HttpServer<Deno.UnixAddr>;
  try {
    server = Deno.serve({
      path,
      transport: "unix",
      onListen: () => {},
      onError: (e) => {
        options.onError?.(e);
        return errorResponse(500, `internal error: ${e instanceof Error ? e.message : String(e)}`);
      },
    }, (request) => handleControlRequest(target, request));
  } catch (e) {
    throw new ControlSocketError(path, `VM ${name}: cannot listen on ${path}: ${message(e)}`, {
      cause: e,
    });
  }
  let ino: number | null = null;
  try {
    Deno.chmodSync(path, 0o600);
    ino = Deno.lstatSync(path).ino;
  } catch (e) {
    await server.shutdown();
    throw new ControlSocketError(path, `VM ${name}: cannot chmod ${path}: ${message(e)}`, {
      cause: e,
    });
  }
  const removeOurs = () => {
    try {
      const info = Deno.lstatSync(path);
      if (info.isSocket && info.ino === ino) Deno.removeSync(path);
    } catch { /* already gone */ }
  };
  globalThis.addEventListener("unload", removeOurs);
  let closing: Promise<void> | undefined;
  return {
    path,
    close() {
      closing ??= (async () => {
        globalThis.removeEventListener("unload", removeOurs);
        try {
          await server.shutdown();
        } finally {
          removeOurs();
        }
      })();
      return closing;
    },
  };
}

/** Create the socket's directory (0700) and clear a stale socket; refuse a live one or a non-socket. */
async function prepareSocketPath(name: string, path: string): Promise<void> {
  try {
    await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new ControlSocketError(
      path,
      `VM ${name}: cannot create ${dirname(path)}: ${message(e)}`,
      { cause: e },
    );
  }
  let state: SocketProbe;
  try {
    state = await probeSocket(path);
  } catch (e) {
    throw new ControlSocketError(path, `VM ${name}: cannot probe ${path}: ${message(e)}`, {
      cause: e,
    });
  }
  switch (state) {
    case "missing":
      return;
    case "live":
      throw new ControlSocketError(path, `VM ${name} is already running (socket ${path})`);
    case "not-socket":
      throw new ControlSocketError(
        path,
        `VM ${name}: ${path} exists and is not a socket; not removing it`,
      );
    case "stale":
      try {
        await Deno.remove(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          throw new ControlSocketError(
            path,
            `VM ${name}: cannot remove stale socket ${path}: ${message(e)}`,
            { cause: e },
          );
        }
      }
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
