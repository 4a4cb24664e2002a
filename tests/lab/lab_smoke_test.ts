/**
 * Boots the nested-KVM lab (QEMU TCG, ~5-10 s per boot) and checks what the
 * KVM tests rely on. Not a unit test: run with `deno test -A tests/lab/lab_smoke_test.ts`.
 */
import assert from "node:assert/strict";
import {
  KVM_PIN_READY,
  labDenoCommand,
  LabTimeoutError,
  LabWedgedError,
  runInLab,
  WEDGED_AFTER_S,
} from "../../lab/lab.ts";

const repo = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("lab has a working /dev/kvm with nested paging, a pinned idle VM, and reports status and output exactly", async () => {
  const r = await runInLab(
    [
      "stat -c '%F %t:%T' /dev/kvm",
      "dmesg | grep -c 'SVM: kvm: Nested Paging enabled'",
      // The KVM pin (lab/l1_kvm_pin.ts) holds a VM with one vCPU for the whole command.
      `ls -l /proc/$(cat ${KVM_PIN_READY})/fd | grep -c -e 'kvm-vm' -e 'kvm-vcpu'`,
      // ...and is no job of the command's shell: a plain wait returns.
      "sleep 0.1 & wait; echo waited",
      "printf 'to stderr\\n' >&2",
      "pwd",
      "printf 'no newline'",
      "exit 3",
    ].join("\n"),
    { cwd: repo, timeoutMs: 180_000 },
  );
  console.log(`boot ${r.bootMs.toFixed(0)} ms, total ${r.durationMs.toFixed(0)} ms`);
  assert.equal(r.status, 3);
  assert.equal(
    r.output,
    `character special file a:e8\n1\n2\nwaited\nto stderr\n${repo}\nno newline`,
  );
  assert.ok(!r.output.includes("LABMARK"));
});

Deno.test("lab runs deno with an npm import from node_modules and hands files back through a share", async () => {
  await Deno.mkdir(`${repo}/.lab-out`, { recursive: true });
  const share = await Deno.makeTempDir({ dir: `${repo}/.lab-out`, prefix: "smoke-" });
  try {
    await Deno.writeTextFile(
      `${share}/probe.ts`,
      [
        `import { z } from "zod";`,
        `const v = z.object({ kvm: z.boolean() }).parse({ kvm: (await Deno.stat("/dev/kvm")).isCharDevice });`,
        `await Deno.writeTextFile(${JSON.stringify(`${share}/result.json`)}, JSON.stringify(v));`,
        `console.log("probe ok");`,
      ].join("\n"),
    );
    const started = `s=$(date +%s%N)`;
    const took = `echo "deno-version-ms $(( ($(date +%s%N) - s) / 1000000 ))" >&2`;
    const r = await runInLab(
      [
        started,
        `${labDenoCommand(["--version"])} >/dev/null`,
        took,
        labDenoCommand(["run", "-A", `${share}/probe.ts`]),
      ].join("\n"),
      { cwd: repo, shares: [share], timeoutMs: 300_000 },
    );
    console.log(
      r.output.trim(),
      `| boot ${r.bootMs.toFixed(0)} ms, total ${r.durationMs.toFixed(0)} ms`,
    );
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /probe ok\n$/);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${share}/result.json`)), { kvm: true });
  } finally {
    await Deno.remove(share, { recursive: true });
  }
});

Deno.test("lab kills QEMU and throws a clear error on timeout", async () => {
  const t0 = performance.now();
  await assert.rejects(
    () => runInLab("sleep 600", { timeoutMs: 1500 }),
    (err) => err instanceof LabTimeoutError && /did not finish within 1500 ms/.test(err.message),
  );
  assert.ok(performance.now() - t0 < 30_000);
});

Deno.test("a soft lockup on the L1 console ends the run at once with LabWedgedError", async () => {
  // A wedged L1 cannot be made on purpose; its report can: the kernel prints a /dev/kmsg line at
  // priority 0 on the console like its own. The run would otherwise sleep until the timeout.
  const report = `watchdog: BUG: soft lockup - CPU#0 stuck for ${WEDGED_AFTER_S + 5}s! [probe:1]`;
  const t0 = performance.now();
  await assert.rejects(
    () => runInLab(`echo '<0>${report}' > /dev/kmsg; sleep 600`, { timeoutMs: 300_000 }),
    (err) =>
      err instanceof LabWedgedError && err.stuckSeconds === WEDGED_AFTER_S + 5 &&
      err.message.includes(report),
  );
  assert.ok(performance.now() - t0 < 120_000, "killed long before the timeout");
});
