/**
 * `deno task test`: everything CI runs. Unit tests on the host, the
 * host-driven lab tests, then the KVM tests (natively or in the lab). Ends
 * with the plain line `N passed, N failed` (and skipped) summed from the
 * JUnit reports. In CI (`CI=true`) a skipped test is a failure.
 *
 * @module
 */

import { addCounts, failureExcerpt, NO_TESTS } from "./runner/junit.ts";
import { ensureHostPackages } from "../lab/host_packages.ts";
import { defaultGuestPaths } from "../vmm/demo.ts";
import { runHostSuite, runKvmSuite, type SuiteResult } from "./runner/suites.ts";

const only = Deno.args[0];
await ensureHostPackages();
// The default guest's kernel and initramfs: some unit tests parse the real kernel, and the
// KVM tests boot it (inside the lab the cache is read-only and there is no network).
await defaultGuestPaths();
const suites: SuiteResult[] = [];
if (!only || only === "unit") suites.push(await runHostSuite("unit", ["tests/unit"]));
if (!only || only === "lab") {
  suites.push(await runHostSuite("lab", ["tests/lab"], [], true));
  suites.push(await runKvmSuite(["tests/kvm"]));
}

// Why each test failed, just above the summary: CI logs are often read from the end. A test
// that passed only when the lab ran it again keeps its first failure here too.
for (const s of suites) {
  for (const f of s.passedOnRerun ?? []) {
    console.log(
      `\n== "${f.name}" failed in its first lab boot, passed in a second: why it failed ==`,
    );
    for (const line of failureExcerpt(f.message)) console.log(`  ${line}`);
  }
  for (const f of s.counts.failures) {
    console.log(`\n== why "${f.name}" failed (end of its message) ==`);
    for (const line of failureExcerpt(f.message)) console.log(`  ${line}`);
  }
}

let total = NO_TESTS;
let ok = true;
console.log("\n== dvmm test summary ==");
for (const s of suites) {
  const c = s.counts;
  console.log(
    `${s.name.padEnd(6)} ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped (${
      s.seconds.toFixed(0)
    } s)`,
  );
  for (const f of c.failures) console.log(`  FAILED  ${f.name}`);
  for (const f of s.passedOnRerun ?? []) console.log(`  PASSED ON A SECOND LAB BOOT  ${f.name}`);
  for (const f of c.skippedNames) console.log(`  SKIPPED ${f}`);
  if (s.status !== 0 || c.failed > 0) ok = false;
  total = addCounts(total, c);
}
const ci = Deno.env.get("CI") === "true";
let failed = total.failed;
if (ci && total.skipped > 0) {
  console.log(`CI: ${total.skipped} skipped test(s) count as failures`);
  failed += total.skipped;
  ok = false;
}
if (failed === 0 && !ok) failed = 1; // a runner failed without a failing test case
console.log(`${total.passed} passed, ${failed} failed, ${total.skipped} skipped`);
Deno.exit(ok && failed === 0 ? 0 : 1);
