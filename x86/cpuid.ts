/**
 * Per-vCPU CPUID tables, derived from what KVM supports (KVM_GET_SUPPORTED_CPUID)
 * for a machine of N vCPUs presented as one socket of N cores with 1 thread each,
 * vCPU i having APIC id i:
 *
 * - leaf 1: initial APIC id (EBX[31:24]), addressable logical processors
 *   (EBX[23:16]), HTT when N > 1, and the hypervisor bit (ECX[31]);
 * - leaf 4 (Intel): cores per package and threads sharing each cache;
 * - leaves 0xB / 0x1F: the x2APIC topology (SMT level of 1 thread, core level of N)
 *   with the vCPU's x2APIC id in EDX;
 * - 0x40000000: the KVM paravirt signature "KVMKVMKVM\0\0\0" (0x40000001, the
 *   KVM features, passes through as KVM reported it);
 * - AMD: 0x80000008 ECX core count, 0x8000001E extended APIC id / core id.
 *
 * Every other leaf passes through unchanged.
 *
 * @module
 */

import type { CpuidEntry } from "../kvm/types.ts";

export type { CpuidEntry } from "../kvm/types.ts";

/** kvm_cpuid_entry2.flags: the leaf's subleaf (index) is significant. */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

/** CPUID leaves touched here. */
export const LEAF = {
  VENDOR: 0x0,
  FEATURES: 0x1,
  CACHE_PARAMS: 0x4,
  EXT_TOPOLOGY: 0xb,
  V2_EXT_TOPOLOGY: 0x1f,
  HYPERVISOR: 0x4000_0000,
  KVM_FEATURES: 0x4000_0001,
  AMD_ADDRESS_SIZES: 0x8000_0008,
  AMD_EXT_APIC_ID: 0x8000_001e,
} as const;

/** Leaf 1 ECX bit 31: running under a hypervisor. */
export const ECX_HYPERVISOR = 1 << 31;
/** Leaf 1 EDX bit 28: more than one logical processor per package. */
export const EDX_HTT = 1 << 28;
/** Topology level types in leaf 0xB / 0x1F ECX[15:8]. */
export const TOPOLOGY_LEVEL = { INVALID: 0, SMT: 1, CORE: 2 } as const;
/** "KVMKVMKVM\0\0\0" as EBX, ECX, EDX of leaf 0x40000000. */
export const KVM_SIGNATURE = { ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x0000_004d } as const;

/** Features KVM emulates but does not list in KVM_GET_SUPPORTED_CPUID. */
export interface VcpuCpuidOptions {
  /**
   * Advertise the TSC-deadline LAPIC timer (leaf 1 ECX bit 24), which the
   * in-kernel LAPIC emulates when KVM_CAP_TSC_DEADLINE_TIMER says so. Linux
   * then needs no APIC timer calibration, which is unreliable under nested
   * virtualization.
   */
  tscDeadline?: boolean;
}

/** Leaf 1 ECX: TSC-deadline timer. */
export const ECX_TSC_DEADLINE = 1 << 24;

/**
 * The CPUID table for vCPU `vcpu` (0-based; its APIC id) of `cpus`.
 *
 * @param supported entries from KVM_GET_SUPPORTED_CPUID (not modified)
 * @throws {RangeError} for a vCPU index outside 0..cpus-1 or cpus outside 1..255
 */
