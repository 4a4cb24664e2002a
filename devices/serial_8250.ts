/**
 * A 16550A-compatible UART (8250 family) for COM1: 8 byte-wide registers at
 * `PORTS.COM1`, interrupt on `IRQS.COM1`.
 *
 * Transmission is instantaneous: a byte written to THR goes straight to
 * {@linkcode Serial8250Options.onOutput} (or, in loopback mode, into the
 * receive FIFO), so THR and the shift register are always empty (LSR THRE
 * and TEMT set) and the THRE interrupt re-arms right after every write.
 *
 * Reception models two stages, like QEMU: a host-side backlog (the "wire",
 * {@linkcode SERIAL_INPUT_CAPACITY} bytes, filled by
 * {@linkcode Serial8250.enqueueInput} with back-pressure) feeding the
 * guest-visible receive FIFO (16 bytes with FIFOs enabled, 1 byte without).
 * Bytes move from the backlog into the FIFO as soon as there is room, so a
 * guest FIFO reset (FCR bit 1) drops at most one FIFO's worth of input.
 *
 * Interrupts follow the 16550A: receiver line status > received data
 * available > THR empty > modem status, reported in IIR (0xC0 set while
 * FIFOs are enabled). The THRE interrupt is cleared by reading IIR when it
 * is the reported source or by writing THR, and fires again when IER.ETBEI
 * goes from 0 to 1 while THR is empty; Linux's serial8250_do_startup tests
 * exactly that. As on a PC the IRQ output is gated by MCR.OUT2, and it is
 * off in loopback mode (OUT2 is then disconnected from the pin). The line
 * level is recomputed after every register access and driven through
 * {@linkcode IrqLine.set} only when it changes.
 *
 * Linux's probe (autoconfig: IER test, loopback MSR test, FIFO bits in IIR,
 * EFR/NatSemi/16750/XScale tests and size_fifo) identifies this model as a
 * plain 16550A with a 16-byte FIFO.
 *
 * @module
 */

import type { BusDevice } from "./bus.ts";
import type { IrqLine } from "./irq.ts";
import { readBytewise, writeBytewise } from "./byte_access.ts";
import { RegisterTrace } from "./register_trace.ts";

/** Register offsets from the UART's base port (DLAB = LCR bit 7 selects DLL/DLM at 0/1). */
export const UartReg = {
  /** Read: receiver buffer (RBR). Write: transmitter holding (THR). DLAB=1: divisor low (DLL). */
  DATA: 0,
  /** Interrupt enable (IER). DLAB=1: divisor high (DLM). */
  IER: 1,
  /** Read: interrupt identification (IIR). Write: FIFO control (FCR). */
  IIR_FCR: 2,
  /** Line control (LCR). */
  LCR: 3,
  /** Modem control (MCR). */
  MCR: 4,
  /** Line status (LSR). */
  LSR: 5,
  /** Modem status (MSR). */
  MSR: 6,
  /** Scratch (SCR). */
  SCR: 7,
} as const;

/** Number of ports the UART occupies. */
export const UART_REGISTER_COUNT = 8;

/** IER bits. */
export const Ier = {
  /** Received data available (ERBFI). */
  RDI: 0x01,
  /** THR empty (ETBEI). */
  THRI: 0x02,
  /** Receiver line status (ELSI). */
  RLSI: 0x04,
  /** Modem status (EDSSI). */
  MSI: 0x08,
} as const;

/** IIR values: interrupt identification (bits 0-3) and the FIFO-enabled bits. */
export const Iir = {
  /** No interrupt pending. */
  NO_INT: 0x01,
  /** Modem status change. */
  MSI: 0x00,
  /** THR empty. */
  THRI: 0x02,
  /** Received data available. */
  RDI: 0x04,
  /** Receiver line status (overrun, parity, framing, break). */
  RLSI: 0x06,
  /** Both FIFO-enabled bits, set while FCR bit 0 is set. */
  FIFO_ENABLED: 0xc0,
} as const;

/** FCR bits. */
export const Fcr = {
  /** Enable both FIFOs. */
  ENABLE_FIFO: 0x01,
  /** Clear the receive FIFO (self-clearing). */
  CLEAR_RCVR: 0x02,
  /** Clear the transmit FIFO (self-clearing). */
  CLEAR_XMIT: 0x04,
  /** Receive trigger level field (bits 6-7). */
  TRIGGER_MASK: 0xc0,
} as const;

