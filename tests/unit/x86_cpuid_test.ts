import { assert, assertEquals, assertThrows } from "./x86_assert.ts";
import {
  type CpuidEntry,
  ECX_HYPERVISOR,
  EDX_HTT,
  findCpuid,
  KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
  vcpuCpuid,
} from "../../x86/cpuid.ts";
import { bootMsrs, MSR } from "../../x86/msrs.ts";
import { bootFpu } from "../../x86/fpu.ts";

const e = (fn: number, index: number, regs: Partial<CpuidEntry> = {}): CpuidEntry => ({
  function: fn,
  index,
  flags: 0,
  eax: 0,
  ebx: 0,
  ecx: 0,
  edx: 0,
  ...regs,
});

const str = (s: string) => new DataView(new TextEncoder().encode(s).buffer).getUint32(0, true);

/** A trimmed KVM_GET_SUPPORTED_CPUID result from an Intel host. */
const intel: CpuidEntry[] = [
  e(0, 0, { eax: 0x1f, ebx: str("Genu"), edx: str("ineI"), ecx: str("ntel") }),
  e(1, 0, { eax: 0x906ea, ebx: 0x0000_0800, ecx: 0x77fa_3203, edx: 0x0f8b_fbff }),
  e(4, 0, { flags: 1, eax: 0x1c00_4121 }), // L1d
  e(4, 1, { flags: 1, eax: 0x1c00_4143 }), // L2
  e(4, 2, { flags: 1, eax: 0x1c03_c163 }), // L3
  e(7, 0, { flags: 1, ebx: 0x029c_6fbf }),
  e(0xb, 0, { flags: 1, ecx: 0x100 }),
  e(0xb, 1, { flags: 1, ecx: 0x201 }),
  e(0x1f, 0, { flags: 1, ecx: 0x100 }),
  e(0x4000_0000, 0, { eax: 0x4000_0001, ebx: str("KVMK"), ecx: str("VMKV"), edx: str("M\0\0\0") }),
  e(0x4000_0001, 0, { eax: 0x0100_7afb }),
  e(0x8000_0000, 0, { eax: 0x8000_0008 }),
  e(0x8000_0008, 0, { eax: 0x3027 }),
];

/** A trimmed AMD host result. */
const amd: CpuidEntry[] = [
  e(0, 0, { eax: 0x10, ebx: str("Auth"), edx: str("enti"), ecx: str("cAMD") }),
  e(1, 0, { eax: 0xa20f10, ebx: 0x0010_0800, ecx: 0x7ed8_320b, edx: 0x178b_fbff }),
  e(0x8000_0008, 0, { eax: 0x3030, ecx: 0x0000_700f }),
  e(0x8000_001e, 0, { eax: 7, ebx: 0x0000_0103, ecx: 0x0000_0101 }),
];

Deno.test("each vCPU gets its own initial APIC id and the hypervisor bit in leaf 1", () => {
  for (let i = 0; i < 6; i++) {
    const leaf1 = findCpuid(vcpuCpuid(intel, i, 6), 1)!;
    assertEquals(leaf1.ebx >>> 24, i);
    assertEquals((leaf1.ebx >>> 16) & 0xff, 8); // addressable ids: next power of two
    assertEquals(leaf1.ebx & 0xffff, 0x0800); // CLFLUSH size kept
    assert(leaf1.ecx & ECX_HYPERVISOR);
    assert(leaf1.edx & EDX_HTT);
    assertEquals(leaf1.eax, 0x906ea);
  }
  const single = findCpuid(vcpuCpuid(intel, 0, 1), 1)!;
  assertEquals(single.edx & EDX_HTT, 0);
  assertEquals((single.ebx >>> 16) & 0xff, 1);
});

Deno.test("leaves 0xB and 0x1F describe 1 thread per core, N cores, with the x2APIC id", () => {
  const table = vcpuCpuid(intel, 3, 5);
  for (const leaf of [0xb, 0x1f]) {
    const subs = table.filter((x) => x.function === leaf).sort((a, b) => a.index - b.index);
    assertEquals(subs.map((x) => x.index), [0, 1, 2]);
    for (const s of subs) {
      assertEquals(s.edx, 3);
      assertEquals(s.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 1);
      assertEquals(s.ecx & 0xff, s.index);
    }
    assertEquals([subs[0].eax, subs[0].ebx, subs[0].ecx >> 8], [0, 1, 1]); // SMT level
    assertEquals([subs[1].eax, subs[1].ebx, subs[1].ecx >> 8], [3, 5, 2]); // core level, shift 3
    assertEquals([subs[2].ebx, subs[2].ecx >> 8], [0, 0]); // end
  }
  // 0x1F is not invented when KVM does not report it.
  const noV2 = vcpuCpuid(intel.filter((x) => x.function !== 0x1f), 0, 2);
  assertEquals(noV2.filter((x) => x.function === 0x1f).length, 0);
});

