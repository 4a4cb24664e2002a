/**
 * Every exported symbol of dvmm's sources has JSDoc: `deno doc --lint` over
 * them names no `missing-jsdoc` (its other findings, types from npm packages
 * and inferred constant types, are not checked here).
 */
import assert from "node:assert/strict";

const ROOT = new URL("../..", import.meta.url).pathname;

async function sources(): Promise<string[]> {
  const out = await new Deno.Command("git", { args: ["ls-files", "*.ts"], cwd: ROOT }).output();
  return new TextDecoder().decode(out.stdout).split("\n")
    .filter((f) => f && !f.startsWith("tests/") && !f.endsWith("_test.ts"));
}

Deno.test("every exported symbol outside the tests has JSDoc", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--lint", ...await sources()],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  const missing = [...text.matchAll(/missing-jsdoc\]: .*\n\s*--> (\S+)/g)].map((m) => m[1]);
  assert.deepEqual(missing, [], `symbols without JSDoc:\n${missing.join("\n")}`);
});
