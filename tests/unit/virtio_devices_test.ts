/**
 * virtio backends behind the transport: blk against a temporary image file
 * (read, write, flush, GET_ID, read-only image, out-of-range sectors,
 * unsupported requests, malformed requests), rng and console.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { FileBlockBackend } from "../../devices/virtio/block_file.ts";
import { MemoryBlockBackend } from "../../devices/virtio/block_backend.ts";
import {
  SECTOR_SIZE,
  VIRTIO_BLK_CONFIG,
  VIRTIO_BLK_F,
  VIRTIO_BLK_S,
  VIRTIO_BLK_T,
  VirtioBlk,
} from "../../devices/virtio/blk.ts";
import { CONSOLE_QUEUE, VirtioConsole } from "../../devices/virtio/console.ts";
import { VIRTIO_BAR_LAYOUT } from "../../devices/virtio/pci_layout.ts";
import { RANDOM_CHUNK, VirtioRng } from "../../devices/virtio/rng.ts";
import { featureBit, hasFeature, STATUS, VIRTIO_F } from "../../devices/virtio/spec.ts";
import { bringUp, readDeviceFeatures, readReg, type Running } from "./virtio_harness.ts";

const HDR = 0x8_0000, DATA = 0x9_0000, STATUS_AT = 0xa_0000;

function tempImage(sectors: number, fill = (i: number) => i & 0xff): string {
  const path = Deno.makeTempFileSync({ suffix: ".img" });
  const bytes = new Uint8Array(sectors * SECTOR_SIZE).map((_, i) => fill(i));
  Deno.writeFileSync(path, bytes);
  return path;
}

function header(run: Running, type: number, sector: bigint) {
  run.memory.writeU32(HDR, type);
  run.memory.writeU32(HDR + 4, 0);
  run.memory.writeU64(HDR + 8, sector);
}

/** Submit one request and return [status byte, used len]. */
function request(
  run: Running,
  type: number,
  sector: bigint,
  data: { out?: [number, number][]; inn?: [number, number][] } = {},
): [number, number] {
  header(run, type, sector);
  run.memory.writeU8(STATUS_AT, 0xee);
  run.queues[0].add([[HDR, 16], ...(data.out ?? [])], [...(data.inn ?? []), [STATUS_AT, 1]]);
  run.kick(0);
  const used = run.queues[0].reclaim();
  assert.equal(used.length, 1);
  return [run.memory.readU8(STATUS_AT), used[0].len];
}

function blkOn(path: string, readonly = false) {
  const backend = new FileBlockBackend(path, { readonly });
  const run = bringUp(new VirtioBlk(backend, { serial: "dvmm-test-serial" }));
  return { backend, run };
}

Deno.test("blk: config reports capacity in sectors, SEG_MAX and BLK_SIZE; features include FLUSH", () => {
  const path = tempImage(40);
  try {
    const blk = new VirtioBlk(new FileBlockBackend(path));
    const d = new Uint8Array(8);
    blk.readConfig(VIRTIO_BLK_CONFIG.CAPACITY.offset, d);
    assert.equal(new DataView(d.buffer).getBigUint64(0, true), 40n);
    blk.readConfig(VIRTIO_BLK_CONFIG.SEG_MAX.offset, d.subarray(0, 4));
    assert.equal(new DataView(d.buffer).getUint32(0, true), 254);
    assert.ok(hasFeature(blk.features, VIRTIO_BLK_F.FLUSH));
    assert.ok(!hasFeature(blk.features, VIRTIO_BLK_F.RO));
    const run = bringUp(blk);
    assert.ok(hasFeature(readDeviceFeatures(run.transport), VIRTIO_F.VERSION_1));
    const cap = new Uint8Array(8);
    run.transport.bar.read(VIRTIO_BAR_LAYOUT.DEVICE.offset, cap);
    assert.equal(new DataView(cap.buffer).getBigUint64(0, true), 40n);
  } finally {
    Deno.removeSync(path);
  }
});

Deno.test("blk: IN reads sectors into scattered buffers", () => {
  const path = tempImage(16);
  const { backend, run } = blkOn(path);
  try {
    const [status, len] = request(run, VIRTIO_BLK_T.IN, 2n, {
      inn: [[DATA, 512], [DATA + 0x1000, 1024]],
    });
    assert.equal(status, VIRTIO_BLK_S.OK);
    assert.equal(len, 1536 + 1);
    const image = Deno.readFileSync(path);
    assert.deepEqual(run.memory.read(DATA, 512), image.subarray(1024, 1536));
    assert.deepEqual(run.memory.read(DATA + 0x1000, 1024), image.subarray(1536, 2560));
    assert.ok(run.sink.queue.length >= 1, "the driver was interrupted");
  } finally {
    backend.close();
    Deno.removeSync(path);
  }
});

