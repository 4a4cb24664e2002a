/**
 * Property test: random sequences of config-space accesses, bus accesses and
 * resets against a bus of several devices whose hooks fail at random. After
 * every step: no overlapping ranges on either bus, a BAR is registered exactly
 * when the core says it is active (and where), no hook fired twice in the same
 * direction, the plugin's view of what is mapped matches the core's, every
 * plugin doorbell is served by the platform (an ioeventfd) exactly at its
 * active BAR's address (unless the platform refused it), and the core never
 * threw.
 *
 * Runs: DVMM_FC_RUNS (default 10000). Seed: DVMM_FC_SEED.
 */
import fc from "fast-check";
import type { Bus } from "../../devices/bus.ts";
import { GuestMemory } from "../../kvm/guest_memory.ts";
import { assertEquals, barOffset, bytes, makeRig, type Probe, probeDevice } from "./pci_harness.ts";
import { FakePciPlatform } from "./pci_fake_platform.ts";

const RUNS = Number(Deno.env.get("DVMM_FC_RUNS") ?? 10_000);
const SEED = Deno.env.get("DVMM_FC_SEED");

/** Small windows so that initial placements are close and moves collide often. */
const WINDOWS = {
  mmio32: { base: 0xc000_0000, size: 0x10_0000 },
  mmio64: { base: 0x1_0000_0000, size: 0x10_0000 },
  io: { base: 0xc000, size: 0x1000 },
};

/** A non-PCI device on each bus, inside the windows, for BARs to run into. */
const PLATFORM_MMIO = 0xc008_0000n;
const PLATFORM_PIO = 0xc800n;

type Step =
  | { op: "cfgWrite"; slot: number; offset: number; width: 1 | 2 | 4; value: number; fail: Fail }
  | { op: "cfgRead"; slot: number; offset: number; width: 1 | 2 | 4; fail: Fail }
  | { op: "busAccess"; mmio: boolean; pick: number; write: boolean }
  | { op: "accessFaults"; on: boolean }
  | { op: "refuseIoeventfds"; on: boolean }
  | { op: "reset"; fail: Fail };

/** Which hook calls during a step throw: a seed and a rate in 1/8ths. */
interface Fail {
  readonly seed: number;
  readonly rate: number;
}

function world() {
  const platform = new FakePciPlatform();
  const rig = makeRig({ memory: GuestMemory.ofSize(4096), windows: WINDOWS, platform });
  rig.mmio.register(PLATFORM_MMIO, 0x2000n, { read: (_, d) => d.fill(0x5a), write() {} }, "plat");
  rig.pio.register(PLATFORM_PIO, 0x10n, { read: (_, d) => d.fill(0x5a), write() {} }, "plat");
  const specs = [
    [{ index: 0, kind: "mem32", size: 0x1000 }, { index: 1, kind: "io", size: 0x20 }],
    [{ index: 0, kind: "mem64", size: 0x4000 }, { index: 2, kind: "mem32", size: 0x2000 }],
    [{ index: 1, kind: "mem32", size: 0x10, prefetchable: true }, {
      index: 2,
      kind: "mem64",
      size: 0x1000,
      prefetchable: true,
    }, { index: 5, kind: "io", size: 0x4 }],
    [{ index: 0, kind: "io", size: 0x100 }, { index: 3, kind: "mem32", size: 0x8000 }],
  ] as const;
  const probes: Probe[] = [];
  specs.forEach((bars, i) => {
    const { def, probe } = probeDevice({ deviceId: 0x100 * (i + 1), bars, doorbells: true });
    rig.root.addDevice(def, { slot: i + 1 });
    probes.push(probe);
  });
  const interesting = new Set<number>([0, 0xffff_ffff, 0xffff_fff0, 0xffff_fffc, 1, 2, 3]);
  for (const a of rig.root.assignments()) {
    interesting.add(Number(a.address & 0xffff_ffffn));
    interesting.add(Number((a.address + a.size / 2n) & 0xffff_ffffn));
    interesting.add(Number(a.address >> 32n));
  }
  for (const v of [PLATFORM_MMIO, PLATFORM_PIO]) interesting.add(Number(v));
  const barSlots = rig.root.functions.flatMap((fn) =>
    fn.bars.flatMap((b) => b.slots.map((s): [number, number] => [fn.slot, s]))
  );
  return { rig, probes, platform, interesting: [...interesting], barSlots };
}

