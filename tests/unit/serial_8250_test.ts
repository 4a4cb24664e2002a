import assert from "node:assert/strict";
import { RecordingIrqLine } from "../../devices/irq.ts";
import {
  Fcr,
  Ier,
  Iir,
  Lcr,
  Lsr,
  Mcr,
  Msr,
  Serial8250,
  SERIAL_INPUT_CAPACITY,
  UART_FIFO_DEPTH,
  UartReg,
} from "../../devices/serial_8250.ts";

function setup() {
  const irq = new RecordingIrqLine();
  const output: number[] = [];
  let spaceCalls = 0;
  const uart = new Serial8250({
    irq,
    onOutput: (bytes) => output.push(...bytes),
    onInputSpace: () => spaceCalls++,
  });
  const inb = (offset: number) => {
    const data = new Uint8Array(1);
    uart.read(offset, data);
    return data[0];
  };
  const outb = (offset: number, value: number) => uart.write(offset, Uint8Array.of(value));
  return { uart, irq, output, inb, outb, spaceCalls: () => spaceCalls };
}

const UART_LCR_CONF_MODE_A = 0x80;
const UART_LCR_CONF_MODE_B = 0xbf;
const UART_FCR7_64BYTE = 0x20;
const UART_IER_UUE = 0x40;

Deno.test("Linux autoconfig identifies a 16550A (IER test, loopback test, IIR FIFO bits)", () => {
  const { inb, outb } = setup();
  // IER existence test.
  const scratch = inb(UartReg.IER);
  outb(UartReg.IER, 0);
  const scratch2 = inb(UartReg.IER) & 0x0f;
  outb(UartReg.IER, 0x0f);
  const scratch3 = inb(UartReg.IER) & 0x0f;
  outb(UartReg.IER, scratch);
  assert.deepEqual([scratch2, scratch3], [0, 0x0f]);

  // Loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS.
  const saveMcr = inb(UartReg.MCR);
  const saveLcr = inb(UartReg.LCR);
  outb(UartReg.MCR, Mcr.LOOP | 0x0a);
  assert.deepEqual(inb(UartReg.MSR) & 0xf0, 0x90);
  outb(UartReg.MCR, saveMcr);

  // EFR reset (config mode B), then FIFO detection through IIR bits 6-7.
  outb(UartReg.LCR, UART_LCR_CONF_MODE_B);
  outb(UartReg.IIR_FCR, 0);
  outb(UartReg.LCR, 0);
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  assert.deepEqual(inb(UartReg.IIR_FCR) >> 6, 3, "IIR reports FIFOs enabled (16550A)");

  // autoconfig_16550a: no EFR with DLAB set, nor with LCR=0xBF.
  outb(UartReg.LCR, UART_LCR_CONF_MODE_A);
  assert.ok(inb(UartReg.IIR_FCR) !== 0, "not an ST16C650V1");
  outb(UartReg.LCR, UART_LCR_CONF_MODE_B);
  assert.ok(inb(UartReg.IIR_FCR) !== 0, "no EFR at LCR=0xBF");

  // NatSemi SuperIO test: IIR bit 4 must not follow MCR.LOOP.
  outb(UartReg.LCR, 0);
  const status1 = inb(UartReg.MCR);
  outb(UartReg.LCR, 0xe0);
  let status2 = inb(UartReg.IIR_FCR);
  assert.deepEqual((status1 ^ status2) & Mcr.LOOP, 0);
  outb(UartReg.LCR, 0);
  outb(UartReg.MCR, status1 ^ Mcr.LOOP);
  outb(UartReg.LCR, 0xe0);
  status2 = inb(UartReg.IIR_FCR);
  outb(UartReg.LCR, 0);
  outb(UartReg.MCR, status1);
  assert.deepEqual((status2 ^ status1) & Mcr.LOOP, 0, "not a NatSemi part");

  // TI16750 test: IIR bit 5 never set.
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO | UART_FCR7_64BYTE);
  const iir1 = inb(UartReg.IIR_FCR) >> 5;
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  outb(UartReg.LCR, UART_LCR_CONF_MODE_A);
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO | UART_FCR7_64BYTE);
  const iir2 = inb(UartReg.IIR_FCR) >> 5;
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  outb(UartReg.LCR, 0);
  assert.ok(!(iir1 === 6 && iir2 === 7), "not a 16750");

  // XScale test: IER bit 6 (UUE) must not stick.
  const iersave = inb(UartReg.IER);
  outb(UartReg.IER, iersave | UART_IER_UUE);
  assert.deepEqual(inb(UartReg.IER) & UART_IER_UUE, 0);
  outb(UartReg.IER, iersave);

  outb(UartReg.LCR, saveLcr);
});

