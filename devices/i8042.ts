/**
 * The PS/2 (i8042) keyboard controller, with nothing plugged into either
 * port: data at {@linkcode PORTS.I8042_DATA} (0x60), status/command at
 * {@linkcode PORTS.I8042_CMD} (0x64). Register it twice on the port bus either as
 * one {@linkcode I8042_PORT_SPAN}-byte range at 0x60 (offset 0 data, offset 4
 * command/status, offsets 1-3 unclaimed: read 0xff, writes ignored), or as
 * the two one-byte devices {@linkcode I8042.dataPort} and
 * {@linkcode I8042.commandPort} (leaving 0x61, port B, free for another
 * device if the in-kernel PIT does not handle it).
 *
 * What it does, for Linux (drivers/input/serio/i8042.c) and the reboot path:
 * - Controller commands: read/write controller RAM (0x20-0x3f / 0x60-0x7f,
 *   RAM[0] is the command byte), self test (0xAA -> 0x55), interface tests
 *   (0xAB, 0xA9 -> 0x00), disable/enable ports (0xAD/0xAE, 0xA7/0xA8, which
 *   flip the command byte's disable bits), read/write output port (0xD0/0xD1),
 *   write keyboard/aux output buffer (0xD2/0xD3, the AUX loopback test),
 *   write to aux device (0xD4), pulse output lines (0xF0-0xFF: bit 0 clear
 *   pulses the CPU reset line -> {@linkcode I8042Options.onReset}; 0xFE is
 *   what Linux's `reboot=kbd` sends). A 0xD1 write with bit 0 clear also
 *   resets. Unknown commands are ignored, like a real controller.
 * - Devices: none. A byte sent to the keyboard (a data-port write outside a
 *   command) or to the mouse (0xD4) is answered at once with 0xFE and the
 *   status TIMEOUT bit, which Linux's libps2 treats as a failed command, so
 *   atkbd/psmouse probing ends without waiting for timeouts.
 * - Status: OBF from the output queue, IBF always 0 (commands complete
 *   instantly, so `kb_wait()` never spins), SYS flag, CMD/DATA (last write
 *   went to 0x64), KEYLOCK = unlocked, AUXDATA/TIMEOUT of the byte at the
 *   head of the queue.
 * - Interrupts: the keyboard line is high while a keyboard-side byte is at
 *   the head of the queue and the command byte's KBDINT bit is set; the AUX
 *   line likewise with AUXINT. After the guest reads a byte the line is
 *   dropped before the next byte is considered, so every byte gives a fresh
 *   edge on an edge-triggered IOAPIC pin.
 *
 * @module
 */

import type { BusDevice } from "./bus.ts";
import type { IrqLine } from "./irq.ts";
import { PORTS } from "../x86/layout.ts";

/** Status register bits (read from port 0x64). */
export const I8042Status = {
  /** Output buffer full: a byte waits at port 0x60. */
  OBF: 0x01,
  /** Input buffer full: the controller has not consumed the last write. */
  IBF: 0x02,
  /** System flag (set after a successful self test / by POST). */
  SYS: 0x04,
  /** The last write went to the command port (1) or the data port (0). */
  CMD: 0x08,
  /** Keyboard not inhibited by the keylock switch. */
  UNLOCKED: 0x10,
  /** The byte in the output buffer came from the AUX (mouse) port. */
  AUXDATA: 0x20,
  /** Timeout talking to the device. */
  TIMEOUT: 0x40,
  /** Parity error. */
  PARITY: 0x80,
} as const;

/** Controller command byte (controller RAM byte 0) bits. */
export const I8042Ctr = {
  /** Keyboard interrupt (IRQ 1) enable. */
  KBDINT: 0x01,
  /** AUX interrupt (IRQ 12) enable. */
  AUXINT: 0x02,
  /** System flag. */
  SYS: 0x04,
  /** Keyboard port disabled (clock inhibited). */
  KBDDIS: 0x10,
  /** AUX port disabled (clock inhibited). */
  AUXDIS: 0x20,
  /** Scan code set 2 to set 1 translation. */
  XLATE: 0x40,
} as const;

