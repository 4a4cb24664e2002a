import { assert, assertEquals, assertThrows } from "./x86_assert.ts";
import {
  type AcpiTables,
  buildAcpiTables,
  buildDsdtAml,
  FADT,
  FADT_FLAGS,
  IAPC_BOOT_ARCH,
  MAX_ACPI_CPUS,
  s5Aml,
} from "../../x86/acpi.ts";
import { GiB, IOAPIC, IRQS, LAPIC, PCI_ECAM, PORTS } from "../../x86/layout.ts";

const dec = new TextDecoder();

/** View of one table of the blob by signature. */
function tableOf(t: AcpiTables, sig: string) {
  const p = t.tables[sig];
  assert(p, `no ${sig}`);
  const bytes = t.bytes.subarray(p.addr - t.base, p.addr - t.base + p.length);
  return {
    bytes,
    view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    addr: p.addr,
  };
}

/** The table at a guest address (as the OS follows pointers). */
function tableAt(t: AcpiTables, addr: number) {
  const at = addr - t.base;
  const len = new DataView(t.bytes.buffer, t.bytes.byteOffset).getUint32(at + 4, true);
  return { sig: dec.decode(t.bytes.subarray(at, at + 4)), bytes: t.bytes.subarray(at, at + len) };
}

const sum = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);

Deno.test("every table checksums to zero and its length field matches", () => {
  const t = buildAcpiTables({ cpus: 4, memorySize: 2 * GiB });
  for (const [sig, p] of Object.entries(t.tables)) {
    const { bytes, view } = tableOf(t, sig);
    if (sig === "RSD PTR ") {
      assertEquals(sum(bytes.subarray(0, 20)), 0, "RSDP v1 checksum");
      assertEquals(sum(bytes), 0, "RSDP extended checksum");
      assertEquals(view.getUint32(20, true), 36);
      assertEquals(bytes[15], 2); // revision
    } else if (sig === "FACS") {
      assertEquals(view.getUint32(4, true), 64);
      assertEquals(p.addr % 64, 0, "FACS alignment");
    } else {
      assertEquals(dec.decode(bytes.subarray(0, 4)), sig);
      assertEquals(view.getUint32(4, true), p.length, `${sig} length`);
      assertEquals(sum(bytes), 0, `${sig} checksum`);
    }
  }
});

Deno.test("RSDP -> XSDT/RSDT -> FADT -> DSDT/FACS, and MADT and MCFG are reachable", () => {
  const t = buildAcpiTables({ cpus: 1, memorySize: 512 * 1024 * 1024 });
  assertEquals(t.rsdpAddr, 0xe0000);
  const rsdp = tableOf(t, "RSD PTR ");
  assertEquals(dec.decode(rsdp.bytes.subarray(0, 8)), "RSD PTR ");
  const xsdt = tableAt(t, Number(rsdp.view.getBigUint64(24, true)));
  const rsdt = tableAt(t, rsdp.view.getUint32(16, true));
  assertEquals([xsdt.sig, rsdt.sig], ["XSDT", "RSDT"]);
  const xv = new DataView(xsdt.bytes.buffer, xsdt.bytes.byteOffset + 36);
  const rv = new DataView(rsdt.bytes.buffer, rsdt.bytes.byteOffset + 36);
  const viaX = Array.from(
    { length: (xsdt.bytes.length - 36) / 8 },
    (_, i) => tableAt(t, Number(xv.getBigUint64(i * 8, true))).sig,
  );
  const viaR = Array.from(
    { length: (rsdt.bytes.length - 36) / 4 },
    (_, i) => tableAt(t, rv.getUint32(i * 4, true)).sig,
  );
  assertEquals(viaX.sort(), ["APIC", "FACP", "MCFG"]);
  assertEquals(viaR.sort(), ["APIC", "FACP", "MCFG"]);
  const fadt = tableOf(t, "FACP").view;
  assertEquals(tableAt(t, fadt.getUint32(FADT.dsdt, true)).sig, "DSDT");
  assertEquals(Number(fadt.getBigUint64(FADT.x_dsdt, true)), t.tables.DSDT.addr);
  assertEquals(fadt.getUint32(FADT.firmware_ctrl, true), t.tables.FACS.addr);
  assertEquals(Number(fadt.getBigUint64(FADT.x_firmware_ctrl, true)), t.tables.FACS.addr);
});

