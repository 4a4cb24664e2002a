/**
 * JIT warm-up of the virtio-blk request path. A fresh worker runs its request
 * code in V8's interpreter and baseline tiers for its first few hundred
 * requests, several times slower than once optimized; under nested
 * virtualization that is most of a benchmark's requests. So before the guest
 * can send any, the I/O worker serves {@linkcode BLK_WARM_UP_REQUESTS}
 * synthetic requests, alternately reads and writes of many scattered
 * buffers, through the very functions it uses for the guest (virtqueue walk,
 * request parsing, vectored I/O), in private memory and on `/dev/zero`
 * (reads give zeros, writes are discarded). No guest memory and no image byte
 * is touched.
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
import { ChainBuffers, Virtqueue, type VirtqueueLayout } from "./virtqueue.ts";

/** Synthetic requests served by {@linkcode warmUpBlkPath} (V8 has optimized the path by then). */
export const BLK_WARM_UP_REQUESTS = 600;

/** Data buffers per synthetic request (a 1 MiB guest request has some 30-250). */
export const BLK_WARM_UP_SEGMENTS = 64;

/** Where things are in the private memory. */
const AT = {
  QUEUE: 0x0,
  TABLE: 0x1000,
  HEADER: 0x2000,
  STATUS: 0x2100,
  DATA: 0x4000,
  /** Data buffers are 512 bytes every 1 KiB, so none merge. */
  DATA_STRIDE: 0x400,
  DATA_LEN: 512,
  SIZE: 0x4000 + BLK_WARM_UP_SEGMENTS * 0x400,
} as const;

const QUEUE_SIZE = 16;

/** The queue in the private memory. */
const LAYOUT: VirtqueueLayout = {
  size: QUEUE_SIZE,
  desc: AT.QUEUE,
  avail: AT.QUEUE + VIRTQ_DESC_SIZE * QUEUE_SIZE,
  used: AT.QUEUE + 0x200,
};

/** What {@linkcode warmUpBlkPath} may be told. */
export interface BlkWarmUpOptions {
  /** Synthetic requests to serve (default {@linkcode BLK_WARM_UP_REQUESTS}). */
  readonly requests?: number;
  /** Asked before each request: true ends the warm-up early (the worker is told to stop). */
  readonly stop?: () => boolean;
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
    return serveSynthetic(zeroFd, opts.requests ?? BLK_WARM_UP_REQUESTS, opts.stop);
  } finally {
    close(zeroFd);
  }
}

function serveSynthetic(zeroFd: number, requests: number, stop?: () => boolean): number {
  const memory = GuestMemory.ofSize(AT.SIZE);
  const env: BlkRequestEnv = {
    memory,
    backend: new FdBlockBackend({ path: "/dev/zero", fd: zeroFd, size: 1 << 30, readonly: false }),
    id: new Uint8Array(0),
    name: "virtio-blk warm-up",
    warn: () => {},
  };
  const vq = new Virtqueue(memory, LAYOUT, {
    eventIdx: true, // as Linux negotiates
    indirect: true,
    name: env.name,
  });
  writeIndirectTable(memory);
  const chain = new ChainBuffers();
  let ok = 0;
  for (let i = 0; i < requests && !stop?.(); i++) {
    const type = i & 1 ? VIRTIO_BLK_T.OUT : VIRTIO_BLK_T.IN;
    memory.writeU32(AT.HEADER + VIRTIO_BLK_REQ.TYPE.offset, type);
    memory.writeU32(AT.HEADER + VIRTIO_BLK_REQ.SECTOR.offset, (i % 64) * 128);
    memory.writeU8(AT.STATUS, 0xff);
    publish(memory, i);
    serveAvailable(vq, chain, env, () => false);
    vq.needsNotification();
    if (memory.readU8(AT.STATUS) === 0) ok++;
  }
  return ok;
}

/**
 * Descriptor 0 of the ring points at an indirect table: the header, then
 * {@linkcode BLK_WARM_UP_SEGMENTS} data buffers, then the status byte.
 * {@linkcode publish} sets the data buffers' direction per request.
 */
function writeIndirectTable(memory: GuestMemory): void {
  const desc = (table: number, i: number, addr: number, len: number, flags: number) => {
    const at = table + VIRTQ_DESC_SIZE * i;
    memory.writeU64(at + VIRTQ_DESC.ADDR.offset, BigInt(addr));
    memory.writeU32(at + VIRTQ_DESC.LEN.offset, len);
    memory.writeU16(at + VIRTQ_DESC.FLAGS.offset, flags);
    memory.writeU16(at + VIRTQ_DESC.NEXT.offset, i + 1);
  };
  const entries = BLK_WARM_UP_SEGMENTS + 2;
  desc(AT.TABLE, 0, AT.HEADER, 16, VIRTQ_DESC_F.NEXT);
  for (let k = 0; k < BLK_WARM_UP_SEGMENTS; k++) {
    desc(AT.TABLE, 1 + k, AT.DATA + k * AT.DATA_STRIDE, AT.DATA_LEN, VIRTQ_DESC_F.NEXT);
  }
  desc(AT.TABLE, entries - 1, AT.STATUS, 1, VIRTQ_DESC_F.WRITE);
  desc(LAYOUT.desc, 0, AT.TABLE, VIRTQ_DESC_SIZE * entries, VIRTQ_DESC_F.INDIRECT);
}

/** Make request `i` available: ring slot, then index (head 0 every time). */
function publish(memory: GuestMemory, i: number): void {
  // Data buffers are device-writable for reads (even i), device-readable for writes.
  const write = (i & 1) === 0 ? VIRTQ_DESC_F.WRITE : 0;
  for (let k = 0; k < BLK_WARM_UP_SEGMENTS; k++) {
    memory.writeU16(
      AT.TABLE + VIRTQ_DESC_SIZE * (1 + k) + VIRTQ_DESC.FLAGS.offset,
      VIRTQ_DESC_F.NEXT | write,
    );
  }
  memory.writeU16(LAYOUT.avail + VIRTQ_AVAIL.RING.offset + 2 * (i % QUEUE_SIZE), 0);
  memory.writeU16(LAYOUT.avail + VIRTQ_AVAIL.IDX.offset, (i + 1) & 0xffff);
}