/** Controller commands (written to port 0x64). */
export const I8042Cmd = {
  /** Read controller RAM byte 0 (the command byte); 0x21-0x3F read bytes 1-31. */
  READ_CTR: 0x20,
  /** Write controller RAM byte 0 (the command byte); 0x61-0x7F write bytes 1-31. */
  WRITE_CTR: 0x60,
  /** Disable the AUX port. */
  AUX_DISABLE: 0xa7,
  /** Enable the AUX port. */
  AUX_ENABLE: 0xa8,
  /** AUX interface test (0x00 = OK). */
  AUX_TEST: 0xa9,
  /** Controller self test (0x55 = OK). */
  SELF_TEST: 0xaa,
  /** Keyboard interface test (0x00 = OK). */
  KBD_TEST: 0xab,
  /** Disable the keyboard port. */
  KBD_DISABLE: 0xad,
  /** Enable the keyboard port. */
  KBD_ENABLE: 0xae,
  /** Read the input port. */
  READ_INPUT: 0xc0,
  /** Read the output port. */
  READ_OUTPUT: 0xd0,
  /** Write the output port (next data byte). */
  WRITE_OUTPUT: 0xd1,
  /** Write the keyboard output buffer (next data byte comes back as keyboard data). */
  WRITE_KBD_OBUF: 0xd2,
  /** Write the AUX output buffer (next data byte comes back as AUX data): the AUX loop test. */
  WRITE_AUX_OBUF: 0xd3,
  /** Write the next data byte to the AUX device. */
  WRITE_AUX: 0xd4,
  /** Disable A20 (some controllers). */
  A20_DISABLE: 0xdd,
  /** Enable A20 (some controllers). */
  A20_ENABLE: 0xdf,
  /** Read test inputs. */
  READ_TEST_INPUTS: 0xe0,
  /** Pulse the CPU reset line (and nothing else). */
  PULSE_RESET: 0xfe,
} as const;

/** Output port bits. */
export const I8042OutputPort = {
  /** CPU reset line, active low. */
  RESET_N: 0x01,
  /** Gate A20. */
  A20: 0x02,
} as const;

/** Answer of the controller self test. */
export const I8042_SELF_TEST_OK = 0x55;

/** What a device port answers when nothing is attached (with {@linkcode I8042Status.TIMEOUT}). */
export const I8042_NO_DEVICE = 0xfe;

/** Command byte after power-on: keyboard interrupt, system flag, translation, AUX disabled. */
export const I8042_INITIAL_CTR: number = I8042Ctr.KBDINT | I8042Ctr.SYS | I8042Ctr.AUXDIS |
  I8042Ctr.XLATE;

/** Most bytes the output queue holds; older bytes are kept, newer ones dropped. */
export const I8042_QUEUE_LIMIT = 16;

/** Span from the data port to the command port inclusive: the size of a single registration at 0x60. */
export const I8042_PORT_SPAN: number = PORTS.I8042_CMD - PORTS.I8042_DATA + 1;

/** Offset of the command/status port within {@linkcode I8042_PORT_SPAN}. */
export const I8042_COMMAND_OFFSET: number = PORTS.I8042_CMD - PORTS.I8042_DATA;

/** Construction options for {@linkcode I8042}. */
export interface I8042Options {
  /** Name for messages; default `"i8042"`. */
  name?: string;
  /**
   * The guest asked for a CPU reset (command 0xFE, or an output-port write
   * clearing bit 0). Exceptions propagate to the port access.
   */
  onReset: () => void;
  /** Keyboard interrupt line (IRQ 1); optional. */
  kbdIrq?: IrqLine;
  /** AUX (mouse) interrupt line (IRQ 12); optional, see the module notes. */
  auxIrq?: IrqLine;
}

/**
 * The i8042 controller: a {@linkcode BusDevice} of {@linkcode I8042_PORT_SPAN}
 * bytes at 0x60, or two one-byte devices {@linkcode I8042.dataPort} (0x60)
 * and {@linkcode I8042.commandPort} (0x64) sharing the same state.
 */
export class I8042 implements BusDevice {
  /** Name for messages. */
  readonly name: string;
  /** The device to register at the data port (0x60), 1 byte. */
  readonly dataPort: BusDevice;
  /** The device to register at the command/status port (0x64), 1 byte. */
  readonly commandPort: BusDevice;

