import assert from "node:assert/strict";
import { join } from "node:path";
import { Command, CommanderError } from "@commander-js/extra-typings";
import {
  addVmFlags,
  usageExitCode,
  vmConfigFromFlags,
  type VmFlagValues,
} from "../../vmm/cli_flags.ts";
import { ConfigError } from "../../vmm/config.ts";

const MiB = 1024 * 1024;

/** A `run` command with the VM flags that throws instead of exiting and prints nothing. */
function runCommand() {
  let captured: VmFlagValues | undefined;
  const cmd = addVmFlags(
    new Command("run").exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} }),
  ).action((opts) => {
    captured = opts;
  });
  return {
    cmd,
    parse(args: string[]): VmFlagValues {
      captured = undefined;
      cmd.parse(args, { from: "user" });
      assert.ok(captured, "action ran");
      return captured;
    },
  };
}

/** A temp dir with files to point flags at; XDG_RUNTIME_DIR inside it. */
function fixture(): { dir: string; cleanup: () => void } {
  const dir = Deno.makeTempDirSync({ prefix: "dvmm_flags_" });
  for (const f of ["bzImage", "a.raw", "b.raw", "dev.ts"]) {
    Deno.writeTextFileSync(join(dir, f), "x");
  }
  Deno.mkdirSync(join(dir, "conf"));
  Deno.writeTextFileSync(join(dir, "conf", "k"), "x");
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

/** The problem lines of turning `flags` into a config. */
function problems(flags: VmFlagValues, cwd: string): string[] {
  try {
    vmConfigFromFlags(flags, cwd);
    return [];
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return [...e.problems];
  }
}

Deno.test("every flag maps onto the schema, relative paths against the cwd", () => {
  const { dir, cleanup } = fixture();
  try {
    const flags = runCommand().parse([
      "--kernel=bzImage",
      "--cmdline",
      "quiet loglevel=3",
      "--mem",
      "1G",
      "--cpus",
      "4",
      "--console",
      "virtio",
      "--disk",
      "a.raw",
      "--disk",
      "b.raw,ro",
      "--net",
      "tap=tap0,mac=52:54:00:12:34:56",
      "--net",
      "tap1",
      "--rng",
      "--device",
      "./dev.ts,size=4096,verbose",
      "--device",
      "regfile",
      "--name",
      "web",
      "--api-socket",
      "ctl.sock",
      "--no-kernel-cache",
      "--debug",
    ]);
    const c = vmConfigFromFlags(flags, dir);
    assert.deepEqual(c, {
      name: "web",
      kernel: join(dir, "bzImage"),
      cmdline: "quiet loglevel=3",
      memory: 1024 * MiB,
      cpus: 4,
      console: "virtio",
      disks: [{ path: join(dir, "a.raw"), readonly: false }, {
        path: join(dir, "b.raw"),
        readonly: true,
      }],
      nets: [{ tap: "tap0", mac: "52:54:00:12:34:56" }, { tap: "tap1" }],
      rng: true,
      devices: [
        { plugin: join(dir, "dev.ts"), options: { size: "4096", verbose: "true" } },
        { plugin: "regfile", options: {} },
      ],
      api: { enabled: true, socket: join(dir, "ctl.sock") },
      kernelCache: false,
      debug: true,
    });
  } finally {
    cleanup();
  }
});

Deno.test("no flags give the schema defaults; --no-api disables the socket", () => {
  const { dir, cleanup } = fixture();
  try {
    const cli = runCommand();
    const c = vmConfigFromFlags(cli.parse([]), dir);
    assert.equal(c.memory, 512 * MiB);
    assert.equal(c.cpus, 1);
    assert.equal(c.api.enabled, true);
    assert.equal(c.api.socket, join(dir, "run", "dvmm", `${c.name}.sock`));
    assert.equal(vmConfigFromFlags(cli.parse(["--no-api"]), dir).api.enabled, false);
    assert.equal(vmConfigFromFlags(cli.parse(["--memory", "256M"]), dir).memory, 256 * MiB);
  } finally {
    cleanup();
  }
});

Deno.test("flag errors name the flag, one line each", () => {
  const { dir, cleanup } = fixture();
  try {
    const cli = runCommand();
    const lines = (args: string[]) => problems(cli.parse(args), dir);
    assert.deepEqual(lines(["--cpus", "1000"]), [
      "--cpus: expected an integer from 1 to 64, got 1000",
    ]);
    assert.deepEqual(lines(["--cpus", "two"]), [
      '--cpus: expected an integer from 1 to 64, got "two"',
    ]);
    assert.deepEqual(lines(["--mem", "0"]), [
      '--mem: expected a size from 64M to 64G (>= 64 MiB and <= 64 GiB) like 512M or 1G, got "0"',
    ]);
    assert.deepEqual(lines(["--memory", "1G", "--mem", "2G"]), [
      "--mem: conflicts with --memory 1G (give one)",
    ]);
    assert.deepEqual(lines(["--console", "vga", "--name", "a/b"]), [
      '--name: expected a VM name of 1-64 of A-Z a-z 0-9 _ . -, got "a/b"',
      '--console: expected "serial" or "virtio", got "vga"',
    ]);
    assert.deepEqual(lines(["--kernel", "nope"]), [
      `--kernel: file not found: ${join(dir, "nope")}`,
    ]);
    assert.deepEqual(lines(["--disk", "a.raw", "--disk", "img.raw,ro"]), [
      `--disk img.raw,ro: file not found: ${join(dir, "img.raw")}`,
    ]);
    assert.deepEqual(lines(["--disk", "a.raw,fast"]), [
      '--disk a.raw,fast: unknown option "fast" (expected ro or rw)',
    ]);
    assert.deepEqual(lines(["--net", "tap=t0,mac=zz"]), [
      '--net tap=t0,mac=zz (mac): expected a MAC address like 52:54:00:12:34:56, got "zz"',
    ]);
    assert.deepEqual(lines(["--net", "tap=t0,vlan=3"]), [
      '--net tap=t0,vlan=3: unknown option "vlan" (expected tap=NAME or mac=MAC)',
    ]);
    assert.deepEqual(lines(["--device", "./gone.ts"]), [
      `--device ./gone.ts: file not found: ${join(dir, "gone.ts")}`,
    ]);
    assert.deepEqual(lines(["--device", "regfile,=3"]), [
      '--device regfile,=3: bad option "=3" (expected key=value)',
    ]);
    assert.deepEqual(lines(["--api-socket", `/${"s".repeat(120)}`]), [
      `--api-socket: socket path longer than 107 bytes: /${"s".repeat(120)}`,
    ]);
  } finally {
    cleanup();
  }
});

Deno.test("flags override the config file's fields; list flags replace its lists", () => {
  const { dir, cleanup } = fixture();
  try {
    Deno.writeTextFileSync(
      join(dir, "conf", "vm.json"),
      JSON.stringify({
        name: "fromfile",
        kernel: "k",
        memory: "256M",
        cpus: 2,
        disks: [{ path: "../a.raw" }],
        api: { socket: "file.sock", enabled: true },
        rng: true,
      }),
    );
    const cli = runCommand();
    const fileOnly = vmConfigFromFlags(cli.parse(["--config", "conf/vm.json"]), dir);
    assert.equal(fileOnly.name, "fromfile");
    assert.equal(fileOnly.kernel, join(dir, "conf", "k"), "file paths relative to the file");
    assert.equal(fileOnly.memory, 256 * MiB);
    assert.equal(fileOnly.cpus, 2);
    assert.deepEqual(fileOnly.disks, [{ path: join(dir, "a.raw"), readonly: false }]);
    assert.equal(fileOnly.api.socket, join(dir, "conf", "file.sock"));

    const both = vmConfigFromFlags(
      cli.parse(["--config", "conf/vm.json", "--cpus", "8", "--disk", "b.raw,ro", "--no-api"]),
      dir,
    );
    assert.equal(both.cpus, 8, "flag wins");
    assert.equal(both.memory, 256 * MiB, "file field kept");
    assert.equal(both.rng, true);
    assert.deepEqual(both.disks, [{ path: join(dir, "b.raw"), readonly: true }], "list replaced");
    assert.deepEqual(both.api, { enabled: false, socket: join(dir, "conf", "file.sock") });
  } finally {
    cleanup();
  }
});

Deno.test("errors name the flag or the config file's field, whichever set the value", () => {
  const { dir, cleanup } = fixture();
  try {
    Deno.writeTextFileSync(
      join(dir, "vm.json"),
      JSON.stringify({ cpus: 100, memory: "1T", console: "x", disks: [{ path: "gone.raw" }] }),
    );
    const cli = runCommand();
    assert.deepEqual(problems(cli.parse(["--config", "vm.json", "--cpus", "99"]), dir), [
      'vm.json: memory: expected a size from 64M to 64G (>= 64 MiB and <= 64 GiB) like 512M or 1G, got "1T"',
      "--cpus: expected an integer from 1 to 64, got 99",
      'vm.json: console: expected "serial" or "virtio", got "x"',
      `vm.json: disks[0].path: file not found: gone.raw (resolved to ${join(dir, "gone.raw")})`,
    ]);
    Deno.writeTextFileSync(join(dir, "list.json"), "[1, 2]");
    assert.deepEqual(problems(cli.parse(["--config", "list.json", "--cpus", "2"]), dir), [
      "list.json: expected an object of VM settings, got a list",
    ]);
    assert.deepEqual(problems(cli.parse(["--config", "missing.json"]), dir), [
      "missing.json: file not found",
    ]);
  } finally {
    cleanup();
  }
});

Deno.test("commander rejects unknown flags by name; usage errors map to exit status 2", () => {
  const cli = runCommand();
  const usage = (args: string[]) => {
    try {
      cli.parse(args);
    } catch (e) {
      return e;
    }
    assert.fail(`no error for ${args}`);
  };
  const unknown = usage(["--bogus"]);
  assert.ok(unknown instanceof CommanderError);
  assert.match(unknown.message, /unknown option '--bogus'/);
  assert.equal(usageExitCode(unknown), 2);
  const missing = usage(["--cpus"]);
  assert.match((missing as Error).message, /option '--cpus <n>' argument missing/);
  assert.equal(usageExitCode(missing), 2);
  const help = usage(["--help"]);
  assert.equal(usageExitCode(help), 0);
  assert.equal(usageExitCode(new ConfigError("flags", ["--cpus: x"])), 2);
  assert.equal(usageExitCode(new Error("boom")), undefined);
});

Deno.test("the help text documents that flags override --config", () => {
  const help = runCommand().cmd.helpInformation();
  let after = "";
  const cmd = runCommand().cmd.configureOutput({ writeOut: (s) => (after += s) });
  try {
    cmd.parse(["--help"], { from: "user" });
  } catch { /* exitOverride */ }
  for (
    const flag of [
      "--config",
      "--kernel",
      "--initrd",
      "--cmdline",
      "--memory",
      "--mem ",
      "--cpus",
      "--console",
      "--disk",
      "--net",
      "--rng",
      "--device",
      "--name",
      "--api-socket",
      "--no-api",
      "--debug",
    ]
  ) {
    assert.ok(help.includes(flag), `help lists ${flag}`);
  }
  assert.match(after, /Flags given as well override the file's\s+fields/);
});
