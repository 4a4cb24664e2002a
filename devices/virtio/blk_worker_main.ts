/**
 * Entry point of the virtio-blk I/O worker (see blk_worker_protocol.ts):
 * waits in `poll(2)` on the control and doorbell eventfds; on a doorbell it
 * takes every available request from the queue, serves it with preadv /
 * pwritev / fdatasync straight on guest RAM, and interrupts the driver when
 * it asks (EVENT_IDX) with KVM_SIGNAL_MSI on the VM fd, or through the VMM
 * thread when the vector has no direct route (masked, INTx). Everything the
 * guest supplies is validated by the same {@linkcode Virtqueue} code as on the
 * VMM thread; a malformed chain breaks the queue and is reported.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { GuestMemory } from "../../kvm/guest_memory.ts";
import { libc, POLLIN } from "../../kvm/libc.ts";
import { RemoteMsiSender } from "../../kvm/remote_msi.ts";
import type { BlkRequestEnv } from "./blk_request.ts";
import { serveAvailable } from "./blk_serve.ts";
import { warmUpBlkPath } from "./blk_warm_up.ts";
import {
  BLK_CMD,
  BLK_FLAG,
  BLK_WORD,
  type BlkWorkerEvent,
  type BlkWorkerInit,
} from "./blk_worker_protocol.ts";
import { FdBlockBackend } from "./fd_block_backend.ts";
import { ChainBuffers, Virtqueue } from "./virtqueue.ts";

/** `struct pollfd`: int fd; short events; short revents. */
const POLLFD = { FD: 0, EVENTS: 4, REVENTS: 6, SIZE: 8 } as const;

const TWO_32 = 0x1_0000_0000;

function post(event: BlkWorkerEvent): void {
  self.postMessage(event);
}

function guestMemory(init: BlkWorkerInit): GuestMemory {
  return new GuestMemory(init.regions.map((r) => ({
    gpa: r.gpa,
    bytes: new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(Deno.UnsafePointer.create(BigInt(r.host))!, r.len),
    ),
  })));
}

