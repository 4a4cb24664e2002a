/**
 * The shared-memory protocol between {@linkcode BlkWorker} (VMM thread) and
 * its worker (blk_worker_main.ts). The worker blocks in `poll(2)` on a control
 * eventfd and the queue's doorbell eventfd, so it takes no messages once
 * started: commands and the interrupt route live in shared Int32 words, and
 * the VMM thread writes the control eventfd after changing them.
 *
 * Commands are states (the last one wins): the VMM thread stores the
 * command and its parameters, bumps CMD_SEQ and pokes; the worker applies the
 * current command and stores ACK_SEQ = CMD_SEQ. RESET and STOP are waited for,
 * so no guest memory access happens after they return.
 *
 * The interrupt route (the queue's MSI-X message while it may be sent
 * directly) is a seqlock: MSI_SEQ is odd while the VMM thread rewrites it.
 * The worker sets BUSY around reading it and sending; the VMM thread, after
 * invalidating the route, waits for BUSY to clear, so no message goes out on a
 * route once the guest masked it.
 *
 * @module
 */

import type { PciRemoteMsi } from "../pci_device.ts";
import type { SharedImage } from "./fd_block_backend.ts";

/** Int32 word indices of the shared block. */
export const BLK_WORD = {
  /** Bumped by the VMM thread for each command. */
  CMD_SEQ: 0,
  /** CMD_SEQ value the worker applied last. */
  ACK_SEQ: 1,
  /** The current command ({@linkcode BLK_CMD}). */
  CMD: 2,
  /** Queue size (ACTIVATE). */
  Q_SIZE: 3,
  /** Descriptor table GPA, low and high dwords. */
  DESC_LO: 4,
  DESC_HI: 5,
  /** Available ring GPA. */
  AVAIL_LO: 6,
  AVAIL_HI: 7,
  /** Used ring GPA. */
  USED_LO: 8,
  USED_HI: 9,
  /** {@linkcode BLK_FLAG} bits. */
  FLAGS: 10,
  /** Activation number (messages from the worker carry it). */
  EPOCH: 11,
  /** Seqlock of the route: odd while it is rewritten. */
  MSI_SEQ: 12,
  /** Non-zero while the route below may be used. */
  MSI_VALID: 13,
  MSI_ADDR_LO: 14,
  MSI_ADDR_HI: 15,
  MSI_DATA: 16,
  /** 1 while the worker reads the route and sends on it. */
  BUSY: 17,
  /** Set by the worker once its loop runs. */
  STARTED: 18,
  /** Requests served (statistics). */
  REQUESTS: 19,
  /** Interrupts sent directly (statistics). */
  DIRECT_MSIS: 20,
  /** Interrupts handed to the VMM thread (statistics). */
  RELAYED: 21,
} as const;

/** Bytes of the shared block. */
export const BLK_SHARED_BYTES = 32 * 4;

/** Commands. */
export const BLK_CMD = { IDLE: 0, ACTIVATE: 1, RESET: 2, STOP: 3 } as const;

/** FLAGS bits. */
export const BLK_FLAG = { EVENT_IDX: 1, INDIRECT: 2 } as const;

/** Where guest RAM is in this process (structured-cloneable). */
export interface SharedRegion {
  /** GPA of the first byte. */
  readonly gpa: number;
  /** Host address. */
  readonly host: number;
  /** Length in bytes. */
  readonly len: number;
}

/** The one message that starts the worker. */
export interface BlkWorkerInit {
  /** {@linkcode BLK_SHARED_BYTES} of shared words. */
  readonly shared: SharedArrayBuffer;
  /** Control eventfd. */
  readonly controlFd: number;
  /** Doorbell eventfd of queue 0. */
  readonly doorbellFd: number;
  /** Guest RAM. */
  readonly regions: readonly SharedRegion[];
  /** The image. */
  readonly image: SharedImage;
  /** GET_ID answer. */
  readonly id: Uint8Array;
  /** Device name for messages. */
  readonly name: string;
  /** Direct MSI delivery, or null (every interrupt is relayed). */
  readonly remoteMsi: PciRemoteMsi | null;
}

/** Messages from the worker. */
export type BlkWorkerEvent =
  /** Interrupt the driver for the queue (no direct route). */
  | { readonly type: "interrupt"; readonly epoch: number }
  /** The queue broke (the guest handed in something malformed). */
  | { readonly type: "broken"; readonly epoch: number; readonly reason: string }
  /** A request failed on the host. */
  | { readonly type: "warn"; readonly message: string }
  /** The worker loop ended (after STOP, or on an error: `error` says). */
  | { readonly type: "exited"; readonly error?: string };
