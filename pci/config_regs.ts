/**
 * Layout of the PCI type 0 configuration header and the bits of its
 * registers (PCI Local Bus Specification 3.0, section 6.1).
 *
 * @module
 */

/** Offsets of the type 0 header registers. */
export const CFG = {
  /** Vendor ID, u16, read-only. */
  VENDOR_ID: 0x00,
  /** Device ID, u16, read-only. */
  DEVICE_ID: 0x02,
  /** Command, u16. */
  COMMAND: 0x04,
  /** Status, u16 (error bits write-1-to-clear). */
  STATUS: 0x06,
  /** Revision ID, u8, read-only. */
  REVISION: 0x08,
  /** Programming interface (class code bits 7:0), read-only. */
  PROG_IF: 0x09,
  /** Sub-class (class code bits 15:8), read-only. */
  SUBCLASS: 0x0a,
  /** Base class (class code bits 23:16), read-only. */
  CLASS: 0x0b,
  /** Cache line size, u8, writable storage. */
  CACHE_LINE_SIZE: 0x0c,
  /** Latency timer, u8, writable storage. */
  LATENCY_TIMER: 0x0d,
  /** Header type, u8, read-only (0 = type 0, single function). */
  HEADER_TYPE: 0x0e,
  /** BIST, u8, read-only 0 (not supported). */
  BIST: 0x0f,
  /** BAR 0; BAR n is at `BAR0 + 4 * n`. */
  BAR0: 0x10,
  /** One past BAR 5. */
  BAR_END: 0x28,
  /** Cardbus CIS pointer, read-only 0. */
  CARDBUS_CIS: 0x28,
  /** Subsystem vendor ID, u16, read-only. */
  SUBSYSTEM_VENDOR_ID: 0x2c,
  /** Subsystem ID, u16, read-only. */
  SUBSYSTEM_ID: 0x2e,
  /** Expansion ROM base address, read-only 0 (no ROM). */
  ROM_ADDRESS: 0x30,
  /** Capabilities pointer, u8, read-only. */
  CAPABILITY_POINTER: 0x34,
  /** Interrupt line, u8, writable (the OS records the routed IRQ here). */
  INTERRUPT_LINE: 0x3c,
  /** Interrupt pin, u8, read-only (1 = INTA#). */
  INTERRUPT_PIN: 0x3d,
  /** Min grant, read-only 0. */
  MIN_GNT: 0x3e,
  /** Max latency, read-only 0. */
  MAX_LAT: 0x3f,
  /** End of the standard header; device-specific space starts here. */
  HEADER_END: 0x40,
} as const;

/** Size of config space per function: conventional 256 bytes, extended (ECAM) 4 KiB. */
export const CONFIG_SPACE_SIZE = 0x1000;

/** Command register bits. */
export const COMMAND = {
  /** I/O space decode enable. */
  IO: 1 << 0,
  /** Memory space decode enable. */
  MEMORY: 1 << 1,
  /** Bus master enable. */
  BUS_MASTER: 1 << 2,
  /** Parity error response. */
  PARITY: 1 << 6,
  /** SERR# enable. */
  SERR: 1 << 8,
  /** INTx emulation disable. */
  INTX_DISABLE: 1 << 10,
} as const;

/** The Command bits a guest can change; every other bit reads 0. */
export const COMMAND_WRITABLE = COMMAND.IO | COMMAND.MEMORY | COMMAND.BUS_MASTER |
  COMMAND.PARITY | COMMAND.SERR | COMMAND.INTX_DISABLE;

/** Status register bits. */
export const STATUS = {
  /** INTx is asserted by the device (read-only). */
  INTERRUPT: 1 << 3,
  /** The capability list at 0x34 is valid (read-only). */
  CAPABILITY_LIST: 1 << 4,
  /** Master data parity error (write 1 to clear). */
  MASTER_DATA_PARITY_ERROR: 1 << 8,
  /** Signaled target abort (write 1 to clear). */
  SIGNALED_TARGET_ABORT: 1 << 11,
  /** Received target abort (write 1 to clear). */
  RECEIVED_TARGET_ABORT: 1 << 12,
  /** Received master abort (write 1 to clear). */
  RECEIVED_MASTER_ABORT: 1 << 13,
  /** Signaled system error (write 1 to clear). */
  SIGNALED_SYSTEM_ERROR: 1 << 14,
  /** Detected parity error (write 1 to clear). */
  DETECTED_PARITY_ERROR: 1 << 15,
} as const;

/** The Status bits that are write-1-to-clear. */
export const STATUS_W1C = STATUS.MASTER_DATA_PARITY_ERROR | STATUS.SIGNALED_TARGET_ABORT |
  STATUS.RECEIVED_TARGET_ABORT | STATUS.RECEIVED_MASTER_ABORT | STATUS.SIGNALED_SYSTEM_ERROR |
  STATUS.DETECTED_PARITY_ERROR;

/** Low bits of a BAR register. */
export const BAR_BITS = {
  /** Bit 0: 1 for an I/O BAR. */
  IO_SPACE: 0x1,
  /** Bits 2:1 of a memory BAR: 0b10 for a 64-bit BAR. */
  MEM_TYPE_64: 0x4,
  /** Bit 3 of a memory BAR: prefetchable. */
  MEM_PREFETCH: 0x8,
  /** Address bits of an I/O BAR's dword. */
  IO_ADDRESS_MASK: 0xffff_fffc,
  /** Address bits of a memory BAR's (low) dword. */
  MEM_ADDRESS_MASK: 0xffff_fff0,
} as const;

/** Interrupt pin value for INTA#. */
export const INTERRUPT_PIN_A = 1;

/** Format a bus/device/function as `00:01.0`. */
export function formatBdf(bus: number, device: number, fn: number): string {
  const h = (v: number, n: number) => v.toString(16).padStart(n, "0");
  return `${h(bus, 2)}:${h(device, 2)}.${fn}`;
}
