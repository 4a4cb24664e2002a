/**
 * Serving one virtio-blk request chain (virtio 1.2 §5.2.6): parse the header,
 * move the data between guest buffers and a {@linkcode BlockBackend}, write
 * the status byte and return the chain to the used ring. Shared by the
 * VMM-thread path of {@linkcode VirtioBlk} and its I/O worker.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import {
  SECTOR_SIZE,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_REQ,
  VIRTIO_BLK_REQ_HEADER_SIZE,
  VIRTIO_BLK_S,
  VIRTIO_BLK_T,
} from "./blk_spec.ts";
import { type BlockBackend, readIntoGuest, writeFromGuest } from "./block_backend.ts";
import type { GuestRanges } from "./guest_ranges.ts";
import type { ChainBuffers, Virtqueue } from "./virtqueue.ts";

/** What serving a request needs. */
export interface BlkRequestEnv {
  /** Guest RAM. */
  readonly memory: GuestMemory;
  /** The storage. */
  readonly backend: BlockBackend;
  /** GET_ID answer (at most {@linkcode VIRTIO_BLK_ID_BYTES}). */
  readonly id: Uint8Array;
  /** Name for messages. */
  readonly name: string;
  /** Reports failed requests. */
  warn(message: string): void;
}

/** Header scratch for a header split across buffers (one request at a time per thread). */
const header = new Uint8Array(VIRTIO_BLK_REQ_HEADER_SIZE);
const headerView = new DataView(header.buffer);

/**
 * Serve `chain` (just taken from `q` with {@linkcode Virtqueue.popInto}; its
 * ranges are consumed) and push it back. A chain too short for a header and a
 * status byte breaks the queue (it is still released).
 */
export function serveBlkRequest(env: BlkRequestEnv, q: Virtqueue, chain: ChainBuffers): void {
  const readable = chain.readable, writable = chain.writable;
  if (readable.total < VIRTIO_BLK_REQ_HEADER_SIZE || writable.total < 1) {
    q.markBroken(
      `request ${chain.head}: needs a ${VIRTIO_BLK_REQ_HEADER_SIZE}-byte header and a status byte`,
    );
    q.push(chain.head, 0); // releases it; a broken queue's used ring is left alone
    return;
  }
  const { memory, backend } = env;
  let type: number, sectorLo: number, sectorHi: number;
  if (readable.len(0) >= VIRTIO_BLK_REQ_HEADER_SIZE) { // the usual case: one header buffer
    const at = readable.gpa(0);
    type = memory.readU32(at + VIRTIO_BLK_REQ.TYPE.offset);
    sectorLo = memory.readU32(at + VIRTIO_BLK_REQ.SECTOR.offset);
    sectorHi = memory.readU32(at + VIRTIO_BLK_REQ.SECTOR.offset + 4);
  } else {
    gather(memory, readable, header);
    type = headerView.getUint32(VIRTIO_BLK_REQ.TYPE.offset, true);
    sectorLo = headerView.getUint32(VIRTIO_BLK_REQ.SECTOR.offset, true);
    sectorHi = headerView.getUint32(VIRTIO_BLK_REQ.SECTOR.offset + 4, true);
  }
  readable.dropFront(VIRTIO_BLK_REQ_HEADER_SIZE);
  // The status byte is the chain's last writable byte (in its last non-empty buffer).
  let last = writable.count - 1;
  while (writable.len(last) === 0) last--;
  const statusAt = writable.gpa(last) + writable.len(last) - 1;
  writable.dropBack(1);
  const dataIn = writable.total;
  let written = 0;
  let status: number;
  try {
    switch (type) {
      case VIRTIO_BLK_T.IN: {
        const at = transferOffset(env, sectorHi, sectorLo, dataIn, "read");
        if (at === null) status = VIRTIO_BLK_S.IOERR;
        else {
          readIntoGuest(backend, at, memory, writable);
          written = dataIn;
          status = VIRTIO_BLK_S.OK;
        }
        break;
      }
      case VIRTIO_BLK_T.OUT: {
        const at = backend.readonly
          ? null
          : transferOffset(env, sectorHi, sectorLo, readable.total, "write");
        if (at === null) status = VIRTIO_BLK_S.IOERR;
        else {
          writeFromGuest(backend, at, memory, readable);
          status = VIRTIO_BLK_S.OK;
        }
        break;
      }
      case VIRTIO_BLK_T.FLUSH:
        backend.flush();
        status = VIRTIO_BLK_S.OK;
        break;
      case VIRTIO_BLK_T.GET_ID:
        written = scatter(
          memory,
          env.id.subarray(0, Math.min(dataIn, VIRTIO_BLK_ID_BYTES)),
          writable,
        );
        status = VIRTIO_BLK_S.OK;
        break;
      default:
        status = VIRTIO_BLK_S.UNSUPP;
    }
  } catch (e) {
    env.warn(
      `${env.name}: request type ${type} sector ${sectorOf(sectorHi, sectorLo)} failed: ${
        e instanceof Error ? e.message : String(e)
      }`,
    );
    status = VIRTIO_BLK_S.IOERR;
  }
  memory.writeU8(statusAt, status);
  q.push(chain.head, (status === VIRTIO_BLK_S.OK ? written : 0) + 1);
}

/** Copy the first bytes of `ranges` into `into` (up to its length); returns how many. */
function gather(memory: GuestMemory, ranges: GuestRanges, into: Uint8Array): number {
  let done = 0;
  for (let k = 0; k < ranges.count && done < into.length; k++) {
    const n = Math.min(ranges.len(k), into.length - done);
    into.set(memory.slice(ranges.gpa(k), n), done);
    done += n;
  }
  return done;
}

/** Copy `data` into the first bytes of `ranges` (as much as fits); returns how many. */
function scatter(memory: GuestMemory, data: Uint8Array, ranges: GuestRanges): number {
  let done = 0;
  for (let k = 0; k < ranges.count && done < data.length; k++) {
    const n = Math.min(ranges.len(k), data.length - done);
    memory.write(ranges.gpa(k), data.subarray(done, done + n));
    done += n;
  }
  return done;
}

/** The sector as a bigint (for messages). */
function sectorOf(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * Byte offset of a `length`-byte transfer at sector `hi:lo`, or null (logged)
 * if it is not whole sectors or does not lie inside the image.
 */
function transferOffset(
  env: BlkRequestEnv,
  hi: number,
  lo: number,
  length: number,
  what: string,
): number | null {
  const size = env.backend.size;
  // hi < 2^12 keeps sector * 512 below 2^53 (exact as a number); larger is past any image.
  const at = hi < 0x1000 ? (hi * 0x1_0000_0000 + lo) * SECTOR_SIZE : Infinity;
  if (length % SECTOR_SIZE !== 0 || at + length > size) {
    env.warn(
      `${env.name}: ${what} of ${length} bytes at sector ${
        sectorOf(hi, lo)
      } is outside the ${size}-byte image or not whole sectors`,
    );
    return null;
  }
  return at;
}
