/**
 * The test suites dvmm has and how each one runs: unit tests on the host,
 * host-driven lab tests (they boot the lab themselves), and KVM tests, which
 * run natively where /dev/kvm exists and otherwise inside one lab boot.
 *
 * @module
 */

import { labDenoCommand, retryIfLabFailed, runInLab } from "../../lab/lab.ts";
import {
  countCases,
  failedFiles,
  mergeRerun,
  parseJunit,
  type TestCase,
  type TestCounts,
  type TestFailure,
} from "./junit.ts";
import { defaultGuestPaths } from "../../vmm/demo.ts";
import { dvmmCacheDir } from "../../guest/cache_dir.ts";
import { hasKvm } from "../../kvm/kvm.ts";
import { writeAllStdout } from "../../vmm/host_console.ts";
import { buildKvmTestAssets, KVM_TEST_ASSETS_ENV } from "../kvm/test_assets.ts";

/** A suite's outcome. */
export interface SuiteResult {
  /** Suite name. */
  name: string;
  /** Counts from its JUnit report. */
  counts: TestCounts;
  /** The runner's exit status (non-zero also when the report is missing). */
  status: number;
  /** Seconds it took. */
  seconds: number;
  /** Tests that failed in the lab, then passed when their file ran again in a fresh boot. */
  passedOnRerun?: TestFailure[];
}

/**
 * At most this many failed KVM test files are run once more in a fresh lab
 * boot; more failures than that are not a lab accident.
 */
export const MAX_RERUN_FILES = 3;

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");

async function readCases(path: string): Promise<TestCase[] | undefined> {
  try {
    return parseJunit(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

const missing = (name: string): TestCounts => ({
  passed: 0,
  failed: 1,
  skipped: 0,
  failures: [{ name, message: "no test report: the runner crashed or timed out" }],
  skippedNames: [],
});

/** L1 console lines worth showing after a KVM suite run. */
const L1_TROUBLE = /soft lockup|rcu_sched|rcu: INFO|BUG:|WARNING:|hung_task|blocked for more than/;

/**
 * Run `deno test` on the host over `paths`. With `rerunFailed` (the lab
 * suite, whose tests boot their own lab), the files of up to
 * {@linkcode MAX_RERUN_FILES} failed tests run once more, as the KVM suite's
 * do (see {@linkcode runKvmSuite}).
 */
export function runHostSuite(
  name: string,
  paths: string[],
  extra: string[] = [],
  rerunFailed = false,
): Promise<SuiteResult> {
  return runWithRerun(name, paths, rerunFailed, async (files, report) => {
    const args = ["test", "-A", `--junit-path=${report}`, ...extra, ...files];
    const r = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    return r.code;
  });
}

/**
 * Run the KVM tests: natively with /dev/kvm, otherwise in one lab boot. In
 * the lab, files with a failed test (up to {@linkcode MAX_RERUN_FILES}) run
 * once more in a fresh boot, and their tests take the second run's outcome:
 * guests in the lab now and then stall or crash for reasons not yet
 * understood (docs/architecture.md, "Known problems"), which a real break
 * does not survive. The first failures are kept in `passedOnRerun`, to be
 * reported.
 */
export async function runKvmSuite(paths: string[]): Promise<SuiteResult> {
  // The default guest (kernel, initramfs) and the tests' own guest assets are
  // fetched and built here, on the host: inside the lab the cache is read-only
  // and there is no network (natively, tests build their assets themselves).
  await defaultGuestPaths();
  if (hasKvm()) return runHostSuite("kvm", paths, ["--no-check"]);
  const assets = await buildKvmTestAssets();
  const env: Record<string, string> = {
    DVMM_CACHE_DIR: dvmmCacheDir(),
    [KVM_TEST_ASSETS_ENV]: JSON.stringify(assets),
  };
  for (const key of ["CI", "DVMM_FC_RUNS", "DVMM_DEBUG"]) {
    const v = Deno.env.get(key);
    if (v !== undefined) env[key] = v;
  }
  return runWithRerun(
    "kvm",
    paths,
    true,
    (files, report, dir) => runTestsInLab(files, report, dir, env),
  );
}

/**
 * Run `paths` with `run` (given the files, the JUnit report path to write and
 * its directory; returns the exit status). With `rerunFailed`, the files of
 * up to {@linkcode MAX_RERUN_FILES} failed tests run once more and their
 * tests take the second outcome; the first failures of tests that then
 * passed are kept in `passedOnRerun`.
 */
async function runWithRerun(
  name: string,
  paths: string[],
  rerunFailed: boolean,
  run: (files: string[], report: string, dir: string) => Promise<number>,
): Promise<SuiteResult> {
  const t0 = performance.now();
  const dir = await Deno.makeTempDir({ prefix: `dvmm-${name}-report-` });
  let status = await run(paths, `${dir}/${name}.xml`, dir);
  let cases = await readCases(`${dir}/${name}.xml`);
  let passedOnRerun: TestFailure[] | undefined;
  const files = cases ? failedFiles(cases) : [];
  if (rerunFailed && cases && files.length > 0 && files.length <= MAX_RERUN_FILES) {
    console.error(
      `${name}: ${countCases(cases).failed} test(s) failed; running ${files.join(", ")} once more`,
    );
    const rerunStatus = await run(files, `${dir}/${name}-rerun.xml`, dir);
    const rerun = await readCases(`${dir}/${name}-rerun.xml`);
    if (rerun) {
      const merged = mergeRerun(cases, rerun);
      cases = merged.cases;
      passedOnRerun = merged.passedOnRerun;
      status = rerunStatus;
    }
  }
  const counts = cases ? countCases(cases) : missing(name);
  await Deno.remove(dir, { recursive: true });
  return {
    name,
    counts,
    status,
    seconds: (performance.now() - t0) / 1000,
    ...(passedOnRerun?.length ? { passedOnRerun } : {}),
  };
}

/** `deno test` over `paths` in one lab boot (retried on an L1 failure); its exit status. */
async function runTestsInLab(
  paths: string[],
  report: string,
  share: string,
  env: Record<string, string>,
): Promise<number> {
  try {
    // An L1 that wedges, crashes or does not boot (TCG's nested SVM, not dvmm) costs one more
    // boot, not the whole run.
    const result = await retryIfLabFailed(() =>
      runInLab(
        labDenoCommand(["test", "-A", "--no-check", `--junit-path=${report}`, ...paths]),
        {
          cwd: ROOT,
          shares: [share],
          env,
          timeoutMs: 40 * 60_000,
          onOutput: writeAllStdout,
        },
      )
    );
    console.error(
      `lab: booted in ${(result.bootMs / 1000).toFixed(1)} s, ran ${
        (result.durationMs / 1000).toFixed(1)
      } s`,
    );
    // The L1's own trouble (soft lockups, RCU stalls, warnings) during the run: a guest that
    // stalls in a test is then told apart from one whose host CPU stalled.
    const trouble = result.console.split("\n").filter((l) => L1_TROUBLE.test(l));
    if (trouble.length > 0) {
      console.error(`lab: the L1 kernel reported:\n${trouble.slice(-20).join("\n")}`);
    }
    return result.status;
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    return 1;
  }
}
