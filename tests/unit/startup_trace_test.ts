/** DVMM_STARTUP_TRACE: marks on stderr only when asked for. */
import assert from "node:assert/strict";

const MODULE = new URL("../../vmm/startup_trace.ts", import.meta.url).href;

async function marksWith(env: Record<string, string>): Promise<string> {
  const code = `const { startupMark } = await import(${JSON.stringify(MODULE)});
startupMark("flags parsed"); startupMark("first KVM_RUN", "vcpu0");`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0);
  return new TextDecoder().decode(out.stderr);
}

Deno.test("start-up marks print epoch milliseconds, thread and label only with DVMM_STARTUP_TRACE=1", async () => {
  const before = Date.now();
  const lines = (await marksWith({ DVMM_STARTUP_TRACE: "1" })).trim().split("\n");
  assert.equal(lines.length, 2);
  const [ms, thread, ...label] = lines[1].split(" ").slice(1);
  assert.ok(Number(ms) >= before && Number(ms) <= Date.now(), lines[1]);
  assert.equal(thread, "vcpu0");
  assert.equal(label.join(" "), "first KVM_RUN");
  assert.match(lines[0], /^dvmm-startup \d+\.\d main flags parsed$/);
  assert.equal(await marksWith({ DVMM_STARTUP_TRACE: "0" }), "");
});
