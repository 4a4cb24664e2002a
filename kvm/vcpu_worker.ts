/**
 * Entry point of a vCPU worker thread: creates the vCPU on the VM fd, applies
 * its initial state, then loops in a synchronous `KVM_RUN`, forwarding I/O
 * exits over its {@linkcode VcpuChannel} and reporting a terminal exit with a
 * register dump. See docs/architecture.md.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { KVM_EXIT, KVM_EXIT_IO, KVM_EXIT_NAMES, KVM_SYSTEM_EVENT } from "./ioctls.ts";
import { offsetOf } from "./layout.ts";
import { PORT_MAP, portBit } from "./port_map.ts";
import { answerConf1, Conf1Shared } from "../pci/conf1_shared.ts";
import { kvmRun } from "./kvm_structs.ts";
import { libc } from "./libc.ts";
import { Vcpu } from "./vcpu.ts";
import { ACCESS, CONTROL, COUNTER, VCPU_STATE, VcpuChannel } from "./vcpu_channel.ts";
import type { VcpuExit, VcpuExitKind } from "./vcpu_exit.ts";
import type { VcpuSetup } from "./types.ts";
import { startupMark } from "../vmm/startup_trace.ts";

/** The message that starts a vCPU worker. */
export interface VcpuInit {
  /** VM fd (fds are process-wide). */
  vmFd: number;
  /** vCPU id / index. */
  index: number;
  /** `KVM_GET_VCPU_MMAP_SIZE`. */
  mmapSize: number;
  /** Initial state. */
  setup: VcpuSetup;
  /** The channel's shared memory. */
  channel: SharedArrayBuffer;
  /** The VM's doorbell. */
  doorbell: SharedArrayBuffer;
  /** The port map (see port_map.ts): posted writes, and where a device is mapped. */
  portMap: SharedArrayBuffer;
}

/** Messages a vCPU worker posts to the VMM thread. */
export type VcpuMessage =
  | { type: "ready"; index: number; thread: bigint; runAddress: bigint }
  | { type: "exit"; exit: VcpuExit };

const RUN = {
  immediateExit: offsetOf(kvmRun, "immediate_exit"),
  exitReason: offsetOf(kvmRun, "exit_reason"),
  ioDirection: offsetOf(kvmRun, "exit.io.direction"),
  ioSize: offsetOf(kvmRun, "exit.io.size"),
  ioPort: offsetOf(kvmRun, "exit.io.port"),
  ioCount: offsetOf(kvmRun, "exit.io.count"),
  ioDataOffset: offsetOf(kvmRun, "exit.io.data_offset"),
  mmioAddress: offsetOf(kvmRun, "exit.mmio.phys_addr"),
  mmioData: offsetOf(kvmRun, "exit.mmio.data"),
  mmioLen: offsetOf(kvmRun, "exit.mmio.len"),
  mmioIsWrite: offsetOf(kvmRun, "exit.mmio.is_write"),
  hwReason: offsetOf(kvmRun, "exit.hw.hardware_exit_reason"),
  failEntryReason: offsetOf(kvmRun, "exit.fail_entry.hardware_entry_failure_reason"),
  internalSuberror: offsetOf(kvmRun, "exit.internal.suberror"),
  systemEventType: offsetOf(kvmRun, "exit.system_event.type"),
};

