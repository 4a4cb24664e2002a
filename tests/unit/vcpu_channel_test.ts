import { deepStrictEqual, doesNotMatch, match, strictEqual } from "node:assert/strict";
import { Bus } from "../../devices/bus.ts";
import { IoDispatcher } from "../../kvm/io_dispatcher.ts";
import { IdleBackoff } from "../../kvm/atomics_wait.ts";
import {
  ACCESS,
  COUNTER,
  DOORBELL,
  DOORBELL_BYTES,
  RING_ENTRIES,
  VcpuChannel,
} from "../../kvm/vcpu_channel.ts";

/** Post `data` at a (small) address, as a worker would. */
function post(ch: VcpuChannel, kind: number, address: bigint, data: Uint8Array): void {
  ch.post(kind, Number(address & 0xffffffffn), Number(address >> 32n), data, 0, data.length);
}

function recordingBus(kind: string, base: bigint, log: string[]): Bus {
  const bus = new Bus(kind);
  bus.register(base, 16n, {
    read: (o, d) => {
      log.push(`${kind} read ${o}/${d.length}`);
      d.fill(0x11 + o);
    },
    write: (o, d) => log.push(`${kind} write ${o}/${d.length}=${[...d].join(",")}`),
  }, `${kind} dev`);
  return bus;
}

Deno.test("posted writes reach the bus in order, then a pending read is answered", () => {
  const log: string[] = [];
  const d = new IoDispatcher(recordingBus("pio", 0x3f8n, log), recordingBus("mmio", 0xd0000n, log));
  const ch = VcpuChannel.create(d.doorbell);
  d.add(ch);
  post(ch, ACCESS.PIO_WRITE, 0x3f8n, Uint8Array.of(72));
  post(ch, ACCESS.MMIO_WRITE, 0xd0004n, Uint8Array.of(1, 2, 3, 4));
  post(ch, ACCESS.PIO_WRITE, 0x3f9n, Uint8Array.of(105));
  strictEqual(d.drain(), 3);
  deepStrictEqual(log, ["pio write 0/1=72", "mmio write 4/4=1,2,3,4", "pio write 1/1=105"]);
  strictEqual(d.stats.accesses, 3);
  strictEqual(d.stats.unclaimed, 0);
});

Deno.test("posted writes from several vCPUs apply in the order the guest made them", () => {
  // The guest's 8250 driver clears THRI on vCPU 2 (in its interrupt handler), then sets it on
  // vCPU 0 (more output to send), under the port lock: draining vCPU 0's ring before vCPU 2's
  // left THRI off and the console stalled for good.
  const log: string[] = [];
  const d = new IoDispatcher(recordingBus("pio", 0x3f8n, log), new Bus("mmio"));
  const cpus = [0, 1, 2].map(() => VcpuChannel.create(d.doorbell));
  for (const c of cpus) d.add(c);
  /** Post each [vCPU, port, byte] in turn, drain, and return what the bus saw. */
  const replay = (writes: [number, bigint, number][]) => {
    log.length = 0;
    for (const [cpu, port, byte] of writes) {
      post(cpus[cpu], ACCESS.PIO_WRITE, port, Uint8Array.of(byte));
    }
    strictEqual(d.drain(), writes.length);
    return log;
  };
  deepStrictEqual(
    replay([[2, 0x3f9n, 0x05], [0, 0x3f9n, 0x07], [1, 0x3f8n, 65], [2, 0x3f8n, 66]]),
    ["pio write 1/1=5", "pio write 1/1=7", "pio write 0/1=65", "pio write 0/1=66"],
  );
  // With the tickets about to wrap around 2^32, the order holds too.
  new Int32Array(d.doorbell)[DOORBELL.TICKET] = -2; // 0xfffffffe
  deepStrictEqual(
    replay([[1, 0x3f8n, 1], [0, 0x3f8n, 2], [2, 0x3f8n, 3], [0, 0x3f8n, 4]]),
    ["pio write 0/1=1", "pio write 0/1=2", "pio write 0/1=3", "pio write 0/1=4"],
  );
});

Deno.test("a drain nested in a device write applies each posted write once, in order", () => {
  const seen: number[] = [];
  const pio = new Bus("pio");
  const d = new IoDispatcher(pio, new Bus("mmio"));
  const cpus = [0, 1].map(() => VcpuChannel.create(d.doorbell));
  for (const c of cpus) d.add(c);
  pio.register(0x80n, 1n, {
    read: () => {},
    write: (_o, data) => {
      seen.push(data[0]);
      if (data[0] === 2) { // as a doorbell kick does: apply what is pending first
        post(cpus[1], ACCESS.PIO_WRITE, 0x80n, Uint8Array.of(5));
        d.drain();
      }
    },
  }, "sink");
  for (const [cpu, v] of [[0, 1], [1, 2], [0, 3], [1, 4]]) {
    post(cpus[cpu], ACCESS.PIO_WRITE, 0x80n, Uint8Array.of(v));
  }
  d.drain();
  d.drain();
  deepStrictEqual(seen, [1, 2, 3, 4, 5]);
});

Deno.test("the ring wraps around many times without losing or reordering writes", () => {
  const seen: number[] = [];
  const pio = new Bus("pio");
  pio.register(0x80n, 1n, { read: () => {}, write: (_o, data) => seen.push(data[0]) }, "sink");
  const d = new IoDispatcher(pio, new Bus("mmio"));
  const ch = VcpuChannel.create(d.doorbell);
  d.add(ch);
  for (let i = 0; i < RING_ENTRIES * 5; i++) {
    post(ch, ACCESS.PIO_WRITE, 0x80n, Uint8Array.of(i & 0xff));
    if (i % 700 === 0) d.drain();
  }
  d.drain();
  strictEqual(seen.length, RING_ENTRIES * 5);
  deepStrictEqual(seen.slice(0, 3), [0, 1, 2]);
  strictEqual(seen.at(-1), (RING_ENTRIES * 5 - 1) & 0xff);
});

