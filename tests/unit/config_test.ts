import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ConfigError,
  MAX_MEMORY_BYTES,
  MIN_MEMORY_BYTES,
  parseMemorySize,
  parseVmConfig,
  type VmConfig,
} from "../../vmm/config.ts";
import { loadVmConfigFile, readConfigFile } from "../../vmm/config_file.ts";
import { UsageError } from "../../vmm/cli_errors.ts";
import { VM_SCHEMA_DOC_PATH, vmConfigJsonSchemaText } from "../../vmm/json_schema.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A temp dir with a kernel, an initrd and two disk images; XDG_RUNTIME_DIR points into it. */
function fixture(): { dir: string; cleanup: () => void } {
  const dir = Deno.makeTempDirSync({ prefix: "dvmm_config_" });
  for (const f of ["bzImage", "initrd.img", "a.raw", "b.raw", "dev.ts"]) {
    Deno.writeTextFileSync(join(dir, f), "x");
  }
  Deno.mkdirSync(join(dir, "run"));
  const saved = Deno.env.get("XDG_RUNTIME_DIR");
  Deno.env.set("XDG_RUNTIME_DIR", join(dir, "run"));
  return {
    dir,
    cleanup: () => {
      if (saved === undefined) Deno.env.delete("XDG_RUNTIME_DIR");
      else Deno.env.set("XDG_RUNTIME_DIR", saved);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** The problem lines of parsing `input`, or [] if it parses. */
function problems(input: unknown, source = "config", baseDir?: string): string[] {
  try {
    parseVmConfig(input, source, { baseDir });
    return [];
  } catch (e) {
    assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
    assert.equal(e.message, e.problems.join("\n"));
    return [...e.problems];
  }
}

Deno.test("an empty config gets every default from the schema", () => {
  const { dir, cleanup } = fixture();
  try {
    const c = parseVmConfig({}, "config");
    assert.match(c.name, new RegExp(`^vm-${Deno.pid}-\\d+$`));
    assert.deepEqual({ ...c, name: "x", api: undefined }, {
      name: "x",
      cmdline: "",
      memory: 512 * MiB,
      cpus: 1,
      console: "serial",
      disks: [],
      nets: [],
      rng: false,
      devices: [],
      api: undefined,
      kernelCache: true,
      debug: false,
    });
    assert.equal(c.kernel, undefined);
    assert.equal(c.initrd, undefined);
    assert.deepEqual(c.api, { enabled: true, socket: join(dir, "run", "dvmm", `${c.name}.sock`) });
    assert.notEqual(parseVmConfig({}, "config").name, c.name, "generated names differ");
  } finally {
    cleanup();
  }
});

Deno.test("memory accepts suffixes, bytes and digit strings", () => {
  assert.equal(parseMemorySize("512M"), 512 * MiB);
  assert.equal(parseMemorySize("1G"), GiB);
  assert.equal(parseMemorySize("1g"), GiB);
  assert.equal(parseMemorySize("65536K"), 64 * MiB);
  assert.equal(parseMemorySize("2GiB"), 2 * GiB);
  assert.equal(parseMemorySize("1.5G"), 1.5 * GiB);
  assert.equal(parseMemorySize("268435456"), 256 * MiB);
  assert.equal(parseMemorySize(268435456), 256 * MiB);
  assert.throws(() => parseMemorySize("lots"), /expected a size like 512M or 1G, got "lots"/);
  assert.throws(() => parseMemorySize("-1G"), RangeError);
  assert.throws(() => parseMemorySize(1.5), /whole number of bytes/);
  const { cleanup } = fixture();
  try {
    for (const [input, bytes] of [["512M", 512 * MiB], [GiB, GiB], ["65536K", MIN_MEMORY_BYTES]]) {
      assert.equal(parseVmConfig({ memory: input }, "config").memory, bytes);
    }
    assert.equal(parseVmConfig({ memory: "64G" }, "config").memory, MAX_MEMORY_BYTES);
  } finally {
    cleanup();
  }
});

Deno.test("memory outside 64 MiB..64 GiB, zero or unaligned is one line naming the field", () => {
  const { cleanup } = fixture();
  try {
    for (const bad of ["0", 0, "63M", "65G", 64 * GiB + 4096]) {
      const lines = problems({ memory: bad });
      assert.equal(lines.length, 1, `${bad}: ${lines}`);
      assert.match(
        lines[0],
        /^config\.memory: expected a size from 64M to 64G \(>= 64 MiB and <= 64 GiB\)/,
      );
    }
    assert.deepEqual(problems({ memory: 64 * MiB + 1 }), [
      `config.memory: must be a multiple of 4 KiB, got ${64 * MiB + 1} (${64 * MiB + 1} bytes)`,
    ]);
    assert.deepEqual(problems({ memory: true }, "vm.json"), [
      "vm.json: memory: expected a size from 64M to 64G (>= 64 MiB and <= 64 GiB) like 512M or 1G, got true",
    ]);
    assert.deepEqual(problems({ memory: "big" }), [
      'config.memory: expected a size like 512M or 1G, got "big"',
    ]);
  } finally {
    cleanup();
  }
});

Deno.test("every schema error is one line naming the full field path", () => {
  const { dir, cleanup } = fixture();
  try {
    const cases: [unknown, string][] = [
      [5, "config: expected an object of VM settings, got 5"],
      [[], "config: expected an object of VM settings, got a list"],
      [{ cpus: 1000 }, "config.cpus: expected an integer from 1 to 64, got 1000"],
      [{ cpus: 0 }, "config.cpus: expected an integer from 1 to 64, got 0"],
      [{ cpus: 1.5 }, "config.cpus: expected an integer from 1 to 64, got 1.5"],
      [{ cpus: "2" }, 'config.cpus: expected an integer from 1 to 64, got "2"'],
      [{ console: "vga" }, 'config.console: expected "serial" or "virtio", got "vga"'],
      [{ cmdline: 3 }, "config.cmdline: expected kernel arguments as a string, got 3"],
      [{ kernel: "" }, 'config.kernel: expected a kernel path (not empty), got ""'],
      [{ kernel: 7 }, "config.kernel: expected a kernel path, got 7"],
      [
        { kernel: "/nonexistent/bzImage" },
        "config.kernel: file not found: /nonexistent/bzImage",
      ],
      [{ kernel: dir }, `config.kernel: is a directory, expected a file: ${dir}`],
      [
        { initrd: "missing.img" },
        `config.initrd: file not found: missing.img (resolved to ${join(dir, "missing.img")})`,
      ],
      [{ disks: {} }, "config.disks: expected a list of disks, got an object"],
      [{ disks: ["a.raw"] }, 'config.disks[0]: expected a disk { path, readonly? }, got "a.raw"'],
      [{ disks: [{}] }, "config.disks[0].path: expected a disk image path, got nothing"],
      [
        { disks: [{ path: "a.raw" }, { path: "./img.raw" }] },
        `config.disks[1].path: file not found: ./img.raw (resolved to ${join(dir, "img.raw")})`,
      ],
      [{ disks: [{ path: "a.raw", ro: true }] }, "config.disks[0].ro: unknown field"],
      [
        { disks: [{ path: "a.raw", readonly: "yes" }] },
        'config.disks[0].readonly: expected true or false, got "yes"',
      ],
      [
        { disks: [{ path: "a.raw" }, { path: join(dir, "a.raw") }] },
        `config.disks[1].path: disk ${join(dir, "a.raw")} is attached twice`,
      ],
      [{ nets: [{}] }, "config.nets[0].tap: expected a tap interface name, got nothing"],
      [
        { nets: [{ tap: "a-very-long-tap-name" }] },
        'config.nets[0].tap: expected a tap interface name (1-15 of A-Z a-z 0-9 _ . -), got "a-very-long-tap-name"',
      ],
      [
        { nets: [{ tap: "tap0", mac: "52:54:00:12:34" }] },
        'config.nets[0].mac: expected a MAC address like 52:54:00:12:34:56, got "52:54:00:12:34"',
      ],
      [
        { nets: [{ tap: "tap0", mac: "01:00:5e:00:00:01" }] },
        'config.nets[0].mac: expected a unicast MAC (first octet even), got "01:00:5e:00:00:01"',
      ],
      [
        { nets: [{ tap: "tap0", mac: "00:00:00:00:00:00" }] },
        'config.nets[0].mac: expected a non-zero MAC, got "00:00:00:00:00:00"',
      ],
      [{ nets: [{ tap: "tap0" }, { tap: "tap0" }] }, "config.nets[1].tap: tap tap0 is used twice"],
      [
        {
          nets: [{ tap: "t0", mac: "52:54:00:00:00:01" }, { tap: "t1", mac: "52:54:00:00:00:01" }],
        },
        "config.nets[1].mac: MAC 52:54:00:00:00:01 is used twice",
      ],
      [{ rng: 1 }, "config.rng: expected true or false, got 1"],
      [
        { devices: [{}] },
        "config.devices[0].plugin: expected a plugin name, path or URL, got nothing",
      ],
      [
        { devices: [{ plugin: "bad name!" }] },
        'config.devices[0].plugin: expected a plugin name, path or URL, got "bad name!"',
      ],
      [
        { devices: [{ plugin: "./nope.ts" }] },
        `config.devices[0].plugin: file not found: ./nope.ts (resolved to ${join(dir, "nope.ts")})`,
      ],
      [
        { devices: [{ plugin: "regfile", options: { a: [1] } }] },
        "config.devices[0].options.a: expected a string, number or boolean, got a list",
      ],
      [{ name: "a b" }, 'config.name: expected a VM name of 1-64 of A-Z a-z 0-9 _ . -, got "a b"'],
      [
        { name: "x".repeat(65) },
        `config.name: expected a VM name of 1-64 of A-Z a-z 0-9 _ . -, got "${"x".repeat(65)}"`,
      ],
      [{ api: false }, "config.api: expected an object { socket?, enabled? }, got false"],
      [{ api: { enabled: "no" } }, 'config.api.enabled: expected true or false, got "no"'],
      [{ api: { sock: "x" } }, "config.api.sock: unknown field"],
      [
        { api: { socket: `/${"s".repeat(120)}` } },
        `config.api.socket: socket path longer than 107 bytes: /${"s".repeat(120)}`,
      ],
      [{ debug: "on" }, 'config.debug: expected true or false, got "on"'],
      [{ cpu: 2 }, "config.cpu: unknown field"],
      [{ "odd key": 1 }, 'config["odd key"]: unknown field'],
    ];
    for (const [input, line] of cases) {
      assert.deepEqual(problems(input, "config", dir), [line], JSON.stringify(input));
    }
  } finally {
    cleanup();
  }
});

Deno.test("several problems give several lines, in field order; a file source uses 'file: field'", () => {
  const { dir, cleanup } = fixture();
  try {
    assert.deepEqual(
      problems(
        { cpus: 0, console: "x", disks: [{ path: "a.raw" }, { path: "no" }], foo: 1 },
        "vm.json",
        dir,
      ),
      [
        "vm.json: cpus: expected an integer from 1 to 64, got 0",
        'vm.json: console: expected "serial" or "virtio", got "x"',
        `vm.json: disks[1].path: file not found: no (resolved to ${join(dir, "no")})`,
        "vm.json: foo: unknown field",
      ],
    );
  } finally {
    cleanup();
  }
});

Deno.test("ConfigError is a UsageError (exit status 2)", () => {
  assert.throws(() => parseVmConfig({ cpus: 0 }, "config"), UsageError);
});

Deno.test("paths resolve against the base directory; disks may be block devices; URLs and names stay", () => {
  const { dir, cleanup } = fixture();
  try {
    const c = parseVmConfig(
      {
        kernel: "bzImage",
        initrd: "./initrd.img",
        disks: [{ path: "a.raw", readonly: true }],
        nets: [{ tap: "tap0", mac: "52:54:00:AB:CD:EF" }],
        devices: [
          { plugin: "./dev.ts", options: { n: 1, s: "x", b: true } },
          { plugin: "regfile" },
          { plugin: "https://example.com/dev.ts" },
        ],
        api: { socket: "ctl.sock" },
      },
      "config",
      { baseDir: dir },
    );
    assert.equal(c.kernel, join(dir, "bzImage"));
    assert.equal(c.initrd, join(dir, "initrd.img"));
    assert.deepEqual(c.disks, [{ path: join(dir, "a.raw"), readonly: true }]);
    assert.deepEqual(c.nets, [{ tap: "tap0", mac: "52:54:00:ab:cd:ef" }]);
    assert.deepEqual(c.devices, [
      { plugin: join(dir, "dev.ts"), options: { n: 1, s: "x", b: true } },
      { plugin: "regfile", options: {} },
      { plugin: "https://example.com/dev.ts", options: {} },
    ]);
    assert.deepEqual(c.api, { enabled: true, socket: join(dir, "ctl.sock") });
    // /dev/null is a character device: not a disk.
    assert.deepEqual(problems({ disks: [{ path: "/dev/null" }] }), [
      "config.disks[0].path: not a file or block device: /dev/null",
    ]);
    // checkFiles: false skips existence checks but still resolves.
    const unchecked = parseVmConfig({ kernel: "nope" }, "config", {
      baseDir: dir,
      checkFiles: false,
    });
    assert.equal(unchecked.kernel, join(dir, "nope"));
  } finally {
    cleanup();
  }
});

Deno.test("with the API disabled no socket is chosen; without XDG_RUNTIME_DIR it is under HOME", () => {
  const { dir, cleanup } = fixture();
  try {
    assert.deepEqual(parseVmConfig({ api: { enabled: false } }, "config").api, {
      enabled: false,
      socket: undefined,
    });
    Deno.env.delete("XDG_RUNTIME_DIR");
    const home = Deno.env.get("HOME");
    Deno.env.set("HOME", dir);
    try {
      const c = parseVmConfig({ name: "web" }, "config");
      assert.equal(c.api.socket, join(dir, ".dvmm", "web.sock"));
      Deno.env.delete("HOME");
      assert.deepEqual(problems({ name: "web" }), [
        "config.api.socket: no default socket directory: set XDG_RUNTIME_DIR or HOME, or api.socket",
      ]);
    } finally {
      if (home !== undefined) Deno.env.set("HOME", home);
    }
  } finally {
    cleanup();
  }
});

Deno.test("a config file round trips: write the parsed config, parse it back equal", () => {
  const { dir, cleanup } = fixture();
  try {
    const file = join(dir, "vm.json");
    Deno.writeTextFileSync(
      file,
      JSON.stringify({
        $schema: "../docs/vm.schema.json",
        name: "web",
        kernel: "bzImage",
        initrd: "initrd.img",
        cmdline: "quiet",
        memory: "1G",
        cpus: 2,
        console: "virtio",
        disks: [{ path: "a.raw" }, { path: "b.raw", readonly: true }],
        nets: [{ tap: "tap0", mac: "52:54:00:12:34:56" }],
        rng: true,
        devices: [{ plugin: "dev.ts", options: { size: 4096 } }],
        api: { enabled: true },
        debug: true,
      }),
    );
    const first: VmConfig = loadVmConfigFile(file);
    assert.equal(first.memory, GiB);
    assert.equal(first.disks[1].path, join(dir, "b.raw"));
    assert.equal(first.devices[0].plugin, join(dir, "dev.ts"));
    const copy = join(dir, "copy.json");
    Deno.writeTextFileSync(copy, JSON.stringify(first));
    assert.deepEqual(loadVmConfigFile(copy), first);
  } finally {
    cleanup();
  }
});

Deno.test("config files: relative paths are relative to the file, not the cwd", () => {
  const { dir, cleanup } = fixture();
  try {
    Deno.mkdirSync(join(dir, "sub"));
    Deno.writeTextFileSync(join(dir, "sub", "vm.json"), JSON.stringify({ kernel: "../bzImage" }));
    const c = loadVmConfigFile("sub/vm.json", { cwd: dir });
    assert.equal(c.kernel, join(dir, "bzImage"));
    Deno.writeTextFileSync(join(dir, "sub", "bad.json"), JSON.stringify({ kernel: "bzImage" }));
    assert.throws(
      () => loadVmConfigFile("sub/bad.json", { cwd: dir }),
      {
        name: "ConfigError",
        message: `sub/bad.json: kernel: file not found: bzImage (resolved to ${
          join(dir, "sub", "bzImage")
        })`,
      },
    );
  } finally {
    cleanup();
  }
});

Deno.test("config file read errors name the file", () => {
  const { dir, cleanup } = fixture();
  try {
    Deno.writeTextFileSync(join(dir, "bad.json"), "{ cpus: 2 ");
    assert.throws(() => readConfigFile("bad.json", dir), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /^bad\.json: invalid JSON: /);
      assert.equal(e.message.split("\n").length, 1);
      return true;
    });
    assert.throws(() => readConfigFile("none.json", dir), { message: "none.json: file not found" });
    assert.throws(() => readConfigFile("run", dir), {
      message: "run: is a directory, expected a JSON file",
    });
  } finally {
    cleanup();
  }
});

Deno.test("docs/vm.schema.json is up to date (deno run -A vmm/json_schema.ts > docs/vm.schema.json)", () => {
  const committed = Deno.readTextFileSync(new URL(`../../${VM_SCHEMA_DOC_PATH}`, import.meta.url));
  assert.equal(committed, vmConfigJsonSchemaText(), "stale: regenerate docs/vm.schema.json");
  const schema = JSON.parse(committed);
  assert.equal(schema.additionalProperties, false);
  assert.deepEqual(schema.properties.memory.type, ["string", "number"]);
  assert.equal(schema.properties.memory.default, "512M");
  assert.equal(schema.properties.cpus.maximum, 64);
  assert.deepEqual(schema.properties.console.enum, ["serial", "virtio"]);
  assert.equal(schema.required, undefined, "no field is required");
});
