import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ControlError,
  type ControlTarget,
  handleControlRequest,
  MAX_BODY_BYTES,
  type VmInfo,
  type VmState,
  type VmStats,
} from "../../vmm/control_api.ts";
import { openControlSocket, probeSocket } from "../../vmm/control_socket.ts";
import { ControlClientError, listVms, request, requestSocket } from "../../vmm/control_client.ts";
import {
  formatBytes,
  formatDuration,
  formatVmList,
  formatVmStat,
} from "../../vmm/control_format.ts";
import { controlSocketPath } from "../../vmm/socket_dir.ts";

/** A VM that records what it was asked to do. */
class FakeVm implements ControlTarget {
  state: VmState = "running";
  calls: string[] = [];
  failNext: Error | undefined;

  constructor(readonly name: string) {}

  info(): VmInfo {
    return {
      name: this.name,
      state: this.state,
      vcpus: 2,
      memoryBytes: 512 * 1024 * 1024,
      pid: Deno.pid,
      devices: [{
        name: "regfile",
        bdf: "00:03.0",
        vendorId: 0x1af4,
        deviceId: 0x10f0,
        bars: [
          { index: 0, kind: "mem32", address: 0xc000_0000, size: 4096, active: true },
          { index: 2, kind: "mem64", address: 0x20_0000_0000, size: 1 << 20, active: false },
        ],
      }],
    };
  }

  stats(): VmStats {
    return {
      uptimeMs: 65_000,
      vcpus: [{ index: 0, exits: { io: 10, mmio: 2 } }, { index: 1, exits: { io: 3, hlt: 7 } }],
    };
  }

  #act(name: string, next: VmState): Promise<void> {
    this.calls.push(name);
    const fail = this.failNext;
    this.failNext = undefined;
    if (fail) return Promise.reject(fail);
    this.state = next;
    return Promise.resolve();
  }
  pause(): Promise<void> {
    if (this.state === "paused") {
      return Promise.reject(new ControlError(409, "VM is already paused"));
    }
    return this.#act("pause", "paused");
  }
  resume(): Promise<void> {
    return this.#act("resume", "running");
  }
  shutdown(): Promise<void> {
    return this.#act("shutdown", this.state);
  }
  stop(): Promise<void> {
    return this.#act("stop", "stopped");
  }
}

/** XDG_RUNTIME_DIR pointed at a fresh temp dir for the test's duration. */
async function withRuntimeDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dvmm_ctl_" });
  const saved = Deno.env.get("XDG_RUNTIME_DIR");
  Deno.env.set("XDG_RUNTIME_DIR", dir);
  try {
    await fn(dir);
  } finally {
    if (saved === undefined) Deno.env.delete("XDG_RUNTIME_DIR");
    else Deno.env.set("XDG_RUNTIME_DIR", saved);
    await Deno.remove(dir, { recursive: true });
  }
}

/** Open the socket of a fake VM called `name` at its default path. */
async function serveFake(name: string) {
  const vm = new FakeVm(name);
  const socket = await openControlSocket({ name, path: controlSocketPath(name), target: vm });
  return { vm, socket };
}

/** Leave a stale socket at `path`: a process binds it and is SIGKILLed before cleaning up. */
async function makeStaleSocket(path: string): Promise<void> {
  const code = `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} });` +
    `Deno.kill(Deno.pid, "SIGKILL");`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(out.signal, "SIGKILL");
  assert.equal(await probeSocket(path), "stale");
}

/** Write raw bytes to a Unix socket and read the answer until the server closes or `\r\n\r\n`+body. */
async function rawExchange(path: string, bytes: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(new TextEncoder().encode(bytes));
    const buf = new Uint8Array(4096);
    let text = "";
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
      if (/\r\n\r\n/.test(text) && /content-length: 0|\}\n$/i.test(text)) break;
    }
    return text;
  } finally {
    conn.close();
  }
}

