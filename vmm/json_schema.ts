/**
 * The JSON schema of VM config files (the input side of the zod schema in
 * config.ts). A generated copy is committed as `docs/vm.schema.json`; a unit
 * test fails when it is stale. Regenerate with:
 *
 * ```
 * deno run -A vmm/json_schema.ts > docs/vm.schema.json
 * ```
 *
 * @module
 */

import { z } from "zod";
import { vmConfigSchema } from "./config.ts";

/** Where the committed copy lives, relative to the repository root. */
export const VM_SCHEMA_DOC_PATH = "docs/vm.schema.json";

/** The JSON schema (draft 2020-12) of what a VM config file may contain. */
export function vmConfigJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(vmConfigSchema({ checkFiles: false }), { io: "input" });
  return {
    ...schema,
    title: "dvmm VM config",
    description:
      "A dvmm virtual machine: `dvmm run --config vm.json`. Generated from vmm/config.ts.",
  };
}

/** The text of `docs/vm.schema.json`: the schema, 2-space indented, with a final newline. */
export function vmConfigJsonSchemaText(): string {
  return `${JSON.stringify(vmConfigJsonSchema(), null, 2)}\n`;
}

if (import.meta.main) {
  await Deno.stdout.write(new TextEncoder().encode(vmConfigJsonSchemaText()));
}
