import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { definePciDevice } from "../../devices/pci_device.ts";
import { PluginError, validatePciDevice } from "../../devices/pci_manifest.ts";
import { DeviceRegistry, formatPluginList, parseDeviceArgument } from "../../devices/registry.ts";
import { CFG, COMMAND } from "../../pci/config_regs.ts";
import { hostBridge } from "../../pci/host_bridge.ts";
import { z } from "zod";
import { assertEquals, assertMatch, busRead, cfgRead, cfgWrite, makeRig } from "./pci_harness.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const THROWING = "./tests/fixtures/pci_throwing_plugin.ts";

const valid = {
  name: "dev",
  vendorId: 0x1af4,
  deviceId: 0x1042,
  classCode: 0x020000,
  bars: [{ index: 0, kind: "mem32", size: 0x1000 }],
  create: () => ({}),
};

Deno.test("manifest validation names the plugin and the field", () => {
  const table: [string, Record<string, unknown>, string][] = [
    [
      "size not a power of two",
      { bars: [{ index: 0, kind: "mem32", size: 0x1000 }, { index: 1, kind: "io", size: 24 }] },
      "./dev.ts: bars[1].size: must be a power of two",
    ],
    [
      "io too small",
      { bars: [{ index: 0, kind: "io", size: 2 }] },
      "bars[0].size: must be at least 4",
    ],
    [
      "mem too small",
      { bars: [{ index: 0, kind: "mem32", size: 8 }] },
      "bars[0].size: must be at least 16",
    ],
    [
      "mem32 too big",
      { bars: [{ index: 0, kind: "mem32", size: 2 ** 32 }] },
      "bars[0].size: must be at most",
    ],
    [
      "mem64 in slot 5",
      { bars: [{ index: 5, kind: "mem64", size: 16 }] },
      "bars[0].index: a mem64 BAR",
    ],
    ["slot 6", { bars: [{ index: 6, kind: "io", size: 4 }] }, "bars[0].index: must be 0..5"],
    [
      "mem64 upper slot taken",
      { bars: [{ index: 0, kind: "mem64", size: 16 }, { index: 1, kind: "io", size: 4 }] },
      "bars[1].index: slot 1 is already used by bars[0]",
    ],
    [
      "same slot twice",
      { bars: [{ index: 2, kind: "io", size: 4 }, { index: 2, kind: "mem32", size: 16 }] },
      "bars[1].index: slot 2 is already used by bars[0]",
    ],
    [
      "seven BARs",
      { bars: Array.from({ length: 7 }, (_, i) => ({ index: i % 6, kind: "io", size: 4 })) },
      "bars: at most 6 BARs",
    ],
    ["bad kind", { bars: [{ index: 0, kind: "mem16", size: 16 }] }, 'bars[0].kind: must be "io"'],
    [
      "prefetchable io",
      { bars: [{ index: 0, kind: "io", size: 4, prefetchable: true }] },
      "bars[0].prefetchable",
    ],
    ["vendor id", { vendorId: 0x10000 }, "vendorId: must be a u16"],
    ["device id", { deviceId: -1 }, "deviceId: must be a u16"],
    ["subsystem id", { subsystemId: 1.5 }, "subsystemId: must be an integer"],
    ["class code", { classCode: 0x100_0000 }, "classCode: must be a u24"],
    ["revision", { revision: 256 }, "revision: must be a u8"],
    ["no create", { create: undefined }, "create: must be a function"],
    ["options not zod", { options: { scratch: 1 } }, "options: must be a zod schema"],
    ["capability too big", { capabilities: [{ id: 9, size: 200 }] }, "capabilities[0].size"],
    [
      "capabilities overflow",
      { capabilities: [{ id: 9, size: 100 }, { id: 9, size: 100 }] },
      "capabilities: need 200 bytes",
    ],
    [
      "capability body too long",
      { capabilities: [{ id: 9, size: 4, body: [1, 2, 3] }] },
      "capabilities[0].body",
    ],
    ["bad name", { name: "a b" }, "name: must use only"],
  ];
  for (const [what, patch, message] of table) {
    assert.throws(
      () => validatePciDevice({ ...valid, ...patch }, "./dev.ts"),
      (e: unknown) => {
        assert.ok(e instanceof PluginError, what);
        assert.ok(e.message.startsWith(`./dev.ts: `), `${what}: ${e.message}`);
        assert.ok(e.message.includes(message), `${what}: ${e.message}`);
        return true;
      },
    );
  }
});

