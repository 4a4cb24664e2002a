import { runPluginCheck } from "../../devices/plugin_kit/plugin_check.ts";
import { fileURLToPath } from "node:url";
const PLUGIN = fileURLToPath(new URL("../../examples/register_file.ts", import.meta.url));
const N = Number(Deno.env.get("DVMM_STALL_N") ?? "25");
Deno.test("stall hunt", async () => {
  let bad = 0;
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const r = await runPluginCheck({ plugin: PLUGIN, options: { scratch: "32" }, trusted: false });
    const failed = r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
    console.log(
      `iter ${i}: ${r.ok ? "ok" : "FAIL"} ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    if (!r.ok) {
      bad++;
      console.log(failed.join("\n"));
    }
  }
  console.log(`stall hunt: ${bad} of ${N} failed`);
});