  readonly #onReset: () => void;
  readonly #kbdIrq?: IrqLine;
  readonly #auxIrq?: IrqLine;
  /** Controller RAM; byte 0 is the command byte. */
  readonly #ram = new Uint8Array(32);
  #outputPort: number = I8042OutputPort.RESET_N | I8042OutputPort.A20;
  #statusFlags: number = I8042Status.UNLOCKED | I8042Status.SYS;
  #queue: QueuedByte[] = [];
  #lastData = 0;
  /** Command waiting for its data-port parameter, if any. */
  #pending: number | undefined;
  #kbdLevel = false;
  #auxLevel = false;

  /**
   * Create a controller in its power-on state (command byte {@linkcode I8042_INITIAL_CTR}).
   * @param options reset callback and interrupt lines
   */
  constructor(options: I8042Options) {
    this.name = options.name ?? "i8042";
    this.#onReset = options.onReset;
    this.#kbdIrq = options.kbdIrq;
    this.#auxIrq = options.auxIrq;
    this.#ram[0] = I8042_INITIAL_CTR;
    this.dataPort = {
      read: (offset, data) => this.#access(offset, data, () => this.#readData()),
      write: (offset, data) => this.#access(offset, data, undefined, (v) => this.#writeData(v)),
    };
    this.commandPort = {
      read: (offset, data) => this.#access(offset, data, () => this.status),
      write: (offset, data) => this.#access(offset, data, undefined, (v) => this.#writeCommand(v)),
    };
  }

  /** Read at `offset` from 0x60: 0 is the data port, 4 the status port. */
  read(offset: number, data: Uint8Array): void {
    if (offset === 0) this.dataPort.read(0, data);
    else if (offset === I8042_COMMAND_OFFSET) this.commandPort.read(0, data);
    else data.fill(0xff);
  }

  /** Write at `offset` from 0x60: 0 is the data port, 4 the command port. */
  write(offset: number, data: Uint8Array): void {
    if (offset === 0) this.dataPort.write(0, data);
    else if (offset === I8042_COMMAND_OFFSET) this.commandPort.write(0, data);
  }

  /** The controller command byte (controller RAM byte 0). */
  get commandByte(): number {
    return this.#ram[0];
  }

  /** The output port (bit 0 reset line, bit 1 A20). */
  get outputPort(): number {
    return this.#outputPort;
  }

  /** The status register as the guest would read it (reading it has no side effect). */
  get status(): number {
    let status = this.#statusFlags;
    const head = this.#queue[0];
    if (head) {
      status |= I8042Status.OBF | head.flags;
      if (head.aux) status |= I8042Status.AUXDATA;
    }
    return status;
  }

