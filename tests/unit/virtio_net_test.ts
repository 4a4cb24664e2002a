/**
 * virtio-net behind the transport with a fake TAP: configuration and
 * features, transmit (header stripped, frames split across descriptors,
 * drops), receive (zeroed header with num_buffers = 1, frames waiting while
 * the guest has no buffers, the backend watched only while a buffer is held,
 * oversize frames dropped), malformed chains breaking the queue with
 * DEVICE_NEEDS_RESET, close; the default MAC; TAP open errors.
 */
import assert from "node:assert/strict";
import {
  defaultMac,
  formatMac,
  NET_QUEUE,
  type NetBackend,
  parseMac,
  VIRTIO_NET_CONFIG,
  VIRTIO_NET_CONFIG_SIZE,
  VIRTIO_NET_F,
  VIRTIO_NET_HDR,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_S,
  VirtioNet,
} from "../../devices/virtio/net.ts";
import { Tap, TapError } from "../../devices/virtio/tap.ts";
import { VIRTIO_BAR_LAYOUT } from "../../devices/virtio/pci_layout.ts";
import { hasFeature, STATUS, VIRTIO_ID } from "../../devices/virtio/spec.ts";
import { bringUp, readDeviceFeatures, readReg, type Running } from "./virtio_harness.ts";

const MAC = parseMac("52:54:00:12:34:56");
const TX = 0x9_0000, RX = 0xa_0000;

/** A TAP stand-in: records sent frames, hands out queued ones, remembers the watcher. */
class FakeTap implements NetBackend {
  readonly name = "fake0";
  readonly sent: Uint8Array[] = [];
  readonly inbox: Uint8Array[] = [];
  watcher: (() => void) | null = null;
  watches = 0;
  refuse = false;
  closed = false;

  send(frame: Uint8Array): boolean {
    if (this.refuse) return false;
    this.sent.push(frame.slice());
    return true;
  }
  receive(into: Uint8Array): number | null {
    const f = this.inbox.shift();
    if (!f) return null;
    const n = Math.min(f.length, into.length);
    into.set(f.subarray(0, n));
    return n;
  }
  watch(onReadable: () => void): void {
    this.watches++;
    this.watcher = onReadable;
  }
  close(): void {
    this.closed = true;
  }
  /** A frame arrives from the host: queue it and fire the watcher (once). */
  arrive(frame: Uint8Array): void {
    this.inbox.push(frame);
    const w = this.watcher;
    this.watcher = null;
    w?.();
  }
}

/** An Ethernet frame of `length` bytes whose payload bytes are `seed + i`. */
function frame(length: number, seed = 0): Uint8Array {
  const f = new Uint8Array(length).map((_, i) => (seed + i) & 0xff);
  if (length >= 12) f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...MAC]); // broadcast from MAC
  return f;
}

function start(): { run: Running; tap: FakeTap; net: VirtioNet } {
  const tap = new FakeTap();
  const net = new VirtioNet(tap, { mac: MAC, queueSize: 16 });
  return { run: bringUp(net), tap, net };
}

/** Put `header` + `payload` in guest memory at TX and queue it as `pieces` readable buffers. */
function queueTx(run: Running, header: Uint8Array, payload: Uint8Array, cut = 0): void {
  run.memory.write(TX, header);
  run.memory.write(TX + header.length, payload);
  const total = header.length + payload.length;
  const bufs: [number, number][] = cut > 0 && cut < total
    ? [[TX, cut], [TX + cut, total - cut]]
    : [[TX, total]];
  run.queues[NET_QUEUE.TRANSMIT].add(bufs, []);
}

const needsReset = (run: Running) =>
  (readReg(run.transport, "DEVICE_STATUS") & STATUS.DEVICE_NEEDS_RESET) !== 0;

Deno.test("net: offers MAC and STATUS, and its config holds the MAC and link up", () => {
  const { run, net } = start();
  assert.equal(net.type, VIRTIO_ID.NET);
  const offered = readDeviceFeatures(run.transport);
  assert.ok(hasFeature(offered, VIRTIO_NET_F.MAC));
  assert.ok(hasFeature(offered, VIRTIO_NET_F.STATUS));
  assert.ok(!hasFeature(offered, 0), "no CSUM offload");
  assert.ok(!hasFeature(offered, 15), "no MRG_RXBUF");
  const cfg = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
  run.transport.bar.read(VIRTIO_BAR_LAYOUT.DEVICE.offset, cfg);
  assert.deepEqual(cfg.subarray(0, 6), MAC);
  const view = new DataView(cfg.buffer);
  assert.equal(view.getUint16(VIRTIO_NET_CONFIG.STATUS.offset, true), VIRTIO_NET_S.LINK_UP);
  assert.equal(view.getUint16(VIRTIO_NET_CONFIG.MAX_VIRTQUEUE_PAIRS.offset, true), 1);
});

