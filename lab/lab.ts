/**
 * The nested-KVM lab: a real /dev/kvm for machines that have none.
 *
 * {@linkcode runInLab} boots QEMU in TCG mode (an EPYC CPU with SVM and NPT)
 * on the Debian kernel from {@linkcode ensureKernel} (its uncompressed vmlinux,
 * booted through PVH: decompressing xz under TCG costs ~4 s). That L1 loads kvm_amd
 * (nested paging), mounts the host's `/` read-only over 9p and runs one shell
 * command in a chroot of it, so every host path (the repo, node_modules, the
 * deno binary at `Deno.execPath()`) is at the same place inside. Then it
 * powers off. One call = one boot (about 3 s) + the command.
 *
 * Inside the chroot:
 * - the command runs with the host's `/bin/sh` in `cwd` (default: the
 *   caller's current directory), stdin `/dev/null`, stdout and stderr merged
 *   (not a tty, so no colours) and sent back over the second serial port;
 * - `/` is read-only (9p, cache=loose: host files must not change during a
 *   run); `/run` is a tmpfs; `HOME=/run/lab/home`, `DENO_DIR=/run/lab/deno_dir`,
 *   `TMPDIR=/run/lab/tmp` (SQLite, used by DENO_DIR, fails on 9p); the deno
 *   binary's directory is first on PATH; `DENO_NO_UPDATE_CHECK=1`, `NO_COLOR=1`,
 *   `DVMM_IN_LAB=1` (see {@linkcode labBaseEnv});
 * - `shares` are host directories mounted read-write at the same absolute
 *   path (e.g. a JUnit output directory);
 * - /proc, /sys, /dev (devtmpfs: `/dev/kvm`, `/dev/net/tun`) are the L1's own;
 * - there is no network.
 *
 * Deno in the lab: use {@linkcode labDenoCommand}, which adds
 * `--cached-only` to run/test/check so deno never tries the (absent) network;
 * the project's `node_modules/` (nodeModulesDir auto) is read in place. Use
 * `--no-check` for test runs (type checking would need the npm type packages in
 * an empty DENO_DIR). Example:
 * `runInLab(labDenoCommand(["test", "-A", "--no-check", "tests/kvm"]))`.
 *
 * The exit status is reported on the command channel with a per-run random
 * marker (see console_protocol.ts); the kernel's own console (ttyS0) goes to a
 * log that is quoted in errors, never mixed into the output. That log is also
 * watched: an L1 that reports a CPU stuck for a minute (QEMU's TCG wedging)
 * ends the run at once with {@linkcode LabWedgedError}; an L1 kernel crash
 * gives {@linkcode LabKernelCrashError}. {@linkcode retryIfLabFailed} turns
 * either into one more boot.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { ensureKernel, type KernelAssets } from "../guest/debian_kernel.ts";
import { findOnPath, HostToolMissingError } from "../guest/host_tool.ts";
import { ensureVmlinux } from "../guest/vmlinux.ts";
import { LabChannelParser, newMarker } from "./console_protocol.ts";
import { isCompiled } from "../vmm/is_compiled.ts";
import { ensureL1Base, l1RunArchive, type LabShare } from "./l1_initramfs.ts";

/** Options for {@linkcode runInLab}. */
export interface LabOptions {
  /** Kill QEMU and throw {@linkcode LabTimeoutError} after this long (default 600000). */
  timeoutMs?: number;
  /** Extra environment variables for the command (on top of the lab's defaults). */
  env?: Record<string, string>;
  /** Working directory in the chroot (default `Deno.cwd()`); must exist on the host. */
  cwd?: string;
  /** Host directories mounted read-write at the same path in the chroot (absolute, no spaces). */
  shares?: string[];
  /** L1 memory in MiB (default 4096). */
  memoryMiB?: number;
  /** L1 vCPUs (default 2). */
  cpus?: number;
  /** Called with the command's output bytes as they arrive (markers already removed). */
  onOutput?: (chunk: Uint8Array) => void;
  /** Aborting kills QEMU; `runInLab` then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Kernel to boot as L1 (default {@linkcode ensureKernel}). */
  kernel?: KernelAssets;
  /** Progress messages (kernel download, boot); default silent. */
  log?: (message: string) => void;
  /** Boot L1 without `quiet` (full kernel log in {@linkcode LabResult.console}). */
  verboseKernel?: boolean;
}

