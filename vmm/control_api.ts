/**
 * The control API of a running VM: HTTP/1.1 with JSON bodies (served on a Unix
 * socket by control_socket.ts, like Firecracker), so
 * `curl --unix-socket S http://x/vm` works.
 *
 * | Method | Path           | Answer                                            |
 * | ------ | -------------- | ------------------------------------------------- |
 * | GET    | `/vm`          | 200 {@linkcode VmInfo}                            |
 * | GET    | `/stats`       | 200 {@linkcode VmStats}                           |
 * | PUT    | `/vm/pause`    | 200 `{ "state": ... }`                            |
 * | PUT    | `/vm/resume`   | 200 `{ "state": ... }`                            |
 * | PUT    | `/vm/shutdown` | 202 `{ "state": ... }` (ACPI power button sent)   |
 * | PUT    | `/vm/stop`     | 200 `{ "state": ... }` (VM stopped at once)       |
 *
 * PUT bodies are optional; when present they must be a JSON object. Errors are
 * `{ "error": "..." }` with 400 (malformed body), 404 (unknown path), 405
 * (wrong method, with `Allow`), 413 (body too large), 409 or another status
 * from a {@linkcode ControlError} the target throws, 500 for anything else.
 * The handler never throws.
 *
 * @module
 */

/** Run state of a VM. */
export type VmState = "running" | "paused" | "stopped";

/** One BAR of a device, as placed now. */
export interface VmBarInfo {
  /** BAR index (0-5). */
  readonly index: number;
  /** io, mem32 or mem64. */
  readonly kind: "io" | "mem32" | "mem64";
  /** Address in the BAR register (guest physical or port). */
  readonly address: number;
  /** Size in bytes. */
  readonly size: number;
  /** Is it decoded (Command register enables it and it is mapped)? */
  readonly active: boolean;
}

/** One PCI device of a VM. */
export interface VmDeviceInfo {
  /** Plugin/device name. */
  readonly name: string;
  /** `00:03.0`. */
  readonly bdf: string;
  /** PCI vendor ID. */
  readonly vendorId: number;
  /** PCI device ID. */
  readonly deviceId: number;
  /** Its BARs. */
  readonly bars: readonly VmBarInfo[];
}

/** `GET /vm`. */
export interface VmInfo {
  /** VM name. */
  readonly name: string;
  /** Run state. */
  readonly state: VmState;
  /** Number of vCPUs. */
  readonly vcpus: number;
  /** Guest RAM in bytes. */
  readonly memoryBytes: number;
  /** PCI devices with their current BARs. */
  readonly devices: readonly VmDeviceInfo[];
  /** Process ID of the VMM. */
  readonly pid?: number;
}

/** Exit counters of one vCPU. */
export interface VcpuStats {
  /** vCPU index. */
  readonly index: number;
  /**
   * Exits by kind (`PIO_WRITE`, `PIO_READ`, `MMIO_WRITE`, `MMIO_READ`, `INTR`, `OTHER`), and `LOCAL`:
   * how many of the port exits the vCPU thread served without the VMM thread.
   */
  readonly exits: Readonly<Record<string, number>>;
}

/** `GET /stats`. */
export interface VmStats {
  /** Milliseconds since the VM started. */
  readonly uptimeMs?: number;
  /** Per-vCPU exit counters. */
  readonly vcpus: readonly VcpuStats[];
}

/** What the control API calls on the VM. Methods may throw {@linkcode ControlError}. */
export interface ControlTarget {
  /** The VM now. */
  info(): VmInfo;
  /** Counters now. */
  stats(): VmStats;
  /** Stop running the vCPUs (state becomes paused). */
  pause(): Promise<void>;
  /** Run paused vCPUs again. */
  resume(): Promise<void>;
  /** Ask the guest to power off (ACPI power button); returns once requested. */
  shutdown(): Promise<void>;
  /** Stop the VM at once. */
  stop(): Promise<void>;
}

