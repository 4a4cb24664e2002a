/**
 * Assemble a guest program with nasm (Debian package `nasm`) at test time.
 *
 * @module
 */

/** Assemble `source` (a path) as a flat binary and return its bytes. */
export async function assemble(source: string | URL): Promise<Uint8Array> {
  const out = await Deno.makeTempFile({ suffix: ".bin" });
  try {
    const path = source instanceof URL ? source.pathname : source;
    const r = await new Deno.Command("nasm", {
      args: ["-f", "bin", "-o", out, path],
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`nasm ${path}: ${new TextDecoder().decode(r.stderr)}`);
    return await Deno.readFile(out);
  } finally {
    await Deno.remove(out);
  }
}
