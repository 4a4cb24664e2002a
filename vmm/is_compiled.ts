/**
 * Whether this process is a `deno compile`d dvmm rather than `deno run
 * main.ts`: a compiled binary is not named `deno`, and its modules live under
 * a `deno-compile-` virtual directory.
 *
 * @module
 */

/** Is this process a `deno compile`d dvmm (not `deno run main.ts`)? */
export function isCompiled(): boolean {
  const exe = Deno.execPath().split("/").pop() ?? "";
  return !/^deno(\.exe)?$/.test(exe) || Deno.mainModule.includes("/deno-compile-");
}
