import { assert, assertEquals } from "./x86_assert.ts";
import { buildE820Map, checkE820Map, E820_TYPE, type E820Entry } from "../../x86/e820.ts";
import { GiB, IOAPIC, LAPIC, MiB, MMIO_HOLE, PCI_ECAM, PCI_MMIO32 } from "../../x86/layout.ts";

const typeAt = (map: E820Entry[], addr: number) =>
  map.find((e) => addr >= e.addr && addr < e.addr + e.size)?.type;

function assertSortedDisjoint(map: E820Entry[]) {
  checkE820Map(map);
  for (let i = 1; i < map.length; i++) {
    assert(map[i - 1].addr + map[i - 1].size <= map[i].addr, `entry ${i} overlaps`);
    // adjacent entries of one type are merged
    if (map[i - 1].addr + map[i - 1].size === map[i].addr) assert(map[i - 1].type !== map[i].type);
  }
}

Deno.test("E820 for 512 MiB: low RAM, the BIOS hole, RAM from 1 MiB, reserved MMIO", () => {
  const map = buildE820Map(512 * MiB, { acpi: { base: 0xe0000, size: 0x1000 } });
  assertSortedDisjoint(map);
  assertEquals(map, [
    { addr: 0, size: 0x9fc00, type: E820_TYPE.RAM },
    { addr: 0x9fc00, size: 0xe0000 - 0x9fc00, type: E820_TYPE.RESERVED },
    { addr: 0xe0000, size: 0x1000, type: E820_TYPE.ACPI },
    { addr: 0xe1000, size: 0x100000 - 0xe1000, type: E820_TYPE.RESERVED },
    { addr: 0x100000, size: 511 * MiB, type: E820_TYPE.RAM },
    { addr: PCI_ECAM.base, size: PCI_ECAM.size, type: E820_TYPE.RESERVED },
    { addr: IOAPIC.base, size: 4 * GiB - IOAPIC.base, type: E820_TYPE.RESERVED },
  ]);
});

Deno.test("E820 above 3 GiB: low RAM stops at the hole and the rest is RAM above 4 GiB", () => {
  const map = buildE820Map(8 * GiB);
  assertSortedDisjoint(map);
  assertEquals(typeAt(map, MMIO_HOLE.base - 1), E820_TYPE.RAM);
  for (const addr of [PCI_ECAM.base, IOAPIC.base, LAPIC.base, 4 * GiB - 1]) {
    assertEquals(typeAt(map, addr), E820_TYPE.RESERVED, `0x${addr.toString(16)}`);
  }
  // The PCI BAR window is a gap (not RAM, not an entry Linux would clip host bridge windows by).
  assertEquals(typeAt(map, PCI_MMIO32.base), undefined);
  const high = map[map.length - 1];
  assertEquals(high, { addr: 4 * GiB, size: 8 * GiB - MMIO_HOLE.base, type: E820_TYPE.RAM });
  const ram = map.filter((e) => e.type === E820_TYPE.RAM).reduce((n, e) => n + e.size, 0);
  assertEquals(ram, 8 * GiB - (1 * MiB - 0x9fc00)); // everything except the BIOS area
});

Deno.test("no RAM entry overlaps the MMIO hole or the legacy BIOS area", () => {
  for (const size of [2 * MiB, 100 * MiB, 3 * GiB, 3 * GiB + 4096, 5 * GiB, 64 * GiB]) {
    for (const reservePciWindows of [false, true]) {
      const map = buildE820Map(size, { reservePciWindows });
      assertSortedDisjoint(map);
      for (const e of map.filter((e) => e.type === E820_TYPE.RAM)) {
        const end = e.addr + e.size;
        assert(end <= MMIO_HOLE.base || e.addr >= 4 * GiB, `RAM ${e.addr}-${end} in the hole`);
        assert(end <= 0x9fc00 || e.addr >= 1 * MiB, `RAM ${e.addr}-${end} in the BIOS area`);
      }
    }
  }
});

Deno.test("reservePciWindows reserves the whole MMIO hole", () => {
  const map = buildE820Map(1 * GiB, { reservePciWindows: true });
  assertEquals(map[map.length - 1], {
    addr: MMIO_HOLE.base,
    size: MMIO_HOLE.size,
    type: E820_TYPE.RESERVED,
  });
});

Deno.test("E820 rejects a memory size below 2 MiB", () => {
  let threw = false;
  try {
    buildE820Map(1 * MiB);
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
});