/** A deterministic stream of booleans: true with probability rate/8. */
function failStream(f: Fail): () => boolean {
  let s = f.seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) & 7) < f.rate;
  };
}

function arbitraries(values: number[], barSlots: [number, number][]) {
  const fail = fc.record({ seed: fc.integer(), rate: fc.constantFrom(0, 0, 1, 2, 4) });
  const width = fc.constantFrom<1 | 2 | 4>(1, 2, 4);
  const hotOffset = fc.constantFrom(
    0x04,
    0x05,
    0x06,
    ...Array.from({ length: 24 }, (_, i) => 0x10 + i),
    0x3c,
  );
  const offset = fc.oneof(
    { weight: 8, arbitrary: hotOffset },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x103 }) },
  );
  const value = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...values) },
    { weight: 2, arbitrary: fc.constantFrom(0, 1, 2, 3, 0x400, 0x403, 0x407) },
    { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) },
  );
  const slot = fc.integer({ min: 0, max: 5 });
  const align = (o: number, w: number) => o & ~(w - 1);
  const barWrite = fc.record({
    at: fc.constantFrom(...barSlots),
    value: fc.constantFrom(...values),
    fail,
  }).map((s) => ({
    op: "cfgWrite" as const,
    slot: s.at[0],
    offset: barOffset(s.at[1]),
    width: 4 as const,
    value: s.value,
    fail: s.fail,
  }));
  const commandWrite = fc.record({
    slot: fc.integer({ min: 1, max: 4 }),
    value: fc.constantFrom(0, 1, 2, 3, 0x407),
    width,
    fail,
  }).map((s) => ({ op: "cfgWrite" as const, offset: 0x04, ...s }));
  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 8, arbitrary: barWrite },
    { weight: 4, arbitrary: commandWrite },
    {
      weight: 6,
      arbitrary: fc.record({ slot, offset, width, value, fail }).map((s) => ({
        op: "cfgWrite" as const,
        ...s,
        offset: align(s.offset, s.width),
      })),
    },
    {
      weight: 3,
      arbitrary: fc.record({ slot, offset, width, fail }).map((s) => ({
        op: "cfgRead" as const,
        ...s,
        offset: align(s.offset, s.width),
      })),
    },
    {
      weight: 3,
      arbitrary: fc.record({ mmio: fc.boolean(), pick: fc.nat(), write: fc.boolean() }).map((
        s,
      ) => ({ op: "busAccess" as const, ...s })),
    },
    { weight: 1, arbitrary: fc.boolean().map((on) => ({ op: "accessFaults" as const, on })) },
    { weight: 1, arbitrary: fc.boolean().map((on) => ({ op: "refuseIoeventfds" as const, on })) },
    { weight: 1, arbitrary: fail.map((fail) => ({ op: "reset" as const, fail })) },
  );
  return fc.array(step, { minLength: 1, maxLength: 30, size: "max" });
}

function apply(w: ReturnType<typeof world>, step: Step): void {
  const { rig, probes } = w;
  if ("fail" in step) {
    const next = failStream(step.fail);
    for (const p of probes) p.fail = { activate: next, deactivate: next };
  }
  switch (step.op) {
    case "cfgWrite":
      rig.root.configWrite(0, step.slot, 0, step.offset, bytes(step.value, step.width));
      break;
    case "cfgRead":
      rig.root.configRead(0, step.slot, 0, step.offset, new Uint8Array(step.width));
      break;
    case "busAccess": {
      const bus = step.mmio ? rig.mmio : rig.pio;
      const ranges = bus.ranges;
      if (!ranges.length) break;
      const r = ranges[step.pick % ranges.length];
      const at = r.base + BigInt(step.pick) % r.size;
      if (step.write) bus.write(at, new Uint8Array(1));
      else bus.read(at, new Uint8Array(1));
      break;
    }
    case "accessFaults":
      for (const p of probes) p.failAccess = step.on;
      break;
    case "refuseIoeventfds":
      w.platform.refuse = () => step.on;
      break;
    case "reset":
      rig.root.reset();
      break;
  }
  for (const p of probes) p.fail = {};
}

