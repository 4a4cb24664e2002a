/**
 * How a vCPU's run ended, as the worker reports it to the VMM thread, and the
 * register dump that goes with it.
 *
 * @module
 */

import type { Regs, Sregs } from "./types.ts";
import { kvmRegs } from "./kvm_structs.ts";

/** Why a vCPU stopped running. */
export type VcpuExitKind =
  | "hlt" // KVM_EXIT_HLT (only without the in-kernel irqchip)
  | "shutdown" // KVM_EXIT_SHUTDOWN: triple fault
  | "system-shutdown" // KVM_EXIT_SYSTEM_EVENT shutdown
  | "system-reset" // KVM_EXIT_SYSTEM_EVENT reset
  | "system-crash" // KVM_EXIT_SYSTEM_EVENT crash
  | "fail-entry" // KVM_EXIT_FAIL_ENTRY
  | "internal-error" // KVM_EXIT_INTERNAL_ERROR
  | "unhandled" // any other exit reason
  | "stopped" // the VMM asked it to stop
  | "error"; // an ioctl failed

/** A vCPU's final report. */
export interface VcpuExit {
  /** vCPU index. */
  index: number;
  /** Why it stopped. */
  kind: VcpuExitKind;
  /** One line of detail (exit reason number, hardware reason, error message). */
  detail: string;
  /** Registers at the exit, when they could be read. */
  regs?: Regs;
  /** Segment/control registers at the exit, when they could be read. */
  sregs?: Sregs;
}

const hex = (v: bigint, width = 16) => v.toString(16).padStart(width, "0");

/** A multi-line register dump for an exit report. */
export function formatRegisterDump(regs: Regs, sregs?: Sregs): string {
  const r = regs as unknown as Record<string, bigint>;
  // The general purpose registers, in kvm_regs order (rip and rflags get their own line).
  const names = Object.keys(kvmRegs.fields).filter((n) => n !== "rip" && n !== "rflags");
  const lines: string[] = [];
  for (let i = 0; i < names.length; i += 4) {
    lines.push(names.slice(i, i + 4).map((n) => `${n.padStart(3)}=${hex(r[n])}`).join(" "));
  }
  lines.push(`rip=${hex(regs.rip)} rflags=${hex(regs.rflags, 8)}`);
  if (sregs) {
    lines.push(
      `cr0=${hex(sregs.cr0, 8)} cr2=${hex(sregs.cr2)} cr3=${hex(sregs.cr3)} cr4=${
        hex(sregs.cr4, 8)
      } efer=${hex(sregs.efer, 4)}`,
    );
    lines.push(
      `cs=${sregs.cs.selector.toString(16)}:${
        hex(sregs.cs.base, 8)
      } l=${sregs.cs.l} db=${sregs.cs.db} ` +
        `ss=${sregs.ss.selector.toString(16)} gdt=${hex(sregs.gdt.base, 8)}/${
          sregs.gdt.limit.toString(16)
        }`,
    );
  }
  return lines.join("\n");
}

/** One-line summary plus the register dump of a {@linkcode VcpuExit}. */
export function formatVcpuExit(exit: VcpuExit): string {
  const head = `vcpu${exit.index}: ${exit.kind}${exit.detail ? ` (${exit.detail})` : ""}`;
  return exit.regs ? `${head}\n${formatRegisterDump(exit.regs, exit.sregs)}` : head;
}
