/**
 * Option schemas shared by the virtio plugins (`key=value` strings from the
 * command line, or typed values from a config file).
 *
 * @module
 */

import { z } from "zod";

const TRUE = ["true", "1", "yes", "on"];
const FALSE = ["false", "0", "no", "off"];

/**
 * A boolean option that accepts `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`
 * (z.coerce.boolean would turn the string "false" into true).
 */
export function booleanOption(): z.ZodType<boolean, boolean | string> {
  return z.union([
    z.boolean(),
    z.string().refine(
      (v) => TRUE.includes(v.toLowerCase()) || FALSE.includes(v.toLowerCase()),
      { message: "must be true/false, 1/0, yes/no or on/off" },
    ),
  ]).transform((v) => typeof v === "boolean" ? v : TRUE.includes(v.toLowerCase()));
}
