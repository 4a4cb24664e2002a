import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { Bus, type BusDevice } from "../../devices/bus.ts";
import { runBareGuest } from "../../kvm/bare_guest.ts";
import { assemble } from "./assemble.ts";

/** Records what the guest did to the test MMIO region. */
class TestMmio implements BusDevice {
  writes: [number, number, number][] = [];
  reads: [number, number][] = [];
  read(offset: number, data: Uint8Array): void {
    this.reads.push([offset, data.length]);
    const v = offset === 4 ? 0xcafef00d : offset === 0x10 ? 0x5a : 0;
    for (let i = 0; i < data.length; i++) data[i] = (v >>> (8 * i)) & 0xff;
  }
  write(offset: number, data: Uint8Array): void {
    let v = 0;
    for (let i = data.length - 1; i >= 0; i--) v = v * 256 + data[i];
    this.writes.push([offset, data.length, v]);
  }
}

Deno.test("first guest: real-mode program writes to COM1, answers an IN, drives MMIO, halts", async () => {
  const code = await assemble(new URL("./guests/first_guest.asm", import.meta.url));
  let output = "";
  const pio = new Bus("pio");
  pio.register(0x3f8n, 1n, {
    read: (_o, d) => d.fill(0),
    write: (_o, d) => output += String.fromCharCode(d[0]),
  }, "debug console");
  pio.register(0x3f9n, 1n, { read: (_o, d) => d[0] = 42, write: () => {} }, "answer");
  const mmio = new Bus("mmio");
  const dev = new TestMmio();
  mmio.register(0xd0000n, 0x1000n, dev, "test mmio");

  const { exit } = await runBareGuest({ code, pio, mmio });

  assertEquals(exit.kind, "hlt");
  assertEquals(output, "Hello from a dvmm guest!\n42\n");
  assertEquals(dev.writes, [[0, 4, 0x12345678], [8, 4, 0xcafef00e], [0x11, 1, 0x5a]]);
  assertEquals(dev.reads, [[4, 4], [0x10, 1]]);
});

Deno.test("port accesses to nothing are answered in the vCPU thread: all-ones reads, dropped writes", async () => {
  const code = await assemble(new URL("./guests/unclaimed_ports.asm", import.meta.url));
  const log: number[] = [];
  const pio = new Bus("pio");
  pio.register(0xe9n, 1n, { read: (_o, d) => d.fill(0), write: (_o, d) => log.push(d[0]) }, "log");

  const { exit, accesses } = await runBareGuest({ code, pio });

  assertEquals(exit.kind, "hlt");
  // byte, word (2 bytes), dword (low and high byte), rep insb (2 bytes): all 0xff
  assertEquals(log, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  // Only the seven writes to the log device reached the VMM thread.
  assertEquals(accesses, 7);
});
