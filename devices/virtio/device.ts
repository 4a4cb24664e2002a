/**
 * The contract between a virtio transport and a device backend (blk, rng,
 * console, ...). The transport owns feature negotiation, the device status
 * machine, queue setup and interrupts; the backend declares its type, queues,
 * feature bits and configuration space, and processes its queues once the
 * driver has set DRIVER_OK.
 *
 * @module
 */

import type { GuestMemory } from "../../kvm/guest_memory.ts";
import type { Virtqueue } from "./virtqueue.ts";

/** What an activated backend gets from the transport. */
export interface VirtioDeviceContext {
  /** Guest RAM (buffers of popped chains lie inside it). */
  readonly memory: GuestMemory;
  /** The negotiated feature bits (device-specific and transport bits). */
  readonly features: bigint;
  /** The queue at `index` if the driver enabled it, else null. */
  queue(index: number): Virtqueue | null;
  /**
   * Chains were pushed to queue `index`: interrupt the driver unless it
   * suppressed the notification (used_event / NO_INTERRUPT).
   */
  signalUsed(index: number): void;
  /** The device configuration changed: bump config_generation and send a config interrupt. */
  configChanged(): void;
  /**
   * Interrupt the driver for queue `index` now, unconditionally (for a device
   * that applied notification suppression itself, e.g. in a worker).
   */
  interruptQueue(index: number): void;
  /**
   * The MSI-X message queue `index` interrupts with, while it may be sent
   * directly (MSI-X enabled, a vector assigned, neither it nor the function
   * masked); null otherwise (use {@linkcode interruptQueue}). The device's
   * {@linkcode VirtioDevice.interruptRouteChanged} runs whenever this may change.
   */
  queueMessage(index: number): { readonly address: bigint; readonly data: number } | null;
}

/** A virtio device backend, independent of the transport (PCI, MMIO). */
export interface VirtioDevice {
  /** Device type (VIRTIO_ID.*). */
  readonly type: number;
  /** Short name for messages (`virtio-blk`). */
  readonly name: string;
  /** Maximum size of each queue (powers of two); the length is the number of queues. */
  readonly queueSizes: readonly number[];
  /** Device-specific feature bits offered (the transport adds VERSION_1, EVENT_IDX, INDIRECT_DESC). */
  readonly features: bigint;
  /** Size of the device-specific configuration structure in bytes (0 if none). */
  readonly configSize: number;
  /** Read `data.length` bytes of device configuration at `offset` (inside `configSize`). */
  readConfig(offset: number, data: Uint8Array): void;
  /** A driver write to device configuration (inside `configSize`); default: ignored. */
  writeConfig?(offset: number, data: Uint8Array): void;
  /** May the driver use these features? Default: any subset of what was offered. */
  acceptFeatures?(features: bigint): boolean;
  /** The driver set DRIVER_OK: start processing with the enabled queues. */
  activate(ctx: VirtioDeviceContext): void;
  /** The driver notified (kicked) queue `index` (only while active). */
  notify(index: number): void;
  /** The driver reset the device: forget the context and all queue state. */
  reset(): void;
  /** The machine ends: release host resources (files, TAP devices); nothing is called after it. */
  close?(): void;
  /**
   * An eventfd the device waits on for queue `index`'s doorbell (in its own
   * worker), or null: the transport then registers it as the doorbell's
   * ioeventfd. {@linkcode notify} still runs for doorbells that trap.
   */
  doorbellFd?(index: number): number | null;
  /** While active: what {@linkcode VirtioDeviceContext.queueMessage} returns may have changed. */
  interruptRouteChanged?(): void;
}
