/**
 * `dvmm plugin test` logic on the register-file example: the guest sees the
 * device with its ids and BAR, drives it with devmem, moves the BAR, and
 * the device still answers, sandboxed (the default for user plugins) and
 * in-process (`--trusted`).
 */
import { deepStrictEqual, match, strictEqual } from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { runPluginCheck } from "../../devices/plugin_kit/plugin_check.ts";
import { REGISTER_FILE_ID } from "../../examples/register_file.ts";

const PLUGIN = fileURLToPath(new URL("../../examples/register_file.ts", import.meta.url));

for (const trusted of [false, true]) {
  Deno.test(`plugin test passes for the register file (${trusted ? "in-process" : "sandboxed"})`, async () => {
    const r = await runPluginCheck({ plugin: PLUGIN, options: { scratch: "32" }, trusted });
    const failed = r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    deepStrictEqual(failed, []);
    strictEqual(r.ok, true);
    strictEqual(r.checks.length, 8);
    const id = r.checks.find((c) => c.name === "devmem read at +0x0")!;
    match(id.detail, new RegExp(`guest 0x${REGISTER_FILE_ID.toString(16)}`));
    match(
      r.checks.find((c) => c.name.startsWith("guest writes the BAR"))!.detail,
      /0xd0000000\+0x1000/,
    );
    deepStrictEqual(r.warnings, []);
  });
}
