import assert from "node:assert/strict";
import { parseLabArgs, SELF_CHECK } from "../../lab/main.ts";
import { labDenoCommand, shellQuote } from "../../lab/lab.ts";

Deno.test("lab CLI joins the command words and reads lab flags only before them", () => {
  const cli = parseLabArgs(["--", "--timeout=30", "--share=/tmp", "ls", "-l", "--timeout=1"]);
  assert.equal(cli.command, "ls -l --timeout=1");
  assert.equal(cli.options.timeoutMs, 30_000);
  assert.deepEqual(cli.options.shares, ["/tmp"]);
});

Deno.test("lab CLI without a command runs the self-check", () => {
  assert.equal(parseLabArgs([]).command, SELF_CHECK);
  assert.equal(parseLabArgs(["--"]).command, SELF_CHECK);
  assert.throws(() => parseLabArgs(["--bogus", "ls"]), /unknown flag/);
  assert.throws(() => parseLabArgs(["--mem=abc"]), /needs a number/);
});

Deno.test("shellQuote survives sh round trips", async () => {
  const words = ["plain", "with space", "it's", "$HOME", "a\nb", "", "*"];
  const script = `printf '%s|' ${words.map(shellQuote).join(" ")}`;
  const out = await new Deno.Command("/bin/sh", { args: ["-c", script], stdout: "piped" }).output();
  assert.equal(new TextDecoder().decode(out.stdout), words.map((w) => `${w}|`).join(""));
});

Deno.test("labDenoCommand runs this deno with --cached-only for run/test", () => {
  const cmd = labDenoCommand(["test", "-A", "--no-check", "tests/kvm"]);
  assert.equal(cmd, `${shellQuote(Deno.execPath())} test --cached-only -A --no-check tests/kvm`);
  assert.equal(labDenoCommand(["--version"]), `${shellQuote(Deno.execPath())} --version`);
});
