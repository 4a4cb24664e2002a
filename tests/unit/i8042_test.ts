import assert from "node:assert/strict";
import { RecordingIrqLine } from "../../devices/irq.ts";
import { Bus } from "../../devices/bus.ts";
import {
  I8042,
  I8042_COMMAND_OFFSET,
  I8042_INITIAL_CTR,
  I8042_NO_DEVICE,
  I8042_PORT_SPAN,
  I8042Cmd,
  I8042Ctr,
  I8042Status,
} from "../../devices/i8042.ts";
import { PORTS } from "../../x86/layout.ts";

function setup() {
  const kbdIrq = new RecordingIrqLine();
  const auxIrq = new RecordingIrqLine();
  let resets = 0;
  const kbc = new I8042({ onReset: () => resets++, kbdIrq, auxIrq });
  const bus = new Bus("pio");
  bus.register(BigInt(PORTS.I8042_DATA), BigInt(I8042_PORT_SPAN), kbc, kbc.name);
  const inb = (port: number) => {
    const data = new Uint8Array(1);
    bus.read(BigInt(port), data);
    return data[0];
  };
  const outb = (port: number, value: number) => bus.write(BigInt(port), Uint8Array.of(value));
  const status = () => inb(PORTS.I8042_CMD);
  /** Linux's __i8042_command: command, parameters, then wait for results. */
  const command = (cmd: number, params: number[] = [], results = 0) => {
    assert.equal(status() & I8042Status.IBF, 0);
    outb(PORTS.I8042_CMD, cmd);
    for (const p of params) {
      assert.equal(status() & I8042Status.IBF, 0);
      outb(PORTS.I8042_DATA, p);
    }
    const out: number[] = [];
    for (let i = 0; i < results; i++) {
      assert.ok(status() & I8042Status.OBF, `result ${i} of command ${cmd.toString(16)}`);
      out.push(inb(PORTS.I8042_DATA));
    }
    return out;
  };
  return { kbc, kbdIrq, auxIrq, inb, outb, status, command, resets: () => resets };
}

Deno.test("i8042 starts empty, unlocked, ready for commands", () => {
  const { status } = setup();
  const s = status();
  assert.equal(s & (I8042Status.OBF | I8042Status.IBF), 0);
  assert.ok(s & I8042Status.UNLOCKED, "no 'Keylock active' warning");
});

Deno.test("controller self test answers 0x55 and interface tests answer 0x00", () => {
  const { command, status } = setup();
  assert.deepEqual(command(I8042Cmd.SELF_TEST, [], 1), [0x55]);
  assert.deepEqual(command(I8042Cmd.KBD_TEST, [], 1), [0x00]);
  assert.deepEqual(command(I8042Cmd.AUX_TEST, [], 1), [0x00]);
  assert.equal(status() & I8042Status.OBF, 0);
  assert.ok(status() & I8042Status.SYS);
});

Deno.test("command byte reads back, writes stick, and port enable/disable flip its bits", () => {
  const { command, kbc } = setup();
  assert.deepEqual(command(I8042Cmd.READ_CTR, [], 1), [I8042_INITIAL_CTR]);
  command(I8042Cmd.WRITE_CTR, [0x56]);
  assert.deepEqual(command(I8042Cmd.READ_CTR, [], 1), [0x56]);
  command(I8042Cmd.KBD_ENABLE);
  assert.equal(kbc.commandByte & I8042Ctr.KBDDIS, 0);
  command(I8042Cmd.KBD_DISABLE);
  assert.ok(kbc.commandByte & I8042Ctr.KBDDIS);
  command(I8042Cmd.AUX_DISABLE);
  assert.ok(command(I8042Cmd.READ_CTR, [], 1)[0] & I8042Ctr.AUXDIS);
  command(I8042Cmd.AUX_ENABLE);
  assert.equal(command(I8042Cmd.READ_CTR, [], 1)[0] & I8042Ctr.AUXDIS, 0);
});

Deno.test("Linux flush + CTR read loop terminates (OBF clears after reading)", () => {
  const { command, inb, status } = setup();
  command(I8042Cmd.SELF_TEST);
  command(I8042Cmd.READ_CTR);
  let flushed = 0;
  while ((status() & I8042Status.OBF) && flushed < 16) {
    inb(PORTS.I8042_DATA);
    flushed++;
  }
  assert.equal(flushed, 2);
  const a = command(I8042Cmd.READ_CTR, [], 1)[0];
  const b = command(I8042Cmd.READ_CTR, [], 1)[0];
  assert.equal(a, b);
});

Deno.test("AUX loopback (0xD3) returns the byte as AUX data with IRQ 12 when AUXINT is set", () => {
  const { command, status, inb, outb, auxIrq, kbdIrq } = setup();
  command(I8042Cmd.WRITE_CTR, [I8042Ctr.AUXINT | I8042Ctr.SYS]);
  outb(PORTS.I8042_CMD, I8042Cmd.WRITE_AUX_OBUF);
  outb(PORTS.I8042_DATA, 0xa5);
  assert.ok(status() & I8042Status.AUXDATA);
  assert.ok(auxIrq.level);
  assert.equal(kbdIrq.level, false);
  assert.equal(inb(PORTS.I8042_DATA), 0xa5);
  assert.equal(auxIrq.level, false);
  assert.equal(status() & (I8042Status.OBF | I8042Status.AUXDATA), 0);
});

