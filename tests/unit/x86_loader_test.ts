import { assert, assertEquals, assertThrows } from "./x86_assert.ts";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { BzImageError, readHeaderField } from "../../x86/bzimage.ts";
import { LoadError, loadLinux, type LoadLinuxOptions } from "../../x86/loader.ts";
import { readE820Table } from "../../x86/boot_params.ts";
import { E820_TYPE } from "../../x86/e820.ts";
import { decodeDescriptor } from "../../x86/gdt.ts";
import { PTE, PTE_ADDR_MASK } from "../../x86/page_tables.ts";
import { GiB, MiB } from "../../x86/layout.ts";
import { fakeBzImage, findCachedKernel } from "./x86_fake_bzimage.ts";
import { fakeVmlinux } from "./x86_fake_vmlinux.ts";

const MEM = 128 * MiB;

function boot(opts: Partial<LoadLinuxOptions> = {}, memorySize = MEM) {
  const memory = GuestMemory.ofSize(memorySize);
  const result = loadLinux(memory, {
    kernel: fakeBzImage(),
    cmdline: "console=ttyS0 panic=-1",
    memorySize,
    cpus: 2,
    ...opts,
  });
  return { memory, result };
}

/** A 4-level page walk of `va` under `cr3`; undefined when not mapped. */
function walk(memory: GuestMemory, cr3: bigint, va: number): number | undefined {
  const v = BigInt(va);
  let table = cr3 & PTE_ADDR_MASK;
  for (const [shift, level] of [[39n, "pml4"], [30n, "pdpt"], [21n, "pd"], [12n, "pt"]] as const) {
    const entry = memory.readU64(Number(table + ((v >> shift) & 511n) * 8n));
    if (!(entry & PTE.PRESENT)) return undefined;
    assert(entry & PTE.WRITABLE, `${level} entry for 0x${va.toString(16)} is read-only`);
    const isLeaf = level === "pt" ||
      ((level === "pd" || level === "pdpt") && entry & PTE.PAGE_SIZE);
    if (isLeaf) {
      const offsetMask = (1n << shift) - 1n;
      return Number((entry & PTE_ADDR_MASK & ~offsetMask) | (v & offsetMask));
    }
    table = entry & PTE_ADDR_MASK;
  }
  return undefined;
}

Deno.test("loadLinux places the kernel at 1 MiB and enters startup_64 with RSI = zero page", () => {
  const { memory, result } = boot();
  assertEquals(result.kernel, { addr: 0x10_0000, size: 64 * 1024 });
  assertEquals(memory.read(0x10_0000, 16), fakeBzImage().subarray(28 * 512, 28 * 512 + 16));
  const { regs } = result.entry;
  assertEquals(regs.rip, 0x10_0200n);
  assertEquals(regs.rsi, 0x7000n);
  assertEquals(regs.rsp % 16n, 0n);
  assertEquals(regs.rflags, 0x2n);
  for (const r of ["rax", "rbx", "rcx", "rdx", "rdi", "rbp"] as const) assertEquals(regs[r], 0n);
  assertEquals(result.kernelRuntime, { addr: 16 * MiB, size: 8 * MiB });
});