export function vcpuCpuid(
  supported: readonly CpuidEntry[],
  vcpu: number,
  cpus: number,
  opts: VcpuCpuidOptions = {},
): CpuidEntry[] {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 255) {
    throw new RangeError(`CPUID: ${cpus} vCPUs, must be 1..255`);
  }
  if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= cpus) {
    throw new RangeError(`CPUID: vCPU index ${vcpu} outside 0..${cpus - 1}`);
  }
  const apicId = vcpu;
  const coreShift = bitsFor(cpus);
  const addressable = Math.min(1 << coreShift, 255);
  const leaf0 = supported.find((e) => e.function === LEAF.VENDOR);
  const maxBasic = leaf0?.eax ?? 0;
  const amd = leaf0 !== undefined && isAmdLike(leaf0);

  const out: CpuidEntry[] = [];
  for (const s of supported) {
    const e = { ...s };
    switch (e.function) {
      case LEAF.FEATURES:
        e.ebx = ((e.ebx & 0xffff) | (addressable << 16) | (apicId << 24)) >>> 0;
        e.ecx = (e.ecx | ECX_HYPERVISOR | (opts.tscDeadline ? ECX_TSC_DEADLINE : 0)) >>> 0;
        e.edx = (cpus > 1 ? e.edx | EDX_HTT : e.edx & ~EDX_HTT) >>> 0;
        break;
      case LEAF.CACHE_PARAMS: {
        if (amd) break;
        const level = (e.eax >>> 5) & 0x7;
        const sharing = level >= 3 ? addressable - 1 : 0;
        const cores = Math.min(addressable, 64) - 1;
        e.eax = ((e.eax & 0x3fff) | (sharing << 14) | (cores << 26)) >>> 0;
        break;
      }
      case LEAF.EXT_TOPOLOGY:
      case LEAF.V2_EXT_TOPOLOGY:
        continue; // rebuilt below
      case LEAF.HYPERVISOR:
        e.eax = Math.max(e.eax, LEAF.KVM_FEATURES);
        Object.assign(e, KVM_SIGNATURE);
        break;
      case LEAF.AMD_ADDRESS_SIZES:
        if (amd) e.ecx = ((e.ecx & ~0xf0ff) | (coreShift << 12) | (cpus - 1)) >>> 0;
        break;
      case LEAF.AMD_EXT_APIC_ID:
        if (amd) {
          e.eax = apicId;
          e.ebx = ((e.ebx & ~0xffff) | vcpu) >>> 0; // 1 thread per core, core id = vCPU
          e.ecx = (e.ecx & ~0x7ff) >>> 0; // one node, node id 0
        }
        break;
    }
    out.push(e);
  }
  for (const leaf of [LEAF.EXT_TOPOLOGY, LEAF.V2_EXT_TOPOLOGY]) {
    const present = supported.some((e) => e.function === leaf);
    if (maxBasic >= leaf && (present || leaf === LEAF.EXT_TOPOLOGY)) {
      out.push(...topologyLeaf(leaf, apicId, cpus, coreShift));
    }
  }
  if (!out.some((e) => e.function === LEAF.HYPERVISOR)) {
    out.push({
      function: LEAF.HYPERVISOR,
      index: 0,
      flags: 0,
      eax: LEAF.KVM_FEATURES,
      ...KVM_SIGNATURE,
    });
  }
  return out;
}

/** Subleaves 0 (SMT: 1 thread), 1 (core: `cpus` cores) and 2 (end) of leaf 0xB or 0x1F. */
export function topologyLeaf(
  leaf: number,
  apicId: number,
  cpus: number,
  coreShift = bitsFor(cpus),
): CpuidEntry[] {
  const entry = (index: number, eax: number, ebx: number, type: number): CpuidEntry => ({
    function: leaf,
    index,
    flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
    eax,
    ebx,
    ecx: (type << 8) | index,
    edx: apicId,
  });
  return [
    entry(0, 0, 1, TOPOLOGY_LEVEL.SMT),
    entry(1, coreShift, cpus, TOPOLOGY_LEVEL.CORE),
    entry(2, 0, 0, TOPOLOGY_LEVEL.INVALID),
  ];
}

/** Find an entry by leaf and subleaf. */
export function findCpuid(
  entries: readonly CpuidEntry[],
  fn: number,
  index = 0,
): CpuidEntry | undefined {
  return entries.find((e) =>
    e.function === fn && (e.index === index || !(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX))
  );
}

/** Bits needed to number `n` things: ceil(log2(n)). */
function bitsFor(n: number): number {
  let bits = 0;
  while (1 << bits < n) bits++;
  return bits;
}

function isAmdLike(leaf0: CpuidEntry): boolean {
  // "AuthenticAMD" / "HygonGenuine": EBX = "Auth" / "Hygo".
  return leaf0.ebx === 0x6874_7541 || leaf0.ebx === 0x6f67_7948;
}