Deno.test("the FADT is a full ACPI FADT with legacy PM1 blocks, SCI 9 and no SMI port", () => {
  const { bytes, view } = tableOf(buildAcpiTables({ cpus: 2, memorySize: GiB }), "FACP");
  assertEquals(bytes.length, 276);
  assertEquals(bytes[8], 6); // revision
  assertEquals(view.getUint16(FADT.sci_int, true), IRQS.SCI);
  assertEquals(view.getUint32(FADT.smi_cmd, true), 0);
  assertEquals(view.getUint32(FADT.pm1a_evt_blk, true), PORTS.ACPI_PM1A_EVT);
  assertEquals(view.getUint32(FADT.pm1a_cnt_blk, true), PORTS.ACPI_PM1A_CNT);
  assertEquals([bytes[FADT.pm1_evt_len], bytes[FADT.pm1_cnt_len]], [4, 2]);
  const flags = view.getUint32(FADT.flags, true);
  assertEquals(flags & FADT_FLAGS.HW_REDUCED_ACPI, 0);
  assertEquals(flags & FADT_FLAGS.RESET_REG_SUP, 0);
  assertEquals(flags & FADT_FLAGS.PWR_BUTTON, 0); // fixed-feature power button (PM1 PWRBTN)
  assert(flags & FADT_FLAGS.SLP_BUTTON); // no sleep button
  // No 8042 boot flag: Linux skips probing PS/2 (reset still goes through port 0x64).
  assertEquals(view.getUint16(FADT.iapc_boot_arch, true) & IAPC_BOOT_ARCH.I8042, 0);
  // X_PM1a_EVT_BLK / X_PM1a_CNT_BLK: system I/O GAS with the same ports and widths.
  assertEquals([bytes[FADT.x_pm1a_evt_blk], bytes[FADT.x_pm1a_evt_blk + 1]], [1, 32]);
  assertEquals(Number(view.getBigUint64(FADT.x_pm1a_evt_blk + 4, true)), PORTS.ACPI_PM1A_EVT);
  assertEquals([bytes[FADT.x_pm1a_cnt_blk], bytes[FADT.x_pm1a_cnt_blk + 1]], [1, 16]);
  assertEquals(Number(view.getBigUint64(FADT.x_pm1a_cnt_blk + 4, true)), PORTS.ACPI_PM1A_CNT);
});

Deno.test("the FADT reset register is set only when asked", () => {
  const { bytes, view } = tableOf(
    buildAcpiTables({ cpus: 1, memorySize: GiB, reset: { port: 0xcf9, value: 6 } }),
    "FACP",
  );
  assert(view.getUint32(FADT.flags, true) & FADT_FLAGS.RESET_REG_SUP);
  assertEquals(bytes[FADT.reset_reg], 1);
  assertEquals(Number(view.getBigUint64(FADT.reset_reg + 4, true)), 0xcf9);
  assertEquals(bytes[FADT.reset_value], 6);
});

/** MADT entries as [type, bytes]. */
function madtEntries(t: AcpiTables): [number, Uint8Array][] {
  const { bytes, view } = tableOf(t, "APIC");
  assertEquals(view.getUint32(36, true), LAPIC.base);
  assertEquals(view.getUint32(40, true) & 1, 1); // PCAT_COMPAT
  const out: [number, Uint8Array][] = [];
  for (let at = 44; at < bytes.length; at += bytes[at + 1]) {
    assert(bytes[at + 1] > 0);
    out.push([bytes[at], bytes.subarray(at, at + bytes[at + 1])]);
  }
  return out;
}

Deno.test("the MADT lists one enabled local APIC per vCPU with APIC id = index", () => {
  for (const cpus of [1, 3, 8, MAX_ACPI_CPUS]) {
    const lapics = madtEntries(buildAcpiTables({ cpus, memorySize: GiB })).filter(([type]) =>
      type === 0
    );
    assertEquals(lapics.length, cpus);
    lapics.forEach(([, e], i) => {
      assertEquals([e[1], e[2], e[3]], [8, i, i]); // length, UID, APIC id
      assertEquals(new DataView(e.buffer, e.byteOffset).getUint32(4, true) & 1, 1);
    });
  }
  assertThrows(() => buildAcpiTables({ cpus: MAX_ACPI_CPUS + 1, memorySize: GiB }), RangeError);
  assertThrows(() => buildAcpiTables({ cpus: 0, memorySize: GiB }), RangeError);
});