Deno.test("the entry state is 64-bit long mode with paging and flat __BOOT_CS/__BOOT_DS", () => {
  const { memory, result } = boot();
  const s = result.entry.sregs;
  assertEquals(s.cr0 & 1n, 1n); // PE
  assertEquals(s.cr0 >> 31n, 1n); // PG
  assertEquals(s.cr0 & (3n << 29n), 0n); // caches on (CD, NW clear)
  assertEquals(s.cr4 & 0x20n, 0x20n); // PAE
  assertEquals(s.efer, 0x500n); // LME | LMA
  assertEquals([s.cs.selector, s.cs.l, s.cs.db, s.cs.type, s.cs.s, s.cs.present], [
    0x10,
    1,
    0,
    0xb,
    1,
    1,
  ]);
  for (const seg of [s.ds, s.es, s.ss, s.fs, s.gs]) {
    assertEquals([seg.selector, seg.l, seg.db, seg.type, seg.base, seg.limit], [
      0x18,
      0,
      1,
      3,
      0n,
      0xffff_ffff,
    ]);
  }
  assertEquals([s.tr.type, s.tr.s, s.tr.present], [0xb, 0, 1]);
  // The GDT in memory holds descriptors equal to the hidden segment state.
  assertEquals(s.gdt.base, 0x500n);
  const gdt = (sel: number) => memory.readU64(Number(s.gdt.base) + sel);
  assert(0x18 + 7 <= s.gdt.limit);
  assertEquals(decodeDescriptor(gdt(0x10), 0x10), s.cs);
  assertEquals(decodeDescriptor(gdt(0x18), 0x18), s.ds);
  assertEquals(decodeDescriptor(gdt(0x20), 0x20), s.tr);
  assertEquals(gdt(0x10), 0x00af_9b00_0000_ffffn); // the classic flat 64-bit code descriptor
  assertEquals(gdt(0x18), 0x00cf_9300_0000_ffffn);
});

Deno.test("page tables identity-map the first 4 GiB including kernel, zero page and cmdline", () => {
  const { memory, result } = boot();
  const cr3 = result.entry.sregs.cr3;
  for (
    const va of [
      0,
      0x7000,
      0x20000,
      0x10_0200,
      16 * MiB + 12345,
      0xc000_0000,
      4 * GiB - 1,
      3 * GiB + 0x1234,
    ]
  ) {
    assertEquals(walk(memory, cr3, va), va, `0x${va.toString(16)}`);
  }
  assertEquals(walk(memory, cr3, 4 * GiB), undefined);
  // The page tables do not overlap what the loader placed.
  assert(Number(cr3) >= 0x9000 && Number(cr3) + 6 * 4096 <= 0x20000);
});

Deno.test("the command line is NUL terminated at cmd_line_ptr", () => {
  const { memory, result } = boot();
  const page = memory.read(result.zeroPage.addr, 4096);
  const ptr = readHeaderField(page, "cmd_line_ptr");
  assertEquals(ptr, result.cmdline.addr);
  const text = "console=ttyS0 panic=-1";
  assertEquals(new TextDecoder().decode(memory.read(ptr, text.length)), text);
  assertEquals(memory.readU8(ptr + text.length), 0);
  const e = assertThrows(() => boot({ cmdline: "x".repeat(2048) }), LoadError);
  assert(e.message.includes("2048 bytes") && e.message.includes("2047"), e.message);
});

Deno.test("the initrd goes as high as possible in low RAM, page aligned, recorded in the zero page", () => {
  const initrd = new Uint8Array(3 * MiB + 123).fill(0x5a);
  const { memory, result } = boot({ initrd });
  const placed = result.initrd!;
  assertEquals(placed.size, initrd.length);
  assertEquals(placed.addr % 4096, 0);
  assert(placed.addr + placed.size <= MEM);
  assert(MEM - (placed.addr + placed.size) < 4096, "not as high as possible");
  assert(placed.addr >= result.kernelRuntime.addr + result.kernelRuntime.size);
  assertEquals(memory.readU8(placed.addr), 0x5a);
  assertEquals(memory.readU8(placed.addr + initrd.length - 1), 0x5a);
  const page = memory.read(0x7000, 4096);
  assertEquals(readHeaderField(page, "ramdisk_image"), placed.addr);
  assertEquals(readHeaderField(page, "ramdisk_size"), initrd.length);
});

Deno.test("the initrd stays below initrd_addr_max", () => {
  const memory = GuestMemory.ofSize(MEM);
  const result = loadLinux(memory, {
    kernel: fakeBzImage({ initrdAddrMax: 64 * MiB - 1 }),
    initrd: new Uint8Array(MiB),
    cmdline: "",
    memorySize: MEM,
    cpus: 1,
  });
  assertEquals(result.initrd, { addr: 63 * MiB, size: MiB });
});

Deno.test("an initrd too large for memory is an error naming its size", () => {
  const e = assertThrows(() => boot({ initrd: new Uint8Array(110 * MiB) }), LoadError);
  assert(e.message.includes("initrd (110 MiB) does not fit below 0x8000000"), e.message);
});

