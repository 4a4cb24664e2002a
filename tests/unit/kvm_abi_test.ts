/**
 * Checks every KVM struct size, field offset and ioctl request number dvmm
 * uses against the system's `<linux/kvm.h>` (Debian linux-libc-dev), by
 * compiling and running a C program generated from dvmm's own layouts.
 */
import { deepStrictEqual } from "node:assert/strict";
import * as structs from "../../kvm/kvm_structs.ts";
import { KVM, KVM_CAP, KVM_EXIT } from "../../kvm/ioctls.ts";
import type { Layout } from "../../kvm/layout.ts";

/** Every (C expression, dvmm value) pair to compare. */
function checks(): [string, string][] {
  const out: [string, string][] = [];
  const walk = (layout: Layout, cType: string, prefix: string, base: number) => {
    for (const [name, f] of Object.entries(layout.fields)) {
      // Anonymous unions in kvm_run and kvm_irq_routing_entry are reached by member name in C.
      const path = prefix + name;
      const cPath = path.replace(/^exit\./, "");
      if (typeof f.type === "string" || name === "padding" || name.startsWith("pad")) {
        if (!(name.startsWith("pad") || name === "padding")) {
          out.push([`offsetof(${cType}, ${cPath})`, String(base + f.offset)]);
        }
      } else if (name === "exit") {
        walk(f.type, cType, "exit.", base + f.offset);
      } else {
        out.push([`offsetof(${cType}, ${cPath})`, String(base + f.offset)]);
        walk(f.type, cType, `${path}.`, base + f.offset);
      }
    }
  };
  for (const layout of Object.values(structs)) {
    const cType = `struct ${layout.name}`;
    out.push([`sizeof(${cType})`, String(layout.size)]);
    walk(layout, cType, "", 0);
  }
  for (const [name, nr] of Object.entries(KVM)) {
    out.push([`(unsigned long long)KVM_${name}`, nr.toString()]);
  }
  for (const [name, v] of Object.entries(KVM_CAP)) out.push([`KVM_CAP_${name}`, String(v)]);
  for (const [name, v] of Object.entries(KVM_EXIT)) out.push([`KVM_EXIT_${name}`, String(v)]);
  return out;
}

Deno.test("KVM struct layouts, ioctl numbers and constants match <linux/kvm.h>", async () => {
  const pairs = checks();
  const program = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    "#include <linux/kvm.h>",
    "int main(void) {",
    ...pairs.map(([expr]) => `  printf("%llu\\n", (unsigned long long)(${expr}));`),
    "  return 0;",
    "}",
  ].join("\n");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/abi.c`, program);
    const cc = await new Deno.Command("gcc", {
      args: ["-o", `${dir}/abi`, `${dir}/abi.c`],
      stderr: "piped",
    })
      .output();
    if (!cc.success) throw new Error(`gcc failed:\n${new TextDecoder().decode(cc.stderr)}`);
    const run = await new Deno.Command(`${dir}/abi`).output();
    const values = new TextDecoder().decode(run.stdout).trim().split("\n");
    const actual = pairs.map(([expr], i) => `${expr} = ${values[i]}`);
    const expected = pairs.map(([expr, v]) => `${expr} = ${v}`);
    deepStrictEqual(actual, expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
