/**
 * The virtio-pci modern transport as a register model, independent of the
 * PCI plumbing: the common configuration structure (feature negotiation,
 * device status machine, reset, queue setup), the ISR status byte (read
 * clears), the notify (doorbell) region and the device configuration region,
 * all inside one BAR laid out by {@linkcode VIRTIO_BAR_LAYOUT}.
 *
 * Interrupts leave through a {@linkcode VirtioInterruptSink}; the transport
 * keeps ISR status and tells the sink whenever it changes (INTx follows it
 * while MSI-X is off). When a queue breaks, the device status gets
 * DEVICE_NEEDS_RESET and, after DRIVER_OK, the driver gets a config interrupt.
 *
 * @module
 */

import type { BusDevice } from "../bus.ts";
import type { Logger } from "../logger.ts";
import { nullLogger } from "../logger.ts";
import type { PciCapabilitySpec } from "../pci_device.ts";
import type { GuestMemory } from "../../kvm/guest_memory.ts";
import type { VirtioDevice, VirtioDeviceContext } from "./device.ts";
import { FieldBlock } from "./field_block.ts";
import {
  COMMON_CFG,
  type CommonCfgField,
  ISR,
  MAX_VIRTIO_QUEUES,
  NOTIFY_OFF_MULTIPLIER,
  VIRTIO_BAR_LAYOUT,
  VIRTIO_MSI_NO_VECTOR,
  virtioPciCapabilities,
} from "./pci_layout.ts";
import { featureBit, hasFeature, MAX_QUEUE_SIZE, STATUS, VIRTIO_F } from "./spec.ts";
import { Virtqueue } from "./virtqueue.ts";

/** How the transport's interrupts reach the guest (MSI-X via KVM, or INTx). */
export interface VirtioInterruptSink {
  /** MSI-X is enabled in the function's capability (queue interrupts then skip ISR). */
  readonly msixEnabled: boolean;
  /** Used buffers on a queue whose MSI-X vector is `vector` (VIRTIO_MSI_NO_VECTOR: none). */
  signalQueue(vector: number): void;
  /** Configuration change (or NEEDS_RESET); `vector` is msix_config. */
  signalConfig(vector: number): void;
  /** ISR status changed to `isr` (set by a signal, or cleared by the driver's read): drive INTx. */
  isrChanged(isr: number): void;
  /**
   * The message `vector` sends now if it may be sent without the sink (MSI-X
   * enabled, entry and function unmasked), else null. Optional (null).
   */
  directMessage?(vector: number): { readonly address: bigint; readonly data: number } | null;
}

/** Options of a transport. */
export interface VirtioTransportOptions {
  /** Guest RAM. */
  readonly memory: GuestMemory;
  /** Interrupt delivery. */
  readonly interrupts: VirtioInterruptSink;
  /** Entries in the function's MSI-X table (0: no MSI-X; vectors then read back as NO_VECTOR). */
  readonly msixVectors: number;
  /** Messages about driver mistakes and broken queues. */
  readonly log?: Logger;
}

/** Features every dvmm virtio device offers on top of its own. */
export const TRANSPORT_FEATURES: bigint = featureBit(VIRTIO_F.VERSION_1) |
  featureBit(VIRTIO_F.EVENT_IDX) | featureBit(VIRTIO_F.INDIRECT_DESC);

/** Driver-visible state of one queue. */
export interface QueueState {
  /** Largest size the device supports. */
  readonly maxSize: number;
  /** Size the driver chose. */
  size: number;
  /** MSI-X vector (or VIRTIO_MSI_NO_VECTOR). */
  msixVector: number;
  /** queue_enable. */
  enabled: boolean;
  /** Descriptor table GPA (low, high dwords). */
  desc: [number, number];
  /** Driver area GPA. */
  driver: [number, number];
  /** Device area GPA. */
  device: [number, number];
  /** The live queue once enabled. */
  vq: Virtqueue | null;
}