/** The outcome of a command run in the lab. */
export interface LabResult {
  /** The command's exit status (0-255; 128+n if killed by signal n). */
  readonly status: number;
  /** Its stdout and stderr, merged, exactly as printed (UTF-8 decoded). */
  readonly output: string;
  /** Wall time of the whole run: QEMU start to exit. */
  readonly durationMs: number;
  /** From QEMU start until the command started (L1 boot and setup). */
  readonly bootMs: number;
  /** The L1 kernel console (ttyS0) log, for diagnostics. */
  readonly console: string;
}

/** Thrown when the lab cannot run or the L1 fails before reporting a status. */
export class LabError extends Error {
  /**
   * A lab failure, with the logs captured so far.
   * @param message what went wrong
   * @param console the L1 console log so far
   * @param output the command output captured so far
   */
  constructor(message: string, readonly console = "", readonly output = "") {
    super(message);
    this.name = "LabError";
  }
}

/** Thrown when the run exceeds `timeoutMs`; QEMU has been killed. */
export class LabTimeoutError extends LabError {
  /**
   * A run that exceeded `timeoutMs`.
   * @param timeoutMs the limit
   * @param console the L1 console log so far
   * @param output the command output captured so far
   * @param started whether the command had started (false: the L1 was still booting)
   */
  constructor(
    readonly timeoutMs: number,
    console: string,
    output: string,
    readonly started = true,
  ) {
    super(
      `lab: command did not finish within ${timeoutMs} ms; QEMU was killed.` +
        (started ? "" : " The command never started: the L1 did not finish booting.") +
        tail("output so far", output) + tail("L1 console", console),
      console,
      output,
    );
    this.name = "LabTimeoutError";
  }
}

/**
 * A failure of the L1 itself (it wedged, its kernel crashed, it did not
 * boot): the run is lost, but the command is not at fault, so
 * {@linkcode retryIfLabFailed} runs it once more in a fresh boot.
 */
export class LabL1Error extends LabError {}

/**
 * Thrown when the L1 kernel reports a CPU stuck in the kernel for
 * {@linkcode WEDGED_AFTER_S} seconds or more (a soft lockup); QEMU has been
 * killed at once instead of at the timeout. Now and then QEMU's TCG
 * emulation of nested SVM wedges an L1 CPU inside KVM_RUN for good: the run
 * is lost, but nothing in the command caused it (a user-space process cannot
 * stall a kernel), so a caller may run the command again in a fresh boot.
 */
export class LabWedgedError extends LabL1Error {
  /**
   * An L1 kernel that reported a CPU stuck for `stuckSeconds`.
   * @param stuckSeconds how long the L1 kernel said a CPU was stuck
   * @param console the L1 console log so far
   * @param output the command output captured so far
   */
  constructor(readonly stuckSeconds: number, console: string, output: string) {
    super(
      `lab: the L1 kernel reports a CPU stuck for ${stuckSeconds} s (soft lockup); QEMU was ` +
        "killed. This is the emulator (TCG's nested SVM), not the command." +
        tail("output so far", output) + tail("L1 console", console),
      console,
      output,
    );
    this.name = "LabWedgedError";
  }
}

/**
 * Thrown when the L1 kernel itself crashed (a panic or oops on its console)
 * and QEMU ended before the command reported its status. Seen under QEMU's
 * TCG: `BUG: TASK stack guard page was hit` with a recursion in
 * `error_entry` in a vCPU thread, the same corruption some lab guests show
 * (docs/architecture.md, "Known problems"). Like a wedge, the run is lost
 * without the command being at fault.
 */
export class LabKernelCrashError extends LabL1Error {
  /**
   * An L1 kernel crash.
   * @param message what happened, with the tails of the output and console
   * @param console the L1 console log
   * @param output the command output captured so far
   */
  constructor(message: string, console: string, output: string) {
    super(message, console, output);
    this.name = "LabKernelCrashError";
  }
}

/**
 * Thrown when the L1 has not started the command {@linkcode BOOT_LIMIT_MS}
 * after QEMU started (it boots in 3-5 s); QEMU has been killed. Like a wedge,
 * an L1 that does not boot is the emulator's failure, not the command's.
 */
