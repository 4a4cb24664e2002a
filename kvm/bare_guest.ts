/**
 * Run a flat real-mode program on one vCPU, with no firmware and no irqchip:
 * the smallest complete use of the KVM layer (memory slot, vCPU worker, exit
 * dispatch to buses, HLT ends the run). Used by the first-guest test, the PCI
 * guest tests and the exit benchmark.
 *
 * @module
 */

import { Bus } from "../devices/bus.ts";
import { IoDispatcher, type Logger } from "./io_dispatcher.ts";
import { Kvm } from "./kvm.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { VcpuThread } from "./vcpu_thread.ts";
import { COUNTER } from "./vcpu_channel.ts";
import type { VcpuExit } from "./vcpu_exit.ts";

/** What to run and where its devices are. */
export interface BareGuestOptions {
  /** The program's bytes. */
  code: Uint8Array;
  /** Where it is loaded and entered (CS=0, IP=loadAddress). Default 0x1000. */
  loadAddress?: number;
  /** Guest RAM at address 0, in bytes. Default 64 KiB. */
  memorySize?: number;
  /** Port I/O devices. */
  pio?: Bus;
  /** MMIO devices. */
  mmio?: Bus;
  /** Called with guest memory once it is set up, before the vCPU starts. */
  prepare?: (memory: GuestMemory) => void;
  /** Port ranges `[base, count]` whose writes may be posted (the rest are synchronous). */
  postedPorts?: [number, number][];
  /** Device error log. */
  log?: Logger;
}

/** The outcome of a bare guest run. */
export interface BareGuestResult {
  /** How the vCPU stopped (normally `hlt`). */
  exit: VcpuExit;
  /** Dispatcher counts. */
  accesses: number;
  /** Port writes the vCPU worker saw leave KVM_RUN (its exit counter). */
  pioWriteExits: number;
  /** Wall time from the first KVM_RUN to the exit, in ms. */
  runMs: number;
}

/** Boot `options.code` in 16-bit real mode and run it until it halts or fails. */
export async function runBareGuest(options: BareGuestOptions): Promise<BareGuestResult> {
  const loadAddress = options.loadAddress ?? 0x1000;
  const pio = options.pio ?? new Bus("pio");
  const mmio = options.mmio ?? new Bus("mmio");
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  try {
    vm.setTssAddress(0xfffb_d000);
    const memory = vm.allocateMemory([{ base: 0, size: options.memorySize ?? 0x10000 }]);
    memory.write(loadAddress, options.code);
    options.prepare?.(memory);
    const dispatcher = new IoDispatcher(pio, mmio, options.log);
    for (const [base, count] of options.postedPorts ?? []) dispatcher.postPorts(base, count);
    const vcpu = new VcpuThread(
      vm.fd,
      0,
      vm.vcpuMmapSize,
      {
        sregs: {
          cs: { base: 0n, selector: 0 },
          ds: { base: 0n, selector: 0 },
          es: { base: 0n, selector: 0 },
        },
        regs: { rip: BigInt(loadAddress), rflags: 2n, rsp: BigInt(loadAddress) },
      },
      dispatcher.doorbell,
      dispatcher.portMap,
    );
    dispatcher.add(vcpu.channel);
    dispatcher.start();
    await vcpu.ready;
    const t0 = performance.now();
    const exit = await vcpu.exited;
    const runMs = performance.now() - t0;
    await dispatcher.stop();
    return {
      exit,
      accesses: dispatcher.stats.accesses,
      pioWriteExits: vcpu.channel.counters[COUNTER.PIO_WRITE],
      runMs,
    };
  } finally {
    vm.close();
    kvm.close();
  }
}