Deno.test("every endpoint answers through the client", async () => {
  await withRuntimeDir(async () => {
    const { vm, socket } = await serveFake("web");
    try {
      assert.deepEqual(await request("web", "GET", "/vm"), vm.info());
      assert.deepEqual(await request("web", "GET", "/stats"), vm.stats());
      assert.deepEqual(await request("web", "PUT", "/vm/pause"), { state: "paused" });
      assert.equal(vm.state, "paused");
      assert.deepEqual(await request("web", "PUT", "/vm/resume", { body: {} }), {
        state: "running",
      });
      const shutdown = await requestSocket(socket.path, "PUT", "/vm/shutdown");
      assert.deepEqual(shutdown, { status: 202, body: { state: "running" } });
      assert.deepEqual(await request("web", "PUT", "/vm/stop"), { state: "stopped" });
      assert.deepEqual(vm.calls, ["pause", "resume", "shutdown", "stop"]);
    } finally {
      await socket.close();
    }
  });
});

Deno.test("bad requests get 4xx JSON errors and the VM is not called", async () => {
  await withRuntimeDir(async () => {
    const { vm, socket } = await serveFake("web");
    try {
      const s = socket.path;
      const badJson = await requestSocket(s, "PUT", "/vm/pause", { body: "{not json" });
      assert.equal(badJson.status, 400);
      assert.match((badJson.body as { error: string }).error, /^malformed JSON body: /);
      assert.deepEqual(await requestSocket(s, "PUT", "/vm/pause", { body: "[1]" }), {
        status: 400,
        body: { error: "malformed body: expected a JSON object" },
      });
      assert.deepEqual(await requestSocket(s, "POST", "/vm/pause"), {
        status: 405,
        body: { error: "POST /vm/pause: method not allowed (use PUT)" },
      });
      assert.deepEqual(await requestSocket(s, "GET", "/vm/stop"), {
        status: 405,
        body: { error: "GET /vm/stop: method not allowed (use PUT)" },
      });
      assert.deepEqual(await requestSocket(s, "DELETE", "/vm"), {
        status: 405,
        body: { error: "DELETE /vm: method not allowed (use GET)" },
      });
      const unknown = await requestSocket(s, "GET", "/nope");
      assert.equal(unknown.status, 404);
      assert.match(
        (unknown.body as { error: string }).error,
        /^no such endpoint: \/nope \(try GET \/vm/,
      );
      const big = await requestSocket(s, "PUT", "/vm/pause", {
        body: JSON.stringify({ pad: "x".repeat(MAX_BODY_BYTES) }),
      });
      assert.equal(big.status, 413);
      assert.deepEqual(vm.calls, []);
      await assert.rejects(() => request("web", "GET", "/nope"), (e: unknown) => {
        assert.ok(e instanceof ControlClientError);
        assert.equal(e.status, 404);
        assert.match(e.message, /^VM web: GET \/nope: no such endpoint/);
        return true;
      });
    } finally {
      await socket.close();
    }
  });
});

Deno.test("errors thrown by the VM become JSON answers, never escape", async () => {
  await withRuntimeDir(async () => {
    const { vm, socket } = await serveFake("web");
    try {
      await request("web", "PUT", "/vm/pause");
      await assert.rejects(() => request("web", "PUT", "/vm/pause"), {
        message: "VM web: PUT /vm/pause: VM is already paused",
        status: 409,
      });
      vm.failNext = new Error("vCPU 1 did not stop");
      assert.deepEqual(await requestSocket(socket.path, "PUT", "/vm/resume"), {
        status: 500,
        body: { error: "internal error: vCPU 1 did not stop" },
      });
      assert.equal((await requestSocket(socket.path, "GET", "/vm")).status, 200);
    } finally {
      await socket.close();
    }
  });
});

Deno.test("garbage bytes get 400 and the server keeps serving raw HTTP/1.1 clients", async () => {
  await withRuntimeDir(async () => {
    const { socket } = await serveFake("web");
    try {
      const garbage = await rawExchange(socket.path, "\x00\x01\x02 garbage\r\n\r\n");
      assert.match(garbage, /^HTTP\/1\.1 400 /);
      const raw = await rawExchange(
        socket.path,
        "GET /vm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(raw, /content-type: application\/json/i);
      assert.match(raw, /"state":"running"/);
      assert.equal((await requestSocket(socket.path, "GET", "/vm")).status, 200);
    } finally {
      await socket.close();
    }
  });
});

Deno.test("a second client is served while another connection stays open", async () => {
  await withRuntimeDir(async () => {
    const { socket } = await serveFake("web");
    const idle = await Deno.connect({ transport: "unix", path: socket.path });
    const partial = await Deno.connect({ transport: "unix", path: socket.path });
    try {
      await partial.write(new TextEncoder().encode("GET /vm HTTP/1.1\r\nHo"));
      const both = await Promise.all([
        request("web", "GET", "/vm"),
        request("web", "GET", "/stats"),
      ]);
      assert.equal((both[0] as VmInfo).state, "running");
      assert.equal((both[1] as VmStats).vcpus.length, 2);
    } finally {
      idle.close();
      partial.close();
      await socket.close();
    }
  });
});

Deno.test("the socket is 0600 in a 0700 directory and is removed on close", async () => {
  await withRuntimeDir(async (dir) => {
    const { socket } = await serveFake("web");
    assert.equal(socket.path, join(dir, "dvmm", "web.sock"));
    assert.equal((await Deno.lstat(socket.path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(join(dir, "dvmm"))).mode! & 0o777, 0o700);
    assert.equal(await probeSocket(socket.path), "live");
    await socket.close();
    await socket.close();
    assert.equal(await probeSocket(socket.path), "missing");
    await assert.rejects(() => request("web", "GET", "/vm"), {
      message: `no VM called web (no ${socket.path})`,
    });
  });
});

Deno.test("a stale socket from a killed VMM is replaced", async () => {
  await withRuntimeDir(async (dir) => {
    const path = controlSocketPath("web");
    await Deno.mkdir(join(dir, "dvmm"), { mode: 0o700 });
    await makeStaleSocket(path);
    await assert.rejects(() => request("web", "GET", "/vm"), {
      message: `VM web is not running (stale socket ${path})`,
    });
    const { socket } = await serveFake("web");
    try {
      assert.equal(((await request("web", "GET", "/vm")) as VmInfo).name, "web");
    } finally {
      await socket.close();
    }
  });
});

Deno.test("a live socket is refused; a non-socket file is never removed", async () => {
  await withRuntimeDir(async (dir) => {
    const first = await serveFake("web");
    try {
      await assert.rejects(() => serveFake("web"), {
        name: "ControlSocketError",
        message: `VM web is already running (socket ${first.socket.path})`,
      });
      assert.equal(await probeSocket(first.socket.path), "live", "the first VM keeps its socket");
    } finally {
      await first.socket.close();
    }
    const file = join(dir, "dvmm", "db.sock");
    await Deno.writeTextFile(file, "precious");
    await assert.rejects(() => serveFake("db"), {
      message: `VM db: ${file} exists and is not a socket; not removing it`,
    });
    assert.equal(await Deno.readTextFile(file), "precious");
  });
});

Deno.test("listVms finds live VMs, removes stale sockets and skips other files", async () => {
  await withRuntimeDir(async (dir) => {
    assert.deepEqual(await listVms(), [], "no socket directory yet");
    const b = await serveFake("b-vm");
    const a = await serveFake("a-vm");
    const stale = controlSocketPath("dead");
    await makeStaleSocket(stale);
    await Deno.writeTextFile(join(dir, "dvmm", "notes.sock"), "not a socket");
    try {
      const list = await listVms();
      assert.deepEqual(list.map((e) => e.name), ["a-vm", "b-vm"]);
      assert.deepEqual(list[0], { name: "a-vm", socket: a.socket.path, info: a.vm.info() });
      assert.equal(await probeSocket(stale), "missing", "stale socket cleaned");
      assert.equal(await probeSocket(join(dir, "dvmm", "notes.sock")), "not-socket");
    } finally {
      await a.socket.close();
      await b.socket.close();
    }
  });
});

Deno.test("curl --unix-socket works against the control socket", async () => {
  const curl = await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output()
    .catch(() => undefined);
  if (!curl?.success) return; // curl is optional on the host
  await withRuntimeDir(async () => {
    const { socket } = await serveFake("web");
    try {
      const out = await new Deno.Command("curl", {
        args: ["-s", "-X", "PUT", "--unix-socket", socket.path, "http://x/vm/pause"],
        stdout: "piped",
      }).output();
      assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { state: "paused" });
    } finally {
      await socket.close();
    }
  });
});

Deno.test("the handler works without a socket: trailing slash, bigint values, non-UTF-8 body", async () => {
  const vm = new FakeVm("h");
  const call = async (method: string, path: string, body?: BodyInit) => {
    const r = await handleControlRequest(vm, new Request(`http://x${path}`, { method, body }));
    return { status: r.status, allow: r.headers.get("allow"), body: await r.json() };
  };
  assert.equal((await call("GET", "/vm/")).status, 200);
  assert.equal((await call("PUT", "/vm")).allow, "GET");
  assert.deepEqual(await call("PUT", "/vm/pause", new Uint8Array([0xff, 0xfe])), {
    status: 400,
    allow: null,
    body: { error: "malformed body: not UTF-8" },
  });
  const big = new FakeVm("big");
  big.stats = () => ({ vcpus: [{ index: 0, exits: { io: 5n as unknown as number } }] });
  const r = await handleControlRequest(big, new Request("http://x/stats"));
  assert.deepEqual(await r.json(), { vcpus: [{ index: 0, exits: { io: 5 } }] });
});

Deno.test("dvmm list and dvmm stat formatting (table and JSON)", () => {
  const vm = new FakeVm("web");
  const entries = [
    { name: "web", socket: "/run/dvmm/web.sock", info: vm.info() },
    { name: "odd", socket: "/run/dvmm/odd.sock", error: "no answer (timed out)" },
  ];
  const lines = formatVmList(entries).split("\n");
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[0].split(/ +/), ["NAME", "STATE", "CPUS", "MEMORY", "PID", "SOCKET"]);
  assert.deepEqual(lines[1].split(/ +/), [
    "web",
    "running",
    "2",
    "512",
    "MiB",
    String(Deno.pid),
    "/run/dvmm/web.sock",
  ]);
  assert.deepEqual(lines[2].split(/ +/), [
    "odd",
    "?",
    "-",
    "-",
    "-",
    "/run/dvmm/odd.sock",
    "(no",
    "answer",
    "(timed",
    "out))",
  ]);
  for (const [header, cell] of [["STATE", "running"], ["MEMORY", "512"], ["SOCKET", "/run/"]]) {
    assert.equal(lines[1].indexOf(cell), lines[0].indexOf(header), `${header} column aligned`);
  }
  assert.equal(lines[2].indexOf("/run/"), lines[0].indexOf("SOCKET"));
  assert.equal(formatVmList([]), "no VMs running");
  assert.deepEqual(JSON.parse(formatVmList(entries, { json: true })), entries);

  const stat = formatVmStat(vm.info(), vm.stats());
  assert.equal(
    stat,
    [
      `VM web: running, 2 vCPUs, 512 MiB, pid ${Deno.pid}, up 1m 5s`,
      "",
      "Devices:",
      "  00:03.0 regfile [1af4:10f0]",
      "    BAR0 mem32 0xc0000000    4 KiB active",
      "    BAR2 mem64 0x2000000000    1 MiB inactive",
      "",
      "Exits:",
      "  KIND  vCPU0  vCPU1  TOTAL",
      "  hlt       0      7      7",
      "  io       10      3     13",
      "  mmio      2      0      2",
    ].join("\n"),
  );
  assert.deepEqual(JSON.parse(formatVmStat(vm.info(), vm.stats(), { json: true })), {
    info: vm.info(),
    stats: vm.stats(),
  });
  assert.equal(formatBytes(1536 * 1024 * 1024), "1.5 GiB");
  assert.equal(formatBytes(100), "100 B");
  assert.equal(formatDuration(3_723_000), "1h 2m 3s");
});
