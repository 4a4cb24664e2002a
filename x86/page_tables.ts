/**
 * The identity-mapped page tables Linux's 64-bit entry needs (the kernel, the
 * zero page and the command line must be mapped 1:1): one PML4, one PDPT and one
 * page directory per GiB, mapping the first `gib` GiB with 2 MiB pages (1 GiB
 * pages would need the pdpe1gb CPU feature; 2 MiB pages work everywhere).
 *
 * @module
 */

import type { GuestMemory } from "../kvm/guest_memory.ts";
import { GiB, MiB } from "./layout.ts";

/** Page table entry bits. */
export const PTE = {
  /** Present. */
  PRESENT: 0x1n,
  /** Writable. */
  WRITABLE: 0x2n,
  /** Page size: the entry maps a 2 MiB (PD) or 1 GiB (PDPT) page. */
  PAGE_SIZE: 0x80n,
} as const;

/** Mask of the physical address in an entry (bits 51:12). */
export const PTE_ADDR_MASK = 0x000f_ffff_ffff_f000n;

/** Where the tables go and how much to map. */
export interface PageTableLayout {
  /** Address of the PML4 (4 KiB aligned). */
  readonly pml4: number;
  /** Address of the PDPT (4 KiB aligned). */
  readonly pdpt: number;
  /** Address of the first page directory; `gib` of them follow, 4 KiB apart. */
  readonly pd: number;
  /** GiB to identity-map from 0 (1..512). */
  readonly gib: number;
}

/**
 * Write identity-mapping page tables into guest memory.
 *
 * @returns the CR3 value (the PML4 address)
 */
export function writeIdentityPageTables(memory: GuestMemory, layout: PageTableLayout): number {
  const { pml4, pdpt, pd, gib } = layout;
  for (const [name, at] of [["pml4", pml4], ["pdpt", pdpt], ["pd", pd]] as const) {
    if (at % 4096 !== 0) {
      throw new RangeError(`page tables: ${name} 0x${at.toString(16)} unaligned`);
    }
  }
  if (!Number.isInteger(gib) || gib < 1 || gib > 512) {
    throw new RangeError(`page tables: cannot map ${gib} GiB with one PDPT`);
  }
  const table = PTE.PRESENT | PTE.WRITABLE;
  memory.fill(pml4, 4096);
  memory.fill(pdpt, 4096);
  memory.writeU64(pml4, BigInt(pdpt) | table);
  for (let g = 0; g < gib; g++) {
    const dir = pd + g * 4096;
    memory.writeU64(pdpt + g * 8, BigInt(dir) | table);
    const entries = new DataView(new ArrayBuffer(4096));
    for (let i = 0; i < 512; i++) {
      const phys = BigInt(g * GiB + i * 2 * MiB);
      entries.setBigUint64(i * 8, phys | table | PTE.PAGE_SIZE, true);
    }
    memory.write(dir, new Uint8Array(entries.buffer));
  }
  return pml4;
}
