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
