/**
 * `dvmm run` on bad input: one clear line naming the problem, exit status 2,
 * no stack trace — checked where /dev/kvm exists, so the kernel-related
 * errors are the ones the user would really see.
 */
import { match, strictEqual } from "node:assert/strict";
import { defaultGuestPaths } from "../../vmm/demo.ts";

const main = new URL("../../main.ts", import.meta.url).pathname;

async function dvmm(...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", "--cached-only", main, ...args],
    stdin: "null",
  }).output();
  return { code: r.code, err: new TextDecoder().decode(r.stderr) };
}

function oneLine(err: string): string {
  const lines = err.trim().split("\n");
  strictEqual(lines.length, 1, `expected one line, got:\n${err}`);
  return lines[0];
}

Deno.test("dvmm run rejects bad input with one line naming it and status 2", async () => {
  const dir = await Deno.makeTempDir();
  const { kernel } = await defaultGuestPaths();
  await Deno.writeTextFile(`${dir}/not-a-kernel`, "hello, I am not a bzImage\n".repeat(100));
  const image = await Deno.readFile(kernel);
  await Deno.writeFile(`${dir}/truncated`, image.subarray(0, image.length >> 1));
  const big = await Deno.open(`${dir}/huge-initrd`, { create: true, write: true });
  await big.truncate(200 * 1024 * 1024);
  big.close();

  const cases: [string[], RegExp][] = [
    [
      ["--kernel", `${dir}/not-a-kernel`],
      /kernel .*not-a-kernel: bzImage: .*(magic|HdrS|not a bzImage)/i,
    ],
    [["--kernel", `${dir}/truncated`], /kernel .*truncated: bzImage: truncated/],
    [["--kernel", `${dir}/missing`], /--kernel: file not found/],
    [
      ["--kernel", kernel, "--initrd", `${dir}/huge-initrd`, "--mem", "128M"],
      /initrd .*does not fit/,
    ],
    [["--mem", "0"], /--mem: /],
    [["--cpus", "0"], /--cpus: expected an integer from 1 to 64, got 0/],
    [["--cpus", "1000"], /--cpus: expected an integer from 1 to 64, got 1000/],
    [["--bogus-flag"], /unknown option '--bogus-flag'/],
  ];
  for (const [args, expected] of cases) {
    const r = await dvmm("run", "--no-api", ...args);
    strictEqual(r.code, 2, `${args.join(" ")}: status ${r.code}\n${r.err}`);
    match(oneLine(r.err), expected);
  }
  await Deno.remove(dir, { recursive: true });
});
