/**
 * The built-in virtio plugins through the PCI core, the MMIO bus and a fake
 * platform, driven the way Linux's virtio_pci does: identity and capability
 * list in config space (four virtio vendor capabilities and MSI-X), MSI-X
 * programmed through BAR 1, the queue set up through the common config in
 * BAR 4, a request kicked through the queue's doorbell ioeventfd and
 * completed with an MSI; INTx when MSI-X is off; a PCI reset; virtio-blk over
 * an image file and virtio-console output on the host console.
 */
import { strictEqual } from "node:assert/strict";
import virtioBlk from "../../devices/virtio/virtio_blk_plugin.ts";
import virtioConsole from "../../devices/virtio/virtio_console_plugin.ts";
import virtioRng from "../../devices/virtio/virtio_rng_plugin.ts";
import {
  COMMON_CFG,
  type CommonCfgField,
  VIRTIO_PCI_CAP_TYPE,
} from "../../devices/virtio/pci_layout.ts";
import { STATUS, VIRTIO_F } from "../../devices/virtio/spec.ts";
import type { AnyPciDeviceDefinition } from "../../devices/pci_device.ts";
import type { PciFunction } from "../../pci/pci_function.ts";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { assertEquals, cfgRead, cfgWrite, makeRig, type Rig } from "./pci_harness.ts";
import { FakePciPlatform } from "./pci_fake_platform.ts";
import { layoutAt, TestDriver } from "./virtio_driver.ts";

const SLOT = 4;

interface World {
  rig: Rig;
  memory: GuestMemory;
  platform: FakePciPlatform;
  fn: PciFunction;
  console: string[];
}

function plug(def: AnyPciDeviceDefinition, options: Record<string, unknown> = {}): World {
  const platform = new FakePciPlatform();
  const out: string[] = [];
  const memory = GuestMemory.ofSize(1 << 20);
  const rig = makeRig({
    memory,
    platform,
    hostConsole: { write: (b) => out.push(new TextDecoder().decode(b)) },
  });
  const fn = rig.root.addDevice(def, { slot: SLOT, options });
  return { rig, memory, platform, fn, console: out };
}

const barBase = (w: World, i: number) => w.fn.bars.find((b) => b.index === i)!.active!.address;

function mmioWrite(w: World, address: bigint, width: number, value: number | bigint): void {
  const data = new Uint8Array(width);
  let v = BigInt(value);
  for (let i = 0; i < width; i++, v >>= 8n) data[i] = Number(v & 0xffn);
  w.rig.mmio.write(address, data);
}

function mmioRead(w: World, address: bigint, width: number): number {
  const data = new Uint8Array(width);
  w.rig.mmio.read(address, data);
  return data.reduceRight((v, b) => v * 256 + b, 0);
}

const common = (w: World, f: CommonCfgField) => barBase(w, 4) + BigInt(COMMON_CFG[f].offset);
const writeCommon = (w: World, f: CommonCfgField, v: number) =>
  mmioWrite(w, common(w, f), COMMON_CFG[f].size, v);
const readCommon = (w: World, f: CommonCfgField) => mmioRead(w, common(w, f), COMMON_CFG[f].size);

/** Walk the capability list: [id, offset] pairs. */
function capabilities(w: World): [number, number][] {
  const out: [number, number][] = [];
  for (let at = cfgRead(w.rig.root, SLOT, 0x34, 1); at; at = cfgRead(w.rig.root, SLOT, at + 1, 1)) {
    out.push([cfgRead(w.rig.root, SLOT, at, 1), at]);
  }
  return out;
}

