/**
 * Sandboxed user plugins, driven through the PCI core and the buses like the
 * in-process ones: the register-file example works the same in its worker;
 * plugins that try to reach the host are refused; a plugin that hangs, dies
 * or sends garbage is contained (its device answers all-ones, the VMM and
 * the other devices carry on).
 *
 * Needs Deno's worker permissions ("unstable": ["worker-options"] in
 * deno.json, or `--unstable-worker-options`).
 */

import { fileURLToPath } from "node:url";
import { describePlugin, DeviceRegistry } from "../../devices/registry.ts";
import type { PluginError } from "../../devices/pci_manifest.ts";
import { CFG, COMMAND } from "../../pci/config_regs.ts";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import registerFile, { REG, REGISTER_FILE_ID } from "../../examples/register_file.ts";
import {
  assertEquals,
  assertMatch,
  busRead,
  bytes,
  cfgRead,
  cfgWrite,
  makeRig,
} from "./pci_harness.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const CONTROL_SLOT = 2;
const PLUGIN_SLOT = 4;

/** A rig with the in-process register file at slot 2 and the sandboxed `spec` at slot 4. */
async function sandboxed(
  spec: string,
  options: Record<string, string> = {},
  sandbox: { read?: string[]; timeoutMs?: number } = {},
) {
  const registry = new DeviceRegistry();
  const plugin = await registry.loadSandboxed(spec, { cwd: REPO, ...sandbox });
  const memory = GuestMemory.ofSize(1 << 20);
  const rig = makeRig({ memory });
  rig.root.addDevice(registerFile, { slot: CONTROL_SLOT, source: "control" });
  const fn = rig.root.addDevice(plugin.definition, {
    slot: PLUGIN_SLOT,
    options,
    source: spec,
  });
  const bar0 = (slot: number) =>
    rig.root.assignments().find((a) => a.bdf === `00:0${slot}.0` && a.bar === 0)!.activeAddress!;
  const read = (offset: number, width = 4, slot = PLUGIN_SLOT) =>
    busRead(rig.mmio, bar0(slot) + BigInt(offset), width);
  const write = (offset: number, value: number, width = 4, slot = PLUGIN_SLOT) =>
    rig.mmio.write(bar0(slot) + BigInt(offset), bytes(value, width));
  /** The control device and the config space of the sandboxed one still work. */
  const othersAnswer = () => {
    assertEquals(read(REG.ID, 4, CONTROL_SLOT), REGISTER_FILE_ID);
    write(REG.SCRATCH, 0x1234_5678, 4, CONTROL_SLOT);
    assertEquals(read(REG.SCRATCH, 4, CONTROL_SLOT), 0x1234_5678);
    assertEquals(cfgRead(rig.root, PLUGIN_SLOT, CFG.VENDOR_ID, 2), fn.def.vendorId);
  };
  return {
    registry,
    plugin,
    rig,
    memory,
    fn,
    read,
    write,
    othersAnswer,
    [Symbol.dispose]: () => registry.close(),
  };
}

Deno.test("sandbox: the register file works in its worker as it does in-process", async () => {
  using s = await sandboxed("./examples/register_file.ts", { scratch: "4" });
  const { rig, fn, read, write } = s;
  assertEquals(s.plugin.sandbox!.permissions.read, [`${REPO}examples/register_file.ts`]);
  assertEquals(cfgRead(rig.root, PLUGIN_SLOT, CFG.VENDOR_ID, 4), 0x00f0_1b36);
  assertEquals(read(REG.ID), REGISTER_FILE_ID);
  assertEquals(read(REG.ID + 2, 2), REGISTER_FILE_ID >>> 16);
  assertEquals(read(REG.SCRATCH_N), 4, "options reach the plugin in the worker");
  write(REG.SCRATCH, 0xcafe_f00d);
  write(REG.SCRATCH + 1, 0x12, 1);
  assertEquals(read(REG.SCRATCH), 0xcafe_120d);

  // Doorbell -> INTx crosses the channel (an IRQ callback during the write).
  const line = () => rig.lines.get(fn.gsi!)?.level ?? false;
  write(REG.IRQ_ENABLE, 1);
  write(REG.DOORBELL, 1);
  assertEquals([read(REG.RINGS), line()], [1, true]);
  write(REG.IRQ_STATUS, 1);
  assertEquals(line(), false);
  assertMatch(rig.log.messages().join("\n"), /\[1b36:00f0\] doorbell ring 1/, "plugin log");

  // Moving the BAR (activate/deactivate cross the channel) keeps the state.
  const old = BigInt(cfgRead(rig.root, PLUGIN_SLOT, CFG.BAR0, 4));
  cfgWrite(rig.root, PLUGIN_SLOT, CFG.BAR0, 4, 0xd000_0000);
  assertEquals(busRead(rig.mmio, old + BigInt(REG.SCRATCH)), 0xffff_ffff);
  assertEquals(read(REG.SCRATCH), 0xcafe_120d);

  // Reset reaches the plugin.
  rig.root.reset();
  cfgWrite(rig.root, PLUGIN_SLOT, CFG.COMMAND, 2, COMMAND.MEMORY);
  assertEquals([read(REG.SCRATCH), read(REG.RINGS)], [0, 0]);
  assertEquals([fn.faults, s.plugin.sandbox!.failure], [0, null]);
});