Deno.test("blk: OUT writes to the file and FLUSH succeeds", () => {
  const path = tempImage(16);
  const { backend, run } = blkOn(path);
  try {
    run.memory.fill(DATA, 512, 0xab);
    run.memory.fill(DATA + 0x1000, 512, 0xcd);
    const [status, len] = request(run, VIRTIO_BLK_T.OUT, 5n, {
      out: [[DATA, 512], [DATA + 0x1000, 512]],
    });
    assert.deepEqual([status, len], [VIRTIO_BLK_S.OK, 1]);
    assert.deepEqual(request(run, VIRTIO_BLK_T.FLUSH, 0n), [VIRTIO_BLK_S.OK, 1]);
    const image = Deno.readFileSync(path);
    assert.ok(image.subarray(5 * 512, 6 * 512).every((b) => b === 0xab));
    assert.ok(image.subarray(6 * 512, 7 * 512).every((b) => b === 0xcd));
    assert.equal(image[4 * 512 + 511], (4 * 512 + 511) & 0xff, "neighbours untouched");
    assert.equal(image[7 * 512], (7 * 512) & 0xff);
  } finally {
    backend.close();
    Deno.removeSync(path);
  }
});

Deno.test("blk: GET_ID returns the serial", () => {
  const path = tempImage(1);
  const { backend, run } = blkOn(path);
  try {
    run.memory.fill(DATA, 20, 0x55);
    const [status, len] = request(run, VIRTIO_BLK_T.GET_ID, 0n, { inn: [[DATA, 20]] });
    assert.deepEqual([status, len], [VIRTIO_BLK_S.OK, 17]);
    assert.equal(new TextDecoder().decode(run.memory.read(DATA, 16)), "dvmm-test-serial");
  } finally {
    backend.close();
    Deno.removeSync(path);
  }
});

Deno.test("blk: a read-only image offers RO and fails writes with IOERR", () => {
  const path = tempImage(4);
  const { backend, run } = blkOn(path, true);
  try {
    assert.ok(hasFeature(readDeviceFeatures(run.transport), VIRTIO_BLK_F.RO));
    run.memory.fill(DATA, 512, 0xff);
    assert.deepEqual(request(run, VIRTIO_BLK_T.OUT, 0n, { out: [[DATA, 512]] }), [
      VIRTIO_BLK_S.IOERR,
      1,
    ]);
    assert.equal(Deno.readFileSync(path)[1], 1, "image unchanged");
    assert.equal(request(run, VIRTIO_BLK_T.IN, 0n, { inn: [[DATA, 512]] })[0], VIRTIO_BLK_S.OK);
  } finally {
    backend.close();
    Deno.removeSync(path);
  }
});

Deno.test("blk: sector ranges beyond the image or partial sectors fail with IOERR", () => {
  const path = tempImage(8);
  const { backend, run } = blkOn(path);
  try {
    assert.equal(request(run, VIRTIO_BLK_T.IN, 7n, { inn: [[DATA, 1024]] })[0], VIRTIO_BLK_S.IOERR);
    assert.equal(request(run, VIRTIO_BLK_T.IN, 8n, { inn: [[DATA, 512]] })[0], VIRTIO_BLK_S.IOERR);
    assert.equal(
      request(run, VIRTIO_BLK_T.OUT, 1n << 60n, { out: [[DATA, 512]] })[0],
      VIRTIO_BLK_S.IOERR,
    );
    assert.equal(
      request(run, VIRTIO_BLK_T.IN, 0xffff_ffff_ffff_ffffn, { inn: [[DATA, 512]] })[0],
      VIRTIO_BLK_S.IOERR,
    );
    assert.equal(request(run, VIRTIO_BLK_T.IN, 0n, { inn: [[DATA, 100]] })[0], VIRTIO_BLK_S.IOERR);
    assert.equal(
      request(run, VIRTIO_BLK_T.IN, 7n, { inn: [[DATA, 512]] })[0],
      VIRTIO_BLK_S.OK,
      "last sector is fine",
    );
    assert.equal(fs.statSync(path).size, 8 * 512, "file not grown");
  } finally {
    backend.close();
    Deno.removeSync(path);
  }
});