/** An error with an HTTP status, thrown by a {@linkcode ControlTarget} (e.g. 409 already paused). */
export class ControlError extends Error {
  /**
   * An error answer with HTTP status `status`.
   * @param status HTTP status for the answer (4xx/5xx)
   * @param message the `error` text
   */
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "ControlError";
  }
}

/** Largest accepted request body. */
export const MAX_BODY_BYTES: number = 64 * 1024;

/** The endpoints, `METHOD /path`, for error messages and docs. */
export const CONTROL_ENDPOINTS: readonly string[] = [
  "GET /vm",
  "GET /stats",
  "PUT /vm/pause",
  "PUT /vm/resume",
  "PUT /vm/shutdown",
  "PUT /vm/stop",
];

/** The actions reachable by `PUT /vm/<action>`. */
export type VmAction = "pause" | "resume" | "shutdown" | "stop";

/** Answer one request. Never throws: every failure is a JSON error response. */
export async function handleControlRequest(
  target: ControlTarget,
  request: Request,
): Promise<Response> {
  try {
    return await route(target, request);
  } catch (e) {
    if (e instanceof ControlError) return errorResponse(e.status, e.message);
    return errorResponse(500, `internal error: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** A JSON response (bigints become numbers, or strings when not exact). */
export function jsonResponse(status: number, body: unknown, headers: HeadersInit = {}): Response {
  const text = JSON.stringify(
    body,
    (_k, v) => typeof v === "bigint" ? (Number.isSafeInteger(Number(v)) ? Number(v) : `${v}`) : v,
  );
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** `{ "error": message }` with `status`. */
export function errorResponse(
  status: number,
  message: string,
  headers: HeadersInit = {},
): Response {
  return jsonResponse(status, { error: message }, headers);
}

const ROUTES: Readonly<Record<string, { method: "GET" | "PUT"; action?: VmAction }>> = {
  "/vm": { method: "GET" },
  "/stats": { method: "GET" },
  "/vm/pause": { method: "PUT", action: "pause" },
  "/vm/resume": { method: "PUT", action: "resume" },
  "/vm/shutdown": { method: "PUT", action: "shutdown" },
  "/vm/stop": { method: "PUT", action: "stop" },
};

async function route(target: ControlTarget, request: Request): Promise<Response> {
  let path: string;
  try {
    path = new URL(request.url).pathname;
  } catch {
    return errorResponse(400, `bad request URL: ${request.url}`);
  }
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  const r = Object.hasOwn(ROUTES, path) ? ROUTES[path] : undefined;
  if (!r) {
    return errorResponse(404, `no such endpoint: ${path} (try ${CONTROL_ENDPOINTS.join(", ")})`);
  }
  if (request.method !== r.method) {
    return errorResponse(405, `${request.method} ${path}: method not allowed (use ${r.method})`, {
      allow: r.method,
    });
  }
  const bodyProblem = await checkBody(request);
  if (bodyProblem) return bodyProblem;
  if (path === "/vm") return jsonResponse(200, target.info());
  if (path === "/stats") return jsonResponse(200, target.stats());
  const action = r.action!;
  await target[action]();
  return jsonResponse(action === "shutdown" ? 202 : 200, { state: target.info().state });
}

/** An error response when the body is too large, or present but not a JSON object. */
async function checkBody(request: Request): Promise<Response | undefined> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) {
    return errorResponse(413, `body too large (${declared} bytes; at most ${MAX_BODY_BYTES})`);
  }
  if (!request.body) return undefined;
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.length > MAX_BODY_BYTES) {
    return errorResponse(413, `body too large (${bytes.length} bytes; at most ${MAX_BODY_BYTES})`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return errorResponse(400, "malformed body: not UTF-8");
  }
  if (text.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return errorResponse(400, `malformed JSON body: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return errorResponse(400, "malformed body: expected a JSON object");
  }
  return undefined;
}