Deno.test("manifest validation accepts the edge cases that are legal", () => {
  const ok: Record<string, unknown>[] = [
    { bars: [] },
    { bars: [{ index: 4, kind: "mem64", size: 1n << 40n, prefetchable: true }] },
    { bars: [{ index: 0, kind: "mem32", size: 16 }, { index: 1, kind: "io", size: 4 }] },
    {
      bars: Array.from({ length: 6 }, (_, i) => ({ index: i, kind: "io", size: 4 })),
      vendorId: 0xffff,
      classCode: 0xff_ffff,
      revision: 255,
      capabilities: [{ id: 0x11, size: 12, body: [1], writable: [0, 0xc0] }],
      options: z.object({}),
    },
  ];
  for (const patch of ok) validatePciDevice({ ...valid, ...patch }, "./dev.ts");
});

Deno.test("registry: built-ins by name, plugins by relative path, absolute path and URL", async () => {
  const reg = new DeviceRegistry();
  reg.registerBuiltin(hostBridge);
  assertEquals((await reg.load("host-bridge")).builtin, true);
  const byPath = await reg.load(THROWING, REPO);
  assertEquals(byPath.definition.name, "throwing");
  assertEquals(byPath.source, THROWING);
  const url = new URL("../fixtures/pci_throwing_plugin.ts", import.meta.url).href;
  assertEquals((await reg.load(url)).definition, byPath.definition, "same module, cached");
  assertEquals(reg.plugins().map((p) => p.definition.name), ["host-bridge", "throwing"]);
  assert.throws(() => reg.registerBuiltin(hostBridge), /already|exists/);
});

Deno.test("registry: load errors name the plugin and never escape as anything but PluginError", async () => {
  const reg = new DeviceRegistry();
  const cases: [string, RegExp][] = [
    [
      "./tests/fixtures/pci_bad_manifest_plugin.ts",
      /^\.\/tests\/fixtures\/pci_bad_manifest_plugin\.ts: bars\[1\]\.size: must be a power of two$/,
    ],
    [
      "./tests/fixtures/pci_throw_on_load_plugin.ts",
      /^\.\/tests\/fixtures\/pci_throw_on_load_plugin\.ts: failed to load: .*plugin exploded while loading/,
    ],
    ["./tests/fixtures/pci_no_default_plugin.ts", /: no default export/],
    [
      "./tests/fixtures/does_not_exist.ts",
      /^\.\/tests\/fixtures\/does_not_exist\.ts: failed to load: /,
    ],
  ];
  for (const [spec, re] of cases) {
    await assert.rejects(reg.load(spec, REPO), (e: unknown) => {
      assert.ok(e instanceof PluginError, `${spec}: ${e}`);
      assertMatch(e.message, re);
      return true;
    });
  }
});

Deno.test("registry: options are validated against the schema with the option named", async () => {
  const reg = new DeviceRegistry();
  const r = await reg.resolve("./examples/register_file.ts", { scratch: "16" }, REPO);
  assertEquals(r.options, { scratch: 16, id: 0x52454746 });
  await assert.rejects(
    reg.resolve("./examples/register_file.ts", { scratch: "1000" }, REPO),
    /^PluginError: \.\/examples\/register_file\.ts: options\.scratch: /,
  );
  await assert.rejects(
    reg.resolve("./examples/register_file.ts", { scratch: "x" }, REPO),
    /options\.scratch/,
  );
});

Deno.test("registry: listing is structured and formats with options and defaults", async () => {
  const reg = new DeviceRegistry();
  reg.registerBuiltin(hostBridge);
  await reg.load("./examples/register_file.ts", REPO);
  const list = reg.list();
  assertEquals(list.map((p) => [p.name, p.id, p.builtin]), [
    ["host-bridge", "8086:29c0", true],
    ["register-file", "1b36:00f0", false],
  ]);
  assertEquals(list[1].bars, ["0:mem32 4 KiB"]);
  assertEquals(list[1].options.map((o) => [o.name, o.type, o.required, o.default]), [
    ["scratch", "integer", false, 8],
    ["id", "integer", false, 0x52454746],
  ]);
  const text = formatPluginList(list);
  assertMatch(text, /register-file\s+1b36:00f0\s+class ff0000\s+example register file/);
  assertMatch(text, /scratch=<integer> \(default 8\)\s+number of scratch registers/);
  assertMatch(text, /source: builtin:host-bridge/);
});

