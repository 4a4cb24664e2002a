/**
 * `dvmm plugin new`: the generated plugin is valid, loads (also sandboxed),
 * and its own generated test passes under `deno test` from another directory.
 */

import assert from "node:assert/strict";
import {
  PLUGIN_NAME,
  SKELETON_ID,
  SkeletonError,
  writePluginSkeleton,
} from "../../devices/plugin_kit/skeleton.ts";
import { DeviceRegistry } from "../../devices/registry.ts";

Deno.test("plugin new: writes a plugin whose generated test passes with deno test", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvmm-skeleton-" });
  try {
    const s = await writePluginSkeleton("my-dev", `${dir}/my-dev`);
    assert.equal(s.plugin, `${dir}/my-dev/my_dev.ts`);
    assert.equal(s.test, `${dir}/my-dev/my_dev_test.ts`);
    const r = await new Deno.Command(Deno.execPath(), {
      args: s.testCommand,
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, out);
    assert.match(out, /ok \| 3 passed \| 0 failed/);

    // The registry loads it (in-process and sandboxed) with its manifest.
    const registry = new DeviceRegistry();
    try {
      const p = await registry.load(s.plugin);
      assert.equal(p.definition.name, "my-dev");
      const sandboxed = await registry.loadSandboxed(s.plugin);
      assert.equal(sandboxed.definition.vendorId, 0x1b36);
    } finally {
      registry.close();
    }
    assert.match(await Deno.readTextFile(s.plugin), new RegExp(SKELETON_ID.toString(16)));

    await assert.rejects(() => writePluginSkeleton("my-dev", `${dir}/my-dev`), SkeletonError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plugin new: refuses names that are not plugin names", async () => {
  for (const bad of ["", "My", "1dev", "a b", "x/y", "a_b"]) {
    assert.equal(PLUGIN_NAME.test(bad), false, bad);
    await assert.rejects(() => writePluginSkeleton(bad, "/nonexistent"), SkeletonError);
  }
});
