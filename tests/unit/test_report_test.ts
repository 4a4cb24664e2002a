/**
 * The test runner's JUnit reading: counts, and the failure reasons it prints
 * above the summary (CI shows the end of the log, so the reason must be there).
 */
import assert from "node:assert/strict";
import {
  countCases,
  countJunit,
  failedFiles,
  failureExcerpt,
  mergeRerun,
  parseJunit,
  type TestCase,
} from "../runner/junit.ts";

const REPORT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="deno test" tests="3" failures="1" errors="0" time="0.012">
  <testsuite name="./f_test.ts" tests="3" disabled="0" errors="0" failures="1">
    <testcase name="passes" classname="./f_test.ts" time="0.001" line="1" col="6"></testcase>
    <testcase name="x &quot;fails&quot;" classname="./f_test.ts" time="0.002" line="2" col="6">
      <failure message="Uncaught AssertionError: lab output
guest said &lt;oops&gt; &amp; stopped

1 !== 0
">AssertionError: stack text
    at file:///tmp/f_test.ts:2:37</failure>
    </testcase>
    <testcase name="skipped" classname="./f_test.ts" time="0" line="3" col="6"><skipped/></testcase>
  </testsuite>
</testsuites>`;

Deno.test("a JUnit report is counted, and a failure keeps its message without the stack", () => {
  const c = countJunit(REPORT);
  assert.equal(c.passed, 1);
  assert.equal(c.failed, 1);
  assert.equal(c.skipped, 1);
  assert.deepEqual(c.skippedNames, ["skipped"]);
  assert.equal(c.failures[0].name, 'x "fails"');
  assert.equal(
    c.failures[0].message,
    "Uncaught AssertionError: lab output\nguest said <oops> & stopped\n\n1 !== 0\n",
  );
});

Deno.test("a failure excerpt is the message's last non-blank lines, each cut to a width", () => {
  const message = [
    "first",
    "",
    ...Array.from({ length: 20 }, (_, i) => `line ${i}`),
    "x".repeat(50),
  ]
    .join("\n");
  const excerpt = failureExcerpt(message, 3, 20);
  assert.deepEqual(excerpt, ["line 18", "line 19", `${"x".repeat(19)}…`]);
  assert.deepEqual(failureExcerpt("only\n\n"), ["only"]);
});

Deno.test("a report's cases keep their file, and each file with a failure is listed once", () => {
  const cases = parseJunit(REPORT);
  assert.deepEqual(cases.map((c) => [c.file, c.outcome]), [
    ["./f_test.ts", "passed"],
    ["./f_test.ts", "failed"],
    ["./f_test.ts", "skipped"],
  ]);
  assert.deepEqual(failedFiles([...cases, ...cases]), ["./f_test.ts"]);
  assert.equal(countJunit(REPORT).failures[0].file, "./f_test.ts");
});

const tc = (file: string, name: string, outcome: TestCase["outcome"], message = ""): TestCase => ({
  file,
  name,
  outcome,
  message,
});

Deno.test("a rerun replaces the outcomes it reports and keeps the first failure of a test it passed", () => {
  const first = [
    tc("a.ts", "ok", "passed"),
    tc("b.ts", "flaky", "failed", "stalled"),
    tc("b.ts", "steady", "passed"),
    tc("c.ts", "broken", "failed", "first"),
  ];
  const rerun = [
    tc("b.ts", "flaky", "passed"),
    tc("b.ts", "steady", "passed"),
    tc("c.ts", "broken", "failed", "second"),
  ];
  const merged = mergeRerun(first, rerun);
  const counts = countCases(merged.cases);
  assert.equal(counts.passed, 3);
  assert.equal(counts.failed, 1);
  assert.deepEqual(counts.failures.map((f) => f.message), ["second"]);
  assert.deepEqual(merged.passedOnRerun, [{ name: "flaky", message: "stalled", file: "b.ts" }]);
});

Deno.test("a test the rerun does not report keeps its first outcome", () => {
  const first = [tc("b.ts", "lost", "failed", "why"), tc("b.ts", "fine", "passed")];
  const merged = mergeRerun(first, [tc("b.ts", "fine", "passed"), tc("b.ts", "new", "passed")]);
  assert.deepEqual(merged.cases.map((c) => `${c.name}:${c.outcome}`), [
    "lost:failed",
    "fine:passed",
    "new:passed",
  ]);
  assert.deepEqual(merged.passedOnRerun, []);
});
