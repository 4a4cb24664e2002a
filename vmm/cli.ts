/**
 * The dvmm command line: every command, for main.ts to run with
 * {@linkcode runCli}.
 *
 * @module
 */

// Only what parsing needs is imported up front; each command imports its own modules when it
// runs, so `dvmm run` does not pay (in start-up time) for the lab, the demo or the control client.
import "./zod_jitless.ts"; // before any schema is built
import { Command } from "@commander-js/extra-typings";
import { formatError, parseCount, UsageError } from "./cli_errors.ts";
import { addVmFlags, usageExitCode, vmConfigFromFlags } from "./cli_flags.ts";
import type { VmInfo, VmStats } from "./control_api.ts";
import { registerPluginCommands } from "./plugin_cli.ts";
import { startupMark } from "./startup_trace.ts";

/** The control verbs: command, endpoint, help. */
const VM_VERBS = [
  ["pause", "/vm/pause", "pause a running VM (its vCPUs stop)"],
  ["resume", "/vm/resume", "resume a paused VM"],
  ["shutdown", "/vm/shutdown", "ask a VM's guest to power off (ACPI power button)"],
  ["stop", "/vm/stop", "stop a VM at once"],
] as const;

/** dvmm's version. */
export const VERSION = "0.1.0";

function program(): Command {
  const cli = new Command()
    .name("dvmm")
    .description("A KVM virtual machine monitor in TypeScript")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });

  addVmFlags(
    cli.command("run")
      .description("boot a Linux guest; its serial console is this terminal (Ctrl-A x quits)"),
  ).action(async (o) => {
    const config = vmConfigFromFlags(o);
    startupMark("flags parsed");
    // vCPU workers load in parallel with the rest (an error exits the process, and them).
    const { prestartVcpuWorkers } = await import("../kvm/vcpu_thread.ts");
    prestartVcpuWorkers(config.cpus);
    const { runOnTerminal } = await import("./launch.ts");
    startupMark("launch loaded");
    const exit = await runOnTerminal(config);
    console.error(`dvmm: ${exit.message}`);
    Deno.exit(exit.status);
  });

  // Inside the nested lab, a compiled dvmm (which has no script files to run) holds the L1's
  // KVM pin itself: see lab/l1_kvm_pin.ts.
  cli.command("lab-kvm-pin", { hidden: true })
    .argument("<ready>", "file to write once the VM is held")
    .action(async (ready) => {
      const { holdKvmPin } = await import("../lab/l1_kvm_pin.ts");
      await holdKvmPin(ready);
    });

  cli.command("schema")
    .description("print the JSON Schema of a VM config file (for editors)")
    .action(async () => {
      const { vmConfigJsonSchemaText } = await import("./json_schema.ts");
      console.log(vmConfigJsonSchemaText());
    });

  cli.command("list")
    .description("list the running VMs (those with a control socket)")
    .option("--json", "machine-readable output")
    .action(async (o) => {
      const { listVms } = await import("./control_client.ts");
      const { formatVmList } = await import("./control_format.ts");
      console.log(formatVmList(await listVms(), { json: o.json }));
    });

  for (const [verb, path, what] of VM_VERBS) {
    cli.command(verb)
      .description(what)
      .argument("<name>", "VM name")
      .action(async (name) => {
        const { request } = await import("./control_client.ts");
        const answer = await request(name, "PUT", path) as { state?: string };
        console.log(`${name}: ${answer.state ?? "ok"}`);
      });
  }

  cli.command("stat")
    .description("show a VM's devices, BARs and exit counters")
    .argument("<name>", "VM name")
    .option("--json", "machine-readable output")
    .action(async (name, o) => {
      const { request } = await import("./control_client.ts");
      const { formatVmStat } = await import("./control_format.ts");
      const info = await request(name, "GET", "/vm") as VmInfo;
      const stats = await request(name, "GET", "/stats") as VmStats;
      console.log(formatVmStat(info, stats, { json: o.json }));
    });

  cli.command("demo")
    .description("boot the default guest, run a few commands in its shell, power off")
    .option("--cpus <n>", "vCPUs", "2")
    .action(async (o) => {
      const cpus = parseCount("--cpus", o.cpus, 1, 255);
      const { hasKvm } = await import("../kvm/kvm.ts");
      const { defaultGuestPaths, runDemo } = await import("./demo.ts");
      if (hasKvm()) Deno.exit((await runDemo({ cpus })).status);
      const { runInLab } = await import("../lab/lab.ts");
      const { selfCommand, selfDirectory } = await import("./self_command.ts");
      const { writeAllStdout } = await import("./host_console.ts");
      console.error("dvmm: no /dev/kvm here; running the demo in the nested KVM lab (QEMU/TCG)");
      const paths = await defaultGuestPaths();
      // Compile-safe: runs this same dvmm (source checkout or binary) inside the lab.
      const args = ["demo-here", "--cpus", String(cpus)];
      args.push("--kernel", paths.kernel, "--initrd", paths.initrd);
      const r = await runInLab(selfCommand(args), {
        cwd: selfDirectory(),
        onOutput: writeAllStdout,
      });
      Deno.exit(r.status);
    });

  cli.command("demo-here", { hidden: true })
    .option("--cpus <n>", "vCPUs", "2")
    .option("--kernel <bzImage>")
    .option("--initrd <file>")
    .action(async (o) => {
      const { runDemo } = await import("./demo.ts");
      const exit = await runDemo({
        cpus: parseCount("--cpus", o.cpus, 1, 255),
        kernel: o.kernel,
        initrd: o.initrd,
      });
      Deno.exit(exit.status);
    });

  cli.command("devices")
    .description("list the device plugins dvmm knows, with their options")
    .action(async () => {
      const { DeviceRegistry, formatPluginList } = await import("../devices/registry.ts");
      const { registerBuiltinDevices } = await import("../devices/builtin.ts");
      const registry = registerBuiltinDevices(new DeviceRegistry());
      await registry.loadBuiltins();
      console.log(formatPluginList(registry.list()));
    });
  registerPluginCommands(cli);
  return cli;
}

/**
 * Run the dvmm command line with `args` (without the program name) and exit
 * the process with the command's status; a usage error exits with 2 and one
 * line, `--debug` adds the stack.
 */
export async function runCli(args: string[]): Promise<void> {
  startupMark("command line loaded");
  const debug = args.includes("--debug");
  try {
    await program().parseAsync(args, { from: "user" });
  } catch (e) {
    const usage = usageExitCode(e);
    // Commander has already printed its own usage errors.
    if (usage !== undefined && !(e instanceof UsageError)) Deno.exit(usage);
    console.error(formatError(e, debug));
    Deno.exit(usage ?? 1);
  }
}
