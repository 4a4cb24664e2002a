/**
 * `deno task lab -- [lab flags] <command...>`: run a shell command in the
 * nested-KVM lab (see lab.ts), stream its output live and exit with its status.
 *
 * The words of the command are joined with spaces and run by /bin/sh in a
 * chroot of the host root, in the current directory. Lab flags, only before
 * the command:
 * - `--timeout=SECONDS` (default 600), `--mem=MIB` (default 4096), `--cpus=N` (default 2)
 * - `--share=DIR`: also mount DIR read-write at the same path (repeatable).
 *   `./.lab-out` is always shared (created if missing) for files handed back.
 * - `--verbose-kernel`: boot L1 without `quiet`; its console log is printed to stderr.
 *
 * With no command, runs a self-check: /dev/kvm, the nested paging message,
 * `deno --version`.
 *
 * Exit status: the command's; 124 if the lab timed out; 125 if the lab failed.
 *
 * @module
 */

import { LabError, type LabOptions, LabTimeoutError, runInLab } from "./lab.ts";

/** The self-check run when no command is given. */
export const SELF_CHECK = [
  "set -e",
  "ls -l /dev/kvm",
  "dmesg | grep -E 'SVM: .*Nested Paging enabled'",
  "deno --version | head -1",
  "echo 'lab self-check: ok'",
].join("\n");

/** Parsed command line. */
export interface LabCli {
  /** The shell command (the self-check if none was given). */
  readonly command: string;
  /** Options for {@linkcode runInLab} (without callbacks). */
  readonly options: LabOptions;
}

/** Parse the CLI arguments (a leading `--` is ignored). */
export function parseLabArgs(argv: readonly string[]): LabCli {
  const args = [...argv];
  if (args[0] === "--") args.shift();
  const options: LabOptions = { shares: [] };
  while (args.length > 0 && args[0].startsWith("--")) {
    const arg = args.shift()!;
    if (arg === "--") break;
    const [flag, value] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, ""];
    const num = () => {
      const n = Number(value);
      if (!value || !Number.isFinite(n) || n <= 0) throw new Error(`lab: ${flag} needs a number`);
      return n;
    };
    switch (flag) {
      case "--timeout":
        options.timeoutMs = num() * 1000;
        break;
      case "--mem":
        options.memoryMiB = num();
        break;
      case "--cpus":
        options.cpus = num();
        break;
      case "--share":
        if (!value) throw new Error("lab: --share needs a directory");
        options.shares!.push(value);
        break;
      case "--verbose-kernel":
        options.verboseKernel = true;
        break;
      default:
        throw new Error(`lab: unknown flag ${arg} (put the command after the lab flags)`);
    }
  }
  return { command: args.length > 0 ? args.join(" ") : SELF_CHECK, options };
}

async function main(): Promise<number> {
  let cli: LabCli;
  try {
    cli = parseLabArgs(Deno.args);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const out = `${Deno.cwd()}/.lab-out`;
  await Deno.mkdir(out, { recursive: true });
  const abort = new AbortController();
  const onSigint = () => abort.abort(new LabError("lab: interrupted"));
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    const result = await runInLab(cli.command, {
      ...cli.options,
      shares: [out, ...cli.options.shares ?? []],
      signal: abort.signal,
      log: (m) => {
        if (!m.startsWith(`lab: qemu`)) console.error(m);
      },
      onOutput: (chunk) => {
        for (let at = 0; at < chunk.length;) at += Deno.stdout.writeSync(chunk.subarray(at));
      },
    });
    if (cli.options.verboseKernel) console.error(result.console);
    console.error(
      `lab: exit ${result.status} (boot ${(result.bootMs / 1000).toFixed(1)} s, ` +
        `total ${(result.durationMs / 1000).toFixed(1)} s)`,
    );
    return result.status;
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return err instanceof LabTimeoutError ? 124 : 125;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

if (import.meta.main) Deno.exit(await main());
