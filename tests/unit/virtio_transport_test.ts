/**
 * virtio-pci modern transport: capability bytes, feature negotiation, the
 * device status machine, reset, queue setup, notify, ISR, NEEDS_RESET on a
 * broken queue, and MSI-X table masking / pending delivery.
 */
import assert from "node:assert/strict";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { RecordingIrqLine } from "../../devices/irq.ts";
import type { VirtioDevice, VirtioDeviceContext } from "../../devices/virtio/device.ts";
import { VirtioPciInterrupts } from "../../devices/virtio/interrupts.ts";
import {
  type MsiMessage,
  MSIX_CAP_ID,
  MSIX_CONTROL,
  MSIX_ENTRY_SIZE,
  MsixTable,
} from "../../devices/msix.ts";
import {
  COMMON_CFG_SIZE,
  ISR,
  NOTIFY_OFF_MULTIPLIER,
  PCI_CAP_ID_VENDOR,
  VIRTIO_BAR_LAYOUT,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_CAP_TYPE,
} from "../../devices/virtio/pci_layout.ts";
import { featureBit, STATUS, VIRTIO_F } from "../../devices/virtio/spec.ts";
import { TRANSPORT_FEATURES, VirtioPciTransport } from "../../devices/virtio/transport.ts";
import {
  bringUp,
  readDeviceFeatures,
  readReg,
  RecordingSink,
  setupQueue,
  writeDriverFeatures,
  writeReg,
} from "./virtio_harness.ts";
import { layoutAt } from "./virtio_driver.ts";

/** A device that records what the transport does to it. */
class FakeDevice implements VirtioDevice {
  readonly type = 99;
  readonly name = "fake";
  readonly queueSizes = [8, 16];
  readonly features = featureBit(3);
  readonly configSize = 8;
  readonly config = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  readonly events: string[] = [];
  ctx: VirtioDeviceContext | null = null;

  readConfig(offset: number, data: Uint8Array) {
    data.set(this.config.subarray(offset, offset + data.length));
  }
  writeConfig(offset: number, data: Uint8Array) {
    this.config.set(data, offset);
  }
  activate(ctx: VirtioDeviceContext) {
    this.ctx = ctx;
    this.events.push(`activate 0x${ctx.features.toString(16)}`);
  }
  notify(index: number) {
    this.events.push(`notify ${index}`);
  }
  reset() {
    this.ctx = null;
    this.events.push("reset");
  }
}

function make(msixVectors = 4) {
  const memory = GuestMemory.ofSize(0x10_0000);
  const sink = new RecordingSink();
  const device = new FakeDevice();
  const t = new VirtioPciTransport(device, { memory, interrupts: sink, msixVectors });
  return { memory, sink, device, t };
}

const DRV = STATUS.ACKNOWLEDGE | STATUS.DRIVER;

Deno.test("transport: capabilities describe common, notify, ISR and device regions in the BAR", () => {
  const { t } = make();
  const caps = t.capabilities(4);
  assert.equal(caps.length, 4);
  for (const c of caps) assert.equal(c.id, PCI_CAP_ID_VENDOR);
  // body starts at capability byte 2: cap_len, cfg_type, bar, id, pad, pad, offset(4), length(4)
  const decode = (body: readonly number[]) => {
    const b = new Uint8Array(body);
    const v = new DataView(b.buffer);
    return {
      len: b[0],
      type: b[1],
      bar: b[2],
      offset: v.getUint32(6, true),
      length: v.getUint32(10, true),
    };
  };
  assert.deepEqual(decode(caps[0].body!), {
    len: 16,
    type: VIRTIO_PCI_CAP_TYPE.COMMON_CFG,
    bar: 4,
    offset: VIRTIO_BAR_LAYOUT.COMMON.offset,
    length: COMMON_CFG_SIZE,
  });
  const notify = decode(caps[1].body!);
  assert.equal(caps[1].size, 20);
  assert.equal(notify.type, VIRTIO_PCI_CAP_TYPE.NOTIFY_CFG);
  assert.equal(notify.offset, VIRTIO_BAR_LAYOUT.NOTIFY.offset);
  assert.equal(notify.length, 2 * NOTIFY_OFF_MULTIPLIER);
  assert.equal(
    new DataView(new Uint8Array(caps[1].body!).buffer).getUint32(14, true),
    NOTIFY_OFF_MULTIPLIER,
  );
  assert.equal(decode(caps[2].body!).type, VIRTIO_PCI_CAP_TYPE.ISR_CFG);
  assert.deepEqual(decode(caps[3].body!), {
    len: 16,
    type: VIRTIO_PCI_CAP_TYPE.DEVICE_CFG,
    bar: 4,
    offset: VIRTIO_BAR_LAYOUT.DEVICE.offset,
    length: 8,
  });
});

