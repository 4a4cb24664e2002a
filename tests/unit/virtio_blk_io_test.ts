/**
 * The virtio-blk fast path: vectored file I/O straight into and out of guest
 * RAM (preadv/pwritev over FFI, split past IOV_MAX, resumed after short
 * transfers, zero fill past EOF), the chain cursor's merging of contiguous
 * guest buffers, and whole 1 MiB requests through indirect tables.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { IOV_MAX, vectoredIo } from "../../devices/virtio/vectored_io.ts";
import { ChainCursor } from "../../devices/virtio/chain_io.ts";
import { GuestRanges } from "../../devices/virtio/guest_ranges.ts";
import { FileBlockBackend } from "../../devices/virtio/block_file.ts";
import { MemoryBlockBackend, readIntoGuest } from "../../devices/virtio/block_backend.ts";
import { VIRTIO_BLK_S, VIRTIO_BLK_T, VirtioBlk } from "../../devices/virtio/blk.ts";
import { bringUp } from "./virtio_harness.ts";
import { layoutAt, TestDriver } from "./virtio_driver.ts";
import { BLK_WARM_UP_REQUESTS_PER_QUEUE, warmUpBlkPath } from "../../devices/virtio/blk_warm_up.ts";
import { serveAvailable } from "../../devices/virtio/blk_serve.ts";
import { FdBlockBackend } from "../../devices/virtio/fd_block_backend.ts";
import { ChainBuffers, Virtqueue } from "../../devices/virtio/virtqueue.ts";

function patterned(size: number, seed = 7): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + seed + (i >> 9)) & 0xff);
}

function withFile(bytes: Uint8Array, fn: (path: string) => void) {
  const path = Deno.makeTempFileSync({ suffix: ".img" });
  Deno.writeFileSync(path, bytes);
  try {
    fn(path);
  } finally {
    Deno.removeSync(path);
  }
}

Deno.test("vectored io: preadvGuest scatters a file over more than IOV_MAX guest ranges; pwritevGuest gathers them back", () => {
  const io = vectoredIo();
  assert.ok(io, "FFI is available in unit tests (-A)");
  const count = IOV_MAX + 300, piece = 100;
  const file = patterned(count * piece);
  const memory = GuestMemory.ofSize(count * 2 * piece + 4096);
  // Every other 100-byte slot, so nothing can be merged.
  const ranges = Array.from(
    { length: count },
    (_, k) => ({ gpa: 4096 + 2 * k * piece, len: piece }),
  );
  withFile(file, (path) => {
    const fd = fs.openSync(path, "r+");
    try {
      assert.equal(io.preadvGuest(fd, 0, memory, GuestRanges.of(ranges)), file.length);
      ranges.forEach((r, k) => {
        assert.deepEqual(memory.read(r.gpa, r.len), file.subarray(k * piece, (k + 1) * piece));
      });
      for (const r of ranges) memory.fill(r.gpa, r.len, 0xa5);
      io.pwritevGuest(fd, 50, memory, GuestRanges.of(ranges));
    } finally {
      fs.closeSync(fd);
    }
    const after = Deno.readFileSync(path);
    assert.deepEqual(after.subarray(0, 50), file.subarray(0, 50));
    assert.ok(after.subarray(50, 50 + count * piece).every((b) => b === 0xa5));
  });
});

Deno.test("vectored io: a read past the end of the file stops at EOF and reports the short count", () => {
  const io = vectoredIo()!;
  const memory = GuestMemory.ofSize(8192);
  withFile(patterned(1000), (path) => {
    const fd = fs.openSync(path, "r");
    try {
      const ranges = GuestRanges.of([{ gpa: 0, len: 300 }, { gpa: 4096, len: 300 }]);
      const n = io.preadvGuest(fd, 600, memory, ranges);
      assert.equal(n, 400);
      assert.deepEqual(memory.read(4096, 100), patterned(1000).subarray(900, 1000));
    } finally {
      fs.closeSync(fd);
    }
  });
});

Deno.test("file backend: readGuest zero-fills what lies past a file that shrank after opening", () => {
  const memory = GuestMemory.ofSize(8192);
  memory.fill(0, 8192, 0xee);
  withFile(patterned(4096), (path) => {
    const backend = new FileBlockBackend(path);
    try {
      Deno.truncateSync(path, 1024 + 100);
      backend.readGuest(
        1024,
        memory,
        GuestRanges.of([{ gpa: 0, len: 512 }, { gpa: 4096, len: 512 }]),
      );
      assert.deepEqual(memory.read(0, 100), patterned(4096).subarray(1024, 1124));
      assert.ok(memory.read(100, 412).every((b) => b === 0));
      assert.ok(memory.read(4096, 512).every((b) => b === 0));
      assert.equal(memory.readU8(512), 0xee, "nothing outside the ranges is touched");
    } finally {
      backend.close();
    }
  });
});

Deno.test("readIntoGuest falls back to read per range for backends without readGuest", () => {
  const memory = GuestMemory.ofSize(8192);
  const disk = new MemoryBlockBackend(patterned(2048));
  const ranges = GuestRanges.of([{ gpa: 100, len: 512 }, { gpa: 5000, len: 1024 }]);
  readIntoGuest(disk, 512, memory, ranges);
  assert.deepEqual(memory.read(100, 512), disk.bytes.subarray(512, 1024));
  assert.deepEqual(memory.read(5000, 1024), disk.bytes.subarray(1024, 2048));
});

Deno.test("ChainCursor.ranges merges buffers contiguous in guest memory and keeps gaps apart", () => {
  const memory = new GuestMemory([
    { gpa: 0, bytes: new Uint8Array(0x2000) },
    { gpa: 0x2000, bytes: new Uint8Array(0x1000) }, // adjacent region: never merged across
  ]);
  const bufs = [
    { gpa: 0x100, len: 0x10 },
    { gpa: 0x110, len: 0x20 },
    { gpa: 0x130, len: 0 },
    { gpa: 0x130, len: 0x10 },
    { gpa: 0x400, len: 0x10 },
    { gpa: 0x1ff0, len: 0x10 },
    { gpa: 0x2000, len: 0x10 },
  ];
  const c = new ChainCursor(memory, bufs);
  assert.deepEqual(c.ranges(0x8), [{ gpa: 0x100, len: 0x8 }]);
  assert.deepEqual(c.ranges(0x1000), [
    { gpa: 0x108, len: 0x38 },
    { gpa: 0x400, len: 0x10 },
    { gpa: 0x1ff0, len: 0x10 },
    { gpa: 0x2000, len: 0x10 },
  ]);
  assert.equal(c.remaining, 0);
  const views = new ChainCursor(memory, bufs).views(0x30);
  assert.deepEqual(views.map((v) => v.length), [0x30]);
  const skipper = new ChainCursor(memory, bufs);
  assert.equal(skipper.skip(0x45), 0x45);
  assert.deepEqual(skipper.ranges(0x100), [{ gpa: 0x405, len: 0xb }, {
    gpa: 0x1ff0,
    len: 0x10,
  }, { gpa: 0x2000, len: 0x10 }]);
});

Deno.test("blk: a 1 MiB request of 256 scattered pages through an indirect table reads and writes the right bytes", () => {
  const MiB = 1 << 20;
  const image = patterned(4 * MiB, 3);
  withFile(image, (path) => {
    const backend = new FileBlockBackend(path);
    try {
      const run = bringUp(new VirtioBlk(backend), { queueSize: 256, memorySize: 4 * MiB });
      const HDR = 0x4_0000, TABLE = 0x4_1000, STATUS = 0x4_2000, DATA = 0x10_0000;
      const pages: [number, number][] = Array.from(
        { length: 256 },
        (_, i) => [DATA + (i % 2 ? 2 * i : 2 * i + 1) * 4096, 4096],
      );
      const request = (type: number, sector: bigint) => {
        run.memory.writeU32(HDR, type);
        run.memory.writeU32(HDR + 4, 0);
        run.memory.writeU64(HDR + 8, sector);
        run.memory.writeU8(STATUS, 0xff);
        const q = run.queues[0];
        const data = type === VIRTIO_BLK_T.IN ? { out: [], inn: pages } : { out: pages, inn: [] };
        q.publish(q.indirectChain(TABLE, [[HDR, 16], ...data.out], [...data.inn, [STATUS, 1]]));
        run.kick(0);
        const used = q.reclaim();
        assert.equal(used.length, 1);
        return { status: run.memory.readU8(STATUS), len: used[0].len };
      };
      const read = request(VIRTIO_BLK_T.IN, 2048n); // byte 1 MiB
      assert.deepEqual(read, { status: VIRTIO_BLK_S.OK, len: MiB + 1 });
      pages.forEach(([gpa], i) => {
        const at = MiB + i * 4096;
        assert.deepEqual(run.memory.read(gpa, 4096), image.subarray(at, at + 4096), `page ${i}`);
      });
      pages.forEach(([gpa], i) => run.memory.fill(gpa, 4096, i));
      assert.deepEqual(request(VIRTIO_BLK_T.OUT, 6144n), { status: VIRTIO_BLK_S.OK, len: 1 });
      const after = Deno.readFileSync(path);
      for (let i = 0; i < 256; i++) {
        const at = 3 * MiB + i * 4096;
        assert.ok(after.subarray(at, at + 4096).every((b) => b === (i & 0xff)), `page ${i}`);
      }
      assert.deepEqual(after.subarray(0, 3 * MiB), image.subarray(0, 3 * MiB));
    } finally {
      backend.close();
    }
  });
});

Deno.test("blk warm-up: the I/O worker's JIT warm-up serves each synthetic read and write with status OK", () => {
  assert.equal(warmUpBlkPath({ requests: 24 }), 24);
  let asked = 0;
  assert.equal(warmUpBlkPath({ requests: 24, stop: () => ++asked > 5 }), 5);
});

Deno.test("blk warm-up: moves through fresh queues below and above 4 GiB, serving with the caller's pending check", () => {
  // Three queues: at address 0, above 4 GiB, at 0 again; every request still completes.
  const requests = 2 * BLK_WARM_UP_REQUESTS_PER_QUEUE + 10;
  let pendingCalls = 0;
  assert.equal(warmUpBlkPath({ requests, pending: () => (pendingCalls++, false) }), requests);
  assert.ok(pendingCalls >= requests, `pending asked ${pendingCalls} times`);
  // A command pending (as when the guest activates its queue meanwhile) ends no request early.
  assert.equal(warmUpBlkPath({ requests, pending: () => true }), requests);
});

Deno.test("blk batch server: serves every available request, or stops early when told and leaves the rest available", () => {
  const image = patterned(64 * 1024);
  withFile(image, (path) => {
    const fd = fs.openSync(path, "r");
    try {
      const memory = GuestMemory.ofSize(1 << 20);
      const layout = layoutAt(0x1000, 16);
      const driver = new TestDriver(memory, layout);
      const vq = new Virtqueue(memory, layout, { eventIdx: true, indirect: true });
      const env = {
        memory,
        backend: new FdBlockBackend({ path, fd, size: image.length, readonly: true }),
        id: new Uint8Array(0),
        name: "test",
        warn: (m: string) => assert.fail(m),
      };
      const HDR = 0x8000, STATUS = 0x8100, DATA = 0x9000;
      for (let i = 0; i < 3; i++) {
        memory.writeU32(HDR + 32 * i, VIRTIO_BLK_T.IN);
        memory.writeU64(HDR + 32 * i + 8, BigInt(i));
        driver.add([[HDR + 32 * i, 16]], [[DATA + 512 * i, 512], [STATUS + i, 1]]);
      }
      let calls = 0;
      assert.equal(serveAvailable(vq, new ChainBuffers(), env, () => ++calls >= 2), 2);
      assert.equal(vq.available(), 1);
      assert.equal(serveAvailable(vq, new ChainBuffers(), env, () => false), 1);
      assert.equal(vq.available(), 0);
      assert.equal(vq.needsNotification(), true);
      for (let i = 0; i < 3; i++) {
        assert.equal(memory.readU8(STATUS + i), VIRTIO_BLK_S.OK);
        assert.deepEqual(memory.read(DATA + 512 * i, 512), image.subarray(512 * i, 512 * (i + 1)));
      }
    } finally {
      fs.closeSync(fd);
    }
  });
});