Deno.test("net: transmit strips the header and sends the frame, even split mid-header", () => {
  const { run, tap, net } = start();
  const f = frame(98, 7);
  queueTx(run, new Uint8Array(VIRTIO_NET_HDR_SIZE), f, 5);
  run.kick(NET_QUEUE.TRANSMIT);
  assert.equal(tap.sent.length, 1);
  assert.deepEqual(tap.sent[0], f);
  assert.deepEqual(run.queues[NET_QUEUE.TRANSMIT].reclaim().map((u) => u.len), [0]);
  assert.deepEqual(run.sink.queue, [NET_QUEUE.TRANSMIT + 1], "transmitq's vector signalled");
  assert.equal(net.stats.txFrames, 1);
  assert.equal(net.stats.txBytes, 98);
});

Deno.test("net: runt frames, offload requests and refused frames are dropped and counted", () => {
  const { run, tap, net } = start();
  queueTx(run, new Uint8Array(VIRTIO_NET_HDR_SIZE), frame(10));
  run.kick(NET_QUEUE.TRANSMIT);
  const csum = new Uint8Array(VIRTIO_NET_HDR_SIZE);
  csum[VIRTIO_NET_HDR.FLAGS.offset] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  queueTx(run, csum, frame(60));
  run.kick(NET_QUEUE.TRANSMIT);
  tap.refuse = true;
  queueTx(run, new Uint8Array(VIRTIO_NET_HDR_SIZE), frame(60));
  run.kick(NET_QUEUE.TRANSMIT);
  assert.equal(tap.sent.length, 0);
  assert.equal(net.stats.txDropped, 3);
  assert.equal(run.queues[NET_QUEUE.TRANSMIT].reclaim().length, 3, "every chain is returned");
  assert.ok(!needsReset(run));
});

Deno.test("net: a transmit chain shorter than the header breaks the queue (NEEDS_RESET)", () => {
  const { run, tap } = start();
  run.queues[NET_QUEUE.TRANSMIT].add([[TX, VIRTIO_NET_HDR_SIZE - 1]], []);
  run.kick(NET_QUEUE.TRANSMIT);
  assert.equal(tap.sent.length, 0);
  assert.ok(needsReset(run));
  assert.deepEqual(run.sink.config, [0], "config interrupt for NEEDS_RESET");
  // A broken queue takes nothing more.
  queueTx(run, new Uint8Array(VIRTIO_NET_HDR_SIZE), frame(60));
  run.kick(NET_QUEUE.TRANSMIT);
  assert.equal(tap.sent.length, 0);
});

Deno.test("net: a transmit chain with a device-writable buffer breaks the queue", () => {
  const { run } = start();
  run.queues[NET_QUEUE.TRANSMIT].add([[TX, 80]], [[RX, 16]]);
  run.kick(NET_QUEUE.TRANSMIT);
  assert.ok(needsReset(run));
});

