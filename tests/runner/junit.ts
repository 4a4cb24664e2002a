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
}

/** Count the test cases of a JUnit XML document. */
export function countJunit(xml: string): TestCounts {
  const counts: TestCounts = { passed: 0, failed: 0, skipped: 0, failures: [], skippedNames: [] };
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const name = /\bname="([^"]*)"/.exec(m[1])?.[1] ?? "?";
    const body = m[3] ?? "";
    const failure = /<(?:failure|error)\b([^>]*)>/.exec(body);
    if (failure) {
      counts.failed++;
      const message = /\bmessage="([^"]*)"/.exec(failure[1])?.[1] ?? "";
      counts.failures.push({ name: unescape(name), message: unescape(message) });
    } else if (/<skipped\b/.test(body)) {
      counts.skipped++;
      counts.skippedNames.push(unescape(name));
    } else counts.passed++;
  }
  return counts;
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