/** LCR bits. */
export const Lcr = {
  /** Divisor latch access. */
  DLAB: 0x80,
} as const;

/** MCR bits (bits 5-7 read as 0 on a 16550A). */
export const Mcr = {
  /** Data terminal ready. */
  DTR: 0x01,
  /** Request to send. */
  RTS: 0x02,
  /** User output 1. */
  OUT1: 0x04,
  /** User output 2; on a PC it enables the IRQ output buffer. */
  OUT2: 0x08,
  /** Local loopback. */
  LOOP: 0x10,
  /** All implemented bits. */
  MASK: 0x1f,
} as const;

/** LSR bits. */
export const Lsr = {
  /** Data ready. */
  DR: 0x01,
  /** Overrun error. */
  OE: 0x02,
  /** Parity error. */
  PE: 0x04,
  /** Framing error. */
  FE: 0x08,
  /** Break interrupt. */
  BI: 0x10,
  /** THR empty. */
  THRE: 0x20,
  /** Transmitter (THR and shift register) empty. */
  TEMT: 0x40,
  /** The error bits cleared by reading LSR. */
  ERRORS: 0x1e,
} as const;

/** MSR bits. */
export const Msr = {
  /** Delta CTS. */
  DCTS: 0x01,
  /** Delta DSR. */
  DDSR: 0x02,
  /** Trailing edge of RI. */
  TERI: 0x04,
  /** Delta DCD. */
  DDCD: 0x08,
  /** All delta bits (cleared by reading MSR). */
  DELTAS: 0x0f,
  /** Clear to send. */
  CTS: 0x10,
  /** Data set ready. */
  DSR: 0x20,
  /** Ring indicator. */
  RI: 0x40,
  /** Data carrier detect. */
  DCD: 0x80,
} as const;

/** Events in the UART's register trace ({@linkcode Serial8250.traceReport}). */
export const UartTraceOp = {
  /** The guest read a register (value: what it got). */
  READ: 0,
  /** The guest wrote a register. */
  WRITE: 1,
  /** Host input queued (value: bytes taken). */
  INPUT: 2,
  /** A receive FIFO reset dropped bytes (value: how many). */
  DROP: 3,
  /** The IRQ line changed (value: the new level). */
  IRQ: 4,
} as const;

const READ_NAMES = ["RBR", "IER", "IIR", "LCR", "MCR", "LSR", "MSR", "SCR"];
const WRITE_NAMES = ["THR", "IER", "FCR", "LCR", "MCR", "LSR", "MSR", "SCR"];

/** Capacity of the host input backlog, in bytes. */
export const SERIAL_INPUT_CAPACITY = 4096;

/** Depth of the 16550A receive FIFO. */
export const UART_FIFO_DEPTH = 16;

/** UART input clock divided by 16: the baud rate for divisor 1. */
export const UART_BAUD_BASE = 115200;

/** Construction options for {@linkcode Serial8250}. */
export interface Serial8250Options {
  /** Name for messages; default `"serial COM1"`. */
  name?: string;
  /** The interrupt line (IRQ 4 for COM1). */
  irq: IrqLine;
  /**
   * Receives every transmitted byte, one call per byte (batching is the
   * caller's business). Not called for bytes written in loopback mode.
   * Exceptions propagate to the port access that caused them.
   */
  onOutput: (bytes: Uint8Array) => void;
  /**
   * Called once when input space frees up after {@linkcode Serial8250.enqueueInput}
   * could not take all it was given (resume reading the host's stdin).
   */
  onInputSpace?: () => void;
}

/** A 16550A UART as a {@linkcode BusDevice} of {@linkcode UART_REGISTER_COUNT} ports. */
export class Serial8250 implements BusDevice {
  /** Name for messages. */
  readonly name: string;

  readonly #irq: IrqLine;
  readonly #onOutput: (bytes: Uint8Array) => void;
  readonly #onInputSpace?: () => void;

