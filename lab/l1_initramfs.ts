/**
 * The lab's L1 initramfs: static busybox, the modules for KVM (kvm_amd with
 * nested SVM), 9p over virtio and tun, and an /init that mounts the host root,
 * runs one command in a chroot of it and powers off.
 *
 * It is two concatenated newc archives: a base built once per kernel and
 * busybox (cached under `<cache>/lab/` by content hash) and a small per-run
 * archive with `/etc/lab/cmd.sh` (the script run in the chroot), `/etc/lab/marker`
 * and `/etc/lab/shares` (writable 9p tags and their mount points).
 *
 * @module
 */

import { CpioWriter } from "../guest/cpio.ts";
import { addBusybox, findBusybox, loadBusybox } from "../guest/busybox.ts";
import { cachedAsset, fileStamp } from "../guest/asset_cache.ts";
import type { KernelAssets } from "../guest/debian_kernel.ts";
import { ModuleIndex } from "../guest/modules.ts";

/** Modules the L1 loads, in this order (dependencies are added; absent ones skipped). */
export const L1_MODULES: readonly string[] = [
  "irqbypass",
  "ccp",
  "kvm",
  "kvm-amd",
  "netfs",
  "fscache",
  "9pnet",
  "virtio_ring",
  "virtio",
  "virtio_pci_modern_dev",
  "virtio_pci_legacy_dev",
  "virtio_pci",
  "9pnet_virtio",
  "9p",
  "tun",
];

/** A writable host directory mounted in the chroot at the same path. */
export interface LabShare {
  /** 9p mount tag (`share0`, ...). */
  readonly tag: string;
  /** Absolute path on the host and in the chroot. */
  readonly path: string;
}

/** What one run needs in its per-run archive. */
export interface L1Run {
  /** Script run by the host's /bin/sh inside the chroot. */
  readonly script: string;
  /** Random marker for the command channel. */
  readonly marker: string;
  /** Writable shares to mount. */
  readonly shares: readonly LabShare[];
}

/** Path of the cached base archive for `kernel`, building it if needed. */
export async function ensureL1Base(kernel: KernelAssets): Promise<string> {
  const busybox = await findBusybox();
  const key = {
    format: 1,
    kernel: kernel.version,
    modulesDir: kernel.modulesDir,
    busybox: await fileStamp(busybox),
    modules: L1_MODULES,
    init: L1_INIT,
  };
  return await cachedAsset("lab", `l1-base-${kernel.version}`, "cpio", key, async () => {
    const cpio = new CpioWriter();
    cpio.dir("proc").dir("sys").dir("dev").dir("host").dir("tmp", 0o1777).dir("etc/lab");
    cpio.charDevice("dev/console", 5, 1);
    cpio.charDevice("dev/null", 1, 3, 0o666);
    addBusybox(cpio, await loadBusybox(busybox));
    const index = await ModuleIndex.load(kernel.modulesDir);
    const modules = await index.resolve(L1_MODULES, { optional: true });
    for (const m of modules) cpio.file(`lib/modules/${m.fileName}`, m.data);
    cpio.file("etc/lab/modules", modules.map((m) => m.fileName).join("\n") + "\n");
    cpio.file("init", L1_INIT, 0o755);
    return cpio.finish(512);
  });
}

/** The per-run archive (to be appended to the base). */
export function l1RunArchive(run: L1Run): Uint8Array {
  for (const s of run.shares) {
    if (!/^[A-Za-z0-9_]+$/.test(s.tag) || /[\s]/.test(s.path) || !s.path.startsWith("/")) {
      throw new Error(`lab: bad share ${s.tag} at ${JSON.stringify(s.path)} (absolute, no spaces)`);
    }
  }
  return new CpioWriter()
    .file("etc/lab/cmd.sh", run.script, 0o755)
    .file("etc/lab/marker", run.marker + "\n")
    .file("etc/lab/shares", run.shares.map((s) => `${s.tag} ${s.path}\n`).join(""))
    .finish(4);
}

/** Mount options for every 9p share (msize: larger messages, far fewer round trips). */
export const NINEP_OPTS = "trans=virtio,version=9p2000.L,msize=512000";

/**
 * The L1 /init (busybox sh). Errors go to the kernel console (ttyS0, kept in
 * the lab's console log); only the channel lines and the command's output go to
 * ttyS1.
 */
const L1_INIT = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "lab-init: $*" >/dev/console; sync; poweroff -f; sleep 5; exit 1; }
while read m; do
  insmod /lib/modules/$m 2>/dev/console || echo "lab-init: insmod $m failed" >/dev/console
done </etc/lab/modules
H=/host
mount -t 9p -o ${NINEP_OPTS},ro,cache=loose hostroot $H || fail "cannot mount the host root (9p)"
mount -t proc proc $H/proc || fail "mount proc"
mount -t sysfs sys $H/sys || fail "mount sysfs"
mount -t debugfs debugfs $H/sys/kernel/debug 2>/dev/console
mount -t devtmpfs dev $H/dev || fail "mount devtmpfs"
mkdir -p $H/dev/pts $H/dev/shm
mount -t devpts devpts $H/dev/pts
mount -t tmpfs shm $H/dev/shm
mount -t tmpfs -o mode=0755 run $H/run || fail "mount tmpfs on /run"
mkdir -p $H/run/lab/home $H/run/lab/deno_dir $H/run/lab/tmp
chmod 1777 $H/run/lab/tmp
while read tag path; do
  mount -t 9p -o ${NINEP_OPTS} $tag $H$path || fail "cannot mount share $tag at $path"
done </etc/lab/shares
cp /etc/lab/cmd.sh $H/run/lab/cmd.sh
M=$(cat /etc/lab/marker)
stty -F /dev/ttyS1 raw -echo 2>/dev/console
printf '%s:start\\n' "$M" >/dev/ttyS1
( env -i /bin/busybox chroot $H /bin/sh /run/lab/cmd.sh </dev/null 2>&1; echo $? >/tmp/status ) | cat >/dev/ttyS1
printf '%s:exit:%s\\n' "$M" "$(cat /tmp/status)" >/dev/ttyS1
sync
poweroff -f
`;