Deno.test("size_fifo counts 16 bytes through loopback (a 16550A, not a 64-byte U6)", () => {
  const { inb, outb, output } = setup();
  outb(UartReg.LCR, 0);
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO | Fcr.CLEAR_RCVR | Fcr.CLEAR_XMIT);
  outb(UartReg.MCR, Mcr.LOOP);
  outb(UartReg.LCR, UART_LCR_CONF_MODE_A);
  outb(UartReg.DATA, 1);
  outb(UartReg.IER, 0);
  outb(UartReg.LCR, 0x03);
  for (let i = 0; i < 256; i++) outb(UartReg.DATA, i);
  let count = 0;
  const received: number[] = [];
  while ((inb(UartReg.LSR) & Lsr.DR) && count < 256) {
    received.push(inb(UartReg.DATA));
    count++;
  }
  assert.deepEqual(count, UART_FIFO_DEPTH);
  assert.deepEqual(received, [...Array(16).keys()]);
  assert.deepEqual(output, [], "loopback bytes never reach the output");
});

Deno.test("overrun in loopback sets LSR.OE, raises RLS interrupt, and LSR read clears it", () => {
  const { inb, outb, uart } = setup();
  outb(UartReg.MCR, Mcr.LOOP);
  outb(UartReg.IER, Ier.RLSI);
  outb(UartReg.DATA, 1);
  outb(UartReg.DATA, 2); // FIFOs disabled: 1-byte RBR overruns
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.RLSI);
  assert.ok(!(uart.irqLevel), "no IRQ in loopback (OUT2 disconnected)");
  assert.ok(inb(UartReg.LSR) & Lsr.OE);
  assert.deepEqual(inb(UartReg.LSR) & Lsr.OE, 0);
  assert.deepEqual(inb(UartReg.DATA), 1);
});

Deno.test("serial8250_do_startup THRE tests: THRE fires, and fires again when ETBEI is re-set", () => {
  const { inb, outb } = setup();
  assert.deepEqual(inb(UartReg.LSR) & (Lsr.THRE | Lsr.TEMT), Lsr.THRE | Lsr.TEMT);
  outb(UartReg.IER, Ier.THRI);
  const iir1 = inb(UartReg.IIR_FCR);
  outb(UartReg.IER, 0);
  outb(UartReg.IER, Ier.THRI);
  const iir = inb(UartReg.IIR_FCR);
  outb(UartReg.IER, 0);
  assert.deepEqual(iir1 & 0x0f, Iir.THRI);
  assert.deepEqual(iir & 0x0f, Iir.THRI, "THRE is reasserted (no UART_BUG_THRE)");
  // TXEN test.
  outb(UartReg.IER, Ier.THRI);
  const lsr = inb(UartReg.LSR);
  const iir3 = inb(UartReg.IIR_FCR);
  outb(UartReg.IER, 0);
  assert.ok(lsr & Lsr.TEMT);
  assert.deepEqual(iir3 & Iir.NO_INT, 0, "no UART_BUG_TXEN");
});

Deno.test("THRE interrupt drives the IRQ line only with OUT2, clears on IIR read, re-arms on THR write", () => {
  const { inb, outb, irq, output } = setup();
  outb(UartReg.IER, Ier.THRI);
  assert.ok(!(irq.level), "OUT2 clear gates the interrupt");
  outb(UartReg.MCR, Mcr.OUT2 | Mcr.DTR | Mcr.RTS);
  assert.ok(irq.level);
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.THRI);
  assert.ok(!(irq.level), "reading IIR cleared the THRE interrupt");
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.NO_INT);
  outb(UartReg.DATA, 0x41);
  assert.deepEqual(output, [0x41]);
  assert.ok(irq.level, "THR emptied again: new THRE interrupt (a fresh edge)");
  outb(UartReg.IER, 0);
  assert.ok(!(irq.level));
  assert.deepEqual(irq.history, [true, false, true, false]);
});

Deno.test("RX data raises the data-available interrupt until the FIFO is drained", () => {
  const { uart, inb, outb, irq } = setup();
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  outb(UartReg.MCR, Mcr.OUT2);
  outb(UartReg.IER, Ier.RDI | Ier.RLSI);
  assert.ok(!(irq.level));
  assert.deepEqual(uart.enqueueInput(new TextEncoder().encode("hi")), 2);
  assert.ok(irq.level);
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.FIFO_ENABLED | Iir.RDI);
  assert.ok(inb(UartReg.LSR) & Lsr.DR);
  assert.deepEqual(inb(UartReg.DATA), 0x68);
  assert.ok(irq.level);
  assert.deepEqual(inb(UartReg.DATA), 0x69);
  assert.ok(!(irq.level));
  assert.deepEqual(inb(UartReg.LSR) & Lsr.DR, 0);
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.FIFO_ENABLED | Iir.NO_INT);
});

Deno.test("RX has priority over THRE in IIR; reading IIR then does not clear THRE", () => {
  const { uart, inb, outb } = setup();
  outb(UartReg.MCR, Mcr.OUT2);
  outb(UartReg.IER, Ier.RDI | Ier.THRI);
  uart.enqueueInput(Uint8Array.of(7));
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.RDI);
  inb(UartReg.DATA);
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.THRI);
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.NO_INT);
});

