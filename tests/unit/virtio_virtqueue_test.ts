/**
 * Split virtqueue: direct and indirect chains laid out like Linux does,
 * used-ring returns, notification suppression both ways, 16-bit index
 * wraparound, and every malformed case breaking the queue with a reason.
 */
import assert from "node:assert/strict";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { VIRTQ_DESC_F, VIRTQ_USED_F_NO_NOTIFY } from "../../devices/virtio/spec.ts";
import { ChainBuffers, Virtqueue, type VirtqueueOptions } from "../../devices/virtio/virtqueue.ts";
import { ChainCursor } from "../../devices/virtio/chain_io.ts";
import { layoutAt, TestDriver } from "./virtio_driver.ts";

const MEM = 0x10_0000;
const DATA = 0x8_0000;

function rig(size = 8, options: VirtqueueOptions = {}) {
  const memory = GuestMemory.ofSize(MEM);
  const layout = layoutAt(0x1000, size);
  const driver = new TestDriver(memory, layout);
  const reasons: string[] = [];
  const queue = new Virtqueue(memory, layout, {
    indirect: true,
    ...options,
    onBroken: (r) => reasons.push(r),
  });
  return { memory, layout, driver, queue, reasons };
}

Deno.test("virtqueue: a direct chain pops as readable then writable buffers", () => {
  const { driver, queue } = rig();
  assert.equal(queue.pop(), null);
  const head = driver.add([[DATA, 16], [DATA + 16, 100]], [[DATA + 0x1000, 512], [
    DATA + 0x2000,
    1,
  ]]);
  assert.equal(queue.available(), 1);
  const chain = queue.pop()!;
  assert.equal(chain.head, head);
  assert.deepEqual(chain.readable, [{ gpa: DATA, len: 16 }, { gpa: DATA + 16, len: 100 }]);
  assert.deepEqual(chain.writable, [{ gpa: DATA + 0x1000, len: 512 }, {
    gpa: DATA + 0x2000,
    len: 1,
  }]);
  assert.equal(chain.readableLength, 116);
  assert.equal(chain.writableLength, 513);
  assert.equal(queue.pop(), null);
  assert.equal(queue.inflight, 1);
});

Deno.test("virtqueue: push writes the used element and index", () => {
  const { driver, queue } = rig();
  const a = driver.add([[DATA, 4]], [[DATA + 64, 64]]);
  const b = driver.add([], [[DATA + 128, 32]]);
  const ca = queue.pop()!, cb = queue.pop()!;
  queue.push(cb.head, 32);
  queue.push(ca.head, 10);
  assert.deepEqual(driver.reclaim(), [{ id: b, len: 32 }, { id: a, len: 10 }]);
  assert.equal(queue.usedIdx, 2);
  assert.equal(queue.inflight, 0);
});

Deno.test("virtqueue: push rejects heads not in flight and over-long lengths", () => {
  const { driver, queue } = rig();
  driver.add([], [[DATA, 8]]);
  const c = queue.pop()!;
  assert.throws(() => queue.push(c.head, 9), RangeError);
  assert.throws(() => queue.push((c.head + 1) % 8, 0), RangeError);
  queue.push(c.head, 8);
  assert.throws(() => queue.push(c.head, 0), RangeError);
});

Deno.test("virtqueue: an indirect chain is followed and its buffers returned", () => {
  const { driver, queue } = rig();
  const head = driver.indirectChain(0x4000, [[DATA, 16]], [[DATA + 0x100, 200], [DATA + 0x400, 1]]);
  driver.publish(head);
  const chain = queue.pop()!;
  assert.equal(chain.head, head);
  assert.deepEqual(chain.readable, [{ gpa: DATA, len: 16 }]);
  assert.deepEqual(chain.writable, [{ gpa: DATA + 0x100, len: 200 }, {
    gpa: DATA + 0x400,
    len: 1,
  }]);
  assert.equal(queue.isBroken, false);
});

Deno.test("virtqueue: an indirect table at an address that is not 4-byte aligned is read right", () => {
  const { driver, queue } = rig();
  const head = driver.indirectChain(0x4002, [[DATA, 16]], [[DATA + 0x100, 200], [DATA + 0x400, 1]]);
  driver.publish(head);
  const chains = new ChainBuffers();
  assert.equal(queue.popInto(chains), true);
  assert.deepEqual(chains.readable.toBuffers(), [{ gpa: DATA, len: 16 }]);
  assert.deepEqual(chains.writable.toBuffers(), [{ gpa: DATA + 0x100, len: 200 }, {
    gpa: DATA + 0x400,
    len: 1,
  }]);
  assert.equal(queue.isBroken, false);
});