Deno.test("net: received frames get a zeroed header with num_buffers = 1", () => {
  const { run, tap, net } = start();
  const rx = run.queues[NET_QUEUE.RECEIVE];
  rx.add([], [[RX, 1526]]);
  run.kick(NET_QUEUE.RECEIVE);
  assert.ok(tap.watcher, "empty TAP with a buffer held: watched");
  const f = frame(342, 3);
  run.memory.fill(RX, 1526, 0xee);
  tap.arrive(f);
  const used = rx.reclaim();
  assert.deepEqual(used.map((u) => u.len), [VIRTIO_NET_HDR_SIZE + 342]);
  const hdr = run.memory.read(RX, VIRTIO_NET_HDR_SIZE);
  assert.deepEqual([...hdr], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  assert.deepEqual(run.memory.read(RX + VIRTIO_NET_HDR_SIZE, 342), f);
  assert.deepEqual(run.sink.queue, [NET_QUEUE.RECEIVE + 1]);
  assert.equal(net.stats.rxFrames, 1);
  assert.equal(net.stats.rxBytes, 342);
});

Deno.test("net: with no receive buffers frames wait in the TAP, then arrive in order", () => {
  const { run, tap, net } = start();
  const rx = run.queues[NET_QUEUE.RECEIVE];
  tap.inbox.push(frame(60, 1), frame(61, 2), frame(62, 3));
  run.kick(NET_QUEUE.RECEIVE);
  assert.equal(tap.inbox.length, 3, "nothing read without a buffer to put it in");
  assert.equal(tap.watches, 0, "no buffer: the TAP is not watched (no spinning on a readable fd)");
  rx.add([], [[RX, 1526]]);
  rx.add([], [[RX + 0x1000, 1526]]);
  run.kick(NET_QUEUE.RECEIVE);
  assert.deepEqual(rx.reclaim().map((u) => u.len), [72, 73]);
  assert.equal(tap.inbox.length, 1, "the third frame still waits");
  assert.equal(tap.watches, 0);
  rx.add([], [[RX + 0x2000, 1526]]);
  run.kick(NET_QUEUE.RECEIVE);
  assert.deepEqual(rx.reclaim().map((u) => u.len), [74]);
  assert.deepEqual(run.memory.read(RX + 0x2000 + VIRTIO_NET_HDR_SIZE, 62), frame(62, 3));
  assert.equal(net.stats.rxDropped, 0);
});

Deno.test("net: a frame too big for the buffer is dropped and the buffer takes the next", () => {
  const { run, tap, net } = start();
  const rx = run.queues[NET_QUEUE.RECEIVE];
  tap.inbox.push(frame(2000), frame(100, 9));
  rx.add([], [[RX, 1526]]);
  run.kick(NET_QUEUE.RECEIVE);
  assert.deepEqual(rx.reclaim().map((u) => u.len), [112]);
  assert.deepEqual(run.memory.read(RX + VIRTIO_NET_HDR_SIZE, 100), frame(100, 9));
  assert.equal(net.stats.rxDropped, 1);
});

Deno.test("net: a receive buffer split header/data across descriptors works", () => {
  const { run, tap } = start();
  const rx = run.queues[NET_QUEUE.RECEIVE];
  rx.add([], [[RX, VIRTIO_NET_HDR_SIZE], [RX + 0x100, 1514]]);
  tap.inbox.push(frame(64, 5));
  run.kick(NET_QUEUE.RECEIVE);
  assert.deepEqual(rx.reclaim().map((u) => u.len), [76]);
  assert.equal(run.memory.readU16(RX + VIRTIO_NET_HDR.NUM_BUFFERS.offset), 1);
  assert.deepEqual(run.memory.read(RX + 0x100, 64), frame(64, 5));
});

Deno.test("net: malformed receive chains break the queue (readable part, too small)", () => {
  for (const [out, inn] of [[[[RX, 16]], [[RX + 0x100, 1526]]], [[], [[RX, 8]]]] as const) {
    const { run, tap } = start();
    tap.inbox.push(frame(60));
    run.queues[NET_QUEUE.RECEIVE].add(out, inn);
    run.kick(NET_QUEUE.RECEIVE);
    assert.ok(needsReset(run));
    assert.equal(tap.inbox.length, 1, "no frame consumed");
  }
});

Deno.test("net: after a reset a stale watcher does nothing; close closes the TAP", () => {
  const { run, tap, net } = start();
  run.queues[NET_QUEUE.RECEIVE].add([], [[RX, 1526]]);
  run.kick(NET_QUEUE.RECEIVE);
  const stale = tap.watcher!;
  run.transport.reset();
  tap.inbox.push(frame(60));
  stale();
  assert.equal(tap.inbox.length, 1, "reset device pulls nothing");
  net.close();
  assert.ok(tap.closed);
});

Deno.test("net: the default MAC is stable per TAP name, unicast and locally administered", () => {
  const a = defaultMac("dvmm0");
  assert.deepEqual(defaultMac("dvmm0"), a);
  assert.notDeepEqual(defaultMac("dvmm1"), a);
  assert.match(formatMac(a), /^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/);
  assert.equal(formatMac(parseMac("52:54:00:AB:cd:0e")), "52:54:00:ab:cd:0e");
  assert.throws(() => parseMac("52:54:00:12:34"), /bad MAC address/);
});

Deno.test("tap: open errors name the TAP and say what to do", () => {
  assert.throws(() => Tap.open("way-too-long-name0"), (e: Error) => {
    assert.ok(e instanceof TapError);
    assert.match(e.message, /^tap=way-too-long-name0: not a valid interface name/);
    return true;
  });
  assert.throws(
    () => Tap.open("dvmm0", { clonePath: "/nonexistent/net/tun" }),
    /^TapError: tap=dvmm0: \/nonexistent\/net\/tun: not found \(is the tun module loaded/,
  );
  assert.throws(
    () => Tap.open("dvmm0", { clonePath: "/dev/null" }),
    /^TapError: tap=dvmm0: TUNSETIFF: ENOTTY/,
  );
});