function run(init: BlkWorkerInit): void {
  const w = new Int32Array(init.shared);
  const c = libc();
  const memory = guestMemory(init);
  const env: BlkRequestEnv = {
    memory,
    backend: new FdBlockBackend(init.image),
    id: init.id,
    name: init.name,
    warn: (message: string) => post({ type: "warn", message }),
  };
  const sender = init.remoteMsi ? new RemoteMsiSender(init.remoteMsi) : null;
  const counter = new Uint8Array(8);
  const fds = new Uint8Array(2 * POLLFD.SIZE);
  const pfd = new DataView(fds.buffer);
  [init.controlFd, init.doorbellFd].forEach((fd, k) => {
    pfd.setInt32(k * POLLFD.SIZE + POLLFD.FD, fd, true);
    pfd.setInt16(k * POLLFD.SIZE + POLLFD.EVENTS, POLLIN, true);
  });
  let q: Virtqueue | null = null;
  let epoch = 0;
  const chain = new ChainBuffers();

  /** Apply the current command; false once told to stop. */
  const command = (): boolean => {
    const seq = Atomics.load(w, BLK_WORD.CMD_SEQ);
    if (seq === Atomics.load(w, BLK_WORD.ACK_SEQ)) return true;
    const cmd = Atomics.load(w, BLK_WORD.CMD);
    q = null;
    if (cmd === BLK_CMD.ACTIVATE) {
      const gpa = (lo: number, hi: number) =>
        Atomics.load(w, hi) * TWO_32 + (Atomics.load(w, lo) >>> 0);
      const flags = Atomics.load(w, BLK_WORD.FLAGS);
      epoch = Atomics.load(w, BLK_WORD.EPOCH);
      const at = epoch;
      q = new Virtqueue(memory, {
        size: Atomics.load(w, BLK_WORD.Q_SIZE),
        desc: gpa(BLK_WORD.DESC_LO, BLK_WORD.DESC_HI),
        avail: gpa(BLK_WORD.AVAIL_LO, BLK_WORD.AVAIL_HI),
        used: gpa(BLK_WORD.USED_LO, BLK_WORD.USED_HI),
      }, {
        eventIdx: (flags & BLK_FLAG.EVENT_IDX) !== 0,
        indirect: (flags & BLK_FLAG.INDIRECT) !== 0,
        name: init.name,
        onBroken: (reason) => post({ type: "broken", epoch: at, reason }),
      });
    }
    Atomics.store(w, BLK_WORD.ACK_SEQ, seq);
    Atomics.notify(w, BLK_WORD.ACK_SEQ);
    return cmd !== BLK_CMD.STOP;
  };

  /** Interrupt the driver: directly on a valid route, else through the VMM thread. */
  const interrupt = () => {
    Atomics.store(w, BLK_WORD.BUSY, 1);
    let sent = false;
    try {
      const seq = Atomics.load(w, BLK_WORD.MSI_SEQ);
      if (sender && (seq & 1) === 0 && Atomics.load(w, BLK_WORD.MSI_VALID)) {
        const lo = Atomics.load(w, BLK_WORD.MSI_ADDR_LO);
        const hi = Atomics.load(w, BLK_WORD.MSI_ADDR_HI);
        const data = Atomics.load(w, BLK_WORD.MSI_DATA);
        if (Atomics.load(w, BLK_WORD.MSI_SEQ) === seq) {
          sender.send(lo, hi, data); // dropped (as on the VMM thread) while bus mastering is off
          sent = true;
        }
      }
    } catch (e) {
      post({ type: "warn", message: `${init.name}: direct MSI failed: ${errorText(e)}` });
    } finally {
      Atomics.store(w, BLK_WORD.BUSY, 0);
      Atomics.notify(w, BLK_WORD.BUSY);
    }
    if (sent) Atomics.add(w, BLK_WORD.DIRECT_MSIS, 1);
    else {
      Atomics.add(w, BLK_WORD.RELAYED, 1);
      post({ type: "interrupt", epoch });
    }
  };

  /** A command is waiting: stop serving so it is applied soon. */
  const commandPending = () =>
    Atomics.load(w, BLK_WORD.CMD_SEQ) !== Atomics.load(w, BLK_WORD.ACK_SEQ);

  const serve = (vq: Virtqueue) => {
    const served = serveAvailable(vq, chain, env, commandPending);
    if (served) Atomics.add(w, BLK_WORD.REQUESTS, served);
    if (vq.needsNotification()) interrupt();
  };

  // Until the guest's first request, the worker has nothing to do: let V8 optimize the request
  // path meanwhile (blk_warm_up.ts). Only a stop cuts it short; other commands wait for it.
  warmUpBlkPath({
    stop: () => commandPending() && Atomics.load(w, BLK_WORD.CMD) === BLK_CMD.STOP,
    pending: commandPending,
  });
  Atomics.store(w, BLK_WORD.STARTED, 1);
  if (!command()) return;
  for (;;) {
    // A bounded wait: a worker never sits in an uninterruptible FFI call, so it can always be
    // stopped or terminated (a closed eventfd, a process exiting).
    if (c.poll(fds, 2n, POLL_TIMEOUT_MS) < 0) continue; // EINTR
    if (pfd.getInt16(POLLFD.REVENTS, true) !== 0) {
      pfd.setInt16(POLLFD.REVENTS, 0, true);
      c.read(init.controlFd, counter, 8n);
    }
    if (!command()) return;
    if (pfd.getInt16(POLLFD.SIZE + POLLFD.REVENTS, true) !== 0) {
      pfd.setInt16(POLLFD.SIZE + POLLFD.REVENTS, 0, true);
      c.read(init.doorbellFd, counter, 8n);
      if (q) serve(q);
    }
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Longest wait in poll(2) before the worker looks at its commands again. */
const POLL_TIMEOUT_MS = 200;

self.onmessage = (event: MessageEvent<BlkWorkerInit>) => {
  const init = event.data;
  let error: string | undefined;
  try {
    run(init);
  } catch (e) {
    error = errorText(e);
  } finally {
    const w = new Int32Array(init.shared);
    Atomics.store(w, BLK_WORD.STARTED, 2);
    Atomics.store(w, BLK_WORD.ACK_SEQ, Atomics.load(w, BLK_WORD.CMD_SEQ));
    Atomics.notify(w, BLK_WORD.ACK_SEQ);
    post(error === undefined ? { type: "exited" } : { type: "exited", error });
    self.close();
  }
};