Deno.test("a byte for the absent keyboard is answered with 0xFE + TIMEOUT on IRQ 1", () => {
  const { command, status, inb, outb, kbdIrq } = setup();
  command(I8042Cmd.WRITE_CTR, [I8042Ctr.KBDINT | I8042Ctr.SYS | I8042Ctr.XLATE]);
  outb(PORTS.I8042_DATA, 0xf2); // ATKBD_CMD_GETID
  const s = status();
  assert.ok(s & I8042Status.OBF);
  assert.ok(s & I8042Status.TIMEOUT);
  assert.equal(s & I8042Status.AUXDATA, 0);
  assert.ok(kbdIrq.level);
  assert.equal(inb(PORTS.I8042_DATA), I8042_NO_DEVICE);
  assert.equal(kbdIrq.level, false);
  assert.equal(status() & I8042Status.TIMEOUT, 0);
});

Deno.test("a byte for the absent mouse (0xD4) is answered with 0xFE + TIMEOUT as AUX data", () => {
  const { command, status, inb } = setup();
  command(I8042Cmd.WRITE_AUX, [0xff]);
  const s = status();
  assert.ok(s & I8042Status.AUXDATA);
  assert.ok(s & I8042Status.TIMEOUT);
  assert.equal(inb(PORTS.I8042_DATA), I8042_NO_DEVICE);
});

Deno.test("each queued keyboard byte gives a new IRQ edge", () => {
  const { command, inb, outb, kbdIrq } = setup();
  outb(PORTS.I8042_CMD, I8042Cmd.WRITE_KBD_OBUF);
  outb(PORTS.I8042_DATA, 0x1c);
  outb(PORTS.I8042_CMD, I8042Cmd.WRITE_KBD_OBUF);
  outb(PORTS.I8042_DATA, 0x9c);
  assert.deepEqual(kbdIrq.history, [true]);
  inb(PORTS.I8042_DATA);
  inb(PORTS.I8042_DATA);
  assert.deepEqual(kbdIrq.history, [true, false, true, false]);
  // Without KBDINT no interrupt at all.
  command(I8042Cmd.WRITE_CTR, [0]);
  command(I8042Cmd.READ_CTR);
  assert.equal(kbdIrq.level, false);
});

Deno.test("pulse reset (0xFE) calls onReset; other pulses and unknown commands do not", () => {
  const { outb, resets } = setup();
  outb(PORTS.I8042_CMD, 0xff); // pulse nothing
  outb(PORTS.I8042_CMD, 0xc8); // unknown
  assert.equal(resets(), 0);
  outb(PORTS.I8042_CMD, I8042Cmd.PULSE_RESET);
  assert.equal(resets(), 1);
});

Deno.test("output port: 0xD1 sets A20 and a cleared bit 0 resets; 0xD0 reads it back", () => {
  const { command, resets } = setup();
  command(I8042Cmd.WRITE_OUTPUT, [0xdf]);
  assert.equal(resets(), 0);
  assert.deepEqual(command(I8042Cmd.READ_OUTPUT, [], 1), [0xdf]);
  command(I8042Cmd.WRITE_OUTPUT, [0xde]);
  assert.equal(resets(), 1);
});

Deno.test("split registration: dataPort and commandPort share state", () => {
  const kbc = new I8042({ onReset: () => {} });
  const bus = new Bus("pio");
  bus.register(BigInt(PORTS.I8042_DATA), 1n, kbc.dataPort, "i8042 data");
  bus.register(BigInt(PORTS.I8042_CMD), 1n, kbc.commandPort, "i8042 cmd");
  bus.write(BigInt(PORTS.I8042_CMD), Uint8Array.of(I8042Cmd.SELF_TEST));
  const data = new Uint8Array(1);
  bus.read(BigInt(PORTS.I8042_DATA), data);
  assert.equal(data[0], 0x55);
  assert.equal(bus.find(0x61n), undefined, "port 0x61 left free");
});

Deno.test("garbage and odd-width accesses never throw", () => {
  const { kbc } = setup();
  for (let offset = -2; offset < 8; offset++) {
    for (const width of [0, 1, 2, 4, 8]) {
      for (const v of [0x00, 0x60, 0xd1, 0xd4, 0xfe, 0xff]) {
        const data = new Uint8Array(width).fill(v);
        kbc.write(offset, data);
        kbc.read(offset, data);
        kbc.dataPort.write(offset, data);
        kbc.commandPort.read(offset, data);
      }
    }
  }
  const wide = new Uint8Array(4);
  kbc.read(I8042_COMMAND_OFFSET, wide);
  assert.deepEqual([...wide.subarray(1)], [0xff, 0xff, 0xff]);
  // Flood the queue: it stays bounded.
  for (let i = 0; i < 100; i++) kbc.write(I8042_COMMAND_OFFSET, Uint8Array.of(I8042Cmd.SELF_TEST));
  let n = 0;
  const d = new Uint8Array(1);
  for (;;) {
    kbc.read(I8042_COMMAND_OFFSET, d);
    if (!(d[0] & I8042Status.OBF)) break;
    kbc.read(0, d);
    n++;
  }
  assert.ok(n <= 16);
});
