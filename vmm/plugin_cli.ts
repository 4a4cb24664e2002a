/**
 * The `dvmm plugin` subcommands, for main.ts to add with
 * {@linkcode registerPluginCommands}:
 *
 * ```
 * dvmm plugin new NAME [--dir DIR]     write a plugin skeleton and its test
 * dvmm plugin test PATH [options]      boot the default guest with the plugin and check it
 * ```
 *
 * `plugin test` runs natively where /dev/kvm exists, otherwise in the nested
 * lab (the default guest is fetched/built on the host first; inside the lab
 * dvmm runs the hidden `plugin-test-here` with the guest's paths).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { resolve } from "node:path";
// The commands import their modules when they run (keeps `dvmm run`'s start-up small).

const collect = (value: string, previous: string[]) => [...previous, value];

/** Options shared by `plugin test` and `plugin-test-here`. */
interface TestFlags {
  trusted?: boolean;
  grantRead: string[];
  writeOffset?: string;
}

/** Add `plugin new`, `plugin test` and the hidden `plugin-test-here` to `cli`. */
export function registerPluginCommands(cli: Command): void {
  const plugin = cli.command("plugin").description("write and test device plugins");

  plugin.command("new")
    .description("write a device plugin skeleton (a register file) with its own unit test")
    .argument("<name>", "plugin name: lower-case letters, digits and '-'")
    .option("--dir <dir>", "folder to write into (default: ./<name>)")
    .action(async (name, o) => {
      const { writePluginSkeleton } = await import("../devices/plugin_kit/skeleton.ts");
      const s = await writePluginSkeleton(name, o.dir ?? name);
      console.log(`wrote ${s.plugin}\nwrote ${s.test}`);
      console.log(`test it:      deno ${s.testCommand.join(" ")}`);
      console.log(`boot with it: dvmm plugin test ${s.plugin}`);
    });

  plugin.command("test")
    .description("boot the default guest with a plugin and check it from inside Linux")
    .argument("<plugin>", "path or URL of the plugin, with ,key=value options")
    .option("--trusted", TRUSTED_HELP)
    .option("--grant-read <path>", GRANT_READ_HELP, collect, [])
    .option("--write-offset <n>", WRITE_OFFSET_HELP)
    .action(async (spec, o) => {
      const { hasKvm } = await import("../kvm/kvm.ts");
      if (hasKvm()) Deno.exit(await checkHere(spec, o));
      const { defaultGuestPaths } = await import("./demo.ts");
      const { parseDeviceArgument } = await import("../devices/registry.ts");
      const { runInLab } = await import("../lab/lab.ts");
      const { selfCommand, selfDirectory } = await import("./self_command.ts");
      const { writeAllStdout } = await import("./host_console.ts");
      console.error("dvmm: no /dev/kvm here; running the plugin test in the nested KVM lab");
      const paths = await defaultGuestPaths();
      const arg = parseDeviceArgument(spec);
      const abs = /^[a-z]+:/.test(arg.spec) ? arg.spec : resolve(arg.spec);
      const options = Object.entries(arg.options).map(([k, v]) => `,${k}=${v}`).join("");
      const args = ["plugin-test-here", abs + options, "--kernel", paths.kernel];
      args.push("--initrd", paths.initrd);
      if (o.trusted) args.push("--trusted");
      for (const r of o.grantRead) args.push("--grant-read", resolve(r));
      if (o.writeOffset) args.push("--write-offset", o.writeOffset);
      const r = await runInLab(selfCommand(args), {
        cwd: selfDirectory(),
        onOutput: writeAllStdout,
      });
      Deno.exit(r.status);
    });

  cli.command("plugin-test-here", { hidden: true })
    .argument("<plugin>")
    .option("--kernel <bzImage>")
    .option("--initrd <file>")
    .option("--trusted", TRUSTED_HELP)
    .option("--grant-read <path>", GRANT_READ_HELP, collect, [])
    .option("--write-offset <n>", WRITE_OFFSET_HELP)
    .action(async (spec, o) => Deno.exit(await checkHere(spec, o)));
}

const TRUSTED_HELP = "run the plugin in-process (not sandboxed)";
const GRANT_READ_HELP = "let the sandboxed plugin read this path (repeatable)";
const WRITE_OFFSET_HELP = "BAR offset for the write/readback check (default 0x40)";

async function checkHere(
  spec: string,
  o: TestFlags & { kernel?: string; initrd?: string },
): Promise<number> {
  const { parseDeviceArgument } = await import("../devices/registry.ts");
  const { formatPluginCheck, runPluginCheck } = await import(
    "../devices/plugin_kit/plugin_check.ts"
  );
  const { writeAllStdout } = await import("./host_console.ts");
  const arg = parseDeviceArgument(spec);
  const report = await runPluginCheck({
    plugin: arg.spec,
    options: arg.options,
    trusted: o.trusted,
    pluginRead: o.grantRead,
    kernel: o.kernel,
    initrd: o.initrd,
    writeOffset: o.writeOffset === undefined ? undefined : Number(o.writeOffset),
  });
  writeAllStdout(new TextEncoder().encode(formatPluginCheck(spec, report)));
  return report.ok ? 0 : 1;
}
