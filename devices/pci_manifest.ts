/**
 * Validation of PCI device plugin manifests (and of their options) with zod.
 *
 * Errors name the plugin source and the offending field by its zod path:
 * `./dev.ts: bars[1].size: must be a power of two`.
 *
 * @module
 */

import { z } from "zod";
import type { AnyPciDeviceDefinition, BarKind } from "./pci_device.ts";

/** Thrown when a plugin's manifest or options are invalid, or the plugin fails to load. */
export class PluginError extends Error {
  /**
   * An error about one plugin.
   * @param source the plugin as the user named it (`./dev.ts`, a URL, or a built-in name)
   * @param detail what is wrong (`bars[1].size: must be a power of two`)
   */
  constructor(readonly source: string, readonly detail: string, options?: ErrorOptions) {
    super(`${source}: ${detail}`, options);
    this.name = "PluginError";
  }
}

/** Smallest I/O BAR, in bytes. */
export const MIN_IO_BAR_SIZE = 4;
/** Smallest memory BAR, in bytes. */
export const MIN_MEM_BAR_SIZE = 16;
/** Largest I/O BAR (x86 port space is 64 KiB; PCI caps I/O BARs at 256 bytes in practice). */
export const MAX_IO_BAR_SIZE = 0x1_0000;
/** Largest 32-bit memory BAR (2 GiB). */
export const MAX_MEM32_BAR_SIZE = 0x8000_0000;
/** Largest 64-bit memory BAR (2^63). */
export const MAX_MEM64_BAR_SIZE = 1n << 63n;
/** First config-space offset available to capabilities. */
export const CAPABILITY_AREA_START = 0x40;
/** End of conventional config space (capabilities must fit below it). */
export const CONVENTIONAL_CONFIG_END = 0x100;

/** Is `v` a power of two (positive)? */
export function isPowerOfTwo(v: bigint): boolean {
  return v > 0n && (v & (v - 1n)) === 0n;
}

/** A u-`bits` integer schema with a readable message. */
function uint(bits: number, what: string) {
  const max = 2 ** bits - 1;
  return z.number({ error: `must be a number (${what})` }).int(`must be an integer (${what})`)
    .min(0, `must be a u${bits} (${what})`).max(max, `must be a u${bits} (${what})`);
}

let manifestSchema: z.ZodType | undefined;

/**
 * The zod schema of a manifest (functions and schemas are checked by type
 * only). Built on first use: a launch that plugs no device never pays for it.
 */
export function pciDeviceManifestSchema(): z.ZodType {
  return manifestSchema ??= buildManifestSchema();
}

