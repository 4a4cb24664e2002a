/** How the lab starts its L1 KVM pin, from a source checkout and from a compiled dvmm. */
import assert from "node:assert/strict";
import { KVM_PIN_READY, kvmPinArgv } from "../../lab/lab.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

Deno.test("a source checkout runs the pin script with Deno, a compiled dvmm its hidden command", () => {
  const source = kvmPinArgv(false)!;
  assert.equal(source[0], Deno.execPath());
  assert.ok(source.some((a) => a.endsWith("/lab/l1_kvm_pin.ts")), source.join(" "));
  assert.equal(source.at(-1), KVM_PIN_READY);
  assert.deepEqual(kvmPinArgv(true), [Deno.execPath(), "lab-kvm-pin", KVM_PIN_READY]);
});

Deno.test("dvmm has the hidden lab-kvm-pin command, kept out of its help", async () => {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", MAIN, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, text: new TextDecoder().decode(out.stdout) };
  };
  const help = await run("lab-kvm-pin", "--help");
  assert.equal(help.code, 0);
  assert.match(help.text, /lab-kvm-pin \[options\] <ready>/);
  assert.doesNotMatch((await run("--help")).text, /lab-kvm-pin/);
});
