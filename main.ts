#!/usr/bin/env -S deno run -A
/**
 * The dvmm command line.
 *
 * ```
 * dvmm run [--kernel bzImage] [--initrd file] [--cmdline "..."] [--mem 512M] [--cpus N] [--device plugin,k=v]
 * dvmm demo                 boot the default guest (in the lab when /dev/kvm is absent)
 * dvmm devices              list the device plugins
 * ```
 *
 * @module
 */

import { Command, CommanderError, Option } from "@commander-js/extra-typings";
import { runOnTerminal } from "./vmm/launch.ts";
import { defaultGuestPaths, runDemo } from "./vmm/demo.ts";
import { DeviceRegistry, formatPluginList, parseDeviceArgument } from "./devices/registry.ts";
import { registerBuiltinDevices } from "./devices/builtin.ts";
import { hasKvm } from "./kvm/kvm.ts";
import { labDenoCommand, runInLab } from "./lab/lab.ts";
import { formatError, parseCount, parseSize, UsageError } from "./vmm/cli_errors.ts";
import { writeAllStdout } from "./vmm/host_console.ts";
import { registerPluginCommands } from "./vmm/plugin_cli.ts";

/** dvmm's version. */
export const VERSION = "0.1.0";

const collect = (value: string, previous: string[]) => [...previous, value];

function program(): Command {
  const cli = new Command()
    .name("dvmm")
    .description("A KVM virtual machine monitor in TypeScript")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });

  cli.command("run")
    .description("boot a Linux guest; its serial console is this terminal (Ctrl-A x quits)")
    .option("--kernel <bzImage>", "kernel image (default: dvmm's Debian kernel)")
    .option("--initrd <file>", "initramfs (default with no --kernel: dvmm's generated initramfs)")
    .option("--cmdline <args>", "extra kernel command line", "")
    .addOption(new Option("--mem <size>", "guest memory, with K/M/G suffix").default("512M"))
    .option("--cpus <n>", "vCPUs", "1")
    .addOption(
      new Option("--console <kind>", "guest console").choices(["serial"]).default("serial"),
    )
    .option("--device <plugin,key=value...>", "add a PCI device plugin (repeatable)", collect, [])
    .option("--debug", "verbose VMM log and stack traces")
    .action(async (o) => {
      const exit = await runOnTerminal({
        kernel: o.kernel,
        initrd: o.initrd,
        cmdline: o.cmdline,
        memory: parseSize("--mem", o.mem),
        cpus: parseCount("--cpus", o.cpus, 1, 255),
        devices: o.device.map((d) => {
          const a = parseDeviceArgument(d);
          return { plugin: a.spec, options: a.options };
        }),
        debug: o.debug,
      });
      console.error(`dvmm: ${exit.message}`);
      Deno.exit(exit.status);
    });

  cli.command("demo")
    .description("boot the default guest, run a few commands in its shell, power off")
    .option("--cpus <n>", "vCPUs", "2")
    .action(async (o) => {
      const cpus = parseCount("--cpus", o.cpus, 1, 255);
      if (hasKvm()) Deno.exit((await runDemo({ cpus })).status);
      console.error("dvmm: no /dev/kvm here; running the demo in the nested KVM lab (QEMU/TCG)");
      const paths = await defaultGuestPaths();
      const root = new URL(".", import.meta.url).pathname;
      const args = [
        "run",
        "-A",
        "--no-check",
        `${root}main.ts`,
        "demo-here",
        "--cpus",
        String(cpus),
      ];
      args.push("--kernel", paths.kernel, "--initrd", paths.initrd);
      const r = await runInLab(labDenoCommand(args), { cwd: root, onOutput: writeAllStdout });
      Deno.exit(r.status);
    });

  cli.command("demo-here", { hidden: true })
    .option("--cpus <n>", "vCPUs", "2")
    .option("--kernel <bzImage>")
    .option("--initrd <file>")
    .action(async (o) => {
      const exit = await runDemo({
        cpus: parseCount("--cpus", o.cpus, 1, 255),
        kernel: o.kernel,
        initrd: o.initrd,
      });
      Deno.exit(exit.status);
    });

  cli.command("devices")
    .description("list the device plugins dvmm knows, with their options")
    .action(() => {
      console.log(formatPluginList(registerBuiltinDevices(new DeviceRegistry()).list()));
    });
  registerPluginCommands(cli);
  return cli;
}

if (import.meta.main) {
  const debug = Deno.args.includes("--debug");
  try {
    await program().parseAsync(Deno.args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) Deno.exit(e.exitCode === 0 ? 0 : 2);
    console.error(formatError(e, debug));
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
