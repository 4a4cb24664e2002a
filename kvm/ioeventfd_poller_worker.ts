/**
 * Entry point of the {@linkcode IoeventfdPoller} worker: blocks in `poll(2)`
 * on the control eventfd and every active slot's eventfd; for each one that
 * fired, reads its counter, marks the slot pending and rings the shared bell.
 * On a control wake-up it re-reads the slot table, closes the fds of slots
 * being removed (freeing them), and exits when asked to stop.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { close, libc, POLLIN } from "./libc.ts";
import {
  POLLER_SLOTS,
  POLLER_WORD,
  type PollerInit,
  SLOT_STATE,
  slotWords,
} from "./ioeventfd_poller.ts";

/** `struct pollfd`: int fd; short events; short revents. */
const POLLFD = { FD: 0, EVENTS: 4, REVENTS: 6, SIZE: 8 } as const;

function pollLoop(init: PollerInit): void {
  const w = new Int32Array(init.shared);
  const counter = new Uint8Array(8);
  const c = libc();
  let slots: number[] = [];
  let fds = new Uint8Array(POLLFD.SIZE);
  let view = new DataView(fds.buffer);

  const reload = () => {
    slots = [];
    for (let i = 0; i < POLLER_SLOTS; i++) {
      const at = slotWords(i);
      const state = Atomics.load(w, at.state);
      if (state === SLOT_STATE.CLOSING) {
        close(Atomics.load(w, at.fd));
        Atomics.store(w, at.fd, -1);
        Atomics.store(w, at.state, SLOT_STATE.FREE);
      } else if (state === SLOT_STATE.ACTIVE) slots.push(i);
    }
    fds = new Uint8Array(POLLFD.SIZE * (slots.length + 1));
    view = new DataView(fds.buffer);
    const set = (k: number, fd: number) => {
      view.setInt32(k * POLLFD.SIZE + POLLFD.FD, fd, true);
      view.setInt16(k * POLLFD.SIZE + POLLFD.EVENTS, POLLIN, true);
    };
    set(0, init.controlFd);
    slots.forEach((s, k) => set(k + 1, Atomics.load(w, slotWords(s).fd)));
  };

  reload();
  for (;;) {
    const n = c.poll(fds, BigInt(slots.length + 1), -1);
    if (n < 0) continue; // EINTR
    let fired = false;
    for (let k = 1; k <= slots.length; k++) {
      if (view.getInt16(k * POLLFD.SIZE + POLLFD.REVENTS, true) === 0) continue;
      view.setInt16(k * POLLFD.SIZE + POLLFD.REVENTS, 0, true);
      c.read(view.getInt32(k * POLLFD.SIZE + POLLFD.FD, true), counter, 8n);
      Atomics.store(w, slotWords(slots[k - 1]).pending, 1);
      fired = true;
    }
    if (fired) {
      Atomics.add(w, POLLER_WORD.WAKES, 1);
      Atomics.add(w, POLLER_WORD.BELL, 1);
      Atomics.notify(w, POLLER_WORD.BELL);
    }
    if (view.getInt16(POLLFD.REVENTS, true) !== 0) {
      view.setInt16(POLLFD.REVENTS, 0, true);
      c.read(init.controlFd, counter, 8n);
      if (Atomics.load(w, POLLER_WORD.STOP)) break;
      reload();
    }
  }
  for (let i = 0; i < POLLER_SLOTS; i++) {
    const at = slotWords(i);
    if (Atomics.load(w, at.state) !== SLOT_STATE.FREE) close(Atomics.load(w, at.fd));
    Atomics.store(w, at.state, SLOT_STATE.FREE);
  }
}

self.onmessage = (event: MessageEvent<PollerInit>) => {
  try {
    pollLoop(event.data);
  } finally {
    self.postMessage("exited");
    self.close();
  }
};
