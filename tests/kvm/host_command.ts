/**
 * Running a host program from a KVM test (mke2fs, debugfs, ip, ...) and
 * getting its standard output, or an error that carries its exit status and
 * what it printed.
 *
 * @module
 */

const decoder = new TextDecoder();

/**
 * Run `cmd` with `args` on the host and return its stdout as text; throws
 * (naming the command, its exit status, stderr and stdout) if it fails.
 */
export async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const out = decoder.decode(r.stdout);
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")} (exit ${r.code}): ${decoder.decode(r.stderr)}${out}`);
  }
  return out;
}
