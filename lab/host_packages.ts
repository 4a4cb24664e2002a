/**
 * The Debian packages dvmm's lab, tests and default guest use, and a check
 * that installs the missing ones with apt-get (as root, non-interactive), so
 * `deno task test` and `deno task demo` work on a fresh machine.
 *
 * @module
 */

import { findOnPath } from "../guest/host_tool.ts";

/** A program dvmm needs and the Debian package that provides it. */
export interface HostRequirement {
  /** Program (or file path) whose presence proves the package is installed. */
  readonly program: string;
  /** Debian package. */
  readonly pkg: string;
}

/** Everything the lab, the tests and the default guest need on the host. */
export const HOST_REQUIREMENTS: readonly HostRequirement[] = [
  { program: "qemu-system-x86_64", pkg: "qemu-system-x86" },
  { program: "/bin/busybox", pkg: "busybox-static" },
  { program: "cpio", pkg: "cpio" },
  { program: "nasm", pkg: "nasm" },
  { program: "gcc", pkg: "gcc" },
  // libc.a: tests/kvm/test_assets.ts links guest programs statically.
  { program: "/usr/lib/x86_64-linux-gnu/libc.a", pkg: "libc6-dev" },
  { program: "/usr/include/linux/kvm.h", pkg: "linux-libc-dev" },
  { program: "mke2fs", pkg: "e2fsprogs" },
  { program: "iasl", pkg: "acpica-tools" },
  // tests/kvm/net_test.ts configures the L1 side of its TAP with ip.
  { program: "/sbin/ip", pkg: "iproute2" },
  { program: "apt-get", pkg: "apt" },
];

function present(r: HostRequirement): boolean {
  if (r.program.startsWith("/")) {
    try {
      Deno.statSync(r.program);
      return true;
    } catch {
      return false;
    }
  }
  return findOnPath(r.program) !== undefined;
}

/** The packages whose programs are missing here. */
export function missingPackages(reqs: readonly HostRequirement[] = HOST_REQUIREMENTS): string[] {
  return [...new Set(reqs.filter((r) => !present(r)).map((r) => r.pkg))];
}

/**
 * Install missing packages with apt-get when running as root; otherwise throw
 * an error that lists the `apt-get install` line to run.
 */
export async function ensureHostPackages(
  log: (line: string) => void = console.error,
  reqs: readonly HostRequirement[] = HOST_REQUIREMENTS,
): Promise<void> {
  const missing = missingPackages(reqs);
  if (missing.length === 0) return;
  const line = `apt-get install -y ${missing.join(" ")}`;
  if (Deno.uid() !== 0) {
    throw new Error(`missing host packages; run: sudo apt-get update && sudo ${line}`);
  }
  log(`dvmm: installing host packages: ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args: string[]) =>
    new Deno.Command("apt-get", { args, env, stdout: "inherit", stderr: "inherit", stdin: "null" })
      .output();
  if (!(await apt(["update", "-q"])).success) {
    log("dvmm: apt-get update failed; trying the install anyway");
  }
  const r = await apt(["install", "-y", "-q", "--no-install-recommends", ...missing]);
  if (!r.success) throw new Error(`'${line}' failed (exit ${r.code})`);
  const still = missingPackages(reqs);
  if (still.length) throw new Error(`still missing after apt-get: ${still.join(" ")}`);
}
