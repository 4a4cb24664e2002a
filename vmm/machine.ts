/**
 * A dvmm x86 machine: KVM VM with in-kernel irqchip and PIT, guest RAM, the
 * legacy platform devices (COM1, i8042, CMOS RTC, ACPI PM), the PCI core with
 * its plugins, a Linux kernel loaded per the boot protocol, and one worker
 * thread per vCPU. It ends when the guest powers off, reboots, panics or
 * triple-faults, or when the VMM stops it.
 *
 * @example
 * ```ts
 * const m = await Machine.create({ kernel, initrd, cmdline: "", memory: 256 << 20, cpus: 1,
 *   serialOutput: (b) => Deno.stdout.writeSync(b) });
 * m.start();
 * console.log((await m.exited).message);
 * ```
 *
 * @module
 */

import { Bus } from "../devices/bus.ts";
import type { IrqLine } from "../devices/irq.ts";
import { type Logger, nullLogger } from "../devices/logger.ts";
import type { AnyPciDeviceDefinition } from "../devices/pci_device.ts";
import { ACPI_PM_PORT_SPAN, AcpiPm } from "../devices/acpi_pm.ts";
import { CmosRtc, RTC_PORT_COUNT } from "../devices/cmos_rtc.ts";
import { I8042 } from "../devices/i8042.ts";
import { Serial8250, UART_REGISTER_COUNT } from "../devices/serial_8250.ts";
import { type DispatchStats, IoDispatcher } from "../kvm/io_dispatcher.ts";
import { Kvm } from "../kvm/kvm.ts";
import { KVM_CAP } from "../kvm/ioctls.ts";
import type { GuestMemory } from "../kvm/guest_memory.ts";
import { IOAPIC_REDIRECTION, type Vm } from "../kvm/vm.ts";
import { VcpuThread } from "../kvm/vcpu_thread.ts";
import { formatVcpuExit, type VcpuExit } from "../kvm/vcpu_exit.ts";
import { COUNTER_NAMES } from "../kvm/vcpu_channel.ts";
import type { VcpuSetup } from "../kvm/types.ts";
import { PciRoot } from "../pci/pci_root.ts";
import { Conf1Shared } from "../pci/conf1_shared.ts";
import { PORT_MAP } from "../kvm/port_map.ts";
import { KvmPciPlatform } from "./kvm_pci_platform.ts";
import { bootFpu } from "../x86/fpu.ts";
import { kvmDebugStats } from "../kvm/kvm_debug_stats.ts";
import { bootMsrs } from "../x86/msrs.ts";
import { vcpuCpuid } from "../x86/cpuid.ts";
import { type LinuxBoot, type LoadableBytes, loadLinux } from "../x86/loader.ts";
import { IRQS, PORTS, ramRegions } from "../x86/layout.ts";
import { startupMark } from "./startup_trace.ts";

/** A PCI device plugin to plug, with its options. */
export interface MachineDevice {
  /** The plugin definition (validated by the core when plugged). */
  definition: AnyPciDeviceDefinition;
  /** Its raw options (`key=value` pairs), validated by the core. */
  options?: Record<string, unknown>;
  /** Where it came from, for messages. */
  source?: string;
}

/** Everything needed to build a machine. */
export interface MachineConfig {
  /** bzImage bytes. */
  kernel: Uint8Array;
  /**
   * The bzImage's decompressed ELF vmlinux, booted in its place (the guest
   * then skips decompressing itself); see guest/vmlinux.ts.
   */
  vmlinux?: Uint8Array | LoadableBytes;
  /** initramfs bytes. */
  initrd?: Uint8Array | LoadableBytes;
  /** Extra kernel command line, appended to {@linkcode DEFAULT_CMDLINE}. */
  cmdline: string;
  /** Guest RAM in bytes. */
  memory: number;
  /** vCPUs. */
  cpus: number;
  /** PCI device plugins. */
  devices?: MachineDevice[];
  /** Receives the guest's serial (COM1) output. */
  serialOutput: (bytes: Uint8Array) => void;
  /** VMM log. */
  log?: Logger;
}