Deno.test("modem status interrupt reports MSR deltas; reading MSR clears them", () => {
  const { inb, outb } = setup();
  outb(UartReg.IER, Ier.MSI);
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.NO_INT);
  outb(UartReg.MCR, Mcr.LOOP | Mcr.RTS);
  // Entering loopback drops DSR and DCD and keeps CTS (from RTS).
  assert.deepEqual(inb(UartReg.IIR_FCR), Iir.MSI);
  assert.deepEqual(inb(UartReg.MSR), Msr.CTS | Msr.DDSR | Msr.DDCD);
  assert.deepEqual(inb(UartReg.MSR), Msr.CTS);
  outb(UartReg.MCR, 0);
  assert.deepEqual(inb(UartReg.MSR), Msr.CTS | Msr.DSR | Msr.DCD | Msr.DDSR | Msr.DDCD);
});

Deno.test("divisor latch is reached through DLAB and does not disturb IER/THR", () => {
  const { uart, inb, outb, output } = setup();
  outb(UartReg.IER, Ier.RDI);
  outb(UartReg.LCR, Lcr.DLAB | 0x03);
  outb(UartReg.DATA, 0x01);
  outb(UartReg.IER, 0x00);
  assert.deepEqual([inb(UartReg.DATA), inb(UartReg.IER)], [0x01, 0x00]);
  outb(UartReg.LCR, 0x03);
  assert.deepEqual(uart.divisor, 1);
  assert.deepEqual(uart.baudRate, 115200);
  assert.deepEqual(inb(UartReg.IER), Ier.RDI);
  assert.deepEqual(inb(UartReg.LCR), 0x03);
  assert.deepEqual(output, []);
  outb(UartReg.LCR, Lcr.DLAB);
  outb(UartReg.DATA, 0x80);
  outb(UartReg.IER, 0x01);
  assert.deepEqual(uart.divisor, 0x180);
});

Deno.test("scratch register holds any value", () => {
  const { inb, outb } = setup();
  for (const v of [0xa5, 0x5a, 0x00, 0xff]) {
    outb(UartReg.SCR, v);
    assert.deepEqual(inb(UartReg.SCR), v);
  }
});

Deno.test("RX back-pressure: accepts up to capacity, reports space when the guest drains", () => {
  const { uart, inb, outb, spaceCalls } = setup();
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  const big = new Uint8Array(SERIAL_INPUT_CAPACITY + UART_FIFO_DEPTH + 100).map((_, i) => i & 0xff);
  const accepted = uart.enqueueInput(big);
  // The backlog is full and the FIFO holds 16 more.
  assert.deepEqual(accepted, SERIAL_INPUT_CAPACITY + UART_FIFO_DEPTH);
  assert.deepEqual(uart.inputSpace, 0);
  assert.deepEqual(uart.enqueueInput(Uint8Array.of(1)), 0);
  assert.deepEqual(spaceCalls(), 0);
  assert.deepEqual(inb(UartReg.DATA), 0);
  assert.deepEqual(spaceCalls(), 1);
  assert.deepEqual(uart.inputSpace, 1);
  // Everything arrives in order.
  let n = 1;
  while (inb(UartReg.LSR) & Lsr.DR) {
    assert.deepEqual(inb(UartReg.DATA), n & 0xff);
    n++;
  }
  assert.deepEqual(n, accepted);
});

Deno.test("a FIFO reset drops only the guest-visible FIFO, not the host backlog", () => {
  const { uart, inb, outb } = setup();
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO);
  uart.enqueueInput(new Uint8Array(20).map((_, i) => i));
  outb(UartReg.IIR_FCR, Fcr.ENABLE_FIFO | Fcr.CLEAR_RCVR);
  assert.deepEqual(inb(UartReg.DATA), 16);
});

Deno.test("garbage and odd-width accesses never throw", () => {
  const { uart, output } = setup();
  for (let offset = -3; offset < 12; offset++) {
    for (const width of [1, 2, 3, 4, 8]) {
      const data = new Uint8Array(width).fill(0xaa);
      uart.write(offset, data);
      uart.read(offset, data);
    }
  }
  uart.read(1.5, new Uint8Array(2));
  uart.write(Number.NaN, new Uint8Array(4));
  const wide = new Uint8Array(4);
  uart.read(6, wide);
  assert.deepEqual(wide[2], 0xff, "bytes beyond the 8 ports read as 0xff");
  assert.ok(output.length > 0);
});

Deno.test("a 16-bit write to offset 0 splits into THR then IER", () => {
  const { uart, inb, output } = setup();
  uart.write(0, Uint8Array.of(0x42, Ier.RDI));
  assert.deepEqual(output, [0x42]);
  assert.deepEqual(inb(UartReg.IER), Ier.RDI);
});