Deno.test("Intel leaf 4 reports the core count and L3 sharing", () => {
  const table = vcpuCpuid(intel, 0, 4);
  const l1 = findCpuid(table, 4, 0)!;
  const l3 = findCpuid(table, 4, 2)!;
  assertEquals(l1.eax >>> 26, 3);
  assertEquals((l1.eax >>> 14) & 0xfff, 0);
  assertEquals((l3.eax >>> 14) & 0xfff, 3);
  assertEquals(l3.eax & 0x3fff, 0x0163); // cache type and level kept
});

Deno.test("the KVM signature leaf is present and the features leaf passes through", () => {
  const table = vcpuCpuid(intel, 0, 1);
  const sig = findCpuid(table, 0x4000_0000)!;
  const bytes = new Uint8Array(new Uint32Array([sig.ebx, sig.ecx, sig.edx]).buffer);
  assertEquals(new TextDecoder().decode(bytes), "KVMKVMKVM\0\0\0");
  assert(sig.eax >= 0x4000_0001);
  assertEquals(findCpuid(table, 0x4000_0001)!.eax, 0x0100_7afb);
  // Added when missing.
  const added = vcpuCpuid(intel.filter((x) => x.function !== 0x4000_0000), 0, 1);
  assertEquals(findCpuid(added, 0x4000_0000)!.ebx, sig.ebx);
});

Deno.test("AMD leaves 0x80000008 and 0x8000001E carry core count and ids", () => {
  const table = vcpuCpuid(amd, 2, 3);
  const l8 = findCpuid(table, 0x8000_0008)!;
  assertEquals(l8.ecx & 0xff, 2); // NC = cores - 1
  assertEquals((l8.ecx >>> 12) & 0xf, 2); // ApicIdCoreIdSize
  const l1e = findCpuid(table, 0x8000_001e)!;
  assertEquals(l1e.eax, 2);
  assertEquals(l1e.ebx & 0xffff, 2); // 1 thread per core, core id 2
  assertEquals(l1e.ecx & 0x7ff, 0);
  assertEquals(findCpuid(table, 1)!.ebx >>> 24, 2);
  // Intel's 0x80000008 ECX is left alone.
  assertEquals(findCpuid(vcpuCpuid(intel, 1, 3), 0x8000_0008)!.ecx, 0);
});

Deno.test("the supported list is not modified and other leaves pass through", () => {
  const before = JSON.stringify(intel);
  const table = vcpuCpuid(intel, 1, 2);
  assertEquals(JSON.stringify(intel), before);
  assertEquals(findCpuid(table, 7)!, intel.find((x) => x.function === 7)!);
  assertThrows(() => vcpuCpuid(intel, 2, 2), RangeError);
  assertThrows(() => vcpuCpuid(intel, 0, 0), RangeError);
});

Deno.test("boot MSRs clear SYSENTER/SYSCALL state, zero the TSC and enable fast strings", () => {
  const msrs = new Map(bootMsrs().map((m) => [m.index, m.data]));
  for (
    const i of [
      MSR.IA32_SYSENTER_CS,
      MSR.IA32_SYSENTER_ESP,
      MSR.IA32_SYSENTER_EIP,
      MSR.STAR,
      MSR.LSTAR,
      MSR.CSTAR,
      MSR.KERNEL_GS_BASE,
      MSR.SYSCALL_MASK,
      MSR.IA32_TSC,
    ]
  ) {
    assertEquals(msrs.get(i), 0n, `0x${i.toString(16)}`);
  }
  assertEquals(msrs.get(0x1a0)! & 1n, 1n);
  assertEquals(msrs.get(0x2ff), 0x806n);
  assertEquals(bootFpu(), { fcw: 0x37f, mxcsr: 0x1f80 });
});