/** Why a machine ended. */
export type MachineExitReason =
  | "poweroff"
  | "reboot"
  | "panic"
  | "triple-fault"
  | "error"
  | "stopped";

/** Process exit status for each reason (documented in the README). */
export const EXIT_STATUS: Readonly<Record<MachineExitReason, number>> = {
  poweroff: 0,
  stopped: 0,
  error: 1,
  reboot: 3,
  panic: 4,
  "triple-fault": 5,
};

/** How a machine ended. */
export interface MachineExit {
  /** Why. */
  reason: MachineExitReason;
  /** The process exit status for it. */
  status: number;
  /** One line for the user. */
  message: string;
  /** The vCPU report behind it (with a register dump), if a vCPU ended it. */
  vcpu?: VcpuExit;
}

/** Run state. */
export type MachineState = "created" | "running" | "paused" | "stopped";

/** Exit counts of one vCPU, by kind. */
export type VcpuStats = Record<(typeof COUNTER_NAMES)[number], number>;

/** Kernel arguments dvmm always passes (before the user's). */
export const DEFAULT_CMDLINE = "console=ttyS0 panic=-1";

const PANIC_TEXT = "Kernel panic - not syncing";

/**
 * A stall report ({@linkcode Machine.describe}) kicks a vCPU that has been
 * inside KVM_RUN this many seconds or more, to learn where the guest is.
 */
export const PROBE_AFTER_S = 5;

type Ending = { reason: MachineExitReason; message: string; vcpu?: VcpuExit };

/** A booted (or bootable) x86 machine. */
export class Machine {
  /** Port I/O bus. */
  readonly pio: Bus = new Bus("pio");
  /** MMIO bus. */
  readonly mmio: Bus = new Bus("mmio");
  /** Resolves once, when the machine has ended. */
  readonly exited: Promise<MachineExit>;
  /** The PCI core. */
  readonly pci: PciRoot;
  /** The COM1 UART. */
  readonly serial: Serial8250;
  /** Guest RAM. */
  readonly memory: GuestMemory;
  /** Where the kernel, initrd and tables went, and how the boot vCPU enters the kernel. */
  readonly boot: LinuxBoot;
  #state: MachineState = "created";
  #vcpus: VcpuThread[] = [];
  #dispatcher: IoDispatcher;
  #resolveExit!: (e: MachineExit) => void;
  #ending = false;
  #tail = "";
  #panicSeen = false;
  #setups: VcpuSetup[];
  #pm: AcpiPm;
  #startedAt = 0;
  // virtio wiring: MSIs and ioeventfds for PCI plugins.
  #platform: KvmPciPlatform;
  /** Where host input goes instead of COM1 (a plugin took the console input). */
  #inputSink: ((bytes: Uint8Array) => number) | null = null;