Deno.test("virtqueue: a direct prefix may end in an indirect descriptor", () => {
  const { driver, queue, layout } = rig();
  driver.writeDesc(0x4000, 0, DATA + 0x100, 8, VIRTQ_DESC_F.WRITE, 0);
  driver.writeDesc(layout.desc, 3, DATA, 4, VIRTQ_DESC_F.NEXT, 5);
  driver.writeDesc(layout.desc, 5, 0x4000, 16, VIRTQ_DESC_F.INDIRECT, 0);
  driver.setAvailEntry(0, 3);
  driver.setAvailIdx(1);
  const chain = queue.pop()!;
  assert.deepEqual(chain.readable, [{ gpa: DATA, len: 4 }]);
  assert.deepEqual(chain.writable, [{ gpa: DATA + 0x100, len: 8 }]);
});

Deno.test("virtqueue: 16-bit indices wrap around across many rounds", () => {
  const { driver, queue } = rig(4);
  for (let round = 0; round < 70_000; round++) {
    const head = driver.add([[DATA + (round % 64), 1]], [[DATA + 0x1000, 4]]);
    const chain = queue.pop()!;
    assert.equal(chain.head, head);
    queue.push(chain.head, round & 3);
    const [used] = driver.reclaim();
    assert.deepEqual(used, { id: head, len: round & 3 });
  }
  assert.equal(queue.lastAvailIdx, 70_000 & 0xffff);
  assert.equal(queue.usedIdx, 70_000 & 0xffff);
  assert.equal(queue.isBroken, false);
});

Deno.test("virtqueue: a full ring of size entries is accepted", () => {
  const { driver, queue } = rig(8);
  for (let i = 0; i < 8; i++) driver.add([], [[DATA + i * 16, 16]]);
  for (let i = 0; i < 8; i++) assert.ok(queue.pop());
  assert.equal(queue.pop(), null);
  assert.equal(queue.isBroken, false);
});

Deno.test("virtqueue: interrupts follow NO_INTERRUPT without EVENT_IDX", () => {
  const { driver, queue } = rig();
  assert.equal(queue.needsNotification(), false, "nothing pushed yet");
  driver.add([], [[DATA, 1]]);
  queue.push(queue.pop()!.head, 0);
  assert.equal(queue.needsNotification(), true);
  assert.equal(queue.needsNotification(), false, "nothing new since the last check");
  driver.setNoInterrupt(true);
  driver.add([], [[DATA, 1]]);
  queue.push(queue.pop()!.head, 0);
  assert.equal(queue.needsNotification(), false);
});

Deno.test("virtqueue: interrupts follow used_event with EVENT_IDX", () => {
  const { driver, queue } = rig(8, { eventIdx: true });
  const cycle = () => {
    driver.add([], [[DATA, 1]]);
    queue.push(queue.pop()!.head, 0);
    driver.reclaim();
  };
  driver.setUsedEvent(0);
  cycle(); // used idx 0 -> 1 crosses event 0
  assert.equal(queue.needsNotification(), true);
  driver.setUsedEvent(3); // wake me when used idx passes 3
  cycle(); // 1 -> 2
  assert.equal(queue.needsNotification(), false);
  cycle(); // 2 -> 3
  assert.equal(queue.needsNotification(), false);
  cycle(); // 3 -> 4 passes 3
  assert.equal(queue.needsNotification(), true);
  cycle();
  cycle(); // 4 -> 6 in one batch, event 3 already passed
  assert.equal(queue.needsNotification(), false);
  driver.setUsedEvent(6);
  cycle();
  cycle(); // 6 -> 8 batch crosses 6
  assert.equal(queue.needsNotification(), true);
});

Deno.test("virtqueue: kick suppression via NO_NOTIFY without EVENT_IDX", () => {
  const { driver, queue } = rig();
  queue.setNotification(false);
  assert.equal(driver.usedFlags(), VIRTQ_USED_F_NO_NOTIFY);
  queue.setNotification(true);
  assert.equal(driver.usedFlags(), 0);
});

