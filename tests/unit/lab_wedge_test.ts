import assert from "node:assert/strict";
import {
  LabBootTimeoutError,
  LabError,
  LabKernelCrashError,
  LabWedgedError,
  longestSoftLockup,
  retryIfLabFailed,
} from "../../lab/lab.ts";

// What the L1 kernel printed when QEMU's TCG wedged a CPU inside KVM_RUN (2026-11-28).
const WEDGED_CONSOLE = `[  190.009869] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [deno:233]
[  945.009869] watchdog: BUG: soft lockup - CPU#0 stuck for 775s! [deno:233]
[  981.009825] watchdog: BUG: soft lockup - CPU#1 stuck for 808s! [deno:233]
`;

Deno.test("longestSoftLockup reads the longest stall the L1 kernel reported", () => {
  assert.equal(longestSoftLockup(WEDGED_CONSOLE), 808);
  assert.equal(longestSoftLockup("[    1.2] Run /init as init process\n"), 0);
  assert.equal(longestSoftLockup(""), 0);
});

Deno.test("retryIfLabFailed runs a wedged lab run once more and reports why", async () => {
  const logged: string[] = [];
  let runs = 0;
  const result = await retryIfLabFailed(() => {
    runs++;
    if (runs === 1) return Promise.reject(new LabWedgedError(808, WEDGED_CONSOLE, "partial"));
    return Promise.resolve("done");
  }, (m) => logged.push(m));
  assert.equal(result, "done");
  assert.equal(runs, 2);
  assert.equal(logged.length, 1);
  assert.match(logged[0], /stuck for 808 s/);
  assert.match(logged[0], /soft lockup - CPU#1 stuck for 808s/); // the L1's own report is quoted
});

Deno.test("retryIfLabFailed gives up on a second wedge and never retries other failures", async () => {
  let runs = 0;
  await assert.rejects(
    retryIfLabFailed(() => {
      runs++;
      return Promise.reject(new LabWedgedError(61, "", ""));
    }, () => {}),
    LabWedgedError,
  );
  assert.equal(runs, 2);
  runs = 0;
  await assert.rejects(
    retryIfLabFailed(() => {
      runs++;
      return Promise.reject(new LabError("lab: QEMU exited"));
    }, () => {}),
    /QEMU exited/,
  );
  assert.equal(runs, 1);
});

// What the L1 kernel printed when it crashed under TCG in a CI run (2026-11-28).
const CRASHED_CONSOLE = `[   26.514565] BUG: TASK stack guard page was hit at 000000001895c843
[   26.514565] RIP: 0010:error_entry+0xb/0x130
[   26.846544] Kernel panic - not syncing: corrupted stack end detected inside scheduler
`;

Deno.test("retryIfLabFailed runs once more after an L1 kernel crash, and says so", async () => {
  const logged: string[] = [];
  let runs = 0;
  const result = await retryIfLabFailed(() => {
    runs++;
    if (runs === 1) {
      return Promise.reject(
        new LabKernelCrashError("lab: the L1 kernel crashed", CRASHED_CONSOLE, ""),
      );
    }
    return Promise.resolve("done");
  }, (m) => logged.push(m));
  assert.equal(result, "done");
  assert.equal(runs, 2);
  assert.match(logged[0], /L1 kernel crashed/);
});

Deno.test("retryIfLabFailed runs once more when the L1 did not boot", async () => {
  let runs = 0;
  const result = await retryIfLabFailed(() => {
    runs++;
    return runs === 1 ? Promise.reject(new LabBootTimeoutError("")) : Promise.resolve(runs);
  }, () => {});
  assert.equal(result, 2);
});
