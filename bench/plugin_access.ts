/**
 * Cost of one BAR access to a device plugin, in-process vs sandboxed: N
 * 4-byte reads and writes through the MMIO {@linkcode Bus} to the register
 * file's scratch register, the plugin in the VMM's isolate or in its
 * sandbox worker (a synchronous round trip over the SharedArrayBuffer
 * channel). Pure host code, no KVM.
 *
 * `deno run -A --unstable-worker-options bench/plugin_access.ts [N]` prints
 * `RESULT:` lines like bench/main.ts does.
 *
 * @module
 */

import { Bus } from "../devices/bus.ts";
import { DeviceRegistry } from "../devices/registry.ts";
import type { AnyPciDeviceDefinition } from "../devices/pci_device.ts";
import { GuestMemory } from "../kvm/guest_memory.ts";
import { PciRoot } from "../pci/pci_root.ts";
import registerFile, { REG } from "../examples/register_file.ts";

/** Per-access costs measured by {@linkcode benchPluginAccess}. */
export interface PluginAccessResult {
  /** Accesses per run. */
  readonly accesses: number;
  /** Median ns per access, plugin in-process. */
  readonly inProcessNs: number;
  /** Median ns per access, plugin sandboxed. */
  readonly sandboxedNs: number;
  /** sandboxed / in-process. */
  readonly ratio: number;
}

/** Measure `accesses` alternating reads/writes in-process and sandboxed (median of `runs`). */
export async function benchPluginAccess(accesses = 20_000, runs = 5): Promise<PluginAccessResult> {
  const registry = new DeviceRegistry();
  try {
    const sandboxed = await registry.loadSandboxed(
      new URL("../examples/register_file.ts", import.meta.url).href,
    );
    const inProcessNs = measure(registerFile, accesses, runs);
    const sandboxedNs = measure(sandboxed.definition, accesses, runs);
    return { accesses, inProcessNs, sandboxedNs, ratio: sandboxedNs / inProcessNs };
  } finally {
    registry.close();
  }
}

function measure(def: AnyPciDeviceDefinition, accesses: number, runs: number): number {
  const mmio = new Bus("mmio");
  const root = new PciRoot({ pio: new Bus("pio"), mmio, memory: GuestMemory.ofSize(1 << 20) });
  root.addDevice(def, { slot: 3 });
  const base = root.assignments().find((a) => a.bdf === "00:03.0")!.activeAddress!;
  const at = base + BigInt(REG.SCRATCH);
  const data = new Uint8Array(4);
  const once = () => {
    for (let i = 0; i < accesses; i += 2) {
      data[0] = i;
      mmio.write(at, data);
      mmio.read(at, data);
    }
  };
  once(); // warm up (JIT, worker spin)
  const samples: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    once();
    samples.push((performance.now() - t0) * 1e6 / accesses);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 20_000);
  const r = await benchPluginAccess(n);
  console.log(`RESULT: plugin BAR access, in-process: ${r.inProcessNs.toFixed(0)} ns`);
  console.log(`RESULT: plugin BAR access, sandboxed:  ${r.sandboxedNs.toFixed(0)} ns`);
  console.log(`RESULT: sandboxed / in-process: ${r.ratio.toFixed(1)}x (${r.accesses} accesses)`);
}