Deno.test("virtqueue: avail_event tracks the next index to consume with EVENT_IDX", () => {
  const { driver, queue } = rig(8, { eventIdx: true });
  queue.setNotification(true);
  assert.equal(driver.availEvent(), 0);
  driver.add([], [[DATA, 1]]);
  driver.add([], [[DATA, 1]]);
  queue.pop();
  assert.equal(driver.availEvent(), 1);
  queue.setNotification(false);
  queue.pop();
  assert.equal(driver.availEvent(), 1, "disabled: avail_event stays behind, so no kicks");
  queue.setNotification(true);
  assert.equal(driver.availEvent(), 2);
});

Deno.test("virtqueue: ChainCursor gathers a header split across buffers and scatters data", () => {
  const { memory, driver, queue } = rig();
  memory.write(DATA, new Uint8Array([1, 2, 3]));
  memory.write(DATA + 0x100, new Uint8Array([4, 5, 6, 7]));
  driver.add([[DATA, 3], [DATA + 0x100, 4]], [[DATA + 0x200, 2], [DATA + 0x300, 3]]);
  const chain = queue.pop()!;
  const r = new ChainCursor(memory, chain.readable);
  assert.deepEqual([...r.read(5)], [1, 2, 3, 4, 5]);
  assert.equal(r.remaining, 2);
  assert.deepEqual([...r.read(10)], [6, 7]);
  const w = new ChainCursor(memory, chain.writable);
  assert.equal(w.write(new Uint8Array([9, 8, 7, 6, 5, 4])), 5);
  assert.deepEqual([...memory.read(DATA + 0x200, 2)], [9, 8]);
  assert.deepEqual([...memory.read(DATA + 0x300, 3)], [7, 6, 5]);
});

// ---- malformed queues -------------------------------------------------------

function assertBroken(q: { queue: Virtqueue; reasons: string[] }, pattern: RegExp) {
  assert.equal(q.queue.pop(), null);
  assert.equal(q.queue.isBroken, true);
  assert.equal(q.reasons.length, 1, "onBroken fires once");
  assert.match(q.queue.brokenReason!, pattern);
  assert.equal(q.queue.pop(), null, "a broken queue stays broken");
  assert.equal(q.queue.available(), 0);
}

Deno.test("virtqueue: a descriptor loop breaks the queue", () => {
  const q = rig(4);
  q.driver.writeDesc(q.layout.desc, 0, DATA, 1, VIRTQ_DESC_F.NEXT, 1);
  q.driver.writeDesc(q.layout.desc, 1, DATA, 1, VIRTQ_DESC_F.NEXT, 0);
  q.driver.publish(0);
  assertBroken(q, /more than 4 descriptors/);
});

Deno.test("virtqueue: a loop inside an indirect table breaks the queue", () => {
  const q = rig(4);
  q.driver.writeDesc(0x4000, 0, DATA, 1, VIRTQ_DESC_F.NEXT, 1);
  q.driver.writeDesc(0x4000, 1, DATA, 1, VIRTQ_DESC_F.NEXT, 0);
  q.driver.writeDesc(q.layout.desc, 2, 0x4000, 32, VIRTQ_DESC_F.INDIRECT, 0);
  q.driver.publish(2);
  assertBroken(q, /more than 2 descriptors in its indirect table/);
});

Deno.test("virtqueue: a buffer outside guest memory breaks the queue", () => {
  const q = rig();
  q.driver.add([[MEM - 4, 8]], []);
  assertBroken(q, /descriptor 0 buffer 0xffffc\+0x8 is outside guest memory/);
});

Deno.test("virtqueue: a huge length breaks the queue", () => {
  const q = rig();
  q.driver.add([], [[DATA, 0xffff_ffff]]);
  assertBroken(q, /outside guest memory/);
});

Deno.test("virtqueue: an address beyond 2^53 breaks the queue", () => {
  const q = rig();
  q.driver.writeDesc(q.layout.desc, 0, 0, 8, 0, 0);
  q.memory.writeU64(q.layout.desc, 0xffff_ffff_ffff_f000n);
  q.driver.publish(0);
  assertBroken(q, /0xfffffffffffff000\+0x8 is outside/);
});

Deno.test("virtqueue: a next index beyond the queue size breaks the queue", () => {
  const q = rig(4);
  q.driver.writeDesc(q.layout.desc, 0, DATA, 1, VIRTQ_DESC_F.NEXT, 4);
  q.driver.publish(0);
  assertBroken(q, /links to 4 >= queue size 4/);
});