Deno.test("blk: unknown request types complete with UNSUPP", () => {
  const run = bringUp(new VirtioBlk(new MemoryBlockBackend(4096)));
  assert.deepEqual(request(run, VIRTIO_BLK_T.DISCARD, 0n, { out: [[DATA, 16]] }), [
    VIRTIO_BLK_S.UNSUPP,
    1,
  ]);
  assert.deepEqual(request(run, 0x1234, 0n), [VIRTIO_BLK_S.UNSUPP, 1]);
});

Deno.test("blk: a header split across descriptors is parsed", () => {
  const disk = new MemoryBlockBackend(4096);
  disk.bytes.fill(7, 1024, 1536);
  const run = bringUp(new VirtioBlk(disk));
  header(run, VIRTIO_BLK_T.IN, 2n);
  run.queues[0].add([[HDR, 5], [HDR + 5, 11]], [[DATA, 512], [STATUS_AT, 1]]);
  run.kick(0);
  assert.deepEqual(run.queues[0].reclaim()[0].len, 513);
  assert.equal(run.memory.readU8(STATUS_AT), VIRTIO_BLK_S.OK);
  assert.ok(run.memory.read(DATA, 512).every((b) => b === 7));
});

Deno.test("blk: a header in two separate pieces of guest memory is parsed", () => {
  const disk = new MemoryBlockBackend(4096);
  disk.bytes.fill(9, 1536, 2048);
  const run = bringUp(new VirtioBlk(disk));
  const at = HDR + 0x100;
  run.memory.writeU32(HDR, VIRTIO_BLK_T.IN);
  run.memory.writeU8(HDR + 4, 0);
  run.memory.write(at, new Uint8Array(11));
  run.memory.writeU32(at + 3, 3); // sector 3: header bytes 8..11
  run.queues[0].add([[HDR, 5], [at, 11]], [[DATA, 512], [STATUS_AT, 1]]);
  run.kick(0);
  assert.deepEqual(run.queues[0].reclaim()[0].len, 513);
  assert.equal(run.memory.readU8(STATUS_AT), VIRTIO_BLK_S.OK);
  assert.ok(run.memory.read(DATA, 512).every((b) => b === 9));
});

Deno.test("blk: header, data and status contiguous in guest memory are told apart", () => {
  const disk = new MemoryBlockBackend(8192);
  disk.bytes.fill(3, 1024, 2048);
  const run = bringUp(new VirtioBlk(disk));
  // IN: data and status in one run of guest memory; the status is its last byte.
  header(run, VIRTIO_BLK_T.IN, 2n);
  run.memory.fill(DATA, 1025, 0xee);
  run.queues[0].add([[HDR, 16]], [[DATA, 512], [DATA + 512, 512], [DATA + 1024, 1]]);
  run.kick(0);
  assert.equal(run.queues[0].reclaim()[0].len, 1025);
  assert.ok(run.memory.read(DATA, 1024).every((b) => b === 3));
  assert.equal(run.memory.readU8(DATA + 1024), VIRTIO_BLK_S.OK);
  // OUT: header and data in one run of guest memory.
  header(run, VIRTIO_BLK_T.OUT, 8n);
  run.memory.fill(HDR + 16, 512, 0x44);
  run.memory.writeU8(STATUS_AT, 0xee);
  run.queues[0].add([[HDR, 16], [HDR + 16, 512]], [[STATUS_AT, 1]]);
  run.kick(0);
  assert.equal(run.queues[0].reclaim()[0].len, 1);
  assert.equal(run.memory.readU8(STATUS_AT), VIRTIO_BLK_S.OK);
  assert.ok(disk.bytes.subarray(4096, 4608).every((b) => b === 0x44));
  assert.equal(disk.bytes[4608], 0);
});

Deno.test("blk: a request without a status byte breaks the queue (NEEDS_RESET)", () => {
  const run = bringUp(new VirtioBlk(new MemoryBlockBackend(4096)));
  header(run, VIRTIO_BLK_T.IN, 0n);
  run.queues[0].add([[HDR, 16]], []);
  run.kick(0);
  assert.equal(
    readReg(run.transport, "DEVICE_STATUS") & STATUS.DEVICE_NEEDS_RESET,
    STATUS.DEVICE_NEEDS_RESET,
  );
});

Deno.test("blk: host I/O errors become IOERR", () => {
  const disk = new MemoryBlockBackend(4096);
  disk.read = () => {
    throw new Error("EIO");
  };
  const run = bringUp(new VirtioBlk(disk));
  assert.deepEqual(request(run, VIRTIO_BLK_T.IN, 0n, { inn: [[DATA, 512]] }), [
    VIRTIO_BLK_S.IOERR,
    1,
  ]);
});

