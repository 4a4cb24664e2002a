/**
 * The client side of the control socket (`dvmm list/stat/pause/resume/stop`):
 * HTTP requests over a Unix socket with `fetch` and
 * `Deno.createHttpClient({ proxy: { transport: "unix", path } })`, and a
 * listing of running VMs from the socket directory.
 *
 * @module
 */

import { join } from "node:path";
import type { VmInfo } from "./control_api.ts";
import { probeSocket } from "./control_socket.ts";
import { controlSocketDir, controlSocketPath, SOCKET_SUFFIX } from "./socket_dir.ts";

/** An answer from a VM. */
export interface ControlResponse {
  /** HTTP status. */
  readonly status: number;
  /** The parsed JSON body (undefined when empty). */
  readonly body: unknown;
}

/** A running VM found by {@linkcode listVms}. */
export interface VmListEntry {
  /** VM name (from the socket's file name). */
  readonly name: string;
  /** Its control socket. */
  readonly socket: string;
  /** `GET /vm`, or undefined when the VM did not answer properly. */
  readonly info?: VmInfo;
  /** Why `info` is missing. */
  readonly error?: string;
}

/** Thrown when a VM cannot be reached or answers with an error status. */
export class ControlClientError extends Error {
  /**
   * A failed request to a VM.
   * @param message one line naming the VM
   * @param status the HTTP status when the VM answered with an error
   */
  constructor(message: string, readonly status?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlClientError";
  }
}

/** Options of the request functions. */
export interface RequestOptions {
  /** A JSON value, or a raw string sent as is. */
  readonly body?: unknown;
  /** Give up after this many milliseconds (default 5000). */
  readonly timeoutMs?: number;
}

/** Default request timeout. */
export const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Send `method path` to the VM listening on `socket` and return the status
 * and JSON body, whatever the status. Throws {@linkcode ControlClientError}
 * when the socket cannot be reached or the answer is not JSON.
 */
export async function requestSocket(
  socket: string,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<ControlResponse> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const body = options.body === undefined
      ? undefined
      : typeof options.body === "string"
      ? options.body
      : JSON.stringify(options.body);
    let response: Response;
    try {
      response = await fetch(`http://localhost${path}`, {
        method,
        client,
        body,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      });
    } catch (e) {
      throw new ControlClientError(`${socket}: ${connectProblem(e)}`, undefined, { cause: e });
    }
    const text = await response.text();
    if (text.trim() === "") return { status: response.status, body: undefined };
    try {
      return { status: response.status, body: JSON.parse(text) };
    } catch {
      throw new ControlClientError(`${socket}: answer is not JSON: ${text.slice(0, 80)}`);
    }
  } finally {
    client.close();
  }
}

/**
 * Send `method path` to the VM called `name` (at its default socket) and
 * return its JSON answer. Throws {@linkcode ControlClientError} when there is
 * no such VM, it does not answer, or it answers with an error status.
 */
export async function request(
  name: string,
  method: string,
  path: string,
  options: RequestOptions = {},
): Promise<unknown> {
  const socket = controlSocketPath(name);
  const state = await probeSocket(socket).catch(() => "live" as const);
  if (state === "missing") throw new ControlClientError(`no VM called ${name} (no ${socket})`);
  if (state === "not-socket") throw new ControlClientError(`${socket} is not a socket`);
  if (state === "stale") {
    throw new ControlClientError(`VM ${name} is not running (stale socket ${socket})`);
  }
  const r = await requestSocket(socket, method, path, options);
  if (r.status >= 400) {
    const error = (r.body as { error?: unknown } | undefined)?.error;
    throw new ControlClientError(
      `VM ${name}: ${method} ${path}: ${typeof error === "string" ? error : `HTTP ${r.status}`}`,
      r.status,
    );
  }
  return r.body;
}

/**
 * The running VMs: every socket in the socket directory that answers
 * `GET /vm`, sorted by name. Stale sockets (connection refused) are removed;
 * files that are not sockets are skipped.
 */
export async function listVms(
  options: { readonly timeoutMs?: number } = {},
): Promise<VmListEntry[]> {
  const dir = controlSocketDir();
  if (!dir) return [];
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.endsWith(SOCKET_SUFFIX)) names.push(entry.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const entries = await Promise.all(names.map(async (file): Promise<VmListEntry | undefined> => {
    const socket = join(dir, file);
    const name = file.slice(0, -SOCKET_SUFFIX.length);
    let state;
    try {
      state = await probeSocket(socket);
    } catch (e) {
      return { name, socket, error: (e as Error).message };
    }
    if (state === "stale") {
      await Deno.remove(socket).catch(() => {});
      return undefined;
    }
    if (state !== "live") return undefined;
    try {
      const r = await requestSocket(socket, "GET", "/vm", options);
      if (r.status !== 200) return { name, socket, error: `GET /vm: HTTP ${r.status}` };
      return { name, socket, info: r.body as VmInfo };
    } catch (e) {
      return { name, socket, error: (e as Error).message };
    }
  }));
  return entries.filter((e): e is VmListEntry => e !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name));
}

function connectProblem(e: unknown): string {
  if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) {
    return "no answer (timed out)";
  }
  const text = e instanceof Error ? e.message : String(e);
  return `cannot connect: ${text}`;
}
