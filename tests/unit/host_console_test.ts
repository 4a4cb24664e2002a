import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { EscapeFilter, OutputBatcher } from "../../vmm/host_console.ts";

Deno.test("Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A, other bytes pass through", () => {
  let quits = 0;
  const f = new EscapeFilter(() => quits++);
  deepStrictEqual([...f.filter(Uint8Array.of(0x61, 0x01, 0x01, 0x62))], [0x61, 0x01, 0x62]);
  strictEqual(quits, 0);
  deepStrictEqual([...f.filter(Uint8Array.of(0x63, 0x01))], [0x63]); // escape pending across chunks
  deepStrictEqual([...f.filter(Uint8Array.of(0x78, 0x64))], []);
  strictEqual(quits, 1);
  deepStrictEqual([...f.filter(Uint8Array.of(0x01, 0x7a))], [0x7a]); // Ctrl-A + other: the other
});

Deno.test("output batcher writes one burst per microtask, in order", async () => {
  const writes: string[] = [];
  const b = new OutputBatcher((bytes) => writes.push(new TextDecoder().decode(bytes)));
  b.push(new TextEncoder().encode("he"));
  b.push(new TextEncoder().encode("llo"));
  strictEqual(writes.length, 0);
  await Promise.resolve();
  deepStrictEqual(writes, ["hello"]);
});

Deno.test("the stdin pump forwards piped input and reports EOF and the byte count", async () => {
  const pump = new URL("../../vmm/host_console.ts", import.meta.url).href;
  const script = `
    import { pumpStdin } from ${JSON.stringify(pump)};
    const got = [];
    const p = pumpStdin((b) => { got.push(...b); return b.length; }, () => {});
    while (!p.describe().includes("EOF")) await new Promise((r) => setTimeout(r, 5));
    console.log(new TextDecoder().decode(Uint8Array.from(got)) + "|" + p.describe());
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("poweroff -f\n"));
  await w.close();
  const out = new TextDecoder().decode((await child.output()).stdout);
  strictEqual(out, "poweroff -f\n|stdin at EOF, 12 bytes forwarded\n");
});