Deno.test("a kernel whose init_size exceeds memory is an error", () => {
  const e = assertThrows(() => boot({ kernel: fakeBzImage({ initSize: 200 * MiB }) }), LoadError);
  assert(e.message.includes("init_size 200 MiB"), e.message);
});

Deno.test("a kernel without a 64-bit entry point is rejected", () => {
  const e = assertThrows(() => boot({ kernel: fakeBzImage({ xloadflags: 0 }) }), BzImageError);
  assert(e.message.includes("XLF_KERNEL_64"), e.message);
});

Deno.test("memory smaller than memorySize is rejected before anything is written", () => {
  const memory = GuestMemory.ofSize(64 * MiB);
  const e = assertThrows(
    () => loadLinux(memory, { kernel: fakeBzImage(), cmdline: "", memorySize: MEM, cpus: 1 }),
    LoadError,
  );
  assert(e.message.includes("does not cover"), e.message);
});

Deno.test("the zero page E820 map types the ACPI tables and keeps the loaded pieces in RAM", () => {
  const { memory, result } = boot({ initrd: new Uint8Array(MiB) });
  const e820 = readE820Table(memory.read(0x7000, 4096));
  assertEquals(e820, [...result.e820]);
  const typeAt = (a: number) => e820.find((e) => a >= e.addr && a < e.addr + e.size)?.type;
  assertEquals(typeAt(result.acpi.rsdpAddr), E820_TYPE.ACPI);
  for (const t of Object.values(result.acpi.tables)) assertEquals(typeAt(t.addr), E820_TYPE.ACPI);
  for (
    const a of [result.kernel.addr, result.kernelRuntime.addr, result.initrd!.addr, 0x7000, 0x20000]
  ) {
    assertEquals(typeAt(a), E820_TYPE.RAM, `0x${a.toString(16)}`);
  }
  // The RSDP is where the zero page says, and where a BIOS-area scan finds it.
  assertEquals(new TextDecoder().decode(memory.read(result.acpi.rsdpAddr, 8)), "RSD PTR ");
  assertEquals(Number(memory.readU64(0x7000 + 0x70)), result.acpi.rsdpAddr);
  assertEquals(result.acpi.rsdpAddr % 16, 0);
  assert(result.acpi.rsdpAddr >= 0xe0000 && result.acpi.rsdpAddr < 0x100000);
});

Deno.test("the boot structures in low memory do not overlap", async () => {
  const L = await import("../../x86/boot_layout.ts");
  const { result } = boot();
  const ranges: [string, number, number][] = [
    ["gdt", L.BOOT_GDT, Number(result.entry.sregs.gdt.limit) + 1],
    ["idt", L.BOOT_IDT, 8],
    ["zero page", L.ZERO_PAGE, 4096],
    ["stack", L.BOOT_STACK_TOP - 0x800, 0x800],
    ["page tables", L.PML4, (2 + L.PD_COUNT) * 4096],
    ["cmdline", L.CMDLINE, L.CMDLINE_MAX],
    ["acpi", result.acpi.base, result.acpi.bytes.length],
    ["kernel", result.kernel.addr, result.kernel.size],
  ];
  ranges.sort((a, b) => a[1] - b[1]);
  for (let i = 1; i < ranges.length; i++) {
    const [pn, pa, ps] = ranges[i - 1];
    assert(pa + ps <= ranges[i][1], `${pn} overlaps ${ranges[i][0]}`);
  }
  assert(L.CMDLINE + L.CMDLINE_MAX <= L.EBDA_START);
});

const debianKernel = findCachedKernel();

