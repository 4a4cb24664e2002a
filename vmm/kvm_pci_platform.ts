/**
 * The {@linkcode PciPlatform} of a KVM machine: MSIs go out with
 * KVM_SIGNAL_MSI, doorbells become KVM ioeventfds whose eventfds an
 * {@linkcode IoeventfdPoller} worker waits on (started on the first doorbell),
 * and each kick reaches the device on the VMM thread. A plugin may instead
 * hand in its own eventfd and wait on it in its own worker, which then sends
 * MSIs itself on the VM fd ({@linkcode KvmPciPlatform.remoteMsi}).
 *
 * Ordering: a vCPU's earlier MMIO/PIO writes are posted to its channel and
 * may still be unapplied when its doorbell write fires the eventfd (which
 * bypasses the channel). `beforeKick` (the machine drains the vCPU channels
 * there) runs before every kick so the device sees those writes first, as it
 * would on real hardware.
 *
 * @module
 */

import type {
  IoeventfdLength,
  PciIoeventfdHandle,
  PciPlatform,
  PciSpace,
} from "../devices/pci_device.ts";
import { IoeventfdPoller, type PolledEventfd } from "../kvm/ioeventfd_poller.ts";
import type { IoeventfdSpec, Vm } from "../kvm/vm.ts";

/** Options of a {@linkcode KvmPciPlatform}. */
export interface KvmPciPlatformOptions {
  /** Runs on the VMM thread before each kick (apply posted vCPU writes). */
  readonly beforeKick?: () => void;
}

/** Counts of what the platform did. */
export interface KvmPciPlatformStats {
  /** KVM_SIGNAL_MSI calls. */
  msis: number;
  /** MSIs KVM reported as blocked by the guest (result 0). */
  msisBlocked: number;
  /** Doorbell callbacks run. */
  kicks: number;
  /** ioeventfds registered now. */
  ioeventfds: number;
}

/** MSI delivery and ioeventfds on a KVM VM. */
export class KvmPciPlatform implements PciPlatform {
  /** Counts. */
  readonly stats: KvmPciPlatformStats = { msis: 0, msisBlocked: 0, kicks: 0, ioeventfds: 0 };
  readonly #vm: Vm;
  readonly #beforeKick: () => void;
  readonly #live = new Map<
    PciIoeventfdHandle,
    { spec: IoeventfdSpec; entry: PolledEventfd | null }
  >();
  #poller: IoeventfdPoller | null = null;
  #next = 1;
  #closed = false;

  /** A platform over `vm`. */
  constructor(vm: Vm, options: KvmPciPlatformOptions = {}) {
    this.#vm = vm;
    this.#beforeKick = options.beforeKick ?? (() => {});
  }

  /** KVM_SIGNAL_MSI. */
  signalMsi(address: bigint, data: number): void {
    this.stats.msis++;
    const r = this.#vm.signalMsi({
      addressLo: Number(address & 0xffff_ffffn),
      addressHi: Number(address >> 32n),
      data,
    });
    if (r === 0) this.stats.msisBlocked++;
  }

  /** The VM fd: other threads (plugin workers) may send KVM_SIGNAL_MSI on it. */
  remoteMsi(): { vmFd: number } {
    return { vmFd: this.#vm.fd };
  }

  /**
   * KVM_IOEVENTFD (no datamatch) on `fd` when given (the caller owns and
   * waits on it), else on a fresh eventfd of the poller, which calls `onKick`.
   */
  addIoeventfd(
    space: PciSpace,
    address: bigint,
    length: IoeventfdLength,
    onKick: () => void,
    fd?: number,
  ): PciIoeventfdHandle {
    if (this.#closed) throw new Error("KVM PCI platform: closed");
    if (fd !== undefined) {
      const spec: IoeventfdSpec = { addr: address, len: length, fd, pio: space === "io" };
      this.#vm.ioeventfd(spec);
      const handle = this.#next++;
      this.#live.set(handle, { spec, entry: null });
      this.stats.ioeventfds++;
      return handle;
    }
    this.#poller ??= new IoeventfdPoller();
    const entry = this.#poller.add(() => {
      this.stats.kicks++;
      this.#beforeKick();
      onKick();
    });
    const spec: IoeventfdSpec = { addr: address, len: length, fd: entry.fd, pio: space === "io" };
    try {
      this.#vm.ioeventfd(spec);
    } catch (e) {
      this.#poller.remove(entry);
      throw e;
    }
    const handle = this.#next++;
    this.#live.set(handle, { spec, entry });
    this.stats.ioeventfds++;
    return handle;
  }

  /** KVM_IOEVENTFD deassign, then let the poller close the eventfd. */
  removeIoeventfd(handle: PciIoeventfdHandle): void {
    const r = this.#live.get(handle);
    if (!r) return;
    this.#live.delete(handle);
    this.stats.ioeventfds--;
    try {
      if (!this.#closed) this.#vm.ioeventfd(r.spec, true);
    } finally {
      if (r.entry) this.#poller?.remove(r.entry);
    }
  }

  /** Stop the poller worker (closing every eventfd). Call before the VM is closed. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#live.clear();
    await this.#poller?.stop();
  }
}
