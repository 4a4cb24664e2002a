/**
 * Sending MSIs from a thread other than the VMM thread (a device worker):
 * KVM_SIGNAL_MSI on the process-wide VM fd, gated by the function's Bus
 * Master Enable word that the PCI core keeps current in shared memory. Safe to
 * import in a worker (libc FFI and struct layouts only).
 *
 * @module
 */

import { KVM } from "./ioctls.ts";
import { encode, offsetOf } from "./layout.ts";
import { kvmMsi } from "./kvm_structs.ts";
import { ioctlBuf } from "./libc.ts";

/** What a worker needs (the shape of `PciRemoteMsi` in devices/pci_device.ts). */
export interface RemoteMsiTarget {
  /** KVM VM fd. */
  readonly vmFd: number;
  /** Int32 word 0: non-zero while Bus Master Enable is set. */
  readonly state: SharedArrayBuffer;
}

/** Offsets of the `struct kvm_msi` fields set per message. */
const MSI_FIELD = {
  ADDRESS_LO: offsetOf(kvmMsi, "address_lo"),
  ADDRESS_HI: offsetOf(kvmMsi, "address_hi"),
  DATA: offsetOf(kvmMsi, "data"),
} as const;

/** Sends MSIs with KVM_SIGNAL_MSI from the calling thread. */
export class RemoteMsiSender {
  readonly #fd: number;
  readonly #state: Int32Array;
  readonly #buf = encode(kvmMsi, {});
  readonly #view = new DataView(this.#buf.buffer);

  /** A sender for `target`. */
  constructor(target: RemoteMsiTarget) {
    this.#fd = target.vmFd;
    this.#state = new Int32Array(target.state);
  }

  /**
   * Send one MSI (`data` to `addressHi:addressLo`). Returns false (nothing
   * sent) while bus mastering is off. Throws OsError if KVM refuses.
   */
  send(addressLo: number, addressHi: number, data: number): boolean {
    if (Atomics.load(this.#state, 0) === 0) return false;
    this.#view.setUint32(MSI_FIELD.ADDRESS_LO, addressLo >>> 0, true);
    this.#view.setUint32(MSI_FIELD.ADDRESS_HI, addressHi >>> 0, true);
    this.#view.setUint32(MSI_FIELD.DATA, data >>> 0, true);
    ioctlBuf(this.#fd, KVM.SIGNAL_MSI, this.#buf, "KVM_SIGNAL_MSI");
    return true;
  }
}
