/**
 * Runs inside the lab's L1, before the command: holds one idle KVM VM with an
 * in-kernel irqchip and one vCPU that never runs, so its local APIC stays
 * software-disabled for the whole lab run. Then writes `argv[0]` (the ready
 * file) and sleeps until the L1 powers off. A compiled dvmm runs the same code
 * as its hidden command `dvmm lab-kvm-pin <ready file>`.
 *
 * Why: KVM counts software-disabled local APICs in a deferred static key
 * (`apic_sw_disabled`). Each guest that enables its APIC takes the count
 * from 1 to 0 and each VM created takes it back to 1, and every such edge
 * patches the L1 kernel's code (jump labels) while other CPUs run it. Under
 * QEMU's TCG that cross-CPU code patching now and then wedges an L1 CPU for
 * good (seen: a vCPU thread stuck at the patched NOP in `__apic_accept_irq`
 * with the same registers for minutes, the kworker doing the patch stuck
 * with it). With this VM alive the count never reaches 0, so no patching
 * happens during the run. Nothing here is imported: it must start fast in a
 * lab whose DENO_DIR is empty.
 *
 * @module
 */

const KVM_CREATE_VM = 0xae01n;
const KVM_CREATE_IRQCHIP = 0xae60n;
const KVM_CREATE_VCPU = 0xae41n;
const O_RDWR_CLOEXEC = 0o2 | 0o2000000;

/**
 * Hold the idle VM until the process ends; write this process's pid to
 * `ready` (when given) once the VM is held. Throws if /dev/kvm or an ioctl
 * fails.
 * @param ready the file to write once the VM is held
 */
export async function holdKvmPin(ready?: string): Promise<void> {
  const libc = Deno.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    ioctl: { parameters: ["i32", "u64", "u64"], result: "i32" },
  });
  const check = (what: string, r: number) => {
    if (r < 0) throw new Error(`kvm pin: ${what} failed`);
    return r;
  };
  const kvm = check(
    "open /dev/kvm",
    libc.symbols.open(new TextEncoder().encode("/dev/kvm\0"), O_RDWR_CLOEXEC),
  );
  const vm = check("KVM_CREATE_VM", libc.symbols.ioctl(kvm, KVM_CREATE_VM, 0n));
  check("KVM_CREATE_IRQCHIP", libc.symbols.ioctl(vm, KVM_CREATE_IRQCHIP, 0n));
  check("KVM_CREATE_VCPU", libc.symbols.ioctl(vm, KVM_CREATE_VCPU, 0n));
  if (ready) await Deno.writeTextFile(ready, `${Deno.pid}\n`);
  // Keep the fds (and so the VM) until the L1 powers off.
  setInterval(() => {}, 1 << 30);
}

if (import.meta.main) await holdKvmPin(Deno.args[0]);