Deno.test("sandbox: options are validated by the plugin's schema and listed", async () => {
  const registry = new DeviceRegistry();
  try {
    const p = await registry.loadSandboxed("./examples/register_file.ts", { cwd: REPO });
    const info = describePlugin(p);
    assertEquals(info.options.map((o) => [o.name, o.default]), [
      ["scratch", 8],
      ["id", REGISTER_FILE_ID],
    ]);
    const rig = makeRig();
    let error: unknown;
    try {
      rig.root.addDevice(p.definition, { options: { scratch: "999" }, source: p.source });
    } catch (e) {
      error = e;
    }
    assertMatch(String(error), /\.\/examples\/register_file\.ts: options\.scratch: Too big/);
  } finally {
    registry.close();
  }
});

Deno.test("sandbox: invalid or missing plugins fail to load with the same errors", async () => {
  const registry = new DeviceRegistry();
  const cases: [string, RegExp][] = [
    ["./tests/fixtures/pci_bad_manifest_plugin.ts", /bars\[1\]\.size: must be a power of two/],
    ["./tests/fixtures/pci_no_default_plugin.ts", /no default export/],
    ["./tests/fixtures/pci_throw_on_load_plugin.ts", /failed to load/],
    ["./tests/fixtures/does_not_exist.ts", /failed to load/],
  ];
  for (const [spec, expected] of cases) {
    let error: PluginError | undefined;
    try {
      await registry.loadSandboxed(spec, { cwd: REPO });
    } catch (e) {
      error = e as PluginError;
    }
    assertEquals(error?.name, "PluginError", spec);
    assertMatch(error!.message, expected, spec);
    assertEquals(error!.source, spec);
  }
  registry.close();
});

Deno.test("sandbox: a throwing handler fails that access only, like in-process", async () => {
  using s = await sandboxed("./tests/fixtures/pci_throwing_plugin.ts", { access: "true" });
  assertEquals(s.read(0), 0xffff_ffff);
  assertEquals(s.fn.faults, 1);
  assertMatch(s.rig.log.messages("warn").join("\n"), /\[dead:beef\] BAR 0: read at \+0x0 failed/);
  assertEquals(s.plugin.sandbox!.failure, null, "the worker lives on");
  s.othersAnswer();
});

const escapes: [string, RegExp][] = [
  ["dlopen", /Requires ffi access/],
  ["run", /Requires run access/],
  ["env", /Requires env access/],
];

for (const [attempt, refusal] of escapes) {
  Deno.test(`sandbox: a plugin calling ${attempt} is refused`, async () => {
    using s = await sandboxed("./tests/fixtures/sandbox_escape_plugin.ts", { attempt });
    assertEquals(s.read(0), 0xffff_ffff, "the attempt threw: the access fails");
    assertMatch(s.rig.log.messages("warn").join("\n"), refusal);
    s.othersAnswer();
  });
}

