import assert from "node:assert/strict";
import { RecordingIrqLine } from "../../devices/irq.ts";
import { Bus } from "../../devices/bus.ts";
import {
  ACPI_PM1_CNT_LEN,
  ACPI_PM1_EVT_LEN,
  ACPI_PM_PORT_SPAN,
  AcpiPm,
  Pm1Cnt,
  Pm1En,
  Pm1Sts,
} from "../../devices/acpi_pm.ts";
import { ACPI_S5_SLP_TYP, PORTS } from "../../x86/layout.ts";

function setup() {
  const sci = new RecordingIrqLine();
  let powerOffs = 0;
  const pm = new AcpiPm({ onPowerOff: () => powerOffs++, sci });
  const bus = new Bus("pio");
  bus.register(BigInt(PORTS.ACPI_PM1A_EVT), BigInt(ACPI_PM_PORT_SPAN), pm, pm.name);
  const inw = (port: number) => {
    const data = new Uint8Array(2);
    bus.read(BigInt(port), data);
    return data[0] | (data[1] << 8);
  };
  const outw = (port: number, value: number) =>
    bus.write(BigInt(port), Uint8Array.of(value & 0xff, value >> 8));
  return { pm, sci, inw, outw, powerOffs: () => powerOffs };
}

const slp = (typ: number) => (typ << Pm1Cnt.SLP_TYP_SHIFT) | Pm1Cnt.SLP_EN;

Deno.test("the span covers both blocks as the layout places them", () => {
  assert.equal(ACPI_PM_PORT_SPAN, PORTS.ACPI_PM1A_CNT + ACPI_PM1_CNT_LEN - PORTS.ACPI_PM1A_EVT);
  assert.ok(PORTS.ACPI_PM1A_CNT >= PORTS.ACPI_PM1A_EVT + ACPI_PM1_EVT_LEN);
});

Deno.test("SCI_EN always reads 1, even after writing 0", () => {
  const { inw, outw } = setup();
  assert.equal(inw(PORTS.ACPI_PM1A_CNT) & Pm1Cnt.SCI_EN, 1);
  outw(PORTS.ACPI_PM1A_CNT, 0);
  assert.equal(inw(PORTS.ACPI_PM1A_CNT) & Pm1Cnt.SCI_EN, 1);
});

Deno.test("SLP_EN with SLP_TYP = S5 powers off (the Linux sequence: type, then type|SLP_EN)", () => {
  const { inw, outw, powerOffs } = setup();
  const base = inw(PORTS.ACPI_PM1A_CNT) & ~(Pm1Cnt.SLP_TYP_MASK | Pm1Cnt.SLP_EN);
  outw(PORTS.ACPI_PM1A_CNT, base | (ACPI_S5_SLP_TYP << Pm1Cnt.SLP_TYP_SHIFT));
  assert.equal(powerOffs(), 0, "SLP_TYP alone does nothing");
  outw(PORTS.ACPI_PM1A_CNT, base | slp(ACPI_S5_SLP_TYP));
  assert.equal(powerOffs(), 1);
  assert.equal(inw(PORTS.ACPI_PM1A_CNT) & Pm1Cnt.SLP_EN, 0, "SLP_EN reads 0");
});

Deno.test("a byte write of the high half alone also powers off", () => {
  const { pm, powerOffs } = setup();
  pm.write(5, Uint8Array.of(slp(ACPI_S5_SLP_TYP) >> 8));
  assert.equal(powerOffs(), 1);
});

Deno.test("other SLP_TYP values do not power off; they wake at once (WAK_STS)", () => {
  const { inw, outw, powerOffs } = setup();
  for (let typ = 0; typ < 8; typ++) {
    if (typ === ACPI_S5_SLP_TYP) continue;
    outw(PORTS.ACPI_PM1A_CNT, slp(typ) | Pm1Cnt.SCI_EN);
    assert.ok(inw(PORTS.ACPI_PM1A_EVT) & Pm1Sts.WAK);
    outw(PORTS.ACPI_PM1A_EVT, Pm1Sts.WAK);
    assert.equal(inw(PORTS.ACPI_PM1A_EVT) & Pm1Sts.WAK, 0, "write 1 clears WAK_STS");
  }
  assert.equal(powerOffs(), 0);
});

Deno.test("power button: status W1C, SCI only while enabled", () => {
  const { pm, sci, inw, outw } = setup();
  pm.pressPowerButton();
  assert.ok(inw(PORTS.ACPI_PM1A_EVT) & Pm1Sts.PWRBTN);
  assert.equal(sci.level, false, "not enabled yet");
  outw(PORTS.ACPI_PM1A_EVT + 2, Pm1En.PWRBTN);
  assert.equal(inw(PORTS.ACPI_PM1A_EVT + 2), Pm1En.PWRBTN);
  assert.equal(sci.level, true);
  outw(PORTS.ACPI_PM1A_EVT, 0); // writing 0 clears nothing
  assert.equal(sci.level, true);
  outw(PORTS.ACPI_PM1A_EVT, Pm1Sts.PWRBTN);
  assert.equal(sci.level, false);
  assert.equal(inw(PORTS.ACPI_PM1A_EVT), 0);
  assert.deepEqual(sci.history, [true, false]);
});

Deno.test("a 32-bit read of the event block returns status and enable", () => {
  const { pm } = setup();
  pm.pressPowerButton();
  pm.write(2, Uint8Array.of(0x00, 0x01));
  const data = new Uint8Array(4);
  pm.read(0, data);
  assert.deepEqual([...data], [0x00, 0x01, 0x00, 0x01]);
});

Deno.test("split registration: event and control blocks at their own ports", () => {
  let powerOffs = 0;
  const pm = new AcpiPm({ onPowerOff: () => powerOffs++ });
  const bus = new Bus("pio");
  bus.register(BigInt(PORTS.ACPI_PM1A_EVT), BigInt(ACPI_PM1_EVT_LEN), pm.eventBlock, "pm1a evt");
  bus.register(BigInt(PORTS.ACPI_PM1A_CNT), BigInt(ACPI_PM1_CNT_LEN), pm.controlBlock, "pm1a cnt");
  const v = slp(ACPI_S5_SLP_TYP);
  bus.write(BigInt(PORTS.ACPI_PM1A_CNT), Uint8Array.of(v & 0xff, v >> 8));
  assert.equal(powerOffs, 1);
  const wide = new Uint8Array(4);
  pm.controlBlock.read(0, wide);
  // SLP_TYP stays readable; SLP_EN does not.
  assert.deepEqual([...wide], [0x01, ACPI_S5_SLP_TYP << 2, 0xff, 0xff]);
});

Deno.test("garbage and odd-width accesses never throw", () => {
  let powerOffs = 0;
  const pm = new AcpiPm({ onPowerOff: () => powerOffs++ });
  for (let offset = -2; offset < 10; offset++) {
    for (const width of [0, 1, 2, 3, 4, 8]) {
      for (const v of [0x00, 0x55, 0xff]) {
        const data = new Uint8Array(width).fill(v);
        pm.write(offset, data);
        pm.read(offset, data);
        pm.eventBlock.write(offset, data);
        pm.eventBlock.read(offset, data);
        pm.controlBlock.write(offset, data);
        pm.controlBlock.read(offset, data);
      }
    }
  }
  // 0xff in the high byte of PM1_CNT is SLP_TYP=7 with SLP_EN: not S5.
  assert.equal(powerOffs, 0);
  const data = new Uint8Array(2);
  pm.read(8, data);
  assert.deepEqual([...data], [0xff, 0xff]);
});