Deno.test("virtqueue: an avail entry naming a descriptor beyond the size breaks the queue", () => {
  const q = rig(4);
  q.driver.publish(9);
  assertBroken(q, /names descriptor 9 >= size 4/);
});

Deno.test("virtqueue: an avail index jump larger than the queue size breaks the queue", () => {
  const q = rig(4);
  q.driver.setAvailIdx(5);
  assertBroken(q, /jumped from 0 to 5 \(queue size 4\)/);
});

Deno.test("virtqueue: a readable descriptor after a writable one breaks the queue", () => {
  const q = rig();
  q.driver.writeDesc(q.layout.desc, 0, DATA, 1, VIRTQ_DESC_F.WRITE | VIRTQ_DESC_F.NEXT, 1);
  q.driver.writeDesc(q.layout.desc, 1, DATA, 1, 0, 0);
  q.driver.publish(0);
  assertBroken(q, /device-readable but follows a device-writable/);
});

Deno.test("virtqueue: bad indirect tables break the queue", () => {
  const cases: [string, (q: ReturnType<typeof rig>) => void, RegExp][] = [
    [
      "length not a multiple of 16",
      (q) => q.driver.writeDesc(q.layout.desc, 0, 0x4000, 24, VIRTQ_DESC_F.INDIRECT, 0),
      /not a non-zero multiple of 16/,
    ],
    [
      "zero length",
      (q) => q.driver.writeDesc(q.layout.desc, 0, 0x4000, 0, VIRTQ_DESC_F.INDIRECT, 0),
      /not a non-zero multiple/,
    ],
    [
      "outside memory",
      (q) => q.driver.writeDesc(q.layout.desc, 0, MEM - 16, 32, VIRTQ_DESC_F.INDIRECT, 0),
      /indirect table 0xffff0\+0x20 outside guest memory/,
    ],
    [
      "with NEXT",
      (q) =>
        q.driver.writeDesc(
          q.layout.desc,
          0,
          0x4000,
          16,
          VIRTQ_DESC_F.INDIRECT | VIRTQ_DESC_F.NEXT,
          1,
        ),
      /both INDIRECT and NEXT/,
    ],
    ["nested", (q) => {
      q.driver.writeDesc(0x4000, 0, 0x5000, 16, VIRTQ_DESC_F.INDIRECT, 0);
      q.driver.writeDesc(q.layout.desc, 0, 0x4000, 16, VIRTQ_DESC_F.INDIRECT, 0);
    }, /INDIRECT inside an indirect table/],
    ["next beyond the table", (q) => {
      q.driver.writeDesc(0x4000, 0, DATA, 1, VIRTQ_DESC_F.NEXT, 2);
      q.driver.writeDesc(q.layout.desc, 0, 0x4000, 32, VIRTQ_DESC_F.INDIRECT, 0);
    }, /links to 2 >= table size 2/],
    [
      "too large",
      (q) => q.driver.writeDesc(q.layout.desc, 0, 0, 16 * 40000, VIRTQ_DESC_F.INDIRECT, 0),
      /40000 descriptors/,
    ],
  ];
  for (const [what, setup, pattern] of cases) {
    const q = rig();
    setup(q);
    q.driver.publish(0);
    assert.equal(q.queue.pop(), null, what);
    assert.match(q.queue.brokenReason ?? "", pattern, what);
  }
});

Deno.test("virtqueue: INDIRECT without the negotiated feature breaks the queue", () => {
  const q = rig(8, { indirect: false });
  const head = q.driver.indirectChain(0x4000, [[DATA, 1]], []);
  q.driver.publish(head);
  assertBroken(q, /INDIRECT, which was not negotiated/);
});

Deno.test("virtqueue: a head made available twice while in flight breaks the queue", () => {
  const q = rig();
  const head = q.driver.add([], [[DATA, 1]]);
  assert.ok(q.queue.pop());
  q.driver.publish(head);
  assertBroken(q, /made available again/);
});

