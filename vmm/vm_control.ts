/**
 * A {@linkcode Machine} as the control socket sees it ({@linkcode ControlTarget}):
 * its state, devices with their current BARs, exit counters, and the
 * pause / resume / shutdown / stop verbs.
 *
 * @module
 */

import {
  ControlError,
  type ControlTarget,
  type VmDeviceInfo,
  type VmInfo,
  type VmStats,
} from "./control_api.ts";
import type { Machine } from "./machine.ts";

/** Serve `machine` under `name` on the control API. */
export function machineControlTarget(machine: Machine, name: string): ControlTarget {
  return {
    info(): VmInfo {
      const devices = new Map<string, VmDeviceInfo & { bars: VmDeviceInfo["bars"][number][] }>();
      for (const fn of machine.pci.functions) {
        devices.set(fn.bdf, {
          name: fn.def.name,
          bdf: fn.bdf,
          vendorId: fn.def.vendorId,
          deviceId: fn.def.deviceId,
          bars: [],
        });
      }
      for (const a of machine.pci.assignments()) {
        devices.get(a.bdf)?.bars.push({
          index: a.bar,
          kind: a.kind,
          address: Number(a.activeAddress ?? a.address),
          size: Number(a.size),
          active: a.active,
        });
      }
      return {
        name,
        state: machine.state === "created" ? "running" : machine.state,
        vcpus: machine.config.cpus,
        memoryBytes: machine.config.memory,
        devices: [...devices.values()],
        pid: Deno.pid,
      };
    },
    stats(): VmStats {
      return {
        uptimeMs: Math.round(machine.uptimeMs),
        vcpus: machine.vcpuStats().map((exits, index) => ({ index, exits })),
      };
    },
    async pause() {
      if (machine.state === "paused") throw new ControlError(409, `VM ${name} is already paused`);
      if (machine.state !== "running") {
        throw new ControlError(409, `VM ${name} is ${machine.state}`);
      }
      await machine.pause();
    },
    resume() {
      if (machine.state !== "paused") {
        return Promise.reject(new ControlError(409, `VM ${name} is not paused`));
      }
      machine.resume();
      return Promise.resolve();
    },
    shutdown() {
      if (machine.state === "paused") {
        return Promise.reject(new ControlError(409, `VM ${name} is paused; resume it first`));
      }
      machine.requestShutdown();
      return Promise.resolve();
    },
    stop() {
      // Answer first; the VMM ends right after (its socket closes gracefully).
      void machine.stop("stopped through the control socket");
      return Promise.resolve();
    },
  };
}
