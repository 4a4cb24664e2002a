/**
 * How to run this same dvmm again as a command (e.g. inside the nested lab,
 * where every host path is at the same place): `deno run ... main.ts` from a
 * source checkout, or the binary itself when dvmm was built with
 * `deno compile`. Compile-safe: it uses `Deno.mainModule` and
 * `Deno.execPath()`, never a path relative to a module's source file.
 *
 * @module
 */

import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { shellQuote } from "../lab/lab.ts";
import { isCompiled } from "./is_compiled.ts";

/** Deno flags a source run of dvmm needs (sandboxed plugins use worker permissions). */
export const SOURCE_RUN_FLAGS: readonly string[] = [
  "run",
  "-A",
  "--no-check",
  "--cached-only",
  "--unstable-worker-options",
];

/** argv that runs dvmm with `args` (a subcommand and its options). */
export function selfArgv(args: readonly string[]): string[] {
  if (isCompiled()) return [Deno.execPath(), ...args];
  return [Deno.execPath(), ...SOURCE_RUN_FLAGS, fileURLToPath(Deno.mainModule), ...args];
}

/** {@linkcode selfArgv} as one /bin/sh command line. */
export function selfCommand(args: readonly string[]): string {
  return selfArgv(args).map(shellQuote).join(" ");
}

/** Directory to run dvmm in: the checkout (source run) or the current directory (binary). */
export function selfDirectory(): string {
  return isCompiled() ? Deno.cwd() : dirname(fileURLToPath(Deno.mainModule));
}