Deno.test({
  name: "the cached Debian kernel loads into 256 MiB with an initrd above its runtime area",
  ignore: debianKernel === undefined,
  fn() {
    const memorySize = 256 * MiB;
    const memory = GuestMemory.ofSize(memorySize);
    const kernel = Deno.readFileSync(debianKernel!);
    const result = loadLinux(memory, {
      kernel,
      initrd: new Uint8Array(16 * MiB),
      cmdline: "console=ttyS0",
      memorySize,
      cpus: 4,
    });
    assertEquals(result.entry.regs.rip, 0x10_0200n);
    assertEquals(result.kernelRuntime.addr, 16 * MiB);
    assert(result.initrd!.addr >= result.kernelRuntime.addr + result.kernelRuntime.size);
    assertEquals(
      memory.read(0x10_0000, 64),
      kernel.subarray(result.image.setupSize, result.image.setupSize + 64),
    );
    const page = memory.read(0x7000, 4096);
    assertEquals(readHeaderField(page, "version"), result.image.header.version);
    assertEquals(readHeaderField(page, "init_size"), result.image.header.initSize);
  },
});

Deno.test("with a decompressed vmlinux, its segments load at their addresses and RIP is its entry", () => {
  const text = new Uint8Array([0x90, 0x90, 0xf4]);
  const data = new Uint8Array([7, 7, 7, 7]);
  const vmlinux = fakeVmlinux(16 * MiB, [
    { paddr: 16 * MiB, bytes: text },
    { paddr: 20 * MiB, bytes: data, memSize: 0x2000 },
  ]);
  const memory = GuestMemory.ofSize(MEM);
  memory.fill(20 * MiB + 4, 0x1000, 0xaa); // stale bytes where the segment's zero tail goes
  const result = loadLinux(memory, {
    kernel: fakeBzImage(),
    vmlinux,
    cmdline: "console=ttyS0",
    memorySize: MEM,
    cpus: 1,
  });
  assert(result.decompressed);
  assertEquals(result.entry.regs.rip, BigInt(16 * MiB));
  assertEquals(result.kernel, { addr: 16 * MiB, size: 4 * MiB + 0x2000 });
  assertEquals(memory.read(16 * MiB, 3), text);
  assertEquals(memory.read(20 * MiB, 4), data);
  assertEquals(memory.read(20 * MiB + 4, 0x1000), new Uint8Array(0x1000));
  // The zero page still carries the bzImage's setup header.
  assertEquals(readHeaderField(memory.read(0x7000, 4096), "header"), 0x5372_6448);
  assert(!boot().result.decompressed);
});

Deno.test("a vmlinux that is not a loadable ELF kernel is a LoadError", () => {
  const e = assertThrows(() => boot({ vmlinux: new Uint8Array(64) }), LoadError);
  assert(e.message.includes("vmlinux: ELF kernel: no ELF header"), e.message);
  const low = fakeVmlinux(0x8000, [{ paddr: 0x8000, bytes: new Uint8Array(16) }]);
  assert(assertThrows(() => boot({ vmlinux: low }), LoadError).message.includes("below 1 MiB"));
});

Deno.test("vmlinux segments and the initrd given with readInto are read straight into guest memory, as copied ones would be", () => {
  const vmlinuxBytes = fakeVmlinux(16 * MiB, [
    { paddr: 16 * MiB, bytes: new Uint8Array(5000).map((_, i) => i) },
    { paddr: 20 * MiB, bytes: new Uint8Array([7, 7, 7, 7]), memSize: 0x2000 },
  ]);
  const initrdBytes = new Uint8Array(MiB + 7).map((_, i) => i * 3);
  const reads: string[] = [];
  const reader = (name: string, bytes: Uint8Array) => ({
    bytes,
    readInto(dest: Uint8Array, offset: number) {
      reads.push(`${name} ${offset}+${dest.length}`);
      dest.set(bytes.subarray(offset, offset + dest.length));
    },
  });
  const direct = boot({
    vmlinux: reader("vmlinux", vmlinuxBytes),
    initrd: reader("initrd", initrdBytes),
  });
  const copied = boot({ vmlinux: vmlinuxBytes, initrd: initrdBytes });
  assertEquals(reads.length, 3); // two segments, one initrd
  assert(reads.includes(`initrd 0+${initrdBytes.length}`), reads.join(", "));
  assertEquals(direct.result.initrd, copied.result.initrd);
  assertEquals(direct.memory.read(0, MEM), copied.memory.read(0, MEM));
});
