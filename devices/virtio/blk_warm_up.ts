/**
 * JIT warm-up of the virtio-blk request path. A fresh worker runs its request
 * code in V8's interpreter and baseline tiers for its first few hundred
 * requests, several times slower than once optimized; under nested
 * virtualization that is most of a benchmark's requests. So before the guest
 * can send any, the I/O worker serves {@linkcode BLK_WARM_UP_REQUESTS}
 * synthetic requests, reads and writes of many scattered buffers, through the
 * very functions it uses for the guest (virtqueue walk, request parsing,
 * vectored I/O), in private memory and on `/dev/zero` (reads give zeros,
 * writes are discarded). No guest memory and no image byte is touched.
 *
 * Optimized code that meets something its type feedback never saw is thrown
 * away (a deopt), and V8 takes hundreds of requests more to optimize again.
 * So the warm-up shows the code what the guest's requests will bring: it
 * moves to a fresh private queue and memory every
 * {@linkcode BLK_WARM_UP_REQUESTS_PER_QUEUE} requests, alternately one at
 * guest address 0 and one above 4 GiB (addresses that are not small
 * integers, as a large guest's high RAM), with varying heads and data
 * buffers of which some are contiguous (merged) and some not; and the caller
 * passes the function it will serve with ({@linkcode BlkWarmUpOptions.pending}).
 *
 * @module
 */

import { GuestMemory } from "../../kvm/guest_memory.ts";
import { close, O_CLOEXEC, O_RDWR, open } from "../../kvm/libc.ts";
import type { BlkRequestEnv } from "./blk_request.ts";
import { serveAvailable } from "./blk_serve.ts";
import { VIRTIO_BLK_REQ, VIRTIO_BLK_T } from "./blk_spec.ts";
import { FdBlockBackend } from "./fd_block_backend.ts";
import { VIRTQ_AVAIL, VIRTQ_DESC, VIRTQ_DESC_F, VIRTQ_DESC_SIZE } from "./spec.ts";
import { ChainBuffers, Virtqueue } from "./virtqueue.ts";

/** Synthetic requests served by {@linkcode warmUpBlkPath} (V8 has optimized the path by then). */
export const BLK_WARM_UP_REQUESTS = 600;

/** Data buffers per synthetic request (a 1 MiB guest request has some 30-250). */
export const BLK_WARM_UP_SEGMENTS = 64;

/** Where things are in a private memory, from its base. */
const AT = {
  QUEUE: 0x0,
  TABLE: 0x1000,
  HEADER: 0x2000,
  STATUS: 0x2100,
  DATA: 0x4000,
  /** Data buffers are 512 bytes, in contiguous pairs every 2 KiB: each pair merges, pairs do not. */
  DATA_PAIR_STRIDE: 0x800,
  DATA_LEN: 512,
  SIZE: 0x4000 + (BLK_WARM_UP_SEGMENTS / 2) * 0x800,
} as const;

/** Base of the odd-numbered private memories: above 4 GiB. */
const HIGH_BASE = 0x1_0000_0000;

const QUEUE_SIZE = 16;

/**
 * Synthetic requests per private queue. A function's first calls collect no
 * type feedback (V8 allocates it lazily), so what a new queue and memory run
 * only once (building their region tables) must run again later to be known
 * to the optimized code: the warm-up moves to a fresh queue this often.
 */
export const BLK_WARM_UP_REQUESTS_PER_QUEUE = 50;

/** What {@linkcode warmUpBlkPath} may be told. */
export interface BlkWarmUpOptions {
  /** Synthetic requests to serve (default {@linkcode BLK_WARM_UP_REQUESTS}). */
  readonly requests?: number;
  /** Asked before each request: true ends the warm-up early (the worker is told to stop). */
  readonly stop?: () => boolean;
  /**
   * The `stop` function the caller passes to {@linkcode serveAvailable} when
   * it serves the guest (default: never stop). The warm-up serves with the
   * same function, so the code V8 optimizes for that call stays valid.
   */
  readonly pending?: () => boolean;
}

/**
 * Serve synthetic requests as the I/O worker serves the guest's (with
 * {@linkcode serveAvailable}), their data read from and written to
 * `/dev/zero`, which this opens and closes itself: a worker terminated
 * mid-way leaks the descriptor rather than leaving a closed number that a
 * later `open` could reuse under a write. Returns how many completed with
 * status OK (0 where `/dev/zero` cannot be opened: no warm-up).
 */
export function warmUpBlkPath(opts: BlkWarmUpOptions = {}): number {
  let zeroFd: number;
  try {
    zeroFd = open("/dev/zero", O_RDWR | O_CLOEXEC);
  } catch {
    return 0;
  }
  try {
    return serveSynthetic(zeroFd, opts);
  } finally {
    close(zeroFd);
  }
}

/** A private queue: its memory, where everything is, and what serving needs. */
interface Rig {
  readonly memory: GuestMemory;
  readonly base: number;
  readonly vq: Virtqueue;
  readonly env: BlkRequestEnv;
  published: number;
}

const neverStop = () => false;