function runVcpu(init: VcpuInit): VcpuExit {
  const vcpu = Vcpu.create(init.vmFd, init.index, init.mmapSize);
  vcpu.apply(init.setup);
  const channel = new VcpuChannel(init.channel, init.doorbell);
  const counters = channel.counters;
  const run = vcpu.run, bytes = vcpu.runBytes;
  const ports = new Uint8Array(init.portMap);
  const conf1 = new Conf1Shared(init.portMap, PORT_MAP.CONF1);
  self.postMessage(
    {
      type: "ready",
      index: init.index,
      thread: libc().pthread_self(),
      runAddress: vcpu.runAddress,
    } satisfies VcpuMessage,
  );
  channel.setState(VCPU_STATE.RUNNING);
  startupMark("first KVM_RUN", `vcpu${init.index}`);

  const terminal = (kind: VcpuExitKind, detail: string): VcpuExit => {
    const exit: VcpuExit = { index: init.index, kind, detail };
    try {
      exit.regs = vcpu.getRegs();
      exit.sregs = vcpu.getSregs();
    } catch { /* the dump is best effort */ }
    return exit;
  };

  for (;;) {
    const control = channel.control();
    if (control !== CONTROL.RUN) {
      run.setUint8(RUN.immediateExit, 0);
      if (control === CONTROL.STOP) return terminal("stopped", "");
      channel.setState(VCPU_STATE.PAUSED);
      while (channel.control() === CONTROL.PAUSE) channel.waitControlChange(CONTROL.PAUSE);
      channel.setState(VCPU_STATE.RUNNING);
      continue;
    }
    channel.enterRun();
    const reason = vcpu.runOnce();
    channel.leaveRun();
    switch (reason) {
      case KVM_EXIT.IO: {
        const size = run.getUint8(RUN.ioSize);
        const port = run.getUint16(RUN.ioPort, true);
        const count = run.getUint32(RUN.ioCount, true);
        const offset = run.getUint32(RUN.ioDataOffset, true);
        const out = run.getUint8(RUN.ioDirection) === KVM_EXIT_IO.OUT;
        const claimed = portBit(ports, PORT_MAP.CLAIMED, port);
        // Nothing there: answer as the bus would (all-ones, or drop the write) without a round trip.
        if (!claimed && !out) bytes.fill(0xff, offset, offset + count * size);
        if (!claimed || (count === 1 && answerConf1(conf1, port, out, size, bytes, offset))) {
          counters[out ? COUNTER.PIO_WRITE : COUNTER.PIO_READ]++;
          counters[COUNTER.LOCAL]++;
          break;
        }
        if (out) {
          if (portBit(ports, PORT_MAP.POSTED, port)) {
            for (let i = 0; i < count; i++) {
              channel.post(ACCESS.PIO_WRITE, port, 0, bytes, offset + i * size, size);
            }
          } else {
            for (let i = 0; i < count; i++) {
              channel.request(ACCESS.PIO_WRITE, port, 0, bytes, offset + i * size, size);
            }
          }
          counters[COUNTER.PIO_WRITE]++;
        } else {
          for (let i = 0; i < count; i++) {
            channel.request(ACCESS.PIO_READ, port, 0, bytes, offset + i * size, size);
          }
          counters[COUNTER.PIO_READ]++;
        }
        break;
      }
      case KVM_EXIT.MMIO: {
        const lo = run.getUint32(RUN.mmioAddress, true);
        const hi = run.getUint32(RUN.mmioAddress + 4, true);
        const len = Math.min(run.getUint32(RUN.mmioLen, true), 8);
        if (run.getUint8(RUN.mmioIsWrite)) {
          channel.post(ACCESS.MMIO_WRITE, lo, hi, bytes, RUN.mmioData, len);
          counters[COUNTER.MMIO_WRITE]++;
        } else {
          channel.request(ACCESS.MMIO_READ, lo, hi, bytes, RUN.mmioData, len);
          counters[COUNTER.MMIO_READ]++;
        }
        break;
      }
      case -1: // interrupted by a kick
      case KVM_EXIT.INTR:
        // A kick that lands after the request it served (a pause already taken, say) must not
        // leave immediate_exit set: KVM_RUN would then return at once forever.
        run.setUint8(RUN.immediateExit, 0);
        counters[COUNTER.INTR]++;
        if (channel.probeAsked()) {
          try {
            channel.answerProbe(vcpu.getRegs().rip);
          } catch { /* unanswered: the report says so */ }
        }
        break;
      case KVM_EXIT.IRQ_WINDOW_OPEN:
        counters[COUNTER.OTHER]++;
        break;
      case KVM_EXIT.HLT:
        return terminal("hlt", "");
      case KVM_EXIT.SHUTDOWN:
        return terminal("shutdown", "triple fault");
      case KVM_EXIT.FAIL_ENTRY:
        return terminal(
          "fail-entry",
          `hardware entry failure reason 0x${
            run.getBigUint64(RUN.failEntryReason, true).toString(16)
          }`,
        );
      case KVM_EXIT.INTERNAL_ERROR:
        return terminal("internal-error", `suberror ${run.getUint32(RUN.internalSuberror, true)}`);
      case KVM_EXIT.SYSTEM_EVENT: {
        const type = run.getUint32(RUN.systemEventType, true);
        const kind = type === KVM_SYSTEM_EVENT.SHUTDOWN
          ? "system-shutdown"
          : type === KVM_SYSTEM_EVENT.RESET
          ? "system-reset"
          : "system-crash";
        return terminal(kind, `system event ${type}`);
      }
      default:
        return terminal(
          "unhandled",
          `exit reason ${reason} (${KVM_EXIT_NAMES[reason] ?? "unknown"})`,
        );
    }
  }
}

// Bind libc now: a prestarted worker does it while the VMM is still building the machine, not
// between the machine's start and the vCPU's first KVM_RUN.
try {
  libc();
} catch { /* reported when the vCPU is created */ }
startupMark("worker loaded", "vcpu");

self.onmessage = (event: MessageEvent<VcpuInit>) => {
  const init = event.data;
  let exit: VcpuExit;
  try {
    exit = runVcpu(init);
  } catch (e) {
    exit = { index: init.index, kind: "error", detail: e instanceof Error ? e.message : String(e) };
  }
  const channel = new VcpuChannel(init.channel, init.doorbell);
  channel.setState(VCPU_STATE.STOPPED);
  self.postMessage({ type: "exit", exit } satisfies VcpuMessage);
  self.close();
};