export class LabBootTimeoutError extends LabL1Error {
  /**
   * An L1 that did not start the command in time.
   * @param console the L1 console log so far
   */
  constructor(console: string) {
    super(
      `lab: the L1 did not start the command within ${BOOT_LIMIT_MS / 1000} s of QEMU starting; ` +
        "QEMU was killed (the emulator, not the command)." + tail("L1 console", console),
      console,
      "",
    );
    this.name = "LabBootTimeoutError";
  }
}

/** How long (ms) the L1 may take to boot and start the command. */
export const BOOT_LIMIT_MS = 120_000;

/** An L1 console line that says the L1 kernel itself crashed. */
const L1_CRASH = /Kernel panic - not syncing|BUG: TASK stack guard page|Oops:|double fault/;

/** A soft lockup this long (seconds) means the L1 is wedged (see {@linkcode LabWedgedError}). */
export const WEDGED_AFTER_S = 60;

/** How often (ms) the L1 console log is checked for a soft lockup. */
const WEDGE_CHECK_MS = 5_000;

/**
 * The longest soft lockup the L1 kernel reported in `console` (its ttyS0
 * log), in seconds; 0 if none.
 */
export function longestSoftLockup(console: string): number {
  let longest = 0;
  for (const m of console.matchAll(/soft lockup - CPU#\d+ stuck for (\d+)s!/g)) {
    longest = Math.max(longest, Number(m[1]));
  }
  return longest;
}

/**
 * Run `attempt` (a lab run), and once more if the L1 itself failed
 * ({@linkcode LabL1Error}: it wedged, its kernel crashed or it did not boot). The retry is reported through `log`
 * with the L1's own report. Any other failure, or a second L1 failure, is
 * thrown.
 */
export async function retryIfLabFailed<T>(
  attempt: () => Promise<T>,
  log: (message: string) => void = console.error,
): Promise<T> {
  try {
    return await attempt();
  } catch (e) {
    if (!(e instanceof LabL1Error)) throw e;
    log(`${e.message}\nlab: running the command again in a fresh lab boot.`);
    return await attempt();
  }
}

/** The QEMU binary the lab runs. */
export const QEMU = "qemu-system-x86_64";

/** Boot the lab, run `command` (a /bin/sh script) in the chroot and return its status and output. */
export async function runInLab(command: string, opts: LabOptions = {}): Promise<LabResult> {
  const qemu = findOnPath(QEMU);
  if (!qemu) {
    throw new HostToolMissingError(QEMU, "the lab needs it: apt-get install qemu-system-x86");
  }
  const kernel = opts.kernel ?? await ensureKernel({ log: opts.log });
  const base = await ensureL1Base(kernel);
  const bootImage = await ensureVmlinux(kernel).catch((err) => {
    opts.log?.(`lab: booting the bzImage (slower): cannot extract vmlinux: ${err}`);
    return kernel.vmlinuz;
  });
  const cwd = opts.cwd ?? Deno.cwd();
  const shares: LabShare[] = [];
  for (const [i, dir] of (opts.shares ?? []).entries()) {
    const path = await Deno.realPath(dir).catch(() => {
      throw new LabError(`lab: share ${dir} does not exist on the host`);
    });
    shares.push({ tag: `share${i}`, path });
  }
  const marker = newMarker();
  const runArchive = l1RunArchive({
    script: commandScript(command, cwd, opts.env),
    marker,
    shares,
  });

  const work = await Deno.makeTempDir({ prefix: "dvmm-lab-" });
  const initrd = `${work}/initrd.cpio`;
  const consoleLog = `${work}/console.log`;
  try {
    const baseBytes = await Deno.readFile(base);
    const file = await Deno.open(initrd, { write: true, create: true });
    try {
      await writeAll(file, baseBytes);
      await writeAll(file, runArchive);
    } finally {
      file.close();
    }
    const args = qemuArgs({
      kernel: bootImage,
      initrd,
      consoleLog,
      shares,
      memoryMiB: opts.memoryMiB ?? 4096,
      cpus: opts.cpus ?? 2,
      append: opts.verboseKernel ? L1_APPEND.replace(/ quiet loglevel=\d/, "") : L1_APPEND,
    });
    opts.log?.(`lab: ${QEMU} ${args.join(" ")}`);
    return await supervise(qemu, args, marker, consoleLog, opts);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * A shell command line that runs the host's deno (`Deno.execPath()`) with
 * `args` in the lab: `--cached-only` is added after run/test/check/bench/eval
 * subcommands. Arguments are shell-quoted.
 */
export function labDenoCommand(args: readonly string[]): string {
  const list = [...args];
  if (list.length > 0 && CACHED_ONLY_SUBCOMMANDS.has(list[0]) && !list.includes("--cached-only")) {
    list.splice(1, 0, "--cached-only");
  }
  return [Deno.execPath(), ...list].map(shellQuote).join(" ");
}

/** Quote `word` for /bin/sh (single quotes unless it is plainly safe). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

/** The environment every lab command starts with (before `LabOptions.env`). */
export function labBaseEnv(): Record<string, string> {
  const denoDir = Deno.execPath().slice(0, Deno.execPath().lastIndexOf("/"));
  return {
    PATH: `${denoDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: "/run/lab/home",
    DENO_DIR: "/run/lab/deno_dir",
    TMPDIR: "/run/lab/tmp",
    DENO_NO_UPDATE_CHECK: "1",
    DENO_NO_PROMPT: "1",
    NO_COLOR: "1",
    TERM: "dumb",
    LANG: "C.UTF-8",
    DVMM_IN_LAB: "1",
  };
}

const CACHED_ONLY_SUBCOMMANDS = new Set(["run", "test", "check", "bench", "eval", "cache"]);

function commandScript(command: string, cwd: string, env: Record<string, string> = {}): string {
  const vars = { ...labBaseEnv(), ...env };
  const lines = Object.entries(vars).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new LabError(`lab: bad env var name ${k}`);
    return `export ${k}=${shellQuote(v)}`;
  });
  return [
    ...lines,
    ...kvmPinLines(),
    `cd ${shellQuote(cwd)} || exit 125`,
    command,
    "",
  ].join("\n");
}

/** Where the L1 KVM pin (l1_kvm_pin.ts) says it holds its VM (its pid). */
export const KVM_PIN_READY = "/run/lab/kvm_pinned";

/** Written (with its exit status) if the L1 KVM pin ends: it failed. */
const KVM_PIN_ENDED = "/run/lab/kvm_pin.ended";

/**
 * The command that starts the L1 KVM pin: the script under Deno from a source
 * checkout, or a compiled dvmm's hidden `lab-kvm-pin` command; null when
 * neither can run (the lab then runs without the pin).
 */
export function kvmPinArgv(compiled: boolean = isCompiled()): string[] | null {
  if (compiled) return [Deno.execPath(), "lab-kvm-pin", KVM_PIN_READY];
  const url = new URL("./l1_kvm_pin.ts", import.meta.url);
  if (url.protocol !== "file:") return null;
  const pin = fileURLToPath(url);
  try {
    Deno.statSync(pin);
  } catch {
    return null;
  }
  const deno = [Deno.execPath(), "run", "-A", "--no-check", "--cached-only", "--no-config"];
  return [...deno, "--no-lock", pin, KVM_PIN_READY];
}

/**
 * Shell lines that start the L1 KVM pin ({@linkcode kvmPinArgv}) in the
 * background and wait (up to 20 s) until it holds its VM: see l1_kvm_pin.ts
 * for why. Its output goes to /run/lab/kvm_pin.log, never to the command's.
 */
function kvmPinLines(): string[] {
  const argv = kvmPinArgv();
  if (!argv) return [];
  const start = argv.map(shellQuote).join(" ");
  // Started from a subshell that exits at once: the pin is no job of the command's shell (a
  // plain `wait` in the command must not wait for it).
  return [
    `( (cd / && ${start}; echo $? >${KVM_PIN_ENDED}) </dev/null >/run/lab/kvm_pin.log 2>&1 & )`,
    `_i=0`,
    `while [ ! -s ${KVM_PIN_READY} ] && [ ! -e ${KVM_PIN_ENDED} ] && [ $_i -lt 400 ]; do`,
    `  sleep 0.05; _i=$((_i + 1))`,
    `done`,
    `unset _i`,
  ];
}

interface QemuConfig {
  kernel: string;
  initrd: string;
  consoleLog: string;
  shares: readonly LabShare[];
  memoryMiB: number;
  cpus: number;
  append: string;
}

/** Kernel command line: quiet (errors still reach the console log), no mitigations (TCG is slow enough), panic = power off. */
const L1_APPEND = "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off random.trust_cpu=on";

function qemuArgs(c: QemuConfig): string[] {
  const args = [
    "-machine",
    "q35",
    "-accel",
    "tcg",
    "-cpu",
    "EPYC,+svm,+npt",
    "-m",
    String(c.memoryMiB),
    "-smp",
    String(c.cpus),
    "-nodefaults",
    "-display",
    "none",
    "-monitor",
    "none",
    "-no-reboot",
    "-kernel",
    c.kernel,
    "-initrd",
    c.initrd,
    "-append",
    c.append,
    "-serial",
    `file:${c.consoleLog}`,
    "-serial",
    "stdio",
    "-virtfs",
    "local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap,readonly=on",
  ];
  for (const s of c.shares) {
    args.push(
      "-virtfs",
      `local,path=${s.path},mount_tag=${s.tag},security_model=none,multidevs=remap`,
    );
  }
  return args;
}

async function supervise(
  qemu: string,
  args: string[],
  marker: string,
  consoleLog: string,
  opts: LabOptions,
): Promise<LabResult> {
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const started = performance.now();
  const child = new Deno.Command(qemu, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killedFor: "timeout" | "abort" | "wedged" | "boot" | undefined;
  const kill = (why: "timeout" | "abort" | "wedged" | "boot") => {
    killedFor ??= why;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => kill("timeout"), timeoutMs);
  let stuckSeconds = 0;
  const wedgeCheck = setInterval(async () => {
    const console = await Deno.readTextFile(consoleLog).catch(() => "");
    stuckSeconds = longestSoftLockup(console);
    if (stuckSeconds >= WEDGED_AFTER_S) kill("wedged");
    if (parser.state === "booting" && performance.now() - started > BOOT_LIMIT_MS) kill("boot");
  }, WEDGE_CHECK_MS);
  const onAbort = () => kill("abort");
  opts.signal?.addEventListener("abort", onAbort);
  if (opts.signal?.aborted) kill("abort");

  const parser = new LabChannelParser(marker);
  const chunks: Uint8Array[] = [];
  let bootMs = 0;
  const stderrText = new Response(child.stderr).text();
  try {
    for await (const chunk of child.stdout) {
      const wasBooting = parser.state === "booting";
      const out = parser.push(chunk);
      if (wasBooting && parser.state !== "booting") bootMs = performance.now() - started;
      if (out.length > 0) {
        chunks.push(out);
        opts.onOutput?.(out);
      }
    }
    const status = await child.status;
    const durationMs = performance.now() - started;
    const output = new TextDecoder().decode(concatAll(chunks));
    const console = await Deno.readTextFile(consoleLog).catch(() => "");
    if (killedFor === "timeout") {
      throw new LabTimeoutError(timeoutMs, console, output, parser.state !== "booting");
    }
    if (killedFor === "wedged") throw new LabWedgedError(stuckSeconds, console, output);
    if (killedFor === "boot") throw new LabBootTimeoutError(console);
    if (killedFor === "abort") {
      throw opts.signal?.reason ?? new LabError("lab: aborted", console, output);
    }
    if (parser.status === undefined) {
      const stderr = (await stderrText).split("\n").filter((l) => !TCG_NOISE.test(l)).join("\n");
      const crashed = L1_CRASH.test(console);
      throw new (crashed ? LabKernelCrashError : LabError)(
        `lab: QEMU exited (code ${status.code}) before the command reported its status` +
          (parser.state === "booting" ? " (the command never started)" : "") +
          (crashed ? "; the L1 kernel crashed (the emulator, not the command)" : "") +
          tail("QEMU stderr", stderr) + tail("output so far", output) + tail("L1 console", console),
        console,
        output,
      );
    }
    return { status: parser.status, output, durationMs, bootMs, console };
  } finally {
    clearTimeout(timer);
    clearInterval(wedgeCheck);
    opts.signal?.removeEventListener("abort", onAbort);
    kill("abort"); // no-op unless still running (an exception above)
    await child.status.catch(() => {});
  }
}

/** QEMU's warnings about CPU features TCG does not emulate (harmless). */
const TCG_NOISE = /TCG doesn't support requested feature|^\s*$/;

function tail(label: string, text: string, lines = 30): string {
  const t = text.trimEnd();
  if (!t) return "";
  return `\n--- ${label} (last ${lines} lines) ---\n` + t.split("\n").slice(-lines).join("\n");
}

function concatAll(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await file.write(data.subarray(at));
}