function serveSynthetic(zeroFd: number, opts: BlkWarmUpOptions): number {
  const backend = new FdBlockBackend({
    path: "/dev/zero",
    fd: zeroFd,
    size: 1 << 30,
    readonly: false,
  });
  const pending = opts.pending ?? neverStop;
  const chain = new ChainBuffers();
  const requests = opts.requests ?? BLK_WARM_UP_REQUESTS;
  let r = rig(0, backend);
  let ok = 0;
  for (let i = 0; i < requests && !opts.stop?.(); i++) {
    if (i > 0 && i % BLK_WARM_UP_REQUESTS_PER_QUEUE === 0) {
      r = rig(i / BLK_WARM_UP_REQUESTS_PER_QUEUE, backend);
    }
    const type = i & 1 ? VIRTIO_BLK_T.OUT : VIRTIO_BLK_T.IN;
    r.memory.writeU32(r.base + AT.HEADER + VIRTIO_BLK_REQ.TYPE.offset, type);
    r.memory.writeU32(r.base + AT.HEADER + VIRTIO_BLK_REQ.SECTOR.offset, (i % 64) * 128);
    r.memory.writeU8(r.base + AT.STATUS, 0xff);
    publish(r, type === VIRTIO_BLK_T.IN);
    serveAvailable(r.vq, chain, r.env, pending);
    r.vq.needsNotification();
    if (r.memory.readU8(r.base + AT.STATUS) === 0) ok++;
  }
  return ok;
}

/**
 * The `n`th private queue, in a fresh memory: even ones at address 0, odd
 * ones above 4 GiB (with a second, unused region at 0, so lookups see two).
 */
function rig(n: number, backend: FdBlockBackend): Rig {
  const base = n % 2 === 1 ? HIGH_BASE : 0;
  const memory = base === 0 ? GuestMemory.ofSize(AT.SIZE) : new GuestMemory([
    { gpa: 0, bytes: new Uint8Array(0x1000) },
    { gpa: base, bytes: new Uint8Array(AT.SIZE) },
  ]);
  const env: BlkRequestEnv = {
    memory,
    backend,
    id: new Uint8Array(0),
    name: "virtio-blk warm-up",
    warn: () => {},
  };
  const vq = new Virtqueue(memory, {
    size: QUEUE_SIZE,
    desc: base + AT.QUEUE,
    avail: base + AT.QUEUE + VIRTQ_DESC_SIZE * QUEUE_SIZE,
    used: base + AT.QUEUE + 0x200,
  }, {
    eventIdx: true, // as Linux negotiates
    indirect: true,
    name: env.name,
  });
  writeIndirectTable(memory, base);
  return { memory, base, vq, env, published: 0 };
}

/** Write descriptor `i` of the table at `table`. */
function writeDesc(
  memory: GuestMemory,
  table: number,
  i: number,
  addr: number,
  len: number,
  flags: number,
): void {
  const at = table + VIRTQ_DESC_SIZE * i;
  memory.writeU64(at + VIRTQ_DESC.ADDR.offset, BigInt(addr));
  memory.writeU32(at + VIRTQ_DESC.LEN.offset, len);
  memory.writeU16(at + VIRTQ_DESC.FLAGS.offset, flags);
  memory.writeU16(at + VIRTQ_DESC.NEXT.offset, i + 1);
}

/**
 * The indirect table every request uses: the header, then
 * {@linkcode BLK_WARM_UP_SEGMENTS} data buffers, then the status byte.
 * {@linkcode publish} sets the data buffers' direction per request.
 */
function writeIndirectTable(memory: GuestMemory, base: number): void {
  const table = base + AT.TABLE;
  writeDesc(memory, table, 0, base + AT.HEADER, 16, VIRTQ_DESC_F.NEXT);
  for (let k = 0; k < BLK_WARM_UP_SEGMENTS; k++) {
    const addr = base + AT.DATA + (k >> 1) * AT.DATA_PAIR_STRIDE + (k & 1) * AT.DATA_LEN;
    writeDesc(memory, table, 1 + k, addr, AT.DATA_LEN, VIRTQ_DESC_F.NEXT);
  }
  writeDesc(memory, table, BLK_WARM_UP_SEGMENTS + 1, base + AT.STATUS, 1, VIRTQ_DESC_F.WRITE);
}

/**
 * Make the rig's next request available: the data direction, then a head
 * that moves round the ring (as a driver's free list does) pointing at the
 * indirect table, its ring slot, and the index.
 */
function publish(r: Rig, read: boolean): void {
  const { memory, base, vq } = r;
  // Data buffers are device-writable for reads, device-readable for writes.
  const flags = VIRTQ_DESC_F.NEXT | (read ? VIRTQ_DESC_F.WRITE : 0);
  for (let k = 0; k < BLK_WARM_UP_SEGMENTS; k++) {
    memory.writeU16(base + AT.TABLE + VIRTQ_DESC_SIZE * (1 + k) + VIRTQ_DESC.FLAGS.offset, flags);
  }
  const head = (r.published * 5) % QUEUE_SIZE;
  const tableBytes = VIRTQ_DESC_SIZE * (BLK_WARM_UP_SEGMENTS + 2);
  writeDesc(memory, vq.layout.desc, head, base + AT.TABLE, tableBytes, VIRTQ_DESC_F.INDIRECT);
  memory.writeU16(vq.layout.avail + VIRTQ_AVAIL.RING.offset + 2 * (r.published % QUEUE_SIZE), head);
  r.published++;
  memory.writeU16(vq.layout.avail + VIRTQ_AVAIL.IDX.offset, r.published & 0xffff);
}