Deno.test("the MADT has the IOAPIC at GSI 0 and the IRQ0 and SCI overrides", () => {
  const entries = madtEntries(buildAcpiTables({ cpus: 2, memorySize: GiB }));
  const ioapics = entries.filter(([type]) => type === 1).map(([, e]) =>
    new DataView(e.buffer, e.byteOffset)
  );
  assertEquals(ioapics.length, 1);
  assertEquals(ioapics[0].getUint32(4, true), IOAPIC.base);
  assertEquals(ioapics[0].getUint32(8, true), 0);
  const overrides = entries.filter(([type]) => type === 2).map(([, e]) => {
    const v = new DataView(e.buffer, e.byteOffset);
    return { bus: e[2], irq: e[3], gsi: v.getUint32(4, true), flags: v.getUint16(8, true) };
  });
  assertEquals(overrides, [
    { bus: 0, irq: 0, gsi: 2, flags: 0 },
    { bus: 0, irq: IRQS.SCI, gsi: IRQS.SCI, flags: 0xd }, // level, active high
  ]);
});

Deno.test("the MCFG maps segment 0 bus 0 (the only bus) at the ECAM base", () => {
  const { bytes, view } = tableOf(buildAcpiTables({ cpus: 1, memorySize: GiB }), "MCFG");
  assertEquals(bytes.length, 36 + 8 + 16);
  assertEquals(Number(view.getBigUint64(44, true)), PCI_ECAM.base);
  assertEquals([view.getUint16(52, true), bytes[54], bytes[55]], [0, 0, 0]);
  assertEquals(PCI_ECAM.size >= 1024 * 1024, true); // 1 MiB per bus
});

Deno.test("the DSDT declares _S5 and the PCI host bridge", () => {
  const t = buildAcpiTables({ cpus: 1, memorySize: GiB });
  const body = tableOf(t, "DSDT").bytes.subarray(36);
  assertEquals(body.subarray(0, s5Aml().length), s5Aml());
  assertEquals(body, buildDsdtAml({ memorySize: GiB }));
  const text = dec.decode(body);
  for (const s of ["PCI0", "_CRS", "_HID", "MRES"]) assert(text.includes(s), s);
  assert(!text.includes("_PRT"));
  const withPrt = dec.decode(
    buildDsdtAml({ memorySize: GiB, pciInterrupts: [{ device: 1, pin: 0, gsi: 16 }] }),
  );
  assert(withPrt.includes("_PRT"));
});

// Optional: cross-check with the ACPICA disassembler when installed (Debian: acpica-tools).
const iasl = await findIasl();

Deno.test({
  name: "iasl disassembles every table cleanly and re-assembles the DSDT to the same AML",
  ignore: iasl === undefined,
  async fn() {
    const t = buildAcpiTables({
      cpus: 3,
      memorySize: 6 * GiB,
      pciInterrupts: [{ device: 2, pin: 1, gsi: 17 }],
      reset: { port: 0xcf9, value: 6 },
    });
    const dir = await Deno.makeTempDir({ prefix: "dvmm_acpi_" });
    try {
      const out: Record<string, string> = {};
      for (const sig of ["FACS", "DSDT", "FACP", "APIC", "MCFG", "XSDT", "RSDT"]) {
        const file = `${dir}/${sig.toLowerCase()}.dat`;
        await Deno.writeFile(file, tableOf(t, sig).bytes);
        const r = await run([iasl!, "-d", file], dir);
        const log = r.stdout + r.stderr;
        assertEquals(r.code, 0, `${sig}: ${log}`);
        assert(!/error|warning|checksum/i.test(log), `${sig}: ${log}`);
        out[sig] = await Deno.readTextFile(`${dir}/${sig.toLowerCase()}.dsl`);
      }
      assertEquals(out.APIC.match(/\[Processor Local APIC\]/g)?.length, 3);
      assert(out.FACP.includes("8042 Present on ports 60/64 (V2) : 0"), out.FACP);
      assert(out.FACP.includes("Hardware Reduced (V5) : 0"));
      assert(out.FACP.includes("Control Method Power Button (V1) : 0"));
      assert(out.DSDT.includes("Name (_S5, Package (0x04)"));
      assert(out.DSDT.includes('EisaId ("PNP0A08")'));
      // Recompile the disassembled DSDT: the AML must match ours byte for byte.
      const r = await run([iasl!, "-p", `${dir}/re`, `${dir}/dsdt.dsl`], dir);
      assertEquals(r.code, 0, r.stdout + r.stderr);
      const re = await Deno.readFile(`${dir}/re.aml`);
      assertEquals(re.subarray(36), tableOf(t, "DSDT").bytes.subarray(36));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function findIasl(): Promise<string | undefined> {
  for (const p of ["/usr/bin/iasl", "/usr/local/bin/iasl"]) {
    try {
      await Deno.stat(p);
      return p;
    } catch { /* not here */ }
  }
  return undefined;
}

async function run(cmd: string[], cwd: string) {
  const r = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}
