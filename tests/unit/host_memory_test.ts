import assert from "node:assert/strict";
import { mmapAnonymousAligned, munmap } from "../../kvm/libc.ts";

Deno.test("guest RAM mappings start on the requested boundary and are fully usable", () => {
  const align = 2 << 20;
  for (const length of [align, 3 * align + 4096]) {
    const m = mmapAnonymousAligned(length, align);
    try {
      assert.equal((Deno.UnsafePointer.value(m.pointer) as bigint) % BigInt(align), 0n);
      assert.equal(m.length, length);
      const bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(m.pointer, length));
      bytes[0] = 1;
      bytes[length - 1] = 2;
      assert.deepEqual([bytes[0], bytes[length - 1], bytes[length >> 1]], [1, 2, 0]);
    } finally {
      munmap(m);
    }
  }
});