  #ier = 0;
  #lcr = 0;
  #mcr = 0;
  #scr = 0;
  #divisor = 12;
  #fifoEnabled = false;
  #rxTrigger = 0;
  /** LSR error bits (OE/PE/FE/BI) latched until LSR is read. */
  #lsrErrors = 0;
  /** MSR delta bits latched until MSR is read. */
  #msrDeltas = 0;
  /** Modem status inputs (MSR bits 4-7) last seen, for the delta bits. */
  #msrInputs = 0;
  /** THRE interrupt armed (cleared by IIR read / THR write). */
  #thrPending = false;
  /** Guest-visible receive FIFO (RBR). */
  #rxFifo: number[] = [];
  /** Last byte read from RBR, returned again when the FIFO is empty. */
  #lastRx = 0;
  /** Host input not yet received (ring buffer). */
  readonly #backlog = new Uint8Array(SERIAL_INPUT_CAPACITY);
  #backlogHead = 0;
  #backlogLength = 0;
  #inputBlocked = false;
  #irqLevel = false;
  readonly #trace = new RegisterTrace();
  /** Host input taken so far, and when the last of it came (ms on the trace's clock). */
  #inputTotal = 0;
  #lastInputMs = -1;

  /**
   * Create a UART in its power-on state (FIFOs off, interrupts off, divisor 12).
   * @param options the interrupt line and output sink
   */
  constructor(options: Serial8250Options) {
    this.name = options.name ?? "serial COM1";
    this.#irq = options.irq;
    this.#onOutput = options.onOutput;
    this.#onInputSpace = options.onInputSpace;
    this.#msrInputs = this.#modemInputs();
  }

  /** Current divisor latch value (DLM:DLL). */
  get divisor(): number {
    return this.#divisor;
  }

  /** Baud rate the guest programmed (0 when the divisor is 0). */
  get baudRate(): number {
    return this.#divisor === 0 ? 0 : UART_BAUD_BASE / this.#divisor;
  }