Deno.test("rng: fills every writable buffer, in chunks of at most 64 KiB", () => {
  const calls: number[] = [];
  const rng = new VirtioRng({
    random: (into) => {
      calls.push(into.length);
      into.fill(0x5a);
    },
  });
  const run = bringUp(rng, { memorySize: 0x40_0000 });
  run.queues[0].add([], [[0x10_0000, 16], [0x20_0000, 0x1_0000]]);
  run.kick(0);
  assert.deepEqual(run.queues[0].reclaim().map((u) => u.len), [16 + 0x1_0000]);
  assert.ok(run.memory.read(0x10_0000, 16).every((b) => b === 0x5a));
  assert.ok(run.memory.read(0x20_0000, 0x1_0000).every((b) => b === 0x5a));
  assert.ok(calls.every((n) => n <= RANDOM_CHUNK));
});

Deno.test("rng: the default source is the platform CSPRNG", () => {
  const run = bringUp(new VirtioRng(), { memorySize: 0x40_0000 });
  run.queues[0].add([], [[0x10_0000, 200_000]]);
  run.kick(0);
  assert.equal(run.queues[0].reclaim()[0].len, 200_000);
  const bytes = run.memory.read(0x10_0000, 200_000);
  const zeros = bytes.filter((b) => b === 0).length;
  assert.ok(zeros < 2000, `about 1/256 zero bytes, got ${zeros}`);
  assert.ok(
    run.memory.read(0x10_0000 + 199_900, 100).some((b) => b !== 0),
    "the tail is filled too",
  );
});

Deno.test("console: transmitted bytes reach the output callback", () => {
  const out: string[] = [];
  const con = new VirtioConsole({ output: (b) => out.push(new TextDecoder().decode(b)) });
  const run = bringUp(con);
  run.memory.write(DATA, new TextEncoder().encode("hello, "));
  run.memory.write(DATA + 0x100, new TextEncoder().encode("world\n"));
  run.queues[CONSOLE_QUEUE.TRANSMIT].add([[DATA, 7], [DATA + 0x100, 6]], []);
  run.kick(CONSOLE_QUEUE.TRANSMIT);
  assert.deepEqual(out, ["hello, world\n"]);
  assert.deepEqual(run.queues[CONSOLE_QUEUE.TRANSMIT].reclaim().map((u) => u.len), [0]);
});

Deno.test("console: host input waits for receive buffers and is split across them", () => {
  const con = new VirtioConsole({ output: () => {} });
  con.input(new TextEncoder().encode("early"));
  const run = bringUp(con);
  const rx = run.queues[CONSOLE_QUEUE.RECEIVE];
  assert.equal(con.pendingInput, 5);
  con.input(new TextEncoder().encode(" bird"));
  rx.add([], [[DATA, 4]]);
  rx.add([], [[DATA + 0x100, 64]]);
  run.kick(CONSOLE_QUEUE.RECEIVE);
  const used = rx.reclaim();
  assert.deepEqual(used.map((u) => u.len), [4, 6]);
  assert.equal(new TextDecoder().decode(run.memory.read(DATA, 4)), "earl");
  assert.equal(new TextDecoder().decode(run.memory.read(DATA + 0x100, 6)), "y bird");
  assert.equal(con.pendingInput, 0);
  // A buffer already waiting takes input at once.
  rx.add([], [[DATA + 0x200, 64]]);
  run.kick(CONSOLE_QUEUE.RECEIVE);
  assert.deepEqual(rx.reclaim(), [], "no input: buffer kept");
  con.input(new TextEncoder().encode("x"));
  assert.deepEqual(rx.reclaim().map((u) => u.len), [1]);
  assert.equal(run.memory.readU8(DATA + 0x200), 0x78);
});

Deno.test("console: input beyond the pending limit is dropped and counted", () => {
  const con = new VirtioConsole({ output: () => {}, maxPending: 4 });
  con.input(new Uint8Array(10));
  assert.equal(con.pendingInput, 4);
  assert.equal(con.dropped, 6);
});

Deno.test("devices: negotiating without EVENT_IDX / INDIRECT still works", () => {
  const accept = featureBit(VIRTIO_F.VERSION_1);
  const run = bringUp(new VirtioRng({ random: (b) => b.fill(1) }), { accept });
  assert.equal(run.transport.driverFeatures, accept);
  run.queues[0].add([], [[DATA, 8]]);
  run.kick(0);
  assert.deepEqual(run.queues[0].reclaim().map((u) => u.len), [8]);
});
