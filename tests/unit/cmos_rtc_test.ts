import assert from "node:assert/strict";
import { RecordingIrqLine } from "../../devices/irq.ts";
import { CmosReg, CmosRtc, RegA, RegB, RegC, RegD } from "../../devices/cmos_rtc.ts";
import { GiB, MiB } from "../../x86/layout.ts";

// Tuesday 2024-03-05 21:07:09.250 UTC
const FIXED = Date.UTC(2024, 2, 5, 21, 7, 9, 250);

function setup(options: { memoryBytes?: number; cpus?: number } = {}) {
  let now = FIXED;
  const irq = new RecordingIrqLine();
  const rtc = new CmosRtc({
    memoryBytes: options.memoryBytes ?? 512 * MiB,
    cpus: options.cpus,
    clock: () => now,
    irq,
  });
  const read = (index: number) => {
    rtc.write(0, Uint8Array.of(index));
    const data = new Uint8Array(1);
    rtc.read(1, data);
    return data[0];
  };
  const write = (index: number, value: number) => {
    rtc.write(0, Uint8Array.of(index));
    rtc.write(1, Uint8Array.of(value));
  };
  const advance = (ms: number) => (now += ms);
  const time = () =>
    [
      CmosReg.CENTURY,
      CmosReg.YEAR,
      CmosReg.MONTH,
      CmosReg.DAY_OF_MONTH,
      CmosReg.HOURS,
      CmosReg.MINUTES,
      CmosReg.SECONDS,
      CmosReg.DAY_OF_WEEK,
    ].map(read);
  return { rtc, irq, read, write, advance, time };
}

Deno.test("BCD 24-hour time at a fixed instant (power-on mode)", () => {
  const { time, read } = setup();
  assert.deepEqual(time(), [0x20, 0x24, 0x03, 0x05, 0x21, 0x07, 0x09, 0x03]);
  assert.equal(read(CmosReg.B), RegB.HOUR_24);
});

Deno.test("binary mode per register B DM bit", () => {
  const { time, write } = setup();
  write(CmosReg.B, RegB.HOUR_24 | RegB.DM_BINARY);
  assert.deepEqual(time(), [20, 24, 3, 5, 21, 7, 9, 3]);
});

Deno.test("12-hour mode: PM in bit 7, midnight and noon are 12", () => {
  const { read, write, advance } = setup();
  write(CmosReg.B, 0); // BCD, 12-hour
  assert.equal(read(CmosReg.HOURS), 0x80 | 0x09); // 21h = 9 PM
  write(CmosReg.B, RegB.DM_BINARY);
  assert.equal(read(CmosReg.HOURS), 0x80 | 9);
  advance(3 * 3600_000); // 00:07 next day
  assert.equal(read(CmosReg.HOURS), 12);
  advance(12 * 3600_000); // 12:07
  assert.equal(read(CmosReg.HOURS), 0x80 | 12);
});

Deno.test("the time follows the clock", () => {
  const { read, advance } = setup();
  advance(51_000);
  assert.equal(read(CmosReg.SECONDS), 0x00);
  assert.equal(read(CmosReg.MINUTES), 0x08);
});

Deno.test("register A never shows UIP; D shows VRT; A keeps divider and rate", () => {
  const { read, write, advance } = setup();
  for (let i = 0; i < 2000; i++) {
    assert.equal(read(CmosReg.A) & RegA.UIP, 0);
    advance(1);
  }
  assert.equal(read(CmosReg.A), 0x26);
  write(CmosReg.A, 0xff);
  assert.equal(read(CmosReg.A), 0x7f);
  assert.equal(read(CmosReg.D), RegD.VRT);
  write(CmosReg.D, 0);
  assert.equal(read(CmosReg.D), RegD.VRT);
});

Deno.test("the guest sets the time under SET, in BCD, and it keeps running from there", () => {
  const { read, write, advance, time } = setup();
  write(CmosReg.B, RegB.HOUR_24 | RegB.SET);
  write(CmosReg.YEAR, 0x99);
  write(CmosReg.CENTURY, 0x19);
  write(CmosReg.MONTH, 0x12);
  write(CmosReg.DAY_OF_MONTH, 0x31);
  write(CmosReg.HOURS, 0x23);
  write(CmosReg.MINUTES, 0x59);
  write(CmosReg.SECONDS, 0x58);
  advance(5000); // frozen while SET
  assert.equal(read(CmosReg.SECONDS), 0x58);
  write(CmosReg.B, RegB.HOUR_24);
  advance(2000);
  assert.deepEqual(time(), [0x20, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x07]);
});

Deno.test("a 12-hour write of 12 AM means midnight", () => {
  const { read, write } = setup();
  write(CmosReg.B, RegB.DM_BINARY);
  write(CmosReg.HOURS, 12);
  write(CmosReg.B, RegB.DM_BINARY | RegB.HOUR_24);
  assert.equal(read(CmosReg.HOURS), 0);
});

Deno.test("register C: update-ended flag after a second, read clears it", () => {
  const { read, advance } = setup();
  assert.equal(read(CmosReg.C), 0);
  advance(800);
  assert.equal(read(CmosReg.C) & RegC.UF, RegC.UF);
  assert.equal(read(CmosReg.C), 0);
});

