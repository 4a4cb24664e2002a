/**
 * The KVM system handle (`/dev/kvm`): API version, capabilities, supported
 * CPUID, and VM creation. Modelled on rust-vmm's `kvm-ioctls::Kvm`.
 *
 * @module
 */

import { KVM, KVM_API_VERSION, KVM_CAP } from "./ioctls.ts";
import { close, ioctl, ioctlBuf, O_CLOEXEC, O_RDWR, open, OsError } from "./libc.ts";
import { decodeFrom, encodeInto } from "./layout.ts";
import { kvmCpuid2, kvmCpuidEntry2 } from "./kvm_structs.ts";
import type { CpuidEntry } from "./types.ts";
import { Vm } from "./vm.ts";

/** Thrown when KVM cannot be used here: one clear line, no stack trace needed. */
export class KvmUnavailableError extends Error {
  /**
   * An error saying why KVM cannot be used.
   * @param message what is wrong and what to do
   */
  constructor(message: string) {
    super(message);
    this.name = "KvmUnavailableError";
  }
}

/** True where `/dev/kvm` exists and this process may open it. */
export function hasKvm(path = "/dev/kvm"): boolean {
  try {
    Deno.openSync(path, { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}

/** Capability name for messages. */
function capName(cap: number): string {
  return Object.entries(KVM_CAP).find(([, v]) => v === cap)?.[0] ?? String(cap);
}

/** An open `/dev/kvm`. */
export class Kvm {
  private constructor(readonly fd: number, readonly path: string) {}

  /**
   * Open the KVM device. Missing device, no permission and a wrong API version
   * each throw a {@linkcode KvmUnavailableError} with one clear line.
   */
  static open(path = "/dev/kvm"): Kvm {
    let fd: number;
    try {
      fd = open(path, O_RDWR | O_CLOEXEC);
    } catch (e) {
      if (e instanceof OsError && e.errno === 2) {
        throw new KvmUnavailableError(
          `${path} does not exist: this machine has no KVM (load kvm_intel/kvm_amd, or use the lab: deno task lab)`,
        );
      }
      if (e instanceof OsError && (e.errno === 13 || e.errno === 1)) {
        throw new KvmUnavailableError(
          `no permission to open ${path} (add your user to the 'kvm' group or run as root)`,
        );
      }
      throw e;
    }
    const kvm = new Kvm(fd, path);
    const version = kvm.apiVersion();
    if (version !== KVM_API_VERSION) {
      kvm.close();
      throw new KvmUnavailableError(
        `${path}: KVM API version ${version}, dvmm needs ${KVM_API_VERSION}`,
      );
    }
    return kvm;
  }

  /** `KVM_GET_API_VERSION`. */
  apiVersion(): number {
    return ioctl(this.fd, KVM.GET_API_VERSION, 0n, "KVM_GET_API_VERSION");
  }

  /** `KVM_CHECK_EXTENSION`: 0 when absent, otherwise a capability-specific positive value. */
  checkExtension(cap: number): number {
    return ioctl(this.fd, KVM.CHECK_EXTENSION, BigInt(cap), "KVM_CHECK_EXTENSION");
  }

  /** Throw a {@linkcode KvmUnavailableError} naming every missing capability. */
  requireExtensions(caps: readonly number[]): void {
    const missing = caps.filter((c) => this.checkExtension(c) <= 0);
    if (missing.length) {
      throw new KvmUnavailableError(
        `${this.path} lacks required capabilities: ${
          missing.map((c) => `KVM_CAP_${capName(c)}`).join(", ")
        }`,
      );
    }
  }

  /** `KVM_GET_VCPU_MMAP_SIZE`: bytes to map from a vCPU fd for its `kvm_run`. */
  vcpuMmapSize(): number {
    return ioctl(this.fd, KVM.GET_VCPU_MMAP_SIZE, 0n, "KVM_GET_VCPU_MMAP_SIZE");
  }

  /** `KVM_GET_SUPPORTED_CPUID`. */
  supportedCpuid(maxEntries = 256): CpuidEntry[] {
    const buf = new Uint8Array(kvmCpuid2.size + maxEntries * kvmCpuidEntry2.size);
    const view = new DataView(buf.buffer);
    encodeInto(kvmCpuid2, view, 0, { nent: maxEntries });
    ioctlBuf(this.fd, KVM.GET_SUPPORTED_CPUID, buf, "KVM_GET_SUPPORTED_CPUID");
    const n = view.getUint32(0, true);
    return Array.from({ length: n }, (_, i) => {
      const { padding: _p, ...entry } = decodeFrom(
        kvmCpuidEntry2,
        view,
        kvmCpuid2.size + i * kvmCpuidEntry2.size,
      );
      return entry as unknown as CpuidEntry;
    });
  }

  /** `KVM_CREATE_VM`. */
  createVm(): Vm {
    const fd = ioctl(this.fd, KVM.CREATE_VM, 0n, "KVM_CREATE_VM");
    return new Vm(fd, this.vcpuMmapSize());
  }

  /** Close the device. */
  close(): void {
    close(this.fd);
  }
}