  private constructor(
    readonly config: MachineConfig,
    readonly kvm: Kvm,
    readonly vm: Vm,
    readonly log: Logger,
  ) {
    this.exited = new Promise((r) => this.#resolveExit = r);
    this.memory = vm.allocateMemory(ramRegions(config.memory));
    const line = (gsi: number): IrqLine => ({ set: (level) => vm.irqLine(gsi, level) });

    this.serial = new Serial8250({ irq: line(IRQS.COM1), onOutput: (b) => this.#serialOut(b) });
    this.pio.register(BigInt(PORTS.COM1), BigInt(UART_REGISTER_COUNT), this.serial, "serial COM1");
    const i8042 = new I8042({ onReset: () => this.#end(this.#resetReason()) });
    this.pio.register(BigInt(PORTS.I8042_DATA), 1n, i8042.dataPort, "i8042 data");
    this.pio.register(BigInt(PORTS.I8042_CMD), 1n, i8042.commandPort, "i8042 command");
    const rtc = new CmosRtc({ memoryBytes: config.memory, cpus: config.cpus });
    this.pio.register(BigInt(PORTS.RTC), BigInt(RTC_PORT_COUNT), rtc, "cmos rtc");
    const pm = new AcpiPm({
      onPowerOff: () => this.#end({ reason: "poweroff", message: "guest powered off" }),
      sci: line(IRQS.SCI),
    });
    this.#pm = pm;
    this.pio.register(BigInt(PORTS.ACPI_PM1A_EVT), BigInt(ACPI_PM_PORT_SPAN), pm, "acpi pm");
    // Port 0x80 (POST codes, I/O delay) is written often by Linux: swallow it quietly.
    this.pio.register(0x80n, 1n, { read: (_o, d) => d.fill(0xff), write: () => {} }, "port 0x80");

    this.#dispatcher = new IoDispatcher(this.pio, this.mmio, (l) => log.warn(l));
    // virtio wiring: apply posted vCPU writes before a doorbell kick reaches its device.
    this.#platform = new KvmPciPlatform(vm, { beforeKick: () => this.#dispatcher?.drain() });
    this.pci = new PciRoot({
      pio: this.pio,
      mmio: this.mmio,
      memory: this.memory,
      log,
      irqLine: line,
      platform: this.#platform,
      // vCPU threads serve CONFIG_ADDRESS writes and reads of absent functions themselves.
      conf1: new Conf1Shared(this.#dispatcher.portMap, PORT_MAP.CONF1),
      hostConsole: {
        write: (bytes) => config.serialOutput(bytes),
        takeInput: (sink) => {
          this.#inputSink = sink;
          return () => {
            if (this.#inputSink === sink) this.#inputSink = null;
          };
        },
      },
    });
    for (const d of config.devices ?? []) {
      this.pci.addDevice(d.definition, { options: d.options, source: d.source });
    }

    startupMark("memory and devices set up");
    const boot = this.boot = loadLinux(this.memory, {
      kernel: config.kernel,
      vmlinux: config.vmlinux,
      initrd: config.initrd,
      cmdline: [DEFAULT_CMDLINE, config.cmdline].filter((s) => s.trim()).join(" "),
      memorySize: config.memory,
      cpus: config.cpus,
      pciInterrupts: this.pci.summary()
        .filter((d) => d.gsi !== undefined && d.slot > 0)
        .map((d) => ({ device: d.slot, pin: 0, gsi: d.gsi! })),
    });
    startupMark("kernel loaded");
    const supported = kvm.supportedCpuid();
    const tscDeadline = kvm.checkExtension(KVM_CAP.TSC_DEADLINE_TIMER) > 0;
    const msrs = bootMsrs(), fpu = bootFpu();
    this.#setups = Array.from({ length: config.cpus }, (_, i) => ({
      cpuid: vcpuCpuid(supported, i, config.cpus, { tscDeadline }),
      msrs,
      fpu,
      ...(i === 0 ? { regs: boot.entry.regs, sregs: boot.entry.sregs } : {}),
    }));
    // Port writes are synchronous except where nothing can depend on their completion:
    // POST codes, the COM1 registers (ISA IRQ 4 is edge-triggered), the CMOS index register (only
    // the next data access, which waits for every posted write, sees it), the config address
    // register (vCPU threads store its dword writes themselves: pci/conf1_shared.ts).
    this.#dispatcher.postPorts(0x80, 1);
    this.#dispatcher.postPorts(PORTS.RTC, 1);
    this.#dispatcher.postPorts(PORTS.COM1, UART_REGISTER_COUNT);
    this.#dispatcher.postPorts(PORTS.PCI_CONFIG_ADDRESS, 4);
  }

  /** Build a machine: open KVM, create the VM, devices and guest memory, load the kernel. */
  static create(config: MachineConfig): Promise<Machine> {
    const log = config.log ?? nullLogger;
    const kvm = Kvm.open();
    let vm: Vm | undefined;
    try {
      kvm.requireExtensions([
        KVM_CAP.IRQCHIP,
        KVM_CAP.USER_MEMORY,
        KVM_CAP.PIT2,
        KVM_CAP.EXT_CPUID,
        KVM_CAP.IRQ_ROUTING,
        KVM_CAP.IMMEDIATE_EXIT,
      ]);
      const maxVcpus = kvm.checkExtension(KVM_CAP.MAX_VCPUS) ||
        kvm.checkExtension(KVM_CAP.NR_VCPUS);
      if (config.cpus > maxVcpus) {
        throw new Error(`${config.cpus} vCPUs asked for; KVM here supports at most ${maxVcpus}`);
      }
      vm = kvm.createVm();
      vm.setTssAddress(0xfffb_d000);
      vm.setIdentityMapAddress(0xfffb_c000);
      vm.createIrqchip();
      vm.createPit2();
      startupMark("vm created");
      return Promise.resolve(new Machine(config, kvm, vm, log));
    } catch (e) {
      vm?.close();
      kvm.close();
      throw e;
    }
  }

  /** Current run state. */
  get state(): MachineState {
    return this.#state;
  }

  /** Start every vCPU. */
  start(): void {
    if (this.#state !== "created") throw new Error(`machine already ${this.#state}`);
    this.#state = "running";
    this.#startedAt = performance.now();
    startupMark("machine starts");
    this.#dispatcher.start();
    for (let i = 0; i < this.config.cpus; i++) {
      const t = new VcpuThread(
        this.vm.fd,
        i,
        this.vm.vcpuMmapSize,
        this.#setups[i],
        this.#dispatcher.doorbell,
        this.#dispatcher.portMap,
      );
      this.#dispatcher.add(t.channel);
      this.#vcpus.push(t);
      t.exited.then((exit) => this.#vcpuEnded(exit));
    }
  }

  /**
   * Queue host input for the guest's console: the serial port, or the device
   * that took the console input (virtio-console with `input`). Returns how
   * many bytes were taken.
   */
  sendInput(bytes: Uint8Array): number {
    if (this.#inputSink) return this.#inputSink(bytes);
    return this.serial.enqueueInput(bytes);
  }

  /** Hold every vCPU outside guest mode. */
  async pause(): Promise<void> {
    if (this.#state !== "running") return;
    await Promise.all(this.#vcpus.map((v) => v.pause()));
    this.#state = "paused";
  }

  /** Let paused vCPUs run again. */
  resume(): void {
    if (this.#state !== "paused") return;
    for (const v of this.#vcpus) v.resume();
    this.#state = "running";
  }

  /**
   * Ask the guest to power off: press the ACPI power button (the guest's ACPI
   * button driver and its userspace decide what to do).
   */
  requestShutdown(): void {
    this.#pm.pressPowerButton();
  }

  /** Milliseconds since {@linkcode start}. */
  get uptimeMs(): number {
    return this.#startedAt ? performance.now() - this.#startedAt : 0;
  }

  /** End the machine from the VMM side. */
  stop(message = "stopped by the VMM"): Promise<MachineExit> {
    this.#end({ reason: "stopped", message });
    return this.exited;
  }

  /** Exit counts per vCPU. */
  vcpuStats(): VcpuStats[] {
    return this.#vcpus.map((v) =>
      Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, v.channel.counters[i]])) as VcpuStats
    );
  }

  /**
   * A report of where the machine stands, for when a guest seems stuck: each
   * vCPU's channel (state, a pending read, exit counts), the dispatcher's
   * doorbell, COM1's registers and the IOAPIC's pending and remote-IRR bits.
   * Two reports a moment apart tell a busy guest from a stalled one; a vCPU
   * that has been inside KVM_RUN for {@linkcode PROBE_AFTER_S} seconds or more
   * is kicked for its registers, which the next report shows.
   */
  describe(): string {
    // A vCPU inside KVM_RUN for long is kicked once: the next report says where the guest was,
    // or that KVM itself never returned.
    for (const v of this.#vcpus) if (v.channel.probeIfLongInRun(PROBE_AFTER_S)) v.kick();
    const lines = [
      `machine ${this.#state} up ${(this.uptimeMs / 1000).toFixed(1)} s`,
      ...this.#dispatcher.describe(),
      `COM1: ${this.serial.describe()}`,
      `COM1 trace (last accesses, oldest first):`,
      ...this.serial.traceReport().split("\n").map((l) => `  ${l}`),
    ];
    const kvmStats = kvmDebugStats(this.vm.fd);
    if (kvmStats) lines.push(`KVM (debugfs): ${kvmStats}`);
    try {
      const ioapic = this.vm.ioapicState();
      const R = IOAPIC_REDIRECTION;
      const pins = ioapic.redirection.map((e, pin) => ({ e, pin }))
        .filter(({ e }) => !(e & R.MASKED))
        .map(({ e, pin }) => `${pin}:v${Number(e & R.VECTOR)}${e & R.REMOTE_IRR ? "+rirr" : ""}`);
      lines.push(`IOAPIC irr=0x${ioapic.irr.toString(16)} unmasked ${pins.join(" ") || "none"}`);
    } catch (e) {
      lines.push(`IOAPIC: ${e instanceof Error ? e.message : String(e)}`);
    }
    return lines.join("\n");
  }

  /** Dispatcher totals. */
  ioStats(): DispatchStats {
    return { ...this.#dispatcher.stats };
  }

  #serialOut(bytes: Uint8Array): void {
    this.config.serialOutput(bytes);
    // Remember whether the guest said it panicked: with panic=-1 it then resets.
    this.#tail = (this.#tail + String.fromCharCode(...bytes)).slice(-64);
    if (!this.#panicSeen && this.#tail.includes(PANIC_TEXT)) this.#panicSeen = true;
  }

  #resetReason(): Ending {
    return this.#panicSeen
      ? { reason: "panic", message: "guest kernel panicked" }
      : { reason: "reboot", message: "guest rebooted" };
  }

  #vcpuEnded(exit: VcpuExit): void {
    if (this.#ending) return;
    switch (exit.kind) {
      case "system-shutdown":
        return this.#end({ reason: "poweroff", message: "guest powered off" });
      case "system-reset":
        return this.#end(this.#resetReason());
      case "system-crash":
        return this.#end({ reason: "panic", message: "guest reported a crash", vcpu: exit });
      case "shutdown":
        return this.#end(
          this.#panicSeen
            ? this.#resetReason()
            : { reason: "triple-fault", message: `vcpu${exit.index}: triple fault`, vcpu: exit },
        );
      case "stopped":
        return;
      default:
        this.log.error(formatVcpuExit(exit));
        return this.#end({
          reason: "error",
          message: `vcpu${exit.index}: ${exit.kind} ${exit.detail}`.trim(),
          vcpu: exit,
        });
    }
  }

  /** End once: stop the vCPUs and the dispatcher (outside any device callback), then resolve. */
  #end(e: Ending): void {
    if (this.#ending) return;
    this.#ending = true;
    setTimeout(async () => {
      await Promise.all(this.#vcpus.map((v) => v.stop()));
      await this.#dispatcher.stop();
      this.pci.close(); // plugins release host resources (TAP fds) while guest memory still exists
      await this.#platform.close(); // virtio wiring: stop the ioeventfd poller worker
      this.#state = "stopped";
      // Every vCPU is gone and nothing dispatches any more: give the memory back.
      this.vm.close();
      this.kvm.close();
      this.#resolveExit({ ...e, status: EXIT_STATUS[e.reason] });
    }, 0);
  }
}