function checkNoOverlap(bus: Bus): void {
  const rs = bus.ranges;
  for (let i = 1; i < rs.length; i++) {
    if (rs[i - 1].base + rs[i - 1].size > rs[i].base) {
      throw new Error(`${bus.kind}: ${rs[i - 1].name} overlaps ${rs[i].name}`);
    }
  }
}

function checkInvariants(w: ReturnType<typeof world>): void {
  const { rig, probes } = w;
  checkNoOverlap(rig.pio);
  checkNoOverlap(rig.mmio);
  let active = 0;
  for (const fn of rig.root.functions) {
    const probe = probes[fn.slot - 1];
    for (const bar of fn.bars) {
      const bus = rig.root.busFor(bar);
      if (bar.active) {
        active++;
        const r = bar.active.range;
        if (!bus.ranges.includes(r)) {
          throw new Error(`${fn.tag} BAR ${bar.index}: active, unmapped`);
        }
        if (r.base !== bar.active.address || r.size !== bar.size) {
          throw new Error(`${fn.tag} BAR ${bar.index}: mapped at the wrong place`);
        }
      } else if (bus.ranges.some((r) => r.name === fn.barName(bar))) {
        throw new Error(`${fn.tag} BAR ${bar.index}: inactive but registered`);
      }
      if (probe && (probe.mapped.get(bar.index) ?? null) !== (bar.active?.address ?? null)) {
        throw new Error(`${fn.tag} BAR ${bar.index}: plugin and core disagree on the mapping`);
      }
    }
  }
  checkDoorbells(w);
  const registered = [...rig.pio.ranges, ...rig.mmio.ranges].filter((r) => r.name.includes("BAR"));
  assertEquals(registered.length, active);
  for (const p of probes) {
    if (p.violations.length) throw new Error(`hook protocol: ${p.violations.join(", ")}`);
  }
  const errors = rig.log.records.filter((r) => r.level === "error");
  if (errors.length) throw new Error(`core caught its own bug: ${errors[0].message}`);
}

/** Doorbells: the platform serves exactly the doorbells the core says, at active BAR + offset. */
function checkDoorbells(w: ReturnType<typeof world>): void {
  const { rig, platform } = w;
  const expected: string[] = [];
  for (const fn of rig.root.functions) {
    for (const d of fn.doorbells()) {
      const active = d.bar.active;
      if (d.address === null) {
        if (active && platform.refusals === 0) {
          throw new Error(`${fn.tag} BAR ${d.bar.index}: active but its doorbell is not served`);
        }
        continue;
      }
      if (!active || d.address !== active.address + BigInt(d.offset)) {
        throw new Error(`${fn.tag} BAR ${d.bar.index}: doorbell served at a stale address`);
      }
      expected.push(`${d.bar.space}:${d.address.toString(16)}/${d.length}`);
    }
  }
  assertEquals(platform.registrations(), expected.sort());
  if (platform.violations.length) throw new Error(`platform: ${platform.violations.join(", ")}`);
}

Deno.test(`PCI core invariants hold under random config sequences (${RUNS} runs)`, () => {
  const sample = world();
  fc.assert(
    fc.property(arbitraries(sample.interesting, sample.barSlots), (steps) => {
      const w = world();
      checkInvariants(w);
      for (const step of steps) {
        apply(w, step);
        checkInvariants(w);
      }
    }),
    { numRuns: RUNS, ...(SEED ? { seed: Number(SEED) } : {}) },
  );
});

Deno.test("the property harness notices a broken bus (sanity check of the checker)", () => {
  const w = world();
  const fn = w.rig.root.device(1)!;
  const bar = fn.bars[0];
  w.rig.mmio.unregister(bar.active!.range);
  let caught = false;
  try {
    checkInvariants(w);
  } catch {
    caught = true;
  }
  assertEquals(caught, true);
});

Deno.test("the property harness notices a doorbell left at a stale address", () => {
  const w = world();
  const [handle] = w.platform.live.keys();
  const stale = w.platform.live.get(handle)!;
  w.platform.live.set(handle, { ...stale, address: stale.address + 0x1000n });
  let caught = false;
  try {
    checkInvariants(w);
  } catch {
    caught = true;
  }
  assertEquals(caught, true);
});
