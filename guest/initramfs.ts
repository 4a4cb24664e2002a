/**
 * dvmm's default guest initramfs: what `dvmm run` without `--kernel` and the
 * demo boot (with the Debian kernel from {@linkcode ensureKernel}).
 *
 * Contents:
 * - static busybox at /bin/busybox with a symlink per applet;
 * - the virtio drivers and ext4 with their dependencies under
 *   `/lib/modules/<version>/` (decompressed, ready for busybox `insmod`), their
 *   load order in `/etc/dvmm/modules`, and `/bin/dvmm-load-modules`, which
 *   insmods them all in that order (skipping ones that fail);
 * - the ACPI power button: `/bin/dvmm-power-button` loads `evdev` and
 *   `button` and starts busybox `acpid`, whose handler
 *   `/etc/acpi/PWRF/00000080` syncs and powers off (`poweroff -f`), so the
 *   VMM's power-button press ({@linkcode POWER_BUTTON_MODULES}) shuts the
 *   guest down cleanly;
 * - `/init`: mounts proc, sysfs, devtmpfs, devpts and a tmpfs on /tmp, prints
 *   {@linkcode GUEST_INIT_MARKER} on the console, arms the power button
 *   (unless `powerButton: false`), optionally loads the modules, runs the
 *   caller's snippet, then starts a shell on the console
 *   (`setsid cttyhack sh`; with `console=hvc0` it loads the modules first so
 *   the virtio console exists); when that shell exits it powers off (`poweroff -f`).
 *
 * A caller adds files and an init snippet (e.g. `dvmm-load-modules; mount
 * /dev/vda /mnt; ...; poweroff -f`). The archive is cached under
 * `<cache>/initramfs/` by a hash of every input; the same inputs give the same
 * path without rebuilding.
 *
 * @module
 */

import { cachedAsset, fileStamp, sha256Hex } from "./asset_cache.ts";
import { addBusybox, findBusybox, loadBusybox } from "./busybox.ts";
import { CpioWriter } from "./cpio.ts";
import { ensureKernel, type KernelAssets } from "./debian_kernel.ts";
import { ModuleIndex } from "./modules.ts";

/** A file the caller adds to the initramfs. */
export interface GuestFile {
  /** Absolute or relative path in the guest (`/etc/motd`). */
  readonly path: string;
  /** Contents (a string is UTF-8 encoded). */
  readonly data: Uint8Array | string;
  /** Permission bits (default 0o644). */
  readonly mode?: number;
}

/** Options for {@linkcode buildGuestInitramfs} and {@linkcode ensureGuestInitramfs}. */
export interface GuestInitramfsOptions {
  /** Kernel whose modules to include (default {@linkcode ensureKernel}). */
  kernel?: KernelAssets;
  /** Modules to include, dependencies added (default {@linkcode DEFAULT_GUEST_MODULES}). */
  modules?: readonly string[];
  /** Run `dvmm-load-modules` in /init before the snippet (default false). */
  loadModules?: boolean;
  /** Extra files (they may replace nothing that the base image has). */
  files?: readonly GuestFile[];
  /** Shell code run by /init (busybox sh) after the marker, before the console shell. */
  initSnippet?: string;
  /**
   * Arm the ACPI power button in /init (load {@linkcode POWER_BUTTON_MODULES},
   * start acpid) so a VMM shutdown request powers the guest off. Default true.
   */
  powerButton?: boolean;
}

/** Printed on the console by /init once it runs (tests wait for it). */
export const GUEST_INIT_MARKER = "dvmm-guest: init reached";

/**
 * Modules included by default: virtio over PCI, the virtio block, net,
 * console and rng drivers, and ext4 (its soft dependency crc32c listed explicitly).
 * Absent or built-in ones are skipped.
 */
export const DEFAULT_GUEST_MODULES: readonly string[] = [
  "virtio",
  "virtio_ring",
  "virtio_pci_modern_dev",
  "virtio_pci_legacy_dev",
  "virtio_pci",
  "virtio_blk",
  "virtio_net",
  "virtio_console",
  "virtio-rng",
  "crc32c_generic",
  "ext4",
  "evdev",
  "button",
];

/**
 * Modules the power button needs: `button` (the ACPI fixed power button
 * becomes an input device reporting KEY_POWER) and `evdev` (its
 * /dev/input/event* node, which acpid reads). Included by default.
 */
export const POWER_BUTTON_MODULES: readonly string[] = ["evdev", "button"];

/** Where the power-button handler lives (busybox acpid runs `<confdir>/PWRF/00000080`). */
export const POWER_BUTTON_HANDLER = "/etc/acpi/PWRF/00000080";

