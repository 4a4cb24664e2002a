import { answerConf1, Conf1Shared } from "../../pci/conf1_shared.ts";
import { PORTS } from "../../x86/layout.ts";
import { assertEquals, bytes, le, makeRig, probeDevice } from "./pci_harness.ts";

const CF8 = PORTS.PCI_CONFIG_ADDRESS, CFC = PORTS.PCI_CONFIG_DATA;

/** A core on shared state, with a device at 00:05.0 (and the host bridge at 00:00.0). */
function rig() {
  const conf1 = new Conf1Shared();
  const r = makeRig({ conf1 });
  const { def } = probeDevice({
    vendorId: 0x1af4,
    deviceId: 0x1042,
    bars: [{ index: 0, kind: "mem32", size: 0x1000 }],
  });
  r.root.addDevice(def, { slot: 5, decode: false });
  return { ...r, conf1 };
}

const address = (bus: number, dev: number, fn: number, reg: number) =>
  (0x8000_0000 | (bus << 16) | (dev << 11) | (fn << 8) | reg) >>> 0;

/** What a vCPU thread does with one port access: [answered, the IN's value]. */
function vcpu(conf1: Conf1Shared, port: number, out: boolean, size: number, value = 0) {
  const buf = new Uint8Array(16).fill(0x5a);
  buf.set(bytes(value, size), 8);
  const answered = answerConf1(conf1, port, out, size, buf, 8);
  return [answered, le(buf.subarray(8, 8 + size))] as const;
}

Deno.test("a vCPU stores dword CONFIG_ADDRESS writes itself, and the core's 0xCF8 reads them back", () => {
  const { pio, conf1 } = rig();
  assertEquals(vcpu(conf1, CF8, true, 4, 0xffff_ffff)[0], true);
  const d = new Uint8Array(4);
  pio.read(BigInt(CF8), d);
  assertEquals(le(d), 0x80ff_fffc); // the same bits the register keeps when the core is written
  // Narrow writes (and 0xCF9..0xCFB) are the core's: they do not touch the register there either.
  assertEquals(vcpu(conf1, CF8, true, 1, 0)[0], false);
  assertEquals(vcpu(conf1, CF8 + 1, true, 1, 0)[0], false);
  assertEquals(vcpu(conf1, CF8, true, 2, 0)[0], false);
});

Deno.test("a vCPU answers config reads of every absent function exactly as the core would, and leaves present ones to it", () => {
  const { root, pio, conf1 } = rig();
  const reads0 = root.absentConfigReads;
  let absent = 0;
  for (const bus of [0, 1, 255]) {
    for (let dev = 0; dev < 32; dev++) {
      for (let fn = 0; fn < 8; fn++) {
        for (const [reg, size, at] of [[0, 4, 0], [0x0e, 1, 2], [0x08, 2, 2]] as const) {
          vcpu(conf1, CF8, true, 4, address(bus, dev, fn, reg & ~3));
          const [answered, value] = vcpu(conf1, CFC + at, false, size);
          const d = new Uint8Array(size);
          pio.read(BigInt(CFC + at), d);
          const present = bus === 0 && fn === 0 && (dev === 0 || dev === 5);
          assertEquals(answered, !present, `${bus}:${dev}.${fn} reg ${reg}`);
          if (answered) {
            absent++;
            assertEquals(value, le(d), `${bus}:${dev}.${fn} reg ${reg}: the core reads the same`);
            assertEquals(value, 2 ** (8 * size) - 1);
          }
        }
      }
    }
  }
  // Every read the vCPU answered was one the core would have found no function for.
  assertEquals(root.absentConfigReads - reads0, absent);
});

Deno.test("a vCPU answers reads with config cycles disabled or past the dword with all-ones; never data writes", () => {
  const { conf1 } = rig();
  vcpu(conf1, CF8, true, 4, address(0, 5, 0, 0) & 0x7fff_ffff); // enable bit clear
  assertEquals(vcpu(conf1, CFC, false, 4), [true, 0xffff_ffff]);
  vcpu(conf1, CF8, true, 4, address(0, 5, 0, 0));
  assertEquals(vcpu(conf1, CFC + 2, false, 4), [true, 0xffff_ffff]); // leaves the dword
  assertEquals(vcpu(conf1, CFC, false, 4)[0], false); // 00:05.0 is there
  assertEquals(vcpu(conf1, CFC, true, 4, 0)[0], false); // writes are always the core's
  vcpu(conf1, CF8, true, 4, address(0, 6, 0, 0));
  assertEquals(vcpu(conf1, CFC, true, 4, 0)[0], false);
  assertEquals(vcpu(conf1, CFC - 1, false, 1)[0], false); // not a mechanism #1 port
});

Deno.test("until a core serves mechanism #1 with the state, vCPUs leave 0xCF8-0xCFF alone", () => {
  const conf1 = new Conf1Shared();
  assertEquals(vcpu(conf1, CF8, true, 4, 0x8000_0000)[0], false);
  assertEquals(vcpu(conf1, CFC, false, 4)[0], false);
  makeRig({ conf1, configAccess: false });
  assertEquals(vcpu(conf1, CFC, false, 4)[0], false);
  makeRig({ conf1 });
  assertEquals(vcpu(conf1, CFC, false, 4)[0], true);
});
