#!/usr/bin/env -S deno run -A
/**
 * The dvmm command line.
 *
 * ```
 * dvmm run [--config vm.json] [--kernel bzImage] [--initrd file] [--cmdline "..."] [--mem 512M]
 *          [--cpus N] [--disk img[,ro]] [--rng] [--device plugin,k=v] [--name NAME]
 * dvmm demo                 boot the default guest (in the lab when /dev/kvm is absent)
 * dvmm devices              list the device plugins
 * dvmm schema               JSON Schema of the config file
 * dvmm list | stat NAME | pause NAME | resume NAME | shutdown NAME | stop NAME
 * ```
 *
 * @module
 */

// main.ts imports nothing up front. For `dvmm run` the first vCPU worker starts now, so its
// isolate loads on another core while this one loads the command line (commander, zod); each
// command imports its own modules when it runs (see vmm/cli.ts).
if (import.meta.main) {
  (await import("./vmm/startup_trace.ts")).startupMark("main.ts runs");
  if (Deno.args[0] === "run") (await import("./kvm/vcpu_thread.ts")).prestartVcpuWorkers(1);
  const { runCli } = await import("./vmm/cli.ts");
  await runCli(Deno.args);
}