Deno.test("parseDeviceArgument splits the spec from key=value options", () => {
  assertEquals(parseDeviceArgument("./dev.ts,scratch=16,id=0x10,verbose"), {
    spec: "./dev.ts",
    options: { scratch: "16", id: "0x10", verbose: "true" },
  });
  assertEquals(parseDeviceArgument("register-file"), { spec: "register-file", options: {} });
  assert.throws(() => parseDeviceArgument("./dev.ts,=3"), PluginError);
});

Deno.test("throwing plugin: create failure is a PluginError; the bus carries on", async () => {
  const reg = new DeviceRegistry();
  const p = await reg.resolve(THROWING, { create: "true" }, REPO);
  const { root } = makeRig();
  assert.throws(
    () => root.addDevice(p.definition, { options: { create: "true" }, source: THROWING }),
    /^PluginError: \.\/tests\/fixtures\/pci_throwing_plugin\.ts: create failed: create exploded$/,
  );
  assertEquals(root.functions.length, 1, "only the host bridge");
});

Deno.test("throwing plugin: hook and handler failures are contained and logged with the tag", async () => {
  const reg = new DeviceRegistry();
  const { definition } = await reg.load(THROWING, REPO);
  const { root, mmio, log } = makeRig();
  root.addDevice(definition, { slot: 1, options: { activate: "true" } });
  assertEquals(root.assignments().map((a) => a.active), [false, false]);
  const warns = log.messages("warn");
  assertMatch(
    warns[0],
    /^\[dead:beef\] BAR 0: activate failed at 0x[0-9a-f]+: activate exploded on BAR 0$/,
  );
  assertMatch(
    warns[1],
    /^\[dead:beef\] BAR 1: activate failed at 0x[0-9a-f]+: activate exploded on BAR 1$/,
  );

  root.addDevice(definition, {
    slot: 2,
    options: { deactivate: "true", access: "true", reset: "true" },
  });
  const [bar0] = root.assignments().filter((a) => a.bdf === "00:02.0");
  log.clear();
  cfgWrite(root, 2, CFG.COMMAND, 2, 0); // deactivation fails: both stay mapped
  assertEquals(root.assignments().filter((a) => a.bdf === "00:02.0").map((a) => a.active), [
    true,
    true,
  ]);
  assertEquals(busRead(mmio, bar0.address), 0xffffffff, "failing read -> all-ones");
  mmio.write(bar0.address, new Uint8Array(4));
  root.reset();
  const text = log.messages("warn").join("\n");
  assertMatch(text, /\[dead:beef\] BAR 0: deactivate failed at 0x[0-9a-f]+: deactivate exploded/);
  assertMatch(text, /\[dead:beef\] BAR 0: read at \+0x0 failed: read exploded/);
  assertMatch(text, /\[dead:beef\] BAR 0: write at \+0x0 failed: write exploded/);
  assertMatch(text, /\[dead:beef\] reset failed: reset exploded/);
  // Device 1 keeps failing to activate on every retry; the rest of the bus is unaffected.
  cfgWrite(root, 1, CFG.COMMAND, 2, 0);
  cfgWrite(root, 1, CFG.COMMAND, 2, COMMAND.MEMORY | COMMAND.IO);
  assertEquals(root.assignments().filter((a) => a.bdf === "00:01.0").map((a) => a.active), [
    false,
    false,
  ]);
  assertEquals(cfgRead(root, 0, CFG.VENDOR_ID, 2), 0x8086);
});

Deno.test("definePciDevice keeps the definition and brands it", () => {
  const def = definePciDevice({ ...valid, bars: [] });
  assertEquals(def.name, "dev");
  assertEquals(Object.isFrozen(def), true);
});

Deno.test("the core's host bridge is a valid manifest (the core plugs it without validating)", () => {
  assert.equal(validatePciDevice(hostBridge, "host bridge"), hostBridge);
});
