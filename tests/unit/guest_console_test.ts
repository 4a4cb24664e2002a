/** GuestConsole: waitFor, run, and what a timeout tells (the tail and the machine report). */
import assert from "node:assert/strict";
import { ConsoleClosedError, ConsoleTimeoutError, GuestConsole } from "../../vmm/guest_console.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("a console timeout carries the output's tail and the machine's report", async () => {
  const c = new GuestConsole((b) => b.length);
  c.diagnose = () => "vcpu0: RUNNING\nCOM1: IER=0x05";
  c.feed(bytes("init reached\r\n"));
  const e = await c.waitFor("/ # ", 20).catch((e) => e);
  assert.ok(e instanceof ConsoleTimeoutError);
  assert.equal(e.tail, "init reached\r\n");
  assert.equal(e.report, "vcpu0: RUNNING\nCOM1: IER=0x05");
  assert.match(e.message, /\/ # {2}not seen within 20 ms; last output:\ninit reached/);
  assert.match(e.message, /-- machine at the timeout --\nvcpu0: RUNNING\nCOM1: IER=0x05$/);
});

Deno.test("a report that throws does not hide the timeout", async () => {
  const c = new GuestConsole((b) => b.length);
  c.diagnose = () => {
    throw new Error("machine gone");
  };
  const e = await c.waitFor("x", 10).catch((e) => e);
  assert.ok(e instanceof ConsoleTimeoutError);
  assert.equal(e.report, "(no report: machine gone)");
});

Deno.test("run returns a command's output and status, not its echo", async () => {
  const typed: string[] = [];
  const c = new GuestConsole((b) => {
    typed.push(new TextDecoder().decode(b));
    return b.length;
  });
  const result = c.run("echo hi");
  await new Promise((r) => setTimeout(r, 0));
  assert.match(typed.join(""), /printf '%s%s\\n' dvmm- b1; echo hi;/);
  c.feed(bytes(`${typed.join("").trimEnd()}\r\ndvmm-b1\r\nhi\r\ndvmm-e1:3\r\n`));
  assert.deepEqual(await result, { output: "hi\n", status: 3 });
});

Deno.test("a closed console fails pending and later waits at once, after the output that came", async () => {
  const c = new GuestConsole((b) => b.length);
  c.feed(bytes("dvmm-guest: init reached\r\n"));
  const pending = c.waitFor("/ # ", 60_000).catch((e) => e);
  c.close("the machine ended: vcpu1: triple fault");
  const e = await pending;
  assert.ok(e instanceof ConsoleClosedError);
  assert.match(e.message, /cannot come any more: the machine ended: vcpu1: triple fault/);
  assert.equal(await c.waitFor("init reached", 10), "dvmm-guest: init reached");
  await assert.rejects(c.waitFor("never", 60_000), ConsoleClosedError);
});

Deno.test("a console that follows a machine reports it at a timeout and closes at its end", async () => {
  const c = new GuestConsole((b) => b.length);
  let end!: (e: { message: string }) => void;
  const exited = new Promise<{ message: string }>((r) => end = r);
  c.follow({ describe: () => "vcpu0: RUNNING", exited });
  const timeout = await c.waitFor("x", 10).catch((e) => e);
  assert.ok(timeout instanceof ConsoleTimeoutError);
  assert.equal(timeout.report, "vcpu0: RUNNING");
  const pending = c.waitFor("y", 60_000).catch((e) => e);
  end({ message: "guest powered off" });
  const closed = await pending;
  assert.ok(closed instanceof ConsoleClosedError);
  assert.equal(closed.reason, "the machine ended: guest powered off");
});