/** Build the initramfs in memory. */
export async function buildGuestInitramfs(
  opts: GuestInitramfsOptions = {},
): Promise<Uint8Array> {
  const kernel = opts.kernel ?? await ensureKernel();
  const cpio = new CpioWriter();
  for (const dir of ["proc", "sys", "dev", "tmp", "mnt", "root", "run", "etc/dvmm", "etc/acpi"]) {
    cpio.dir(dir, dir === "tmp" ? 0o1777 : 0o755);
  }
  cpio.charDevice("dev/console", 5, 1);
  cpio.charDevice("dev/null", 1, 3, 0o666);
  cpio.charDevice("dev/ttyS0", 4, 64, 0o660);
  addBusybox(cpio, await loadBusybox(await findBusybox()));
  const index = await ModuleIndex.load(kernel.modulesDir);
  const modules = await index.resolve(opts.modules ?? DEFAULT_GUEST_MODULES, { optional: true });
  const modDir = `lib/modules/${kernel.version}`;
  for (const m of modules) cpio.file(`${modDir}/${m.fileName}`, m.data);
  cpio.file("etc/dvmm/modules", modules.map((m) => `/${modDir}/${m.fileName}\n`).join(""));
  cpio.file("bin/dvmm-load-modules", LOAD_MODULES, 0o755);
  cpio.file("bin/dvmm-power-button", POWER_BUTTON_SETUP, 0o755);
  cpio.dir("etc/acpi/PWRF", 0o755);
  cpio.file(POWER_BUTTON_HANDLER.slice(1), POWER_BUTTON_ACTION, 0o755);
  cpio.file("etc/hostname", "dvmm-guest\n");
  cpio.file("init", initScript(opts), 0o755);
  for (const f of opts.files ?? []) cpio.file(f.path, f.data, f.mode ?? 0o644);
  return cpio.finish(512);
}

/** Path of the cached initramfs for `opts`, building it only if the inputs changed. */
export async function ensureGuestInitramfs(opts: GuestInitramfsOptions = {}): Promise<string> {
  const kernel = opts.kernel ?? await ensureKernel();
  const files = [];
  for (const f of opts.files ?? []) {
    files.push({ path: f.path, mode: f.mode ?? 0o644, sha: await sha256Hex(f.data) });
  }
  const key = {
    format: 1,
    kernel: kernel.version,
    modulesDir: kernel.modulesDir,
    busybox: await fileStamp(await findBusybox()),
    modules: opts.modules ?? DEFAULT_GUEST_MODULES,
    init: initScript(opts),
    loadModules: LOAD_MODULES,
    powerButton: [POWER_BUTTON_SETUP, POWER_BUTTON_ACTION],
    files,
  };
  return await cachedAsset(
    "initramfs",
    `guest-${kernel.version}`,
    "cpio",
    key,
    () => buildGuestInitramfs({ ...opts, kernel }),
  );
}

/** The /init script for `opts` (exported for inspection and tests). */
export function initScript(opts: GuestInitramfsOptions = {}): string {
  return `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
hostname -F /etc/hostname
echo "${GUEST_INIT_MARKER}"
${opts.powerButton ?? true ? "dvmm-power-button\n" : ""}${
    opts.loadModules ? "dvmm-load-modules\n" : ""
  }# --- caller snippet ---
${opts.initSnippet ?? ""}
# --- end of caller snippet ---
# console=hvc0 (dvmm run --console virtio): hvc0 exists once virtio_console is loaded;
# cttyhack then finds it as the active console.
grep -q "console=hvc0" /proc/cmdline && dvmm-load-modules 2>/dev/null
setsid cttyhack sh
poweroff -f
`;
}

const LOAD_MODULES = `#!/bin/sh
# Load the initramfs's modules in dependency order (skipping loaded ones); report failures, keep going.
while read ko; do
  name=\${ko##*/}
  name=\${name%.ko}
  [ -d "/sys/module/\${name//-/_}" ] && continue
  insmod "$ko" || echo "dvmm-load-modules: insmod $ko failed" >&2
done </etc/dvmm/modules
`;

/** Loads the power-button modules (when present) and starts acpid; returns once acpid listens. */
const POWER_BUTTON_SETUP = `#!/bin/sh
# Arm the ACPI power button: evdev + button give /dev/input/event*, acpid runs
# /etc/acpi/PWRF/00000080 on KEY_POWER. Quiet; does nothing without the modules.
for m in ${POWER_BUTTON_MODULES.join(" ")}; do
  [ -d /sys/module/$m ] && continue
  ko=$(grep "/$m.ko$" /etc/dvmm/modules) && insmod "$ko" 2>/dev/null
done
[ -e /dev/input/event0 ] || exit 0
acpid -c /etc/acpi -l /dev/null -p /run/acpid.pid
# acpid writes its pid file once it has opened the event devices.
i=0
while [ ! -s /run/acpid.pid ] && [ $i -lt 100 ]; do usleep 10000; i=$((i + 1)); done
`;

/** acpid's power-button action: flush and power off. */
const POWER_BUTTON_ACTION = `#!/bin/sh
echo "dvmm-guest: power button pressed, powering off" >/dev/console
sync
poweroff -f
`;
