/**
 * Property tests of the split-virtqueue parser.
 *
 * 1. Random descriptor tables, avail rings and ring addresses (biased towards
 *    almost-valid values): the queue never throws, never accesses memory
 *    outside the guest (checked by a GuestMemory that records every access),
 *    writes only to its used ring, and either yields chains whose buffers all
 *    lie in guest memory or reports a broken queue with a reason.
 * 2. Well-formed chains laid out by the test driver (direct and indirect) are
 *    returned exactly, in order, and come back through the used ring.
 *
 * Runs: DVMM_FC_RUNS (default 10000). Seed: DVMM_FC_SEED.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { usedRingBytes, VIRTQ_DESC_SIZE } from "../../devices/virtio/spec.ts";
import { type DescriptorChain, Virtqueue } from "../../devices/virtio/virtqueue.ts";
import { type Buf, layoutAt, TestDriver } from "./virtio_driver.ts";

const RUNS = Number(Deno.env.get("DVMM_FC_RUNS") ?? 10_000);
const SEED = Deno.env.get("DVMM_FC_SEED");
const params = { numRuns: RUNS, ...(SEED ? { seed: Number(SEED) } : {}) };

const MEM = 0x4000;

/** A GuestMemory that records every access and flags any outside guest RAM. */
class RecordingMemory extends GuestMemory {
  readonly writes: [number, number][] = [];
  violations = 0;
  recording = false;

  #check(gpa: number, len: number, write: boolean) {
    if (!this.recording) return;
    if (!this.contains(gpa, len)) this.violations++;
    if (write) this.writes.push([gpa, len]);
  }
  override slice(gpa: number, length: number): Uint8Array {
    this.#check(gpa, length, false);
    return super.slice(gpa, length);
  }
  override readU16(gpa: number): number {
    this.#check(gpa, 2, false);
    return super.readU16(gpa);
  }
  override readU32(gpa: number): number {
    this.#check(gpa, 4, false);
    return super.readU32(gpa);
  }
  override readU64(gpa: number): bigint {
    this.#check(gpa, 8, false);
    return super.readU64(gpa);
  }
  override writeU16(gpa: number, value: number): void {
    this.#check(gpa, 2, true);
    super.writeU16(gpa, value);
  }
  override writeU32(gpa: number, value: number): void {
    this.#check(gpa, 4, true);
    super.writeU32(gpa, value);
  }
  override writeU64(gpa: number, value: bigint): void {
    this.#check(gpa, 8, true);
    super.writeU64(gpa, value);
  }
  override write(gpa: number, data: Uint8Array): void {
    this.#check(gpa, data.length, true);
    super.write(gpa, data);
  }
}

const addrArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: MEM - 1 }) },
  { weight: 1, arbitrary: fc.integer({ min: MEM - 64, max: MEM + 64 }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
);
const lenArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 256 }) },
  { weight: 2, arbitrary: fc.constantFrom(16, 32, 48, 64, 17) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) },
);
const descArb = (size: number) =>
  fc.record({
    addr: addrArb,
    len: lenArb,
    flags: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(0, 1, 2, 3) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
    ),
    next: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: size - 1 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
    ),
  });

const scenarioArb = fc.integer({ min: 0, max: 5 }).chain((log2) => {
  const size = 1 << log2;
  return fc.record({
    size: fc.constant(size),
    layout: fc.oneof(
      { weight: 8, arbitrary: fc.constant(null) },
      {
        weight: 1,
        arbitrary: fc.record({
          desc: fc.integer({ min: 0, max: MEM + 32 }),
          avail: fc.integer({ min: 0, max: MEM + 32 }),
          used: fc.integer({ min: 0, max: MEM + 32 }),
        }),
      },
    ),
    descs: fc.array(descArb(size), { minLength: size, maxLength: size }),
    ring: fc.array(
      fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: 0, max: size - 1 }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
      ),
      { minLength: size, maxLength: size },
    ),
    availIdx: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: size }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
    ),
    extra: fc.array(descArb(4), { maxLength: 4 }), // a random indirect table at 0x3000
    eventIdx: fc.boolean(),
    indirect: fc.boolean(),
    pushLens: fc.array(fc.nat(), { maxLength: 40 }),
  });
});

function writeRawDesc(
  m: GuestMemory,
  at: number,
  d: { addr: number | bigint; len: number; flags: number; next: number },
) {
  m.writeU64(at, BigInt(d.addr));
  m.writeU32(at + 8, d.len);
  m.writeU16(at + 12, d.flags);
  m.writeU16(at + 14, d.next);
}

function checkChain(memory: GuestMemory, c: DescriptorChain, size: number) {
  assert.ok(Number.isInteger(c.head) && c.head >= 0 && c.head < size);
  let r = 0, w = 0;
  for (const b of c.readable) {
    assert.ok(memory.contains(b.gpa, b.len), `readable ${b.gpa}+${b.len} inside memory`);
    r += b.len;
  }
  for (const b of c.writable) {
    assert.ok(memory.contains(b.gpa, b.len), `writable ${b.gpa}+${b.len} inside memory`);
    w += b.len;
  }
  assert.equal(r, c.readableLength);
  assert.equal(w, c.writableLength);
}

