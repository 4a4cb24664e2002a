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
  /** Names of the failed tests. */
  failures: string[];
  /** Names of the skipped tests. */
  skippedNames: string[];
}

/** Count the test cases of a JUnit XML document. */
export function countJunit(xml: string): TestCounts {
  const counts: TestCounts = { passed: 0, failed: 0, skipped: 0, failures: [], skippedNames: [] };
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const name = /\bname="([^"]*)"/.exec(m[1])?.[1] ?? "?";
    const body = m[3] ?? "";
    if (/<(failure|error)\b/.test(body)) {
      counts.failed++;
      counts.failures.push(unescape(name));
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