Deno.test("transport: device features offer VERSION_1, EVENT_IDX, INDIRECT_DESC and the device's own", () => {
  const { t } = make();
  assert.equal(readDeviceFeatures(t), TRANSPORT_FEATURES | featureBit(3));
  writeReg(t, "DEVICE_FEATURE_SELECT", 2);
  assert.equal(readReg(t, "DEVICE_FEATURE"), 0);
  assert.equal(readReg(t, "NUM_QUEUES"), 2);
});

Deno.test("transport: FEATURES_OK is accepted for a subset with VERSION_1", () => {
  const { t } = make();
  writeReg(t, "DEVICE_STATUS", DRV);
  writeDriverFeatures(t, featureBit(VIRTIO_F.VERSION_1) | featureBit(3));
  writeReg(t, "DEVICE_STATUS", DRV | STATUS.FEATURES_OK);
  assert.equal(readReg(t, "DEVICE_STATUS"), DRV | STATUS.FEATURES_OK);
  // Features are frozen after FEATURES_OK.
  writeDriverFeatures(t, 0n);
  assert.equal(t.driverFeatures, featureBit(VIRTIO_F.VERSION_1) | featureBit(3));
});

Deno.test("transport: FEATURES_OK is refused without VERSION_1 or with unoffered bits", () => {
  for (const f of [featureBit(3), featureBit(VIRTIO_F.VERSION_1) | featureBit(7)]) {
    const { t } = make();
    writeReg(t, "DEVICE_STATUS", DRV);
    writeDriverFeatures(t, f);
    writeReg(t, "DEVICE_STATUS", DRV | STATUS.FEATURES_OK);
    assert.equal(readReg(t, "DEVICE_STATUS"), DRV, `features 0x${f.toString(16)}`);
  }
});

