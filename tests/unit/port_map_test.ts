import { strictEqual } from "node:assert/strict";
import { Bus } from "../../devices/bus.ts";
import { IoDispatcher } from "../../kvm/io_dispatcher.ts";
import { PORT_MAP, portBit, setPortBits } from "../../kvm/port_map.ts";

const nothing = { read: () => {}, write: () => {} };

Deno.test("port bits are set and cleared per port, clipped to the 64 Ki ports", () => {
  const map = new Uint8Array(0x4000);
  setPortBits(map, PORT_MAP.POSTED, 0x3f8, 8, true);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x3f7), false);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x3f8), true);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x3ff), true);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x400), false);
  strictEqual(portBit(map, PORT_MAP.CLAIMED, 0x3f8), false); // the other bitmap is untouched
  setPortBits(map, PORT_MAP.POSTED, 0x3fa, 1, false);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x3fa), false);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x3fb), true);
  setPortBits(map, PORT_MAP.CLAIMED, 0xfffe, 16, true); // past the end: clipped
  strictEqual(portBit(map, PORT_MAP.CLAIMED, 0xffff), true);
});

Deno.test("the dispatcher's port map follows the port bus as ranges come and go", () => {
  const pio = new Bus("pio");
  pio.register(0x70n, 2n, nothing, "before the dispatcher");
  const d = new IoDispatcher(pio, new Bus("mmio"), () => {});
  const map = new Uint8Array(d.portMap);
  const claimed = (port: number) => portBit(map, PORT_MAP.CLAIMED, port);
  strictEqual(claimed(0x70), true);
  strictEqual(claimed(0x71), true);
  strictEqual(claimed(0x72), false);
  // A PCI I/O BAR is mapped, moves, and is unmapped.
  const bar = pio.register(0xc000n, 0x20n, nothing, "[1af4:1000] BAR 0");
  strictEqual(claimed(0xc000), true);
  strictEqual(claimed(0xc01f), true);
  pio.unregister(bar);
  pio.register(0xd000n, 0x20n, nothing, "[1af4:1000] BAR 0");
  strictEqual(claimed(0xc000), false);
  strictEqual(claimed(0xd010), true);
  // Posting does not claim, claiming does not post.
  d.postPorts(0x80, 1);
  strictEqual(claimed(0x80), false);
  strictEqual(portBit(map, PORT_MAP.POSTED, 0x70), false);
  // A range on the port bus above the 64 Ki ports (the bus allows it) claims nothing.
  pio.register(0x1_0000n, 0x10n, nothing, "beyond");
  strictEqual(claimed(0), false);
});