function buildManifestSchema(): z.ZodType {
  const sizeSchema = z.union([z.number().int().positive(), z.bigint().positive()], {
    error: "must be a positive integer",
  });

  const barSchema = z.object({
    index: z.number().int("must be an integer").min(0, "must be 0..5").max(5, "must be 0..5"),
    kind: z.enum(["io", "mem32", "mem64"], { error: 'must be "io", "mem32" or "mem64"' }),
    prefetchable: z.boolean().optional(),
    size: sizeSchema,
  }).superRefine((bar, ctx) => {
    const size = BigInt(bar.size);
    if (!isPowerOfTwo(size)) {
      ctx.addIssue({ code: "custom", path: ["size"], message: "must be a power of two" });
      return;
    }
    const [min, max] = barSizeLimits(bar.kind);
    if (size < min) {
      ctx.addIssue({
        code: "custom",
        path: ["size"],
        message: `must be at least ${min} bytes for a ${bar.kind} BAR`,
      });
    }
    if (size > max) {
      ctx.addIssue({
        code: "custom",
        path: ["size"],
        message: `must be at most 0x${max.toString(16)} bytes for a ${bar.kind} BAR`,
      });
    }
    if (bar.kind === "mem64" && bar.index > 4) {
      ctx.addIssue({
        code: "custom",
        path: ["index"],
        message: "a mem64 BAR uses slots index and index+1, so index must be 0..4",
      });
    }
    if (bar.kind === "io" && bar.prefetchable) {
      ctx.addIssue({
        code: "custom",
        path: ["prefetchable"],
        message: "an io BAR cannot be prefetchable",
      });
    }
  });

  const capabilitySchema = z.object({
    id: uint(8, "capability id"),
    size: z.number().int("must be an integer").min(2, "must be at least 2 (the header)")
      .max(CONVENTIONAL_CONFIG_END - CAPABILITY_AREA_START, "must fit in config space (<= 192)"),
    body: z.array(uint(8, "byte")).optional(),
    writable: z.array(uint(8, "mask byte")).optional(),
  }).superRefine((cap, ctx) => {
    for (const key of ["body", "writable"] as const) {
      const bytes = cap[key];
      if (bytes && bytes.length > cap.size - 2) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `has ${bytes.length} bytes but the capability body is ${cap.size - 2}`,
        });
      }
    }
  });

  const functionSchema = z.custom<(...args: unknown[]) => unknown>(
    (v) => typeof v === "function",
    { message: "must be a function" },
  );

  const zodSchemaSchema = z.custom<z.ZodType>(
    (v) =>
      typeof v === "object" && v !== null &&
      typeof (v as { safeParse?: unknown }).safeParse === "function",
    { message: "must be a zod schema" },
  );

  return z.object({
    name: z.string().min(1, "must be a non-empty string").regex(
      /^[A-Za-z0-9_.-]+$/,
      "must use only letters, digits, '_', '.' and '-'",
    ),
    description: z.string().optional(),
    vendorId: uint(16, "vendor id"),
    deviceId: uint(16, "device id"),
    subsystemVendorId: uint(16, "subsystem vendor id").optional(),
    subsystemId: uint(16, "subsystem id").optional(),
    classCode: uint(24, "class code"),
    revision: uint(8, "revision").optional(),
    bars: z.array(barSchema).max(6, "at most 6 BARs"),
    capabilities: z.array(capabilitySchema).optional(),
    options: zodSchemaSchema.optional(),
    create: functionSchema,
  }).superRefine((def, ctx) => {
    const owner = new Map<number, number>();
    def.bars.forEach((bar, i) => {
      const slots = bar.kind === "mem64" ? [bar.index, bar.index + 1] : [bar.index];
      for (const slot of slots) {
        const other = owner.get(slot);
        if (other !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["bars", i, "index"],
            message: `slot ${slot} is already used by bars[${other}]`,
          });
        } else {
          owner.set(slot, i);
        }
      }
    });
    const caps = def.capabilities ?? [];
    const total = caps.reduce((n, c) => n + alignUp4(c.size), 0);
    if (total > CONVENTIONAL_CONFIG_END - CAPABILITY_AREA_START) {
      ctx.addIssue({
        code: "custom",
        path: ["capabilities"],
        message: `need ${total} bytes but only ${
          CONVENTIONAL_CONFIG_END - CAPABILITY_AREA_START
        } fit in config space`,
      });
    }
  });
}

/** Format a zod path as `bars[1].size`. */
export function formatZodPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out || "(root)";
}

/** Turn a zod error into one line per issue: `path: message`. */
export function formatZodIssues(error: z.ZodError, prefix?: string): string {
  return error.issues.map((issue) => {
    const path = formatZodPath(prefix ? [prefix, ...issue.path] : issue.path);
    return `${path}: ${issue.message}`;
  }).join("; ");
}

/**
 * Check that `value` is a valid device definition. Returns it typed, or throws
 * {@linkcode PluginError} naming `source` and the first bad field.
 */
export function validatePciDevice(value: unknown, source: string): AnyPciDeviceDefinition {
  if (typeof value !== "object" || value === null) {
    throw new PluginError(source, "default export must be a definition made with definePciDevice");
  }
  const result = pciDeviceManifestSchema().safeParse(value);
  if (!result.success) throw new PluginError(source, formatZodIssues(result.error));
  return value as AnyPciDeviceDefinition;
}

/**
 * Parse `raw` (`key=value` strings, or already typed values) with the
 * definition's options schema. Throws {@linkcode PluginError} naming the option.
 */
export function parsePciDeviceOptions<O>(
  def: { readonly options?: z.ZodType<O> },
  raw: Readonly<Record<string, unknown>>,
  source: string,
): O {
  if (!def.options) {
    const keys = Object.keys(raw);
    if (keys.length) {
      throw new PluginError(source, `options.${keys[0]}: this device takes no options`);
    }
    return {} as O;
  }
  const result = def.options.safeParse(raw);
  if (!result.success) throw new PluginError(source, formatZodIssues(result.error, "options"));
  return result.data;
}

/** Smallest and largest allowed size of a BAR of `kind`. */
export function barSizeLimits(kind: BarKind): [bigint, bigint] {
  switch (kind) {
    case "io":
      return [BigInt(MIN_IO_BAR_SIZE), BigInt(MAX_IO_BAR_SIZE)];
    case "mem32":
      return [BigInt(MIN_MEM_BAR_SIZE), BigInt(MAX_MEM32_BAR_SIZE)];
    case "mem64":
      return [BigInt(MIN_MEM_BAR_SIZE), MAX_MEM64_BAR_SIZE];
  }
}

function alignUp4(n: number): number {
  return (n + 3) & ~3;
}