Deno.test("transport: DRIVER_OK activates the device only after FEATURES_OK", () => {
  const { t, device } = make();
  writeReg(t, "DEVICE_STATUS", DRV);
  writeReg(t, "DEVICE_STATUS", DRV | STATUS.DRIVER_OK);
  assert.equal(readReg(t, "DEVICE_STATUS"), DRV);
  assert.equal(t.active, false);
  writeDriverFeatures(t, featureBit(VIRTIO_F.VERSION_1));
  writeReg(t, "DEVICE_STATUS", DRV | STATUS.FEATURES_OK);
  writeReg(t, "DEVICE_STATUS", DRV | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  assert.equal(t.active, true);
  assert.deepEqual(device.events, ["activate 0x100000000"]);
});

Deno.test("transport: a status write clearing bits is ignored", () => {
  const { t } = make();
  writeReg(t, "DEVICE_STATUS", DRV);
  writeReg(t, "DEVICE_STATUS", STATUS.ACKNOWLEDGE);
  assert.equal(readReg(t, "DEVICE_STATUS"), DRV);
});

Deno.test("transport: writing 0 to device_status resets the device and every queue", () => {
  const { device } = make();
  const run = bringUp(device);
  const t = run.transport;
  writeReg(t, "QUEUE_SELECT", 1);
  assert.equal(readReg(t, "QUEUE_ENABLE"), 1);
  assert.equal(readReg(t, "QUEUE_MSIX_VECTOR"), 2);
  writeReg(t, "DEVICE_STATUS", 0);
  assert.equal(readReg(t, "DEVICE_STATUS"), 0);
  assert.equal(t.active, false);
  assert.equal(t.driverFeatures, 0n);
  assert.equal(readReg(t, "MSIX_CONFIG"), VIRTIO_MSI_NO_VECTOR);
  for (const i of [0, 1]) {
    writeReg(t, "QUEUE_SELECT", i);
    assert.equal(readReg(t, "QUEUE_ENABLE"), 0);
    assert.equal(readReg(t, "QUEUE_SIZE"), device.queueSizes[i]);
    assert.equal(readReg(t, "QUEUE_MSIX_VECTOR"), VIRTIO_MSI_NO_VECTOR);
    assert.equal(readReg(t, "QUEUE_DESC_LO"), 0);
    assert.equal(t.queue(i)!.vq, null);
  }
  assert.equal(device.events.at(-1), "reset");
});

Deno.test("transport: queue registers program the queue; size must be a power of two <= max", () => {
  const { t } = make();
  writeReg(t, "QUEUE_SELECT", 1);
  assert.equal(readReg(t, "QUEUE_SIZE"), 16);
  assert.equal(readReg(t, "QUEUE_NOTIFY_OFF"), 1);
  writeReg(t, "QUEUE_SIZE", 12);
  assert.equal(readReg(t, "QUEUE_SIZE"), 16);
  writeReg(t, "QUEUE_SIZE", 32);
  assert.equal(readReg(t, "QUEUE_SIZE"), 16);
  writeReg(t, "QUEUE_SIZE", 4);
  assert.equal(readReg(t, "QUEUE_SIZE"), 4);
  writeReg(t, "QUEUE_DESC_LO", 0x1234_5000);
  writeReg(t, "QUEUE_DESC_HI", 0x1);
  assert.equal(readReg(t, "QUEUE_DESC_LO"), 0x1234_5000);
  assert.equal(readReg(t, "QUEUE_DESC_HI"), 1);
  // A 64-bit write in one access (some drivers) lands in both halves.
  t.bar.write(0x30, new Uint8Array([0, 0x20, 0, 0, 2, 0, 0, 0]));
  assert.equal(readReg(t, "QUEUE_DEVICE_LO"), 0x2000);
  assert.equal(readReg(t, "QUEUE_DEVICE_HI"), 2);
  // Out-of-range queue_select: size reads 0, writes are ignored.
  writeReg(t, "QUEUE_SELECT", 5);
  assert.equal(readReg(t, "QUEUE_SIZE"), 0);
  writeReg(t, "QUEUE_SIZE", 2);
  assert.equal(readReg(t, "QUEUE_SIZE"), 0);
});

Deno.test("transport: queue configuration is fixed once the queue is enabled", () => {
  const { t } = make();
  const layout = layoutAt(0x1000, 8);
  setupQueue(t, 0, layout);
  writeReg(t, "QUEUE_ENABLE", 1);
  writeReg(t, "QUEUE_SIZE", 4);
  writeReg(t, "QUEUE_DESC_LO", 0x8000);
  assert.equal(readReg(t, "QUEUE_SIZE"), 8);
  assert.equal(readReg(t, "QUEUE_DESC_LO"), layout.desc);
  writeReg(t, "QUEUE_ENABLE", 0);
  assert.equal(readReg(t, "QUEUE_ENABLE"), 1, "disabling needs RING_RESET, not offered");
  assert.deepEqual(t.queue(0)!.vq!.layout, layout);
});

Deno.test("transport: MSI-X vectors outside the table read back as NO_VECTOR", () => {
  const { t } = make(2);
  writeReg(t, "MSIX_CONFIG", 1);
  assert.equal(readReg(t, "MSIX_CONFIG"), 1);
  writeReg(t, "MSIX_CONFIG", 2);
  assert.equal(readReg(t, "MSIX_CONFIG"), VIRTIO_MSI_NO_VECTOR);
  writeReg(t, "QUEUE_MSIX_VECTOR", 7);
  assert.equal(readReg(t, "QUEUE_MSIX_VECTOR"), VIRTIO_MSI_NO_VECTOR);
  const none = make(0).t;
  writeReg(none, "QUEUE_MSIX_VECTOR", 0);
  assert.equal(readReg(none, "QUEUE_MSIX_VECTOR"), VIRTIO_MSI_NO_VECTOR);
});

Deno.test("transport: doorbell writes notify the device's queue only while active", () => {
  const device = new FakeDevice();
  const run = bringUp(device);
  device.events.length = 0;
  run.kick(1);
  run.kick(0);
  run.transport.bar.write(
    VIRTIO_BAR_LAYOUT.NOTIFY.offset + 2 * NOTIFY_OFF_MULTIPLIER,
    new Uint8Array(2),
  );
  run.transport.bar.write(VIRTIO_BAR_LAYOUT.NOTIFY.offset + 1, new Uint8Array(1));
  assert.deepEqual(device.events, ["notify 1", "notify 0"]);
  writeReg(run.transport, "DEVICE_STATUS", 0);
  run.kick(0);
  assert.deepEqual(device.events, ["notify 1", "notify 0", "reset"]);
});

Deno.test("transport: device config reads and writes go to the device inside its size", () => {
  const { t, device } = make();
  const d = new Uint8Array(4);
  t.bar.read(VIRTIO_BAR_LAYOUT.DEVICE.offset + 4, d);
  assert.deepEqual([...d], [5, 6, 7, 8]);
  t.bar.read(VIRTIO_BAR_LAYOUT.DEVICE.offset + 6, d);
  assert.deepEqual([...d], [0, 0, 0, 0], "crossing the end reads zero");
  t.bar.write(VIRTIO_BAR_LAYOUT.DEVICE.offset, new Uint8Array([9]));
  assert.equal(device.config[0], 9);
});

Deno.test("transport: queue interrupts set ISR without MSI-X; ISR read clears it", () => {
  const device = new FakeDevice();
  const run = bringUp(device);
  const q = run.queues[0];
  q.add([], [[0x8_0000, 4]]);
  const vq = device.ctx!.queue(0)!;
  vq.push(vq.pop()!.head, 4);
  device.ctx!.signalUsed(0);
  assert.deepEqual(run.sink.queue, [1]);
  assert.equal(run.sink.isr, ISR.QUEUE);
  const isr = new Uint8Array(1);
  run.transport.bar.read(VIRTIO_BAR_LAYOUT.ISR.offset, isr);
  assert.equal(isr[0], ISR.QUEUE);
  assert.equal(run.sink.isr, 0);
  run.transport.bar.read(VIRTIO_BAR_LAYOUT.ISR.offset, isr);
  assert.equal(isr[0], 0);
  // Nothing new pushed: no interrupt.
  device.ctx!.signalUsed(0);
  assert.deepEqual(run.sink.queue, [1]);
});

Deno.test("transport: with MSI-X enabled queue interrupts skip ISR", () => {
  const device = new FakeDevice();
  const run = bringUp(device);
  run.sink.msixEnabled = true;
  run.queues[1].add([], [[0x8_0000, 4]]);
  const vq = device.ctx!.queue(1)!;
  vq.push(vq.pop()!.head, 0);
  device.ctx!.signalUsed(1);
  assert.deepEqual(run.sink.queue, [2]);
  assert.equal(run.sink.isr, 0);
});

Deno.test("transport: config change bumps config_generation and signals msix_config", () => {
  const device = new FakeDevice();
  const run = bringUp(device);
  const gen = readReg(run.transport, "CONFIG_GENERATION");
  device.ctx!.configChanged();
  assert.equal(readReg(run.transport, "CONFIG_GENERATION"), (gen + 1) & 0xff);
  assert.deepEqual(run.sink.config, [0]);
  assert.equal(run.sink.isr & ISR.CONFIG, ISR.CONFIG);
});

Deno.test("transport: a broken queue sets DEVICE_NEEDS_RESET and sends a config interrupt", () => {
  const device = new FakeDevice();
  const run = bringUp(device);
  run.queues[0].setAvailIdx(100); // jump > size
  assert.equal(device.ctx!.queue(0)!.pop(), null);
  const status = readReg(run.transport, "DEVICE_STATUS");
  assert.equal(status & STATUS.DEVICE_NEEDS_RESET, STATUS.DEVICE_NEEDS_RESET);
  assert.equal(status & STATUS.DRIVER_OK, STATUS.DRIVER_OK);
  assert.deepEqual(run.sink.config, [0]);
  // Kicks to the broken queue are dropped; the driver's OR-ed status writes keep NEEDS_RESET.
  device.events.length = 0;
  run.kick(0);
  assert.deepEqual(device.events, []);
  writeReg(run.transport, "DEVICE_STATUS", status | STATUS.FAILED);
  assert.equal(
    readReg(run.transport, "DEVICE_STATUS") & STATUS.DEVICE_NEEDS_RESET,
    STATUS.DEVICE_NEEDS_RESET,
  );
  writeReg(run.transport, "DEVICE_STATUS", 0);
  assert.equal(readReg(run.transport, "DEVICE_STATUS"), 0);
});

Deno.test("transport: enabling a queue with rings outside memory sets NEEDS_RESET", () => {
  const { t, sink } = make();
  writeReg(t, "DEVICE_STATUS", DRV);
  setupQueue(t, 0, layoutAt(0xff_f000, 8)); // past the 1 MiB of RAM
  writeReg(t, "QUEUE_ENABLE", 1);
  assert.equal(readReg(t, "DEVICE_STATUS") & STATUS.DEVICE_NEEDS_RESET, STATUS.DEVICE_NEEDS_RESET);
  assert.deepEqual(sink.config, [], "no config interrupt before DRIVER_OK");
});

// ---- MSI-X ----------------------------------------------------------------

class RecordingMsi {
  readonly sent: [number, MsiMessage][] = [];
  readonly routes = new Map<number, MsiMessage | null>();
  sendMsi(vector: number, message: MsiMessage) {
    this.sent.push([vector, message]);
  }
  vectorChanged(vector: number, message: MsiMessage | null) {
    this.routes.set(vector, message);
  }
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function program(m: MsixTable, v: number, address: bigint, data: number, masked: boolean) {
  m.table.write(v * MSIX_ENTRY_SIZE, u32(Number(address & 0xffff_ffffn)));
  m.table.write(v * MSIX_ENTRY_SIZE + 4, u32(Number(address >> 32n)));
  m.table.write(v * MSIX_ENTRY_SIZE + 8, u32(data));
  m.table.write(v * MSIX_ENTRY_SIZE + 12, u32(masked ? 1 : 0));
}

Deno.test("msix: capability encodes table size, table and PBA location; only Enable and Function Mask writable", () => {
  const m = new MsixTable(3, new RecordingMsi());
  const cap = m.capability({ tableBar: 2, tableOffset: 0, pbaBar: 2, pbaOffset: 0x800 });
  assert.equal(cap.id, MSIX_CAP_ID);
  assert.equal(cap.size, 12);
  assert.deepEqual(cap.body, [2, 0, 2, 0, 0, 0, 0x02, 0x08, 0, 0]);
  assert.deepEqual(cap.writable, [0, 0xc0]);
  assert.equal(m.tableBytes, 48);
  assert.equal(m.pbaBytes, 8);
});

Deno.test("msix: entries start masked; nothing is delivered while MSI-X is disabled", () => {
  const msi = new RecordingMsi();
  const m = new MsixTable(2, msi);
  const d = new Uint8Array(4);
  m.table.read(12, d);
  assert.deepEqual([...d], [1, 0, 0, 0]);
  program(m, 0, 0xfee0_0000n, 0x41, false);
  assert.equal(m.notify(0), false);
  assert.equal(msi.sent.length, 0);
  assert.equal(m.isPending(0), false);
});

Deno.test("msix: a masked vector is pending and delivered on unmask", () => {
  const msi = new RecordingMsi();
  const m = new MsixTable(2, msi);
  m.setControl(MSIX_CONTROL.ENABLE);
  program(m, 1, 0x1_fee0_1000n, 0x52, true);
  assert.equal(m.notify(1), false);
  assert.equal(m.isPending(1), true);
  const pba = new Uint8Array(8);
  m.pba.read(0, pba);
  assert.equal(pba[0], 0b10);
  m.table.write(1 * MSIX_ENTRY_SIZE + 12, u32(0));
  assert.deepEqual(msi.sent, [[1, { address: 0x1_fee0_1000n, data: 0x52 }]]);
  assert.equal(m.isPending(1), false);
  assert.equal(m.notify(1), true);
  assert.equal(msi.sent.length, 2);
});

Deno.test("msix: the function mask holds every vector pending until cleared", () => {
  const msi = new RecordingMsi();
  const m = new MsixTable(2, msi);
  program(m, 0, 0xfee0_0000n, 1, false);
  program(m, 1, 0xfee0_0000n, 2, false);
  m.setControl(MSIX_CONTROL.ENABLE | MSIX_CONTROL.FUNCTION_MASK);
  m.notify(0);
  m.notify(1);
  assert.equal(msi.sent.length, 0);
  m.setControl(MSIX_CONTROL.ENABLE);
  assert.deepEqual(msi.sent.map(([v]) => v), [0, 1]);
  assert.equal(m.notify(5), false, "vector outside the table");
});

Deno.test("msix: capability hooks track Enable / Function Mask and report the live control", () => {
  const msi = new RecordingMsi();
  const m = new MsixTable(4, msi);
  const hooks = m.capabilityHooks();
  hooks.write!(2, new Uint8Array([3, 0x80]));
  assert.equal(m.enabled, true);
  assert.equal(m.functionMasked, false);
  const d = new Uint8Array([0, 0, 0, 0]);
  hooks.read!(0, d);
  assert.deepEqual([...d.subarray(2)], [3, 0x80]);
  hooks.write!(3, new Uint8Array([0x40]));
  assert.equal(m.enabled, false);
  assert.equal(m.functionMasked, true);
});

Deno.test("msix: routes are reported for irqfd updates", () => {
  const msi = new RecordingMsi();
  const m = new MsixTable(1, msi);
  program(m, 0, 0xfee0_0000n, 0x30, false);
  assert.equal(msi.routes.get(0), null, "disabled: not deliverable");
  m.setControl(MSIX_CONTROL.ENABLE);
  assert.deepEqual(msi.routes.get(0), { address: 0xfee0_0000n, data: 0x30 });
  m.table.write(12, u32(1));
  assert.equal(msi.routes.get(0), null);
});

Deno.test("interrupts: INTx follows ISR without MSI-X; MSI-X vectors when enabled", () => {
  const msi = new RecordingMsi();
  const m = new MsixTable(2, msi);
  const intx = new RecordingIrqLine();
  const sink = new VirtioPciInterrupts(m, intx);
  sink.isrChanged(ISR.QUEUE);
  assert.equal(intx.level, true);
  sink.signalQueue(1);
  assert.equal(msi.sent.length, 0);
  sink.isrChanged(0);
  assert.equal(intx.level, false);
  program(m, 1, 0xfee0_0000n, 0x61, false);
  m.setControl(MSIX_CONTROL.ENABLE);
  sink.signalQueue(1);
  sink.signalConfig(VIRTIO_MSI_NO_VECTOR);
  sink.isrChanged(ISR.CONFIG);
  assert.deepEqual(msi.sent, [[1, { address: 0xfee0_0000n, data: 0x61 }]]);
  assert.equal(intx.level, false);
});