/** The virtio-pci modern register model of one device. */
export class VirtioPciTransport {
  /** The backend. */
  readonly device: VirtioDevice;
  /** Features offered: the backend's plus {@linkcode TRANSPORT_FEATURES}. */
  readonly offeredFeatures: bigint;
  /** The whole BAR ({@linkcode VIRTIO_BAR_SIZE} bytes): common, ISR, device and notify regions. */
  readonly bar: BusDevice;
  /** The common configuration region alone. */
  readonly common: BusDevice;
  /** The ISR region alone. */
  readonly isr: BusDevice;
  /** The device configuration region alone. */
  readonly deviceConfig: BusDevice;
  /** The notify region alone. */
  readonly notify: BusDevice;

  readonly #memory: GuestMemory;
  readonly #irq: VirtioInterruptSink;
  readonly #msixVectors: number;
  readonly #log: Logger;
  readonly #queues: QueueState[];
  readonly #commonBlock: FieldBlock<CommonCfgField>;
  #status = 0;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  #driverFeatures = 0n;
  #msixConfig = VIRTIO_MSI_NO_VECTOR;
  #queueSelect = 0;
  #generation = 0;
  #isr = 0;
  #active = false;

  /** Wrap `device`. Throws RangeError for a device with too many or badly sized queues. */
  constructor(device: VirtioDevice, options: VirtioTransportOptions) {
    if (device.queueSizes.length > MAX_VIRTIO_QUEUES) {
      throw new RangeError(
        `${device.name}: ${device.queueSizes.length} queues (max ${MAX_VIRTIO_QUEUES})`,
      );
    }
    for (const size of device.queueSizes) {
      if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1))) {
        throw new RangeError(
          `${device.name}: queue size ${size} is not a power of two <= ${MAX_QUEUE_SIZE}`,
        );
      }
    }
    if (device.configSize > VIRTIO_BAR_LAYOUT.DEVICE.size) {
      throw new RangeError(`${device.name}: config of ${device.configSize} bytes does not fit`);
    }
    this.device = device;
    this.offeredFeatures = device.features | TRANSPORT_FEATURES;
    this.#memory = options.memory;
    this.#irq = options.interrupts;
    this.#msixVectors = options.msixVectors;
    this.#log = options.log ?? nullLogger;
    this.#queues = device.queueSizes.map((maxSize) => ({
      maxSize,
      size: maxSize,
      msixVector: VIRTIO_MSI_NO_VECTOR,
      enabled: false,
      desc: [0, 0],
      driver: [0, 0],
      device: [0, 0],
      vq: null,
    }));
    this.#commonBlock = new FieldBlock(COMMON_CFG, {
      read: (f) => this.#readCommon(f),
      write: (f, v) => this.#writeCommon(f, v),
    });
    this.common = {
      read: (offset, data) => this.#commonBlock.read(offset, data),
      write: (offset, data) => this.#commonBlock.write(offset, data),
    };
    this.isr = {
      read: (offset, data) => {
        data.fill(0);
        if (offset === 0 && data.length > 0) data[0] = this.readIsr();
      },
      write: () => {},
    };
    this.deviceConfig = {
      read: (offset, data) => {
        if (offset >= 0 && offset + data.length <= device.configSize) {
          device.readConfig(offset, data);
        } else data.fill(0);
      },
      write: (offset, data) => {
        if (offset >= 0 && offset + data.length <= device.configSize) {
          device.writeConfig?.(offset, data);
        }
      },
    };
    this.notify = {
      read: (_offset, data) => data.fill(0),
      write: (offset) => {
        if (offset % NOTIFY_OFF_MULTIPLIER === 0) this.kick(offset / NOTIFY_OFF_MULTIPLIER);
      },
    };
    const regions: [number, number, BusDevice][] = [
      [VIRTIO_BAR_LAYOUT.COMMON.offset, VIRTIO_BAR_LAYOUT.COMMON.size, this.common],
      [VIRTIO_BAR_LAYOUT.ISR.offset, VIRTIO_BAR_LAYOUT.ISR.size, this.isr],
      [VIRTIO_BAR_LAYOUT.DEVICE.offset, VIRTIO_BAR_LAYOUT.DEVICE.size, this.deviceConfig],
      [VIRTIO_BAR_LAYOUT.NOTIFY.offset, VIRTIO_BAR_LAYOUT.NOTIFY.size, this.notify],
    ];
    const find = (offset: number) => regions.find(([o, s]) => offset >= o && offset < o + s);
    this.bar = {
      read: (offset, data) => {
        const r = find(offset);
        if (r && offset + data.length <= r[0] + r[1]) r[2].read(offset - r[0], data);
        else data.fill(0);
      },
      write: (offset, data) => {
        const r = find(offset);
        if (r && offset + data.length <= r[0] + r[1]) r[2].write(offset - r[0], data);
      },
    };
  }

  /** The vendor-specific capabilities describing the BAR, for a device whose virtio BAR is `bar`. */
  capabilities(bar: number): PciCapabilitySpec[] {
    return virtioPciCapabilities(bar, this.#queues.length, this.device.configSize);
  }

  /** Offset in the BAR of queue `index`'s doorbell (where to attach its ioeventfd, 2 bytes wide). */
  notifyOffset(index: number): number {
    return VIRTIO_BAR_LAYOUT.NOTIFY.offset + index * NOTIFY_OFF_MULTIPLIER;
  }

  /** The device status byte. */
  get status(): number {
    return this.#status;
  }

  /** The features the driver wrote (valid once FEATURES_OK is set). */
  get driverFeatures(): bigint {
    return this.#driverFeatures;
  }

  /** config_generation. */
  get configGeneration(): number {
    return this.#generation;
  }

  /** The backend is running (DRIVER_OK was accepted and no reset since). */
  get active(): boolean {
    return this.#active;
  }

  /** Number of queues. */
  get numQueues(): number {
    return this.#queues.length;
  }

  /** Driver-visible state of queue `index`. */
  queue(index: number): Readonly<QueueState> | undefined {
    return this.#queues[index];
  }

  /**
   * The driver notified queue `index` (a doorbell write, or its ioeventfd
   * fired). Ignored unless the device is active and the queue enabled.
   */
  kick(index: number): void {
    const q = this.#queues[index];
    if (!this.#active || !q?.enabled || !q.vq || q.vq.isBroken) return;
    this.device.notify(index);
  }

  /** The interrupt routing (MSI-X table, enable, masks) changed: tell an active device. */
  interruptRouteChanged(): void {
    if (this.#active) this.device.interruptRouteChanged?.();
  }

  /** Read and clear ISR status (what a driver read of the ISR byte does). */
  readIsr(): number {
    const value = this.#isr;
    if (value) {
      this.#isr = 0;
      this.#irq.isrChanged(0);
    }
    return value;
  }

  /** Device-side configuration change: bump config_generation and send a config interrupt. */
  configChanged(): void {
    this.#generation = (this.#generation + 1) & 0xff;
    if (this.#status & STATUS.DRIVER_OK) this.#signalConfig();
  }

  /** Reset the device (driver wrote 0 to device_status, or a PCI reset). */
  reset(): void {
    if (this.#active || this.#status) this.device.reset();
    this.#active = false;
    this.#status = 0;
    this.#deviceFeatureSelect = 0;
    this.#driverFeatureSelect = 0;
    this.#driverFeatures = 0n;
    this.#msixConfig = VIRTIO_MSI_NO_VECTOR;
    this.#queueSelect = 0;
    for (const q of this.#queues) {
      q.size = q.maxSize;
      q.msixVector = VIRTIO_MSI_NO_VECTOR;
      q.enabled = false;
      q.desc = [0, 0];
      q.driver = [0, 0];
      q.device = [0, 0];
      q.vq = null;
    }
    if (this.#isr) {
      this.#isr = 0;
      this.#irq.isrChanged(0);
    }
  }

  #selected(): QueueState | undefined {
    return this.#queues[this.#queueSelect];
  }

  #readCommon(f: CommonCfgField): number {
    const q = this.#selected();
    switch (f) {
      case "DEVICE_FEATURE_SELECT":
        return this.#deviceFeatureSelect;
      case "DEVICE_FEATURE":
        return this.#deviceFeatureSelect < 2
          ? Number((this.offeredFeatures >> BigInt(32 * this.#deviceFeatureSelect)) & 0xffff_ffffn)
          : 0;
      case "DRIVER_FEATURE_SELECT":
        return this.#driverFeatureSelect;
      case "DRIVER_FEATURE":
        return this.#driverFeatureSelect < 2
          ? Number((this.#driverFeatures >> BigInt(32 * this.#driverFeatureSelect)) & 0xffff_ffffn)
          : 0;
      case "MSIX_CONFIG":
        return this.#msixConfig;
      case "NUM_QUEUES":
        return this.#queues.length;
      case "DEVICE_STATUS":
        return this.#status;
      case "CONFIG_GENERATION":
        return this.#generation;
      case "QUEUE_SELECT":
        return this.#queueSelect;
      case "QUEUE_SIZE":
        return q ? q.size : 0;
      case "QUEUE_MSIX_VECTOR":
        return q ? q.msixVector : VIRTIO_MSI_NO_VECTOR;
      case "QUEUE_ENABLE":
        return q?.enabled ? 1 : 0;
      case "QUEUE_NOTIFY_OFF":
        return q ? this.#queueSelect : 0;
      case "QUEUE_DESC_LO":
        return q ? q.desc[0] : 0;
      case "QUEUE_DESC_HI":
        return q ? q.desc[1] : 0;
      case "QUEUE_DRIVER_LO":
        return q ? q.driver[0] : 0;
      case "QUEUE_DRIVER_HI":
        return q ? q.driver[1] : 0;
      case "QUEUE_DEVICE_LO":
        return q ? q.device[0] : 0;
      case "QUEUE_DEVICE_HI":
        return q ? q.device[1] : 0;
      case "QUEUE_NOTIFY_DATA":
      case "QUEUE_RESET":
        return 0; // VIRTIO_F_NOTIF_CONFIG_DATA and VIRTIO_F_RING_RESET are not offered
    }
  }

  #writeCommon(f: CommonCfgField, value: number): void {
    const q = this.#selected();
    switch (f) {
      case "DEVICE_FEATURE_SELECT":
        this.#deviceFeatureSelect = value;
        return;
      case "DRIVER_FEATURE_SELECT":
        this.#driverFeatureSelect = value;
        return;
      case "DRIVER_FEATURE": {
        if (this.#status & STATUS.FEATURES_OK || this.#driverFeatureSelect > 1) return;
        const shift = BigInt(32 * this.#driverFeatureSelect);
        this.#driverFeatures = (this.#driverFeatures & ~(0xffff_ffffn << shift)) |
          (BigInt(value >>> 0) << shift);
        return;
      }
      case "MSIX_CONFIG":
        this.#msixConfig = this.#vector(value);
        return;
      case "DEVICE_STATUS":
        this.#writeStatus(value & 0xff);
        return;
      case "QUEUE_SELECT":
        this.#queueSelect = value;
        return;
      case "QUEUE_MSIX_VECTOR":
        if (q) q.msixVector = this.#vector(value);
        this.interruptRouteChanged();
        return;
      case "QUEUE_ENABLE":
        if (q && value === 1 && !q.enabled) this.#enableQueue(this.#queueSelect, q);
        return;
    }
    if (!q || q.enabled) return; // the rest configures a queue, which is fixed once enabled
    switch (f) {
      case "QUEUE_SIZE":
        if (value >= 1 && value <= q.maxSize && (value & (value - 1)) === 0) q.size = value;
        else {this.#log.warn(
            `${this.device.name}: queue ${this.#queueSelect}: size ${value} refused`,
          );}
        return;
      case "QUEUE_DESC_LO":
        q.desc[0] = value;
        return;
      case "QUEUE_DESC_HI":
        q.desc[1] = value;
        return;
      case "QUEUE_DRIVER_LO":
        q.driver[0] = value;
        return;
      case "QUEUE_DRIVER_HI":
        q.driver[1] = value;
        return;
      case "QUEUE_DEVICE_LO":
        q.device[0] = value;
        return;
      case "QUEUE_DEVICE_HI":
        q.device[1] = value;
        return;
    }
  }

  /** A vector the driver may use: in the MSI-X table, else NO_VECTOR (the driver reads that back). */
  #vector(value: number): number {
    return value < this.#msixVectors ? value : VIRTIO_MSI_NO_VECTOR;
  }

  #writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this.#status;
    const kept = old & ~STATUS.DEVICE_NEEDS_RESET;
    if (kept & ~value) {
      this.#log.warn(
        `${this.device.name}: driver tried to clear status bits (0x${old.toString(16)} -> 0x${
          value.toString(16)
        }); ignored`,
      );
      return;
    }
    let next = (value & ~STATUS.DEVICE_NEEDS_RESET) | (old & STATUS.DEVICE_NEEDS_RESET);
    if (next & ~old & STATUS.FEATURES_OK && !this.#featuresAcceptable()) {
      next &= ~STATUS.FEATURES_OK;
    }
    const startNow = (next & ~old & STATUS.DRIVER_OK) !== 0;
    if (startNow && !(next & STATUS.FEATURES_OK)) {
      this.#log.warn(`${this.device.name}: DRIVER_OK without FEATURES_OK; ignored`);
      next &= ~STATUS.DRIVER_OK;
    }
    this.#status = next;
    if (startNow && next & STATUS.DRIVER_OK) this.#activate();
  }

  #featuresAcceptable(): boolean {
    const f = this.#driverFeatures;
    let problem: string | null = null;
    if (f & ~this.offeredFeatures) {
      problem = `features 0x${(f & ~this.offeredFeatures).toString(16)} were not offered`;
    } else if (!hasFeature(f, VIRTIO_F.VERSION_1)) problem = "VERSION_1 is missing";
    else if (this.device.acceptFeatures && !this.device.acceptFeatures(f)) {
      problem = "the device refused them";
    }
    if (problem) {
      this.#log.warn(
        `${this.device.name}: FEATURES_OK refused for 0x${f.toString(16)}: ${problem}`,
      );
    }
    return problem === null;
  }

  #enableQueue(index: number, q: QueueState): void {
    const gpa = ([lo, hi]: [number, number]) => hi * 0x1_0000_0000 + lo;
    q.enabled = true;
    q.vq = new Virtqueue(this.#memory, {
      size: q.size,
      desc: gpa(q.desc),
      avail: gpa(q.driver),
      used: gpa(q.device),
    }, {
      eventIdx: hasFeature(this.#driverFeatures, VIRTIO_F.EVENT_IDX),
      indirect: hasFeature(this.#driverFeatures, VIRTIO_F.INDIRECT_DESC),
      name: `${this.device.name} queue ${index}`,
      onBroken: (reason) => this.#queueBroken(reason),
    });
  }

  #queueBroken(reason: string): void {
    this.#log.warn(`${reason}; device needs reset`);
    if (this.#status & STATUS.DEVICE_NEEDS_RESET) return;
    this.#status |= STATUS.DEVICE_NEEDS_RESET;
    if (this.#status & STATUS.DRIVER_OK) this.#signalConfig();
  }

  #activate(): void {
    const ctx: VirtioDeviceContext = {
      memory: this.#memory,
      features: this.#driverFeatures,
      queue: (i) => (this.#queues[i]?.enabled ? this.#queues[i].vq : null),
      signalUsed: (i) => {
        const q = this.#queues[i];
        if (this.#active && q?.vq?.needsNotification()) this.#signalQueue(q);
      },
      configChanged: () => this.configChanged(),
      interruptQueue: (i) => {
        const q = this.#queues[i];
        if (this.#active && q?.vq && !q.vq.isBroken) this.#signalQueue(q);
      },
      queueMessage: (i) => {
        const q = this.#queues[i];
        if (!this.#active || !q || !this.#irq.msixEnabled) return null;
        if (q.msixVector === VIRTIO_MSI_NO_VECTOR) return null;
        return this.#irq.directMessage?.(q.msixVector) ?? null;
      },
    };
    this.#active = true;
    this.device.activate(ctx);
    // Buffers made available before DRIVER_OK raised no kick the device saw.
    this.#queues.forEach((_, i) => this.kick(i));
  }

  #signalQueue(q: QueueState): void {
    if (!this.#irq.msixEnabled) this.#setIsr(ISR.QUEUE);
    this.#irq.signalQueue(q.msixVector);
  }

  #signalConfig(): void {
    this.#setIsr(ISR.CONFIG);
    this.#irq.signalConfig(this.#msixConfig);
  }

  #setIsr(bits: number): void {
    this.#isr |= bits;
    this.#irq.isrChanged(this.#isr);
  }
}
