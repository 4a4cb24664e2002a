/**
 * Test harness for virtio devices behind the PCI transport model: register
 * accessors for the common configuration, a recording interrupt sink, and a
 * bring-up that follows Linux's virtio_pci_modern sequence (reset,
 * ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue setup, DRIVER_OK).
 *
 * @module
 */

import { GuestMemory } from "../../kvm/guest_memory.ts";
import type { VirtioDevice } from "../../devices/virtio/device.ts";
import {
  COMMON_CFG,
  type CommonCfgField,
  VIRTIO_BAR_LAYOUT,
} from "../../devices/virtio/pci_layout.ts";
import { STATUS } from "../../devices/virtio/spec.ts";
import { type VirtioInterruptSink, VirtioPciTransport } from "../../devices/virtio/transport.ts";
import { layoutAt, TestDriver } from "./virtio_driver.ts";

/** Records what the transport signals. */
export class RecordingSink implements VirtioInterruptSink {
  /** Pretend MSI-X is on. */
  msixEnabled = false;
  /** Queue vectors signalled. */
  readonly queue: number[] = [];
  /** Config vectors signalled. */
  readonly config: number[] = [];
  /** Last ISR value reported. */
  isr = 0;

  /** Record. */
  signalQueue(vector: number): void {
    this.queue.push(vector);
  }
  /** Record. */
  signalConfig(vector: number): void {
    this.config.push(vector);
  }
  /** Record. */
  isrChanged(isr: number): void {
    this.isr = isr;
  }
}

/** Read a common-config register through the BAR with its natural width. */
export function readReg(t: VirtioPciTransport, f: CommonCfgField): number {
  const { offset, size } = COMMON_CFG[f];
  const data = new Uint8Array(size);
  t.bar.read(VIRTIO_BAR_LAYOUT.COMMON.offset + offset, data);
  return data.reduce((v, b, i) => v + b * 2 ** (8 * i), 0);
}

/** Write a common-config register through the BAR with its natural width. */
export function writeReg(t: VirtioPciTransport, f: CommonCfgField, value: number): void {
  const { offset, size } = COMMON_CFG[f];
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  t.bar.write(VIRTIO_BAR_LAYOUT.COMMON.offset + offset, data);
}

/** The 64-bit device feature word, as a driver reads it. */
export function readDeviceFeatures(t: VirtioPciTransport): bigint {
  writeReg(t, "DEVICE_FEATURE_SELECT", 0);
  const lo = readReg(t, "DEVICE_FEATURE");
  writeReg(t, "DEVICE_FEATURE_SELECT", 1);
  const hi = readReg(t, "DEVICE_FEATURE");
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Write the 64-bit driver feature word. */
export function writeDriverFeatures(t: VirtioPciTransport, f: bigint): void {
  writeReg(t, "DRIVER_FEATURE_SELECT", 0);
  writeReg(t, "DRIVER_FEATURE", Number(f & 0xffff_ffffn));
  writeReg(t, "DRIVER_FEATURE_SELECT", 1);
  writeReg(t, "DRIVER_FEATURE", Number(f >> 32n));
}

/** Program queue `index` at `layout` (select, size, addresses) without enabling it. */
export function setupQueue(
  t: VirtioPciTransport,
  index: number,
  layout: ReturnType<typeof layoutAt>,
) {
  writeReg(t, "QUEUE_SELECT", index);
  writeReg(t, "QUEUE_SIZE", layout.size);
  writeReg(t, "QUEUE_DESC_LO", layout.desc);
  writeReg(t, "QUEUE_DESC_HI", 0);
  writeReg(t, "QUEUE_DRIVER_LO", layout.avail);
  writeReg(t, "QUEUE_DRIVER_HI", 0);
  writeReg(t, "QUEUE_DEVICE_LO", layout.used);
  writeReg(t, "QUEUE_DEVICE_HI", 0);
}

/** A device brought up to DRIVER_OK with every queue enabled. */
export interface Running {
  /** Guest RAM. */
  readonly memory: GuestMemory;
  /** The transport. */
  readonly transport: VirtioPciTransport;
  /** Interrupts seen. */
  readonly sink: RecordingSink;
  /** One test driver per queue. */
  readonly queues: TestDriver[];
  /** Ring the doorbell of queue `index`. */
  kick(index: number): void;
}

/** Bring `device` up like Linux: negotiate `accept` & offered features, queues of `queueSize` (<= max). */
export function bringUp(
  device: VirtioDevice,
  options: { accept?: bigint; queueSize?: number; memorySize?: number } = {},
): Running {
  const memory = GuestMemory.ofSize(options.memorySize ?? 0x20_0000);
  const sink = new RecordingSink();
  const transport = new VirtioPciTransport(device, { memory, interrupts: sink, msixVectors: 4 });
  writeReg(transport, "DEVICE_STATUS", 0);
  writeReg(transport, "DEVICE_STATUS", STATUS.ACKNOWLEDGE);
  writeReg(transport, "DEVICE_STATUS", STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  const offered = readDeviceFeatures(transport);
  writeDriverFeatures(transport, offered & (options.accept ?? offered));
  const s = STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK;
  writeReg(transport, "DEVICE_STATUS", s);
  if (!(readReg(transport, "DEVICE_STATUS") & STATUS.FEATURES_OK)) {
    throw new Error("FEATURES_OK refused");
  }
  const queues: TestDriver[] = [];
  for (let i = 0; i < readReg(transport, "NUM_QUEUES"); i++) {
    writeReg(transport, "QUEUE_SELECT", i);
    const size = Math.min(readReg(transport, "QUEUE_SIZE"), options.queueSize ?? 16);
    const layout = layoutAt(0x1_0000 * (i + 1), size);
    queues.push(new TestDriver(memory, layout));
    setupQueue(transport, i, layout);
    writeReg(transport, "QUEUE_MSIX_VECTOR", i + 1);
    writeReg(transport, "QUEUE_ENABLE", 1);
  }
  writeReg(transport, "MSIX_CONFIG", 0);
  writeReg(transport, "DEVICE_STATUS", s | STATUS.DRIVER_OK);
  const kick = (index: number) =>
    transport.bar.write(transport.notifyOffset(index), new Uint8Array([index, 0]));
  return { memory, transport, sink, queues, kick };
}
