/**
 * Running host tools (apt-get, dpkg-deb, busybox, qemu) with errors that say what
 * is missing and how to get it.
 *
 * @module
 */

/** The result of {@linkcode runHostTool}. */
export interface HostToolResult {
  /** Exit status. */
  readonly code: number;
  /** Standard output, decoded as UTF-8. */
  readonly stdout: string;
  /** Standard error, decoded as UTF-8. */
  readonly stderr: string;
}

/** Thrown when a host tool is missing. */
export class HostToolMissingError extends Error {
  /**
   * A missing tool; the message names it and how to install it.
   * @param tool the program that was not found
   * @param hint how to install it
   */
  constructor(readonly tool: string, hint: string) {
    super(`${tool} not found on PATH (${hint})`);
    this.name = "HostToolMissingError";
  }
}

/** The absolute path of `name` on PATH, or undefined. A name with a `/` is checked as is. */
export function findOnPath(name: string): string | undefined {
  const candidates = name.includes("/")
    ? [name]
    : (Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin").split(":").map((d) =>
      `${d}/${name}`
    );
  for (const path of candidates) {
    try {
      const st = Deno.statSync(path);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch {
      // not there
    }
  }
  return undefined;
}

/**
 * Run `tool args...` to completion and capture its output. Throws
 * {@linkcode HostToolMissingError} (with `hint`) if the tool is not installed;
 * a non-zero exit is returned, not thrown.
 */
export async function runHostTool(
  tool: string,
  args: string[],
  opts: { cwd?: string; hint?: string; stdin?: Uint8Array } = {},
): Promise<HostToolResult> {
  const path = findOnPath(tool);
  if (!path) throw new HostToolMissingError(tool, opts.hint ?? `install ${tool}`);
  const child = new Deno.Command(path, {
    args,
    cwd: opts.cwd,
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(opts.stdin);
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Like {@linkcode runHostTool} but raw stdout bytes, throwing on a non-zero exit. */
export async function hostToolBytes(
  tool: string,
  args: string[],
  hint: string,
): Promise<Uint8Array> {
  const path = findOnPath(tool);
  if (!path) throw new HostToolMissingError(tool, hint);
  const out = await new Deno.Command(path, { args, stdout: "piped", stderr: "piped" }).output();
  if (out.code !== 0) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${tool} ${args.join(" ")} failed (exit ${out.code}): ${err}`);
  }
  return out.stdout;
}
