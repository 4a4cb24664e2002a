/** The register trace behind the UART's stall report: folding, the ring, and the UART's wording. */
import assert from "node:assert/strict";
import { RegisterTrace } from "../../devices/register_trace.ts";
import { Fcr, Serial8250, UartReg } from "../../devices/serial_8250.ts";

Deno.test("repeats of the same access fold into one entry that counts them and keeps the last value", () => {
  const t = new RegisterTrace(8);
  t.record(0, 5, 0x60);
  t.record(0, 5, 0x61);
  t.record(1, 0, 0x41);
  t.record(0, 5, 0x60);
  const e = t.entries();
  assert.deepEqual(e.map((x) => [x.op, x.reg, x.value, x.count]), [
    [0, 5, 0x61, 2],
    [1, 0, 0x41, 1],
    [0, 5, 0x60, 1],
  ]);
  assert.ok(e[0].atMs <= e[2].atMs);
});

Deno.test("the ring keeps the newest entries, oldest first; fold can be refused per op", () => {
  const t = new RegisterTrace(3, (op) => op !== 2);
  for (let i = 0; i < 5; i++) t.record(1, i, i);
  t.record(2, 0, 7);
  t.record(2, 0, 7);
  assert.deepEqual(t.entries().map((x) => [x.reg, x.op, x.count]), [[4, 1, 1], [0, 2, 1], [
    0,
    2,
    1,
  ]]);
});

Deno.test("the UART's trace names registers and shows input arriving and a FIFO reset dropping it", () => {
  const uart = new Serial8250({ irq: { set() {} }, onOutput() {} });
  const write = (reg: number, v: number) => uart.write(reg, Uint8Array.of(v));
  write(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  uart.enqueueInput(new TextEncoder().encode("ls\n"));
  write(UartReg.IIR_FCR, Fcr.ENABLE_FIFO | Fcr.CLEAR_RCVR);
  for (let i = 0; i < 3; i++) uart.read(UartReg.LSR, new Uint8Array(1));
  const lines = uart.traceReport().split("\n").map((l) => l.replace(/^\+\d+\.\d+s /, ""));
  assert.deepEqual(lines, [
    "W FCR=0x01",
    "input 3",
    "FIFO reset dropped 3",
    "W FCR=0x03",
    "R LSR=0x60 x3",
  ]);
  assert.match(uart.describe(), /input: 3 bytes, the last at \+\d+\.\d{3}s$/);
  assert.match(new Serial8250({ irq: { set() {} }, onOutput() {} }).describe(), /input: none yet$/);
});
