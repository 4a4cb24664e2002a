/**
 * JSON VM config files (`dvmm run --config vm.json`): reading one, and
 * validating it with paths relative to the file's directory. The format is
 * the {@linkcode VmConfigInput} schema, published as `docs/vm.schema.json`.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { ConfigError, parseVmConfig, type ParseVmConfigOptions, type VmConfig } from "./config.ts";

/** A config file's contents before validation. */
export interface RawConfigFile {
  /** The path as the user gave it (names the file in messages: `vm.json: cpus: ...`). */
  readonly source: string;
  /** Its directory, absolute: relative paths inside resolve against it. */
  readonly baseDir: string;
  /** The parsed JSON (any JSON value; the schema checks it). */
  readonly data: unknown;
}

/**
 * Read and JSON-parse the config file at `path` (relative to `cwd`).
 * Throws {@linkcode ConfigError} (`vm.json: file not found`, `vm.json: invalid JSON: ...`).
 */
export function readConfigFile(path: string, cwd: string = Deno.cwd()): RawConfigFile {
  const abs = resolve(cwd, path);
  let text: string;
  try {
    text = Deno.readTextFileSync(abs);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "file not found"
      : e instanceof Deno.errors.IsADirectory
      ? "is a directory, expected a JSON file"
      : `cannot read (${(e as Error).message})`;
    throw new ConfigError(path, [`${path}: ${why}`]);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(path, [`${path}: invalid JSON: ${(e as Error).message}`]);
  }
  return { source: path, baseDir: dirname(abs), data };
}

/**
 * Read and validate a config file: paths in it are relative to its directory.
 * Throws {@linkcode ConfigError} with lines like `vm.json: disks[0].path: file not found: ...`.
 */
export function loadVmConfigFile(
  path: string,
  options: Omit<ParseVmConfigOptions, "baseDir"> & { readonly cwd?: string } = {},
): VmConfig {
  const file = readConfigFile(path, options.cwd);
  return parseVmConfig(file.data, file.source, { ...options, baseDir: file.baseDir });
}