Deno.test("update-ended interrupt raises IRQ 8 via poll; reading C lowers it", () => {
  const { rtc, irq, read, write, advance } = setup();
  write(CmosReg.B, RegB.HOUR_24 | RegB.UIE);
  assert.equal(rtc.pollIntervalMs, 750);
  rtc.poll();
  assert.equal(irq.level, false);
  advance(750);
  rtc.poll();
  assert.equal(irq.level, true);
  // PF also runs (1024 Hz at power-on) but only UF is enabled.
  assert.equal(read(CmosReg.C) & (RegC.IRQF | RegC.UF | RegC.AF), RegC.IRQF | RegC.UF);
  assert.equal(irq.level, false);
});

Deno.test("alarm interrupt fires at the alarm second only", () => {
  const { rtc, irq, read, write, advance } = setup();
  write(CmosReg.SECONDS_ALARM, 0x15);
  write(CmosReg.MINUTES_ALARM, 0xff); // don't care
  write(CmosReg.HOURS_ALARM, 0x21);
  write(CmosReg.B, RegB.HOUR_24 | RegB.AIE);
  read(CmosReg.C);
  advance(5000); // 21:07:14
  rtc.poll();
  assert.equal(irq.level, false);
  advance(1000); // 21:07:15
  rtc.poll();
  assert.equal(irq.level, true);
  assert.equal(read(CmosReg.C) & (RegC.IRQF | RegC.AF), RegC.IRQF | RegC.AF);
});

Deno.test("periodic flag at the programmed rate; no polling needed with interrupts off", () => {
  const { rtc, read, write, advance } = setup();
  assert.equal(rtc.pollIntervalMs, null);
  read(CmosReg.C);
  write(CmosReg.A, 0x2f); // 2 Hz
  write(CmosReg.B, RegB.HOUR_24 | RegB.PIE);
  assert.equal(rtc.pollIntervalMs, 500);
  advance(300); // crosses the .5 s tick
  assert.equal(read(CmosReg.C) & RegC.PF, RegC.PF);
  advance(100);
  assert.equal(read(CmosReg.C) & RegC.PF, 0);
});

Deno.test("CMOS memory size bytes for 512 MiB", () => {
  const { read } = setup({ memoryBytes: 512 * MiB, cpus: 2 });
  const word = (lo: number) => read(lo) | (read(lo + 1) << 8);
  assert.equal(word(CmosReg.BASE_MEMORY_LO), 640);
  assert.equal(word(CmosReg.EXTENDED_MEMORY_LO), 0xffff);
  assert.equal(word(CmosReg.EXTENDED_MEMORY2_LO), 0xffff);
  assert.equal(word(CmosReg.MEMORY_ABOVE_16M_LO), (512 - 16) * 16);
  assert.deepEqual([0x5b, 0x5c, 0x5d].map(read), [0, 0, 0]);
  assert.equal(read(CmosReg.CPU_COUNT_MINUS_ONE), 1);
});

Deno.test("CMOS memory size bytes above 4 GiB (8 GiB guest, 3 GiB low)", () => {
  const { read } = setup({ memoryBytes: 8 * GiB });
  const word = (lo: number) => read(lo) | (read(lo + 1) << 8);
  assert.equal(word(CmosReg.MEMORY_ABOVE_16M_LO), (3 * 1024 - 16) * 16);
  const above = read(0x5b) | (read(0x5c) << 8) | (read(0x5d) << 16);
  assert.equal(above, (5 * GiB) / 65536);
});

Deno.test("small guest: extended memory in KiB, nothing above 16 MiB", () => {
  const { read } = setup({ memoryBytes: 8 * MiB });
  const word = (lo: number) => read(lo) | (read(lo + 1) << 8);
  assert.equal(word(CmosReg.EXTENDED_MEMORY_LO), 7 * 1024);
  assert.equal(word(CmosReg.MEMORY_ABOVE_16M_LO), 0);
});

Deno.test("NMI bit of the index is ignored; NVRAM bytes are storage", () => {
  const { rtc, read, write } = setup();
  write(0x40, 0x5a);
  rtc.write(0, Uint8Array.of(0x80 | 0x40));
  const data = new Uint8Array(1);
  rtc.read(1, data);
  assert.equal(data[0], 0x5a);
  assert.equal(read(0x40), 0x5a);
});

Deno.test("a 16-bit write to 0x70 sets index and data at once", () => {
  const { rtc, read } = setup();
  rtc.write(0, Uint8Array.of(0x41, 0x77));
  assert.equal(read(0x41), 0x77);
});

Deno.test("garbage and odd-width accesses never throw", () => {
  const { rtc, time } = setup();
  for (let index = 0; index < 256; index++) {
    for (const v of [0x00, 0x7f, 0x80, 0xff, 0x9a]) {
      rtc.write(0, Uint8Array.of(index));
      rtc.write(1, Uint8Array.of(v));
      rtc.read(1, new Uint8Array(1));
    }
  }
  for (let offset = -1; offset < 5; offset++) {
    for (const width of [0, 1, 2, 4, 8]) {
      rtc.write(offset, new Uint8Array(width).fill(0xee));
      rtc.read(offset, new Uint8Array(width));
    }
  }
  // Still a sane clock afterwards.
  for (const value of time()) assert.ok(Number.isInteger(value) && value >= 0 && value <= 0xff);
});
