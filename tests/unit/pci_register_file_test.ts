import { fileURLToPath } from "node:url";
import { DeviceRegistry, parseDeviceArgument } from "../../devices/registry.ts";
import { ecamOffset } from "../../pci/config_access.ts";
import { CFG, COMMAND, STATUS } from "../../pci/config_regs.ts";
import { PCI_ECAM, PORTS } from "../../x86/layout.ts";
import { REG, REGISTER_FILE_ID } from "../../examples/register_file.ts";
import { assertEquals, busRead, bytes, le, makeRig } from "./pci_harness.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** Plug the example from its path, as `--device ./examples/register_file.ts,scratch=4` would. */
async function plugged() {
  const arg = parseDeviceArgument("./examples/register_file.ts,scratch=4");
  const plugin = await new DeviceRegistry().load(arg.spec, REPO);
  const rig = makeRig();
  const fn = rig.root.addDevice(plugin.definition, {
    slot: 4,
    options: arg.options,
    source: arg.spec,
    decode: false,
  });
  const { pio, mmio } = rig;
  // Guest-style config access through 0xCF8/0xCFC.
  const cfg = {
    read(offset: number, width = 4): number {
      pio.write(BigInt(PORTS.PCI_CONFIG_ADDRESS), bytes(0x8000_0000 | (4 << 11) | offset & ~3, 4));
      const d = new Uint8Array(width);
      pio.read(BigInt(PORTS.PCI_CONFIG_DATA + (offset & 3)), d);
      return le(d);
    },
    write(offset: number, value: number, width = 4): void {
      pio.write(BigInt(PORTS.PCI_CONFIG_ADDRESS), bytes(0x8000_0000 | (4 << 11) | offset & ~3, 4));
      pio.write(BigInt(PORTS.PCI_CONFIG_DATA + (offset & 3)), bytes(value, width));
    },
  };
  const mem = {
    read: (at: bigint, width = 4) => busRead(mmio, at, width),
    write: (at: bigint, value: number, width = 4) => mmio.write(at, bytes(value, width)),
  };
  return { ...rig, fn, cfg, mem };
}

Deno.test("register file: identity, sizing, enabling and registers through the bus", async () => {
  const { cfg, mem, fn } = await plugged();
  assertEquals(cfg.read(CFG.VENDOR_ID), 0x00f0_1b36);
  assertEquals(cfg.read(CFG.REVISION) >>> 8, 0xff0000);
  assertEquals(cfg.read(CFG.INTERRUPT_PIN, 1), 1);

  // Size BAR 0 the way Linux does: save, write all-ones, read, restore.
  const saved = cfg.read(CFG.BAR0);
  cfg.write(CFG.BAR0, 0xffff_ffff);
  assertEquals(cfg.read(CFG.BAR0), 0xffff_f000);
  cfg.write(CFG.BAR0, saved);
  const base = BigInt(saved);
  assertEquals(mem.read(base), 0xffff_ffff, "decode is off: nothing there yet");

  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  assertEquals(mem.read(base + BigInt(REG.ID)), REGISTER_FILE_ID);
  assertEquals(mem.read(base + BigInt(REG.SCRATCH_N)), 4);
  assertEquals(mem.read(base + BigInt(REG.ID) + 2n, 2), REGISTER_FILE_ID >>> 16);

  // Scratch registers: full and partial writes, out-of-range ones read 0.
  mem.write(base + BigInt(REG.SCRATCH), 0xcafe_f00d);
  mem.write(base + BigInt(REG.SCRATCH) + 1n, 0x12, 1);
  assertEquals(mem.read(base + BigInt(REG.SCRATCH)), 0xcafe_120d);
  mem.write(base + BigInt(REG.SCRATCH + 4 * 4), 0x5555_5555);
  assertEquals(mem.read(base + BigInt(REG.SCRATCH + 4 * 4)), 0);
  assertEquals(fn.faults, 0);
});

Deno.test("register file: the doorbell counts rings and raises INTx when enabled", async () => {
  const { cfg, mem, fn, lines } = await plugged();
  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  const base = BigInt((cfg.read(CFG.BAR0) & ~0xf) >>> 0);
  const gsi = cfg.read(CFG.INTERRUPT_LINE, 1);
  assertEquals(gsi, fn.gsi);
  const line = () => lines.get(gsi)?.level ?? false;

  mem.write(base + BigInt(REG.DOORBELL), 1);
  assertEquals(mem.read(base + BigInt(REG.RINGS)), 1);
  assertEquals(mem.read(base + BigInt(REG.IRQ_STATUS)), 1);
  assertEquals(line(), false, "interrupts not enabled yet");

  mem.write(base + BigInt(REG.IRQ_ENABLE), 1);
  assertEquals(line(), true, "pending ring raises INTx once enabled");
  assertEquals(cfg.read(CFG.STATUS, 2) & STATUS.INTERRUPT, STATUS.INTERRUPT);

  cfg.write(CFG.COMMAND, COMMAND.MEMORY | COMMAND.INTX_DISABLE, 2);
  assertEquals(line(), false, "INTx-disable masks it");
  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  assertEquals(line(), true);

  mem.write(base + BigInt(REG.IRQ_STATUS), 1);
  assertEquals(line(), false, "acknowledged");
  mem.write(base + BigInt(REG.DOORBELL), 7);
  mem.write(base + BigInt(REG.DOORBELL), 7);
  assertEquals(mem.read(base + BigInt(REG.RINGS)), 3);
  assertEquals(line(), true);
});

Deno.test("register file: moving the BAR with decode on keeps its state", async () => {
  const { cfg, mem, root } = await plugged();
  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  const old = BigInt(cfg.read(CFG.BAR0));
  mem.write(old + BigInt(REG.SCRATCH), 0x1234_5678);
  const next = 0xd000_0000n;
  cfg.write(CFG.BAR0, Number(next));
  assertEquals(mem.read(old + BigInt(REG.SCRATCH)), 0xffff_ffff, "gone from the old place");
  assertEquals(mem.read(next + BigInt(REG.SCRATCH)), 0x1234_5678);
  const a = root.assignments().find((x) => x.bdf === "00:04.0")!;
  assertEquals([a.active, a.activeAddress], [true, next]);
  // ECAM sees the same function.
  const ecam = BigInt(PCI_ECAM.base) + BigInt(ecamOffset(0, 4, 0, CFG.BAR0));
  assertEquals(busRead(root.mmio, ecam), Number(next));
});

Deno.test("register file: reset clears registers and lowers INTx", async () => {
  const { cfg, mem, root, lines, fn } = await plugged();
  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  const base = BigInt(cfg.read(CFG.BAR0));
  mem.write(base + BigInt(REG.IRQ_ENABLE), 1);
  mem.write(base + BigInt(REG.DOORBELL), 1);
  mem.write(base + BigInt(REG.SCRATCH), 9);
  assertEquals(lines.get(fn.gsi!)?.level, true);
  root.reset();
  assertEquals(lines.get(fn.gsi!)?.level, false);
  assertEquals(cfg.read(CFG.COMMAND, 2), 0, "plugged with decode off, reset restores that");
  cfg.write(CFG.COMMAND, COMMAND.MEMORY, 2);
  assertEquals(mem.read(base + BigInt(REG.SCRATCH)), 0);
  assertEquals(mem.read(base + BigInt(REG.RINGS)), 0);
});