  /** Receive trigger level the guest selected (1, 4, 8 or 14 bytes); informational. */
  get rxTriggerLevel(): number {
    return [1, 4, 8, 14][this.#rxTrigger >> 6];
  }

  /** Bytes {@linkcode enqueueInput} would accept now. */
  get inputSpace(): number {
    return SERIAL_INPUT_CAPACITY - this.#backlogLength;
  }

  /** Current level of the interrupt line as this device drives it. */
  get irqLevel(): boolean {
    return this.#irqLevel;
  }

  /**
   * Queue bytes from the host (stdin) for the guest to receive. Returns how
   * many were accepted (a prefix of `bytes`); the rest must be offered again
   * later (see {@linkcode Serial8250Options.onInputSpace}).
   */
  enqueueInput(bytes: Uint8Array): number {
    let accepted = 0;
    while (accepted < bytes.length) {
      if (this.#backlogLength === SERIAL_INPUT_CAPACITY) {
        this.#receiveFromBacklog();
        if (this.#backlogLength === SERIAL_INPUT_CAPACITY) break;
      }
      const tail = (this.#backlogHead + this.#backlogLength) % SERIAL_INPUT_CAPACITY;
      this.#backlog[tail] = bytes[accepted++];
      this.#backlogLength++;
    }
    if (accepted < bytes.length) this.#inputBlocked = true;
    this.#trace.record(UartTraceOp.INPUT, 0, accepted);
    this.#inputTotal += accepted;
    this.#lastInputMs = this.#trace.now();
    this.#receiveFromBacklog();
    this.#updateIrq();
    return accepted;
  }

  /** The UART's registers and queues as they stand, for a stall report (reads nothing away). */
  describe(): string {
    const hex = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;
    return [
      `IER=${hex(this.#ier)} IIR=${hex(this.#iir())} LSR=${hex(this.#lsr())}`,
      `MCR=${hex(this.#mcr)} LCR=${hex(this.#lcr)} irq=${this.#irqLevel ? 1 : 0}`,
      `thrPending=${this.#thrPending} rxFifo=${this.#rxFifo.length} backlog=${this.#backlogLength}`,
      this.#lastInputMs < 0
        ? "input: none yet"
        : `input: ${this.#inputTotal} bytes, the last at +${
          (this.#lastInputMs / 1000).toFixed(3)
        }s`,
    ].join(" ");
  }

  /**
   * The last register accesses and events, oldest first, runs folded
   * (`R LSR=0x60 x57`), with their time since the UART was made: tells a
   * guest that stopped reading input from one whose interrupt went missing.
   */
  traceReport(): string {
    return this.#trace.entries().map((e) => {
      const hex = `0x${e.value.toString(16).padStart(2, "0")}`;
      const what = e.op === UartTraceOp.READ
        ? `R ${READ_NAMES[e.reg]}=${hex}`
        : e.op === UartTraceOp.WRITE
        ? `W ${WRITE_NAMES[e.reg]}=${hex}`
        : e.op === UartTraceOp.INPUT
        ? `input ${e.value}`
        : e.op === UartTraceOp.DROP
        ? `FIFO reset dropped ${e.value}`
        : `irq ${e.value}`;
      return `+${(e.atMs / 1000).toFixed(3)}s ${what}${e.count > 1 ? ` x${e.count}` : ""}`;
    }).join("\n");
  }

  /** Read `data.length` byte registers starting at `offset`. */
  read(offset: number, data: Uint8Array): void {
    readBytewise(offset, data, UART_REGISTER_COUNT, (at) => this.#readRegister(at));
    this.#trace.record(UartTraceOp.READ, offset & 7, data[0] ?? 0xff);
    this.#afterAccess();
  }

  /** Write `data.length` byte registers starting at `offset`. */
  write(offset: number, data: Uint8Array): void {
    writeBytewise(offset, data, UART_REGISTER_COUNT, (at, value) => this.#writeRegister(at, value));
    this.#trace.record(UartTraceOp.WRITE, offset & 7, data[0] ?? 0);
    this.#afterAccess();
  }

  #readRegister(offset: number): number {
    const dlab = (this.#lcr & Lcr.DLAB) !== 0;
    switch (offset) {
      case UartReg.DATA:
        return dlab ? this.#divisor & 0xff : this.#readRbr();
      case UartReg.IER:
        return dlab ? this.#divisor >> 8 : this.#ier;
      case UartReg.IIR_FCR: {
        const iir = this.#iir();
        if ((iir & 0x0f) === Iir.THRI) this.#thrPending = false;
        return iir;
      }
      case UartReg.LCR:
        return this.#lcr;
      case UartReg.MCR:
        return this.#mcr;
      case UartReg.LSR: {
        const lsr = this.#lsr();
        this.#lsrErrors = 0;
        return lsr;
      }
      case UartReg.MSR: {
        const msr = this.#msrInputs | this.#msrDeltas;
        this.#msrDeltas = 0;
        return msr;
      }
      case UartReg.SCR:
        return this.#scr;
      default:
        return 0xff;
    }
  }

  #writeRegister(offset: number, value: number): void {
    const dlab = (this.#lcr & Lcr.DLAB) !== 0;
    switch (offset) {
      case UartReg.DATA:
        if (dlab) this.#divisor = (this.#divisor & 0xff00) | value;
        else this.#transmit(value);
        return;
      case UartReg.IER:
        if (dlab) this.#divisor = (this.#divisor & 0x00ff) | (value << 8);
        else this.#writeIer(value);
        return;
      case UartReg.IIR_FCR:
        this.#writeFcr(value);
        return;
      case UartReg.LCR:
        this.#lcr = value;
        return;
      case UartReg.MCR:
        this.#writeMcr(value);
        return;
      case UartReg.SCR:
        this.#scr = value;
        return;
      default:
        // LSR and MSR are read-only (factory test registers on real parts).
        return;
    }
  }

  #readRbr(): number {
    const byte = this.#rxFifo.shift();
    if (byte !== undefined) {
      this.#lastRx = byte;
      this.#receiveFromBacklog();
    }
    return this.#lastRx;
  }

  #transmit(byte: number): void {
    this.#thrPending = false;
    if (this.#loopback) {
      if (this.#rxFifo.length < this.#fifoDepth) this.#rxFifo.push(byte);
      else this.#lsrErrors |= Lsr.OE;
    } else {
      this.#onOutput(Uint8Array.of(byte));
    }
    // The byte left THR at once: THR is empty again and THRE re-arms.
    this.#thrPending = true;
  }

  #writeIer(value: number): void {
    const old = this.#ier;
    this.#ier = value & 0x0f;
    const rising = (this.#ier & Ier.THRI) !== 0 && (old & Ier.THRI) === 0;
    if (rising) this.#thrPending = true; // THR is always empty
    else if ((this.#ier & Ier.THRI) === 0) this.#thrPending = false;
  }

  #writeFcr(value: number): void {
    const enable = (value & Fcr.ENABLE_FIFO) !== 0;
    if (enable !== this.#fifoEnabled || (value & Fcr.CLEAR_RCVR)) {
      // Switching FIFO mode resets both FIFOs.
      if (this.#rxFifo.length > 0) this.#trace.record(UartTraceOp.DROP, 0, this.#rxFifo.length);
      this.#rxFifo = [];
      this.#fifoEnabled = enable;
    }
    // Transmit FIFO is always empty; CLEAR_XMIT has nothing to do.
    this.#rxTrigger = value & Fcr.TRIGGER_MASK;
    this.#receiveFromBacklog();
  }

  #writeMcr(value: number): void {
    this.#mcr = value & Mcr.MASK;
    const inputs = this.#modemInputs();
    const changed = inputs ^ this.#msrInputs;
    if (changed & Msr.CTS) this.#msrDeltas |= Msr.DCTS;
    if (changed & Msr.DSR) this.#msrDeltas |= Msr.DDSR;
    if (changed & Msr.DCD) this.#msrDeltas |= Msr.DDCD;
    if ((this.#msrInputs & Msr.RI) && !(inputs & Msr.RI)) this.#msrDeltas |= Msr.TERI;
    this.#msrInputs = inputs;
    this.#receiveFromBacklog();
  }

  /** MSR bits 4-7: the modem outputs looped back, or a null-modem peer that is always ready. */
  #modemInputs(): number {
    if (!this.#loopback) return Msr.CTS | Msr.DSR | Msr.DCD;
    let inputs = 0;
    if (this.#mcr & Mcr.RTS) inputs |= Msr.CTS;
    if (this.#mcr & Mcr.DTR) inputs |= Msr.DSR;
    if (this.#mcr & Mcr.OUT1) inputs |= Msr.RI;
    if (this.#mcr & Mcr.OUT2) inputs |= Msr.DCD;
    return inputs;
  }

  get #loopback(): boolean {
    return (this.#mcr & Mcr.LOOP) !== 0;
  }

  get #fifoDepth(): number {
    return this.#fifoEnabled ? UART_FIFO_DEPTH : 1;
  }

  #lsr(): number {
    let lsr = Lsr.THRE | Lsr.TEMT | this.#lsrErrors;
    if (this.#rxFifo.length > 0) lsr |= Lsr.DR;
    return lsr;
  }

  /** The pending interrupt of highest priority, with the FIFO bits. */
  #iir(): number {
    const fifoBits = this.#fifoEnabled ? Iir.FIFO_ENABLED : 0;
    return fifoBits | this.#pendingInterrupt();
  }

  #pendingInterrupt(): number {
    if ((this.#ier & Ier.RLSI) && (this.#lsrErrors & Lsr.ERRORS)) return Iir.RLSI;
    if ((this.#ier & Ier.RDI) && this.#rxFifo.length > 0) return Iir.RDI;
    if ((this.#ier & Ier.THRI) && this.#thrPending) return Iir.THRI;
    if ((this.#ier & Ier.MSI) && this.#msrDeltas) return Iir.MSI;
    return Iir.NO_INT;
  }

  /** Move host input from the backlog into the receive FIFO while it has room (not in loopback). */
  #receiveFromBacklog(): void {
    if (this.#loopback) return;
    while (this.#backlogLength > 0 && this.#rxFifo.length < this.#fifoDepth) {
      this.#rxFifo.push(this.#backlog[this.#backlogHead]);
      this.#backlogHead = (this.#backlogHead + 1) % SERIAL_INPUT_CAPACITY;
      this.#backlogLength--;
    }
  }

  #afterAccess(): void {
    this.#updateIrq();
    if (this.#inputBlocked && this.inputSpace > 0) {
      this.#inputBlocked = false;
      this.#onInputSpace?.();
    }
  }

  #updateIrq(): void {
    const gate = (this.#mcr & Mcr.OUT2) !== 0 && !this.#loopback;
    const level = gate && this.#pendingInterrupt() !== Iir.NO_INT;
    if (level !== this.#irqLevel) {
      this.#irqLevel = level;
      this.#trace.record(UartTraceOp.IRQ, 0, level ? 1 : 0);
      this.#irq.set(level);
    }
  }
}
