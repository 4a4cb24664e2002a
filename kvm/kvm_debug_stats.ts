/**
 * KVM's own per-VM exit counters from debugfs
 * (`/sys/kernel/debug/kvm/<pid>-<vm fd>/`), for a stall report: two reports a
 * moment apart tell a guest that KVM keeps running (and exiting, inside the
 * kernel) from one that does not run at all. Empty where debugfs is not
 * mounted or not readable (it needs root); never throws.
 *
 * @module
 */

/** The counters a stall report shows, in this order. */
export const KVM_DEBUG_COUNTERS = [
  "exits",
  "irq_window_exits",
  "halt_exits",
  "io_exits",
  "mmio_exits",
  "signal_exits",
  "irq_injections",
] as const;

/** Where debugfs puts KVM's directories. */
export const KVM_DEBUGFS = "/sys/kernel/debug/kvm";

/**
 * One line of `name=value` for the VM whose fd is `vmFd` in this process, or
 * "" when the counters cannot be read.
 */
export function kvmDebugStats(vmFd: number, root = KVM_DEBUGFS): string {
  const dir = `${root}/${Deno.pid}-${vmFd}`;
  const parts: string[] = [];
  for (const name of KVM_DEBUG_COUNTERS) {
    try {
      parts.push(`${name}=${Deno.readTextFileSync(`${dir}/${name}`).trim()}`);
    } catch {
      // absent on this kernel, or no debugfs
    }
  }
  return parts.join(" ");
}