Deno.test("a device that throws answers all-ones, its error is logged once, and the VMM goes on", () => {
  const lines: string[] = [];
  const pio = new Bus("pio");
  pio.register(0x10n, 4n, {
    read: () => {
      throw new Error("boom");
    },
    write: () => {
      throw new Error("boom");
    },
  }, "[1234:5678] BAR 0");
  const d = new IoDispatcher(pio, new Bus("mmio"), (l) => lines.push(l));
  const data = new Uint8Array(4);
  const ch = VcpuChannel.create(d.doorbell);
  d.add(ch);
  post(ch, ACCESS.PIO_WRITE, 0x10n, data);
  post(ch, ACCESS.PIO_WRITE, 0x11n, data);
  d.drain();
  strictEqual(d.stats.deviceErrors, 2);
  deepStrictEqual(lines, ["[1234:5678] BAR 0: pio write at 0x10 failed: boom"]);
});

Deno.test("an access to nothing reads all-ones and is counted as unclaimed", () => {
  const d = new IoDispatcher(new Bus("pio"), new Bus("mmio"));
  const ch = VcpuChannel.create(d.doorbell);
  d.add(ch);
  post(ch, ACCESS.MMIO_WRITE, 0x1234n, Uint8Array.of(1));
  d.drain();
  strictEqual(d.stats.unclaimed, 1);
});

Deno.test("the stall report says whether the worker is inside KVM_RUN, and since when the VMM thread saw it change", () => {
  const ch = VcpuChannel.create(new SharedArrayBuffer(DOORBELL_BYTES));
  ch.enterRun();
  ch.sampleRun(Date.now() - 5_000); // the dispatcher's tick saw the vCPU enter 5 s ago
  ch.sampleRun(Date.now() - 2_000); // nothing changed since: the time stays
  match(ch.describe(), / in KVM_RUN for [45]\.\d s or more /);
  ch.leaveRun();
  ch.enterRun(); // left and entered again between two samples: still a change (the edge count)
  match(ch.describe(), / in KVM_RUN for 0\.\d s or more /);
  ch.counters[COUNTER.OTHER] = 7; // the edge count is a header word, not over the counters
  ch.leaveRun();
  strictEqual(ch.counters[COUNTER.OTHER], 7);
  match(ch.describe(), / out of KVM_RUN for 0\.\d s or more /);
});

Deno.test("a vCPU inside KVM_RUN for long is probed once: the report says where it was, or that KVM never returned", () => {
  const ch = VcpuChannel.create(new SharedArrayBuffer(DOORBELL_BYTES));
  const now = Date.now();
  ch.enterRun();
  ch.sampleRun(now - 3_000);
  strictEqual(ch.probeIfLongInRun(5, now), false); // 3 s: not yet
  strictEqual(ch.probeAsked(), false);
  ch.leaveRun();
  ch.enterRun(); // a new stretch inside KVM_RUN, seen 6 s ago
  ch.sampleRun(now - 6_000);
  strictEqual(ch.probeIfLongInRun(5, now), true);
  strictEqual(ch.probeAsked(), true); // the worker sees the request after the kick
  match(ch.describe(), / probe: kicked \d\.\d s ago, no answer yet \(still in KVM_RUN/);
  strictEqual(ch.probeIfLongInRun(5, now + 1_000), false); // asked a moment ago: not again
  ch.answerProbe(0xffff_ffff_81c0_1220n);
  strictEqual(ch.probeAsked(), false);
  match(
    ch.describe(),
    / probe: kicked \d+\.\d s ago, left KVM_RUN at guest rip=0xffffffff81c01220$/,
  );
  ch.leaveRun();
  strictEqual(ch.probeIfLongInRun(5, now + 10_000), false); // outside KVM_RUN: nothing to ask
});

Deno.test("a second probe of a silent vCPU says whether the guest was at the same RIP as the probe before", () => {
  const ch = VcpuChannel.create(new SharedArrayBuffer(DOORBELL_BYTES));
  const now = Date.now();
  const probeAt = (t: number, rip: bigint) => {
    ch.enterRun();
    ch.sampleRun(t - 6_000);
    strictEqual(ch.probeIfLongInRun(5, t), true);
    ch.answerProbe(rip);
    ch.leaveRun();
  };
  probeAt(now - 14_000, 0xffff_ffff_c039_d20cn);
  doesNotMatch(ch.describe(), /earlier/);
  probeAt(now - 7_000, 0xffff_ffff_c039_d20cn);
  match(ch.describe(), /rip=0xffffffffc039d20c; the probe 7\.0 s earlier found the same rip$/);
  probeAt(now, 0xffff_ffff_81c0_1220n);
  match(
    ch.describe(),
    /rip=0xffffffff81c01220; the probe 7\.0 s earlier found rip=0xffffffffc039d20c$/,
  );
});

Deno.test("the idle backoff waits briefly while work is recent and long once quiet", () => {
  const b = new IdleBackoff(10, 250, 200);
  strictEqual(b.waitMs(1_000), 250); // no work yet
  b.noteWork();
  strictEqual(b.waitMs(1_000), 10);
  strictEqual(b.waitMs(1_199), 10);
  strictEqual(b.waitMs(1_200), 250);
  b.noteWork();
  strictEqual(b.waitMs(5_050), 10);
});