Deno.test("virtqueue property: random rings never throw, stay in guest memory, yield valid chains or break", () => {
  fc.assert(
    fc.property(scenarioArb, (s) => {
      const memory = new RecordingMemory([{ gpa: 0, bytes: new Uint8Array(MEM) }]);
      const base = layoutAt(0, s.size);
      const layout = s.layout ? { size: s.size, ...s.layout } : base;
      // Lay out the driver's side wherever it fits; out-of-memory parts are simply absent.
      s.descs.forEach((d, i) => {
        const at = layout.desc + VIRTQ_DESC_SIZE * i;
        if (memory.contains(at, 16)) writeRawDesc(memory, at, d);
      });
      s.extra.forEach((d, i) => writeRawDesc(memory, 0x3000 + 16 * i, d));
      s.ring.forEach((h, i) => {
        if (memory.contains(layout.avail + 4 + 2 * i, 2)) {
          memory.writeU16(layout.avail + 4 + 2 * i, h);
        }
      });
      if (memory.contains(layout.avail + 2, 2)) memory.writeU16(layout.avail + 2, s.availIdx);

      memory.recording = true;
      let reasons = 0;
      const q = new Virtqueue(memory, layout, {
        eventIdx: s.eventIdx,
        indirect: s.indirect,
        onBroken: () => reasons++,
      });
      q.setNotification(true);
      const popped: DescriptorChain[] = [];
      for (let i = 0; i < 2 * s.size + 2; i++) {
        const c = q.pop();
        if (!c) break;
        checkChain(memory, c, s.size);
        popped.push(c);
      }
      if (!q.isBroken) {
        const pending = (s.availIdx - 0) & 0xffff;
        assert.equal(popped.length, Math.min(pending, s.size));
      } else {
        assert.ok(q.brokenReason && q.brokenReason.length > 0);
        assert.equal(reasons, 1);
      }
      popped.forEach((c, i) => q.push(c.head, Math.min(s.pushLens[i] ?? 0, c.writableLength)));
      q.needsNotification();
      q.setNotification(false);
      assert.equal(memory.violations, 0, "no access outside guest memory");
      if (!q.isBroken) {
        const usedEnd = layout.used + usedRingBytes(s.size);
        for (const [gpa, len] of memory.writes) {
          assert.ok(
            gpa >= layout.used && gpa + len <= usedEnd,
            `write ${gpa}+${len} inside the used ring`,
          );
        }
      }
    }),
    params,
  );
});

const bufArb = fc.tuple(
  fc.integer({ min: 0x2000, max: 0x3f00 }),
  fc.integer({ min: 0, max: 0x100 }),
);
const requestArb = fc.record({
  out: fc.array(bufArb, { maxLength: 3 }),
  inn: fc.array(bufArb, { maxLength: 3 }),
  indirect: fc.boolean(),
}).filter((r) => r.out.length + r.inn.length > 0);

Deno.test("virtqueue property: well-formed chains come back exactly and in order", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 4 }),
      fc.array(fc.array(requestArb, { minLength: 1, maxLength: 6 }), {
        minLength: 1,
        maxLength: 6,
      }),
      (log2, batches) => {
        const size = 1 << log2;
        const memory = GuestMemory.ofSize(MEM);
        const layout = layoutAt(0, size);
        const driver = new TestDriver(memory, layout);
        const q = new Virtqueue(memory, layout, { indirect: true, eventIdx: true });
        let tableAt = 0x1800;
        for (const batch of batches) {
          const expected: { head: number; out: readonly Buf[]; inn: readonly Buf[] }[] = [];
          for (const r of batch) {
            const need = r.indirect ? 1 : r.out.length + r.inn.length;
            if (need > driver.free) break;
            const head = r.indirect
              ? driver.indirectChain(tableAt, r.out, r.inn)
              : driver.chain(r.out, r.inn);
            tableAt = tableAt >= 0x1f00 ? 0x1800 : tableAt + 0x80;
            driver.publish(head);
            expected.push({ head, out: r.out, inn: r.inn });
          }
          for (const e of expected) {
            const c = q.pop();
            assert.ok(c, q.brokenReason ?? "chain expected");
            assert.equal(c.head, e.head);
            assert.deepEqual(c.readable.map((b) => [b.gpa, b.len]), e.out);
            assert.deepEqual(c.writable.map((b) => [b.gpa, b.len]), e.inn);
            q.push(c.head, c.writableLength);
          }
          assert.equal(q.pop(), null);
          const used = driver.reclaim();
          assert.deepEqual(used.map((u) => u.id), expected.map((e) => e.head));
        }
        assert.equal(q.isBroken, false);
      },
    ),
    params,
  );
});
