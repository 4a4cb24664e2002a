/**
 * Where dvmm keeps downloaded and built guest assets: `$XDG_CACHE_HOME/dvmm`,
 * or `~/.cache/dvmm` when XDG_CACHE_HOME is unset. `DVMM_CACHE_DIR` overrides both.
 *
 * @module
 */

/** The dvmm cache directory (not created). Throws if neither HOME nor XDG_CACHE_HOME is set. */
export function dvmmCacheDir(): string {
  const explicit = Deno.env.get("DVMM_CACHE_DIR");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/dvmm`;
  const home = Deno.env.get("HOME");
  if (!home) {
    throw new Error("cannot locate the dvmm cache: set XDG_CACHE_HOME, HOME or DVMM_CACHE_DIR");
  }
  return `${home}/.cache/dvmm`;
}