  /** Handle a 1-byte port access; wider accesses use the low byte, other bytes read 0xff. */
  #access(
    offset: number,
    data: Uint8Array,
    read?: () => number,
    write?: (value: number) => void,
  ): void {
    if (data.length === 0) return;
    if (offset !== 0) {
      if (read) data.fill(0xff);
      return;
    }
    if (read) {
      data.fill(0xff);
      data[0] = read() & 0xff;
    } else if (write) {
      write(data[0]);
    }
    this.#updateIrqs();
  }

  #readData(): number {
    const head = this.#queue.shift();
    if (head) {
      this.#lastData = head.value;
      // Drop the line so that a following byte makes a new edge.
      this.#setKbd(false);
      this.#setAux(false);
    }
    return this.#lastData;
  }

  #writeData(value: number): void {
    this.#statusFlags &= ~I8042Status.CMD;
    const command = this.#pending;
    this.#pending = undefined;
    if (command === undefined) {
      // A byte for the keyboard, which is not there.
      this.#ram[0] &= ~I8042Ctr.KBDDIS; // sending enables the keyboard clock
      this.#push(I8042_NO_DEVICE, false, I8042Status.TIMEOUT);
      return;
    }
    if (command >= I8042Cmd.WRITE_CTR && command < I8042Cmd.WRITE_CTR + this.#ram.length) {
      this.#ram[command - I8042Cmd.WRITE_CTR] = value;
      if (command === I8042Cmd.WRITE_CTR) {
        // The system flag in the status register follows the command byte.
        if (value & I8042Ctr.SYS) this.#statusFlags |= I8042Status.SYS;
        else this.#statusFlags &= ~I8042Status.SYS;
      }
      return;
    }
    switch (command) {
      case I8042Cmd.WRITE_OUTPUT:
        this.#writeOutputPort(value);
        return;
      case I8042Cmd.WRITE_KBD_OBUF:
        this.#push(value, false, 0);
        return;
      case I8042Cmd.WRITE_AUX_OBUF:
        this.#push(value, true, 0);
        return;
      case I8042Cmd.WRITE_AUX:
        this.#ram[0] &= ~I8042Ctr.AUXDIS;
        this.#push(I8042_NO_DEVICE, true, I8042Status.TIMEOUT);
        return;
    }
  }

  #writeCommand(command: number): void {
    this.#statusFlags |= I8042Status.CMD;
    this.#pending = undefined;
    if (command >= I8042Cmd.READ_CTR && command < I8042Cmd.READ_CTR + this.#ram.length) {
      this.#push(this.#ram[command - I8042Cmd.READ_CTR], false, 0);
      return;
    }
    if (command >= I8042Cmd.WRITE_CTR && command < I8042Cmd.WRITE_CTR + this.#ram.length) {
      this.#pending = command;
      return;
    }
    if (command >= 0xf0) {
      // Pulse output port bits 0-3 for the zero bits of the command; bit 0 is reset.
      if ((command & I8042OutputPort.RESET_N) === 0) this.#onReset();
      return;
    }
    switch (command) {
      case I8042Cmd.AUX_DISABLE:
        this.#ram[0] |= I8042Ctr.AUXDIS;
        return;
      case I8042Cmd.AUX_ENABLE:
        this.#ram[0] &= ~I8042Ctr.AUXDIS;
        return;
      case I8042Cmd.AUX_TEST:
      case I8042Cmd.KBD_TEST:
        this.#push(0x00, false, 0);
        return;
      case I8042Cmd.SELF_TEST:
        this.#statusFlags |= I8042Status.SYS;
        this.#push(I8042_SELF_TEST_OK, false, 0);
        return;
      case I8042Cmd.KBD_DISABLE:
        this.#ram[0] |= I8042Ctr.KBDDIS;
        return;
      case I8042Cmd.KBD_ENABLE:
        this.#ram[0] &= ~I8042Ctr.KBDDIS;
        return;
      case I8042Cmd.READ_INPUT:
        // Bit 7: keyboard not inhibited; bit 5: no manufacturing jumper.
        this.#push(0xa0, false, 0);
        return;
      case I8042Cmd.READ_OUTPUT:
        this.#push(this.#outputPort, false, 0);
        return;
      case I8042Cmd.WRITE_OUTPUT:
      case I8042Cmd.WRITE_KBD_OBUF:
      case I8042Cmd.WRITE_AUX_OBUF:
      case I8042Cmd.WRITE_AUX:
        this.#pending = command;
        return;
      case I8042Cmd.A20_DISABLE:
        this.#outputPort &= ~I8042OutputPort.A20;
        return;
      case I8042Cmd.A20_ENABLE:
        this.#outputPort |= I8042OutputPort.A20;
        return;
      case I8042Cmd.READ_TEST_INPUTS:
        this.#push(0x00, false, 0);
        return;
      default:
        // Unknown commands are ignored.
        return;
    }
  }

  #writeOutputPort(value: number): void {
    const resetAsserted = (value & I8042OutputPort.RESET_N) === 0;
    this.#outputPort = value | I8042OutputPort.RESET_N;
    if (resetAsserted) this.#onReset();
  }

  #push(value: number, aux: boolean, flags: number): void {
    if (this.#queue.length >= I8042_QUEUE_LIMIT) return;
    this.#queue.push({ value, aux, flags });
  }

  #updateIrqs(): void {
    const head = this.#queue[0];
    const ctr = this.#ram[0];
    this.#setKbd(head !== undefined && !head.aux && (ctr & I8042Ctr.KBDINT) !== 0);
    this.#setAux(head !== undefined && head.aux && (ctr & I8042Ctr.AUXINT) !== 0);
  }

  #setKbd(level: boolean): void {
    if (level === this.#kbdLevel) return;
    this.#kbdLevel = level;
    this.#kbdIrq?.set(level);
  }

  #setAux(level: boolean): void {
    if (level === this.#auxLevel) return;
    this.#auxLevel = level;
    this.#auxIrq?.set(level);
  }
}

/** A byte waiting in the controller's output buffer. */
interface QueuedByte {
  /** The data byte. */
  value: number;
  /** It came from the AUX side. */
  aux: boolean;
  /** Extra status bits that go with it (TIMEOUT). */
  flags: number;
}
