/**
 * Reads the JUnit XML that `deno test --junit-path` writes and counts the
 * results, so the test runner can print the plain `N passed, N failed` line CI
 * understands.
 *
 * @module
 */

/** Counts of one JUnit report. */
export interface TestCounts {
  /** Tests that passed. */
  passed: number;
  /** Tests that failed or errored. */
  failed: number;
  /** Tests that were ignored/skipped. */
  skipped: number;
  /** The failed tests, each with why it failed. */
  failures: TestFailure[];
  /** Names of the skipped tests. */
  skippedNames: string[];
}

/** One failed test case. */
export interface TestFailure {
  /** The test's name. */
  name: string;
  /** The failure message deno recorded (without the stack), or a line saying why there is none. */
  message: string;
  /** The test file (JUnit `classname`), when known. */
  file?: string;
}

/** One test case of a JUnit report. */
export interface TestCase {
  /** The test's name. */
  name: string;
  /** The test file (JUnit `classname`, e.g. `./tests/kvm/cli_test.ts`). */
  file: string;
  /** How it ended. */
  outcome: "passed" | "failed" | "skipped";
  /** The failure message (failed tests only). */
  message: string;
}

/** The test cases of a JUnit XML document, in report order. */
export function parseJunit(xml: string): TestCase[] {
  const cases: TestCase[] = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const attr = (key: string) => unescape(new RegExp(`\\b${key}="([^"]*)"`).exec(m[1])?.[1] ?? "");
    const body = m[3] ?? "";
    const failure = /<(?:failure|error)\b([^>]*)>/.exec(body);
    cases.push({
      name: attr("name") || "?",
      file: attr("classname"),
      outcome: failure ? "failed" : /<skipped\b/.test(body) ? "skipped" : "passed",
      message: failure ? unescape(/\bmessage="([^"]*)"/.exec(failure[1])?.[1] ?? "") : "",
    });
  }
  return cases;
}

/** Count test cases. */
export function countCases(cases: readonly TestCase[]): TestCounts {
  const counts: TestCounts = { passed: 0, failed: 0, skipped: 0, failures: [], skippedNames: [] };
  for (const c of cases) {
    if (c.outcome === "failed") {
      counts.failed++;
      counts.failures.push({ name: c.name, message: c.message, file: c.file });
    } else if (c.outcome === "skipped") {
      counts.skipped++;
      counts.skippedNames.push(c.name);
    } else counts.passed++;
  }
  return counts;
}

/** Count the test cases of a JUnit XML document. */
export function countJunit(xml: string): TestCounts {
  return countCases(parseJunit(xml));
}

/** The files with a failed test, each once, in report order. */
export function failedFiles(cases: readonly TestCase[]): string[] {
  return [...new Set(cases.filter((c) => c.outcome === "failed" && c.file).map((c) => c.file))];
}

/** The outcome of running some test files a second time. */
export interface Rerun {
  /** Every case: the first run's, with the rerun files' cases replaced by the rerun's. */
  cases: TestCase[];
  /** First-run failures whose test passed when its file ran again. */
  passedOnRerun: TestFailure[];
}

/**
 * Merge a rerun into the first run: a test the rerun reports takes the
 * rerun's outcome (a test failing twice stays failed, with the second
 * message); a test the rerun does not report keeps its first outcome.
 */
export function mergeRerun(first: readonly TestCase[], rerun: readonly TestCase[]): Rerun {
  const key = (c: TestCase) => `${c.file}\0${c.name}`;
  const again = new Map(rerun.map((c) => [key(c), c]));
  const known = new Set(first.map(key));
  return {
    cases: [
      ...first.map((c) => again.get(key(c)) ?? c),
      ...rerun.filter((c) => !known.has(key(c))),
    ],
    passedOnRerun: first
      .filter((c) => c.outcome === "failed" && again.get(key(c))?.outcome === "passed")
      .map((c) => ({ name: c.name, message: c.message, file: c.file })),
  };
}

/** Add `b` into `a`. */
export function addCounts(a: TestCounts, b: TestCounts): TestCounts {
  return {
    passed: a.passed + b.passed,
    failed: a.failed + b.failed,
    skipped: a.skipped + b.skipped,
    failures: [...a.failures, ...b.failures],
    skippedNames: [...a.skippedNames, ...b.skippedNames],
  };
}

/** No tests yet. */
export const NO_TESTS: TestCounts = {
  passed: 0,
  failed: 0,
  skipped: 0,
  failures: [],
  skippedNames: [],
};

function unescape(s: string): string {
  return s.replaceAll("&quot;", '"').replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll(
    "&apos;",
    "'",
  )
    .replaceAll("&amp;", "&");
}

/**
 * The last `maxLines` non-blank lines of a failure message, each cut to `width`: the end of a
 * message is where an assertion on a long output says what was expected.
 */
export function failureExcerpt(message: string, maxLines = 12, width = 160): string[] {
  const lines = message.split("\n").map((l) => l.trimEnd()).filter((l) => l.trim() !== "");
  return lines.slice(-maxLines).map((l) => l.length > width ? `${l.slice(0, width - 1)}…` : l);
}
