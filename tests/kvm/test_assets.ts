/**
 * Guest assets the KVM tests need beyond the default guest: built on the
 * host (which has gcc, the network and a writable cache) before the lab
 * boots, and found by the tests inside the lab through an environment
 * variable (the lab sees the host's cache read-only at the same path).
 *
 * Run natively (with /dev/kvm on the host), a test builds them itself.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { ensureKernel } from "../../guest/debian_kernel.ts";
import { runHostTool } from "../../guest/host_tool.ts";
import { DEFAULT_GUEST_MODULES, ensureGuestInitramfs } from "../../guest/initramfs.ts";

/** Paths of the prepared assets. */
export interface KvmTestAssets {
  /**
   * Default guest plus `uio_pci_generic` (and `uio`) and the static
   * `/bin/copy_engine_user` built from tests/kvm/guests/copy_engine_user.c.
   */
  readonly copyEngineInitrd: string;
}

/** The environment variable carrying {@linkcode KvmTestAssets} (JSON) into the lab. */
export const KVM_TEST_ASSETS_ENV = "DVMM_KVM_TEST_ASSETS";

/** Where the copy-engine program lives in its initramfs. */
export const COPY_ENGINE_USER_BIN = "/bin/copy_engine_user";

/** Modules of the copy-engine guest: the defaults plus the generic PCI UIO driver. */
export const COPY_ENGINE_GUEST_MODULES: readonly string[] = [
  ...DEFAULT_GUEST_MODULES,
  "uio_pci_generic",
];

const COPY_ENGINE_SOURCE = fileURLToPath(
  new URL("./guests/copy_engine_user.c", import.meta.url),
);

/** Build every asset (cached by content: unchanged inputs give the same paths quickly). */
export async function buildKvmTestAssets(): Promise<KvmTestAssets> {
  return { copyEngineInitrd: await buildCopyEngineInitrd() };
}

/** The assets: from {@linkcode KVM_TEST_ASSETS_ENV} when the runner prepared them, else built now. */
export async function kvmTestAssets(): Promise<KvmTestAssets> {
  const prepared = Deno.env.get(KVM_TEST_ASSETS_ENV);
  return prepared ? JSON.parse(prepared) as KvmTestAssets : await buildKvmTestAssets();
}

/** Compile copy_engine_user.c statically and pack it into a default-guest initramfs. */
async function buildCopyEngineInitrd(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dvmm-copy-engine-" });
  try {
    const out = `${dir}/copy_engine_user`;
    const r = await runHostTool("gcc", ["-static", "-O2", "-Wall", "-o", out, COPY_ENGINE_SOURCE], {
      hint: "install gcc and the static C library (apt-get install gcc libc6-dev)",
    });
    if (r.code !== 0) {
      throw new Error(`gcc ${COPY_ENGINE_SOURCE} failed (status ${r.code}):\n${r.stderr}`);
    }
    const kernel = await ensureKernel();
    return await ensureGuestInitramfs({
      kernel,
      modules: COPY_ENGINE_GUEST_MODULES,
      files: [{ path: COPY_ENGINE_USER_BIN, data: await Deno.readFile(out), mode: 0o755 }],
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