Deno.test("sandbox: a plugin cannot read a file it was not granted, but can read one it was", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvmm-sandbox-" });
  try {
    const secret = `${dir}/secret`;
    await Deno.writeTextFile(secret, "s3cret");
    {
      using s = await sandboxed("./tests/fixtures/sandbox_escape_plugin.ts", {
        attempt: "read",
        path: secret,
      });
      assertEquals(s.read(0), 0xffff_ffff);
      assertMatch(s.rig.log.messages("warn").join("\n"), /Requires read access to ".*secret"/);
      s.othersAnswer();
    }
    using granted = await sandboxed(
      "./tests/fixtures/sandbox_escape_plugin.ts",
      { attempt: "read", path: secret },
      { read: [dir] },
    );
    assertEquals(granted.read(0) & 0xff, 1, "granted with read=[dir]");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sandbox: a plugin cannot write a file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dvmm-sandbox-" });
  try {
    // Even with read access to the directory, writing is refused.
    using s = await sandboxed(
      "./tests/fixtures/sandbox_escape_plugin.ts",
      { attempt: "write", path: `${dir}/written` },
      { read: [dir] },
    );
    assertEquals(s.read(0), 0xffff_ffff);
    assertMatch(s.rig.log.messages("warn").join("\n"), /Requires write access/);
    assertEquals(await Deno.stat(`${dir}/written`).then(() => true, () => false), false);
    s.othersAnswer();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sandbox: a plugin cannot fetch", async () => {
  using s = await sandboxed("./tests/fixtures/sandbox_escape_plugin.ts", { attempt: "fetch" });
  // The request settles in the worker; its log arrives as an async message.
  for (let i = 0; i < 100 && s.read(4) === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assertEquals(s.read(4), 2, "refused");
  await new Promise((r) => setTimeout(r, 20));
  assertMatch(s.rig.log.messages("warn").join("\n"), /fetch refused: .*Requires net access/);
  s.othersAnswer();
});

Deno.test("sandbox: a handler that loops forever is cut off at the deadline and the device fails", async () => {
  using s = await sandboxed("./tests/fixtures/sandbox_hang_plugin.ts", {}, { timeoutMs: 80 });
  assertEquals(s.read(0, 2), 0x600d);
  const t0 = performance.now();
  assertEquals(s.read(0x10), 0xffff_ffff);
  const waited = performance.now() - t0;
  if (waited < 80 || waited > 2000) throw new Error(`waited ${waited} ms for an 80 ms deadline`);
  assertMatch(
    s.rig.log.messages("error").join("\n"),
    /\[5afe:0002\] plugin sandbox failed: BAR 0 read at \+0x10: no answer within 80 ms/,
  );
  assertMatch(s.plugin.sandbox!.failure!, /no answer/);
  // From now on: all-ones at once, no more waiting; the rest of the machine works.
  const t1 = performance.now();
  assertEquals(s.read(0), 0xffff_ffff);
  assertEquals(performance.now() - t1 < 20, true);
  s.othersAnswer();
  // The core can still move and disable the failed device's BAR.
  cfgWrite(s.rig.root, PLUGIN_SLOT, CFG.BAR0, 4, 0xd000_0000);
  cfgWrite(s.rig.root, PLUGIN_SLOT, CFG.COMMAND, 2, 0);
  assertEquals(
    s.rig.root.assignments().find((a) => a.bdf === "00:04.0")?.active,
    false,
  );
});

Deno.test("sandbox: a plugin that posts garbage to the host is failed", async () => {
  using s = await sandboxed("./tests/fixtures/sandbox_garbage_plugin.ts");
  assertEquals(s.read(0), 0x4242_4242);
  s.write(0, 1);
  await new Promise((r) => setTimeout(r, 50)); // the message arrives on the event loop
  assertMatch(s.plugin.sandbox!.failure ?? "", /malformed message/);
  assertEquals(s.read(0), 0xffff_ffff);
  s.othersAnswer();
});

Deno.test("sandbox: a plugin that closes its own worker mid-access is failed at the deadline", async () => {
  using s = await sandboxed("./tests/fixtures/sandbox_garbage_plugin.ts", {}, { timeoutMs: 50 });
  assertEquals(s.read(8), 0xffff_ffff);
  assertMatch(s.plugin.sandbox!.failure ?? "", /no answer within 50 ms/);
  s.othersAnswer();
});

Deno.test("sandbox: DMA goes through the host's bounds-checked guest memory", async () => {
  using s = await sandboxed("./tests/fixtures/sandbox_dma_plugin.ts");
  const src = 0x1000, dst = 0x4_0000, length = 64 * 1024 + 100; // > one channel payload
  const pattern = Uint8Array.from({ length }, (_, i) => (i * 7 + 3) & 0xff);
  s.memory.write(src, pattern);
  s.write(0x00, src);
  assertEquals(s.read(0x10), 0x18_110a03, "the plugin reads guest RAM");
  s.write(0x04, dst);
  s.write(0x08, length);
  s.write(0x0c, 1);
  assertEquals(s.fn.faults, 0);
  assertEquals(s.memory.read(dst, length), pattern, "copied, in chunks");
  assertEquals(s.rig.lines.get(s.fn.gsi!)?.level, true, "IRQ raised after the copy");
  // Out of RAM (1 MiB): refused by GuestMemory, logged as a fault, the worker lives on.
  s.write(0x00, 0x10_0000 - 4);
  s.write(0x08, 16);
  s.write(0x0c, 1);
  assertEquals(s.fn.faults, 1);
  assertMatch(s.rig.log.messages("warn").join("\n"), /guest memory access 0xffffc\+16/);
  assertEquals(s.plugin.sandbox!.failure, null);
  s.write(0x00, dst);
  assertEquals(s.read(0x10), 0x18_110a03);
});