/** Linux-like bring-up: features, queues at `base`, MSI-X vectors (config 0, queue i -> i+1). */
function bringUp(w: World, msix: boolean, base = 0x10000): TestDriver[] {
  cfgWrite(w.rig.root, SLOT, 0x04, 2, 0x6); // memory decode + bus master
  if (msix) {
    const [, cap] = capabilities(w).find(([id]) => id === 0x11)!;
    cfgWrite(w.rig.root, SLOT, cap + 2, 2, 0x8000);
    const vectors = (cfgRead(w.rig.root, SLOT, cap + 2, 2) & 0x7ff) + 1;
    for (let v = 0; v < vectors; v++) {
      const e = barBase(w, 1) + BigInt(16 * v);
      mmioWrite(w, e, 4, 0xfee0_0000 + v * 0x1000);
      mmioWrite(w, e + 4n, 4, 0);
      mmioWrite(w, e + 8n, 4, 0x40 + v);
      mmioWrite(w, e + 12n, 4, 0); // unmask
    }
  }
  writeCommon(w, "DEVICE_STATUS", STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  writeCommon(w, "DRIVER_FEATURE_SELECT", 1);
  writeCommon(w, "DRIVER_FEATURE", 1 << (VIRTIO_F.VERSION_1 - 32));
  writeCommon(w, "DEVICE_STATUS", STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
  if (msix) writeCommon(w, "MSIX_CONFIG", 0);
  const drivers: TestDriver[] = [];
  for (let q = 0; q < readCommon(w, "NUM_QUEUES"); q++) {
    writeCommon(w, "QUEUE_SELECT", q);
    const size = readCommon(w, "QUEUE_SIZE");
    const layout = layoutAt(base + q * 0x10000, size);
    drivers.push(new TestDriver(w.memory, layout));
    for (
      const [f, v] of [["QUEUE_DESC", layout.desc], ["QUEUE_DRIVER", layout.avail], [
        "QUEUE_DEVICE",
        layout.used,
      ]] as const
    ) {
      writeCommon(w, `${f}_LO`, v);
      writeCommon(w, `${f}_HI`, 0);
    }
    if (msix) writeCommon(w, "QUEUE_MSIX_VECTOR", q + 1);
    writeCommon(w, "QUEUE_ENABLE", 1);
  }
  writeCommon(
    w,
    "DEVICE_STATUS",
    STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK,
  );
  return drivers;
}

/** Ring queue `q`'s doorbell the way KVM would: through the registered ioeventfd. */
function kick(w: World, q: number): void {
  const at = barBase(w, 4) + 0x3000n + BigInt(4 * q);
  strictEqual(
    w.platform.ring("mem", at),
    true,
    `doorbell ${q} is an ioeventfd at ${at.toString(16)}`,
  );
}

Deno.test("virtio-rng: identity, four virtio capabilities and MSI-X in config space", () => {
  const w = plug(virtioRng);
  strictEqual(cfgRead(w.rig.root, SLOT, 0x00, 2), 0x1af4);
  strictEqual(cfgRead(w.rig.root, SLOT, 0x02, 2), 0x1044);
  strictEqual(cfgRead(w.rig.root, SLOT, 0x08, 1), 1);
  const caps = capabilities(w);
  assertEquals(caps.map(([id]) => id), [0x09, 0x09, 0x09, 0x11]);
  assertEquals(
    caps.slice(0, 3).map((
      [, at],
    ) => [cfgRead(w.rig.root, SLOT, at + 3, 1), cfgRead(w.rig.root, SLOT, at + 4, 1)]),
    [[VIRTIO_PCI_CAP_TYPE.COMMON_CFG, 4], [VIRTIO_PCI_CAP_TYPE.NOTIFY_CFG, 4], [
      VIRTIO_PCI_CAP_TYPE.ISR_CFG,
      4,
    ]],
  );
  const [, msix] = caps[3];
  strictEqual(cfgRead(w.rig.root, SLOT, msix + 2, 2) & 0x7ff, 1, "2 vectors: config + 1 queue");
  strictEqual(cfgRead(w.rig.root, SLOT, msix + 4, 4), 0x0000_0001, "table at BAR 1 + 0");
  strictEqual(cfgRead(w.rig.root, SLOT, msix + 8, 4), 0x0000_0801, "PBA at BAR 1 + 0x800");
  assertEquals(w.platform.registrations().length, 1, "one doorbell per queue");
});

Deno.test("virtio-rng: a request kicked through the doorbell ioeventfd completes with the queue's MSI-X message", () => {
  const w = plug(virtioRng);
  const [q] = bringUp(w, true);
  strictEqual(w.platform.msis.length, 0);
  const head = q.add([], [[0x80000, 64]]);
  kick(w, 0);
  assertEquals(q.reclaim(), [{ id: head, len: 64 }]);
  assertEquals(w.platform.msis, [{ address: 0xfee0_1000n, data: 0x41 }], "vector 1 (queue 0)");
  const bytes = w.memory.read(0x80000, 64);
  strictEqual(new Set(bytes).size > 16, true, "random bytes were written");
  strictEqual(w.fn.intxLevel, false);
});

Deno.test("virtio-rng without MSI-X: completion raises INTx, the ISR read lowers it", () => {
  const w = plug(virtioRng);
  const [q] = bringUp(w, false);
  q.add([], [[0x80000, 16]]);
  kick(w, 0);
  strictEqual(w.fn.intxLevel, true);
  assertEquals(w.platform.msis, []);
  strictEqual(mmioRead(w, barBase(w, 4) + 0x1000n, 1), 1, "ISR: queue interrupt");
  strictEqual(w.fn.intxLevel, false);
});

Deno.test("a PCI reset resets the virtio device and disables MSI-X", () => {
  const w = plug(virtioRng);
  bringUp(w, true);
  w.rig.root.reset();
  strictEqual(readCommon(w, "DEVICE_STATUS"), 0);
  const [, cap] = capabilities(w).find(([id]) => id === 0x11)!;
  strictEqual(cfgRead(w.rig.root, SLOT, cap + 2, 2) & 0x8000, 0);
  strictEqual(w.platform.registrations().length, 1, "the doorbell is served again after reset");
});

/** Resolve once `done()` holds (checked every few ms); throws after `ms` (generous: the I/O worker is a new isolate, slow to start on a loaded 2-core machine). */
async function waitFor(done: () => boolean, what: string, ms = 30_000): Promise<void> {
  const until = performance.now() + ms;
  while (!done()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

Deno.test("virtio-blk over an image file: capacity in config, a read request served by the I/O worker via the doorbell", async () => {
  const path = await Deno.makeTempFile();
  let w: World | undefined;
  try {
    const image = new Uint8Array(8192);
    image.set(new TextEncoder().encode("sector one"), 512);
    await Deno.writeFile(path, image);
    w = plug(virtioBlk, { path, ro: "true" });
    assertEquals(capabilities(w).map(([id]) => id), [0x09, 0x09, 0x09, 0x09, 0x11]);
    strictEqual(mmioRead(w, barBase(w, 4) + 0x2000n, 4), 16, "capacity: 16 sectors");
    const [q] = bringUp(w, true);
    const header = new Uint8Array(16);
    new DataView(header.buffer).setUint32(0, 0, true); // VIRTIO_BLK_T_IN
    new DataView(header.buffer).setBigUint64(8, 1n, true);
    w.memory.write(0x70000, header);
    q.add([[0x70000, 16]], [[0x71000, 512], [0x72000, 1]]);
    kick(w, 0);
    const world = w;
    // The worker serves it; without a remote MSI route the interrupt is relayed to this thread.
    await waitFor(() => world.platform.msis.length === 1, "the completion MSI");
    strictEqual(new TextDecoder().decode(w.memory.read(0x71000, 10)), "sector one");
    strictEqual(w.memory.read(0x72000, 1)[0], 0, "status OK");
    strictEqual(q.reclaim().length, 1);
  } finally {
    w?.rig.root.close();
    await Deno.remove(path);
  }
});

Deno.test("virtio-blk I/O worker: a chain out of guest memory breaks the queue, the device needs reset, and a reset gives the queue back", async () => {
  const path = await Deno.makeTempFile();
  let w: World | undefined;
  try {
    await Deno.writeFile(path, new Uint8Array(8192));
    w = plug(virtioBlk, { path });
    const world = w;
    const [q] = bringUp(w, true);
    q.add([[0x70000, 16]], [[0xfff_0000, 512], [0x72000, 1]]); // a buffer beyond the 1 MiB of RAM
    kick(w, 0);
    await waitFor(
      () => (readCommon(world, "DEVICE_STATUS") & STATUS.DEVICE_NEEDS_RESET) !== 0,
      "DEVICE_NEEDS_RESET",
    );
    strictEqual(q.reclaim().length, 0, "nothing completes on a broken queue");
    writeCommon(w, "DEVICE_STATUS", 0);
    strictEqual(readCommon(w, "DEVICE_STATUS"), 0);
  } finally {
    w?.rig.root.close();
    await Deno.remove(path);
  }
});

Deno.test("virtio-blk options: a missing path is refused, ro=false stays writable", async () => {
  let error = "";
  try {
    plug(virtioBlk, {});
  } catch (e) {
    error = String(e);
  }
  strictEqual(/options\.path/.test(error), true, error);
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, new Uint8Array(4096));
    const w = plug(virtioBlk, { path, ro: "false" });
    writeCommon(w, "DEVICE_FEATURE_SELECT", 0);
    strictEqual(readCommon(w, "DEVICE_FEATURE") & (1 << 5), 0, "VIRTIO_BLK_F_RO is not offered");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("virtio-console: what the guest transmits appears on the host console", () => {
  const w = plug(virtioConsole);
  const [, tx] = bringUp(w, true);
  w.memory.write(0x90000, new TextEncoder().encode("hi\n"));
  tx.add([[0x90000, 3]], []);
  kick(w, 1);
  assertEquals(w.console, ["hi\n"]);
  assertEquals(w.platform.msis, [{ address: 0xfee0_2000n, data: 0x42 }], "vector 2 (transmitq)");
});
