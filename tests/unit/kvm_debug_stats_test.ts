/** KVM's debugfs counters in the stall report: read what is there, never throw. */
import assert from "node:assert/strict";
import { kvmDebugStats } from "../../kvm/kvm_debug_stats.ts";

Deno.test("KVM's debugfs counters are read for this process's VM fd, missing ones left out", async () => {
  const root = await Deno.makeTempDir();
  try {
    const dir = `${root}/${Deno.pid}-7`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/exits`, "1234\n");
    await Deno.writeTextFile(`${dir}/irq_window_exits`, "56\n");
    assert.equal(kvmDebugStats(7, root), "exits=1234 irq_window_exits=56");
    assert.equal(kvmDebugStats(8, root), "");
    assert.equal(kvmDebugStats(7, `${root}/nowhere`), "");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