Deno.test("virtqueue: an invalid layout gives a broken queue", () => {
  const memory = GuestMemory.ofSize(MEM);
  const cases: [Parameters<typeof layoutAt>[0] | object, RegExp][] = [
    [{ size: 6, desc: 0, avail: 0x1000, used: 0x2000 }, /size 6 is not a power of two/],
    [{ size: 65536, desc: 0, avail: 0x1000, used: 0x2000 }, /not a power of two <= 32768/],
    [
      { size: 8, desc: 8, avail: 0x1000, used: 0x2000 },
      /descriptor table address 0x8 is not 16-byte aligned/,
    ],
    [{ size: 8, desc: 0, avail: 0x1001, used: 0x2000 }, /available ring address/],
    [{ size: 8, desc: 0, avail: 0x1000, used: 0x2002 }, /used ring address/],
    [
      { size: 8, desc: 0, avail: 0x1000, used: MEM - 8 },
      /used ring 0xffff8\+0x46 is outside guest memory/,
    ],
    [{ size: 8, desc: 2 ** 60, avail: 0x1000, used: 0x2000 }, /descriptor table/],
  ];
  for (const [layout, pattern] of cases) {
    const reasons: string[] = [];
    const q = new Virtqueue(memory, layout as never, { onBroken: (r) => reasons.push(r) });
    assert.equal(q.isBroken, true);
    assert.match(reasons[0], pattern);
    assert.equal(q.pop(), null);
    assert.equal(q.needsNotification(), false);
  }
});

Deno.test("virtqueue: closed guest memory breaks the queue instead of throwing", () => {
  const q = rig();
  q.driver.add([], [[DATA, 1]]);
  q.memory.close();
  assertBroken(q, /guest memory is closed/);
});

Deno.test("virtqueue: popInto merges buffers contiguous in guest memory, drops empty ones, keeps sides apart", () => {
  const { driver, queue } = rig(16);
  const head = driver.add(
    [[DATA, 16], [DATA + 16, 0], [DATA + 16, 100], [DATA + 0x400, 8]],
    [[DATA + 0x1000, 0x1000], [DATA + 0x2000, 0x1000], [DATA + 0x5000, 512], [DATA + 0x5200, 1]],
  );
  const chain = new ChainBuffers();
  assert.ok(queue.popInto(chain));
  assert.equal(chain.head, head);
  assert.deepEqual(chain.readable.toBuffers(), [{ gpa: DATA, len: 116 }, {
    gpa: DATA + 0x400,
    len: 8,
  }]);
  assert.deepEqual(chain.writable.toBuffers(), [{ gpa: DATA + 0x1000, len: 0x2000 }, {
    gpa: DATA + 0x5000,
    len: 513,
  }]);
  assert.equal(chain.readable.total, 124);
  assert.equal(chain.writable.total, 0x2201);
  assert.equal(queue.inflight, 1);
  assert.equal(queue.popInto(chain), false);
  queue.push(head, 0x2201);
  assert.equal(driver.usedIdx(), 1);
});

Deno.test("virtqueue: popInto does not merge across a boundary between two touching memory regions", () => {
  const memory = new GuestMemory([
    { gpa: 0, bytes: new Uint8Array(0x8000) },
    { gpa: 0x8000, bytes: new Uint8Array(0x8000) },
  ]);
  const layout = layoutAt(0x1000, 8);
  const driver = new TestDriver(memory, layout);
  const queue = new Virtqueue(memory, layout);
  driver.add([[0x7000, 0x1000], [0x8000, 0x1000], [0x9000, 0x10]], [[0x4000, 1]]);
  const chain = new ChainBuffers();
  assert.ok(queue.popInto(chain));
  assert.deepEqual(chain.readable.toBuffers(), [{ gpa: 0x7000, len: 0x1000 }, {
    gpa: 0x8000,
    len: 0x1010,
  }]);
});

Deno.test("virtqueue: popInto breaks the queue on a malformed chain like pop", () => {
  const { driver, queue, reasons } = rig();
  driver.add([[MEM - 8, 16]], [[DATA, 1]]);
  assert.equal(queue.popInto(new ChainBuffers()), false);
  assert.equal(reasons.length, 1);
  assert.match(reasons[0], /outside guest memory/);
});

Deno.test("virtqueue: a queue whose guest memory was closed breaks instead of throwing", () => {
  const { memory, driver, queue, reasons } = rig();
  const head = driver.add([[DATA, 16]], [[DATA + 0x100, 1]]);
  const chain = new ChainBuffers();
  assert.ok(queue.popInto(chain));
  memory.close();
  queue.push(head, 1);
  assert.equal(queue.needsNotification(), false);
  assert.equal(queue.popInto(chain), false);
  assert.equal(reasons.length, 1);
  assert.match(reasons[0], /guest memory access failed/);
});
