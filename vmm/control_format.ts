/**
 * Output of `dvmm list` and `dvmm stat NAME`: aligned text tables for people,
 * or JSON with `--json`.
 *
 * @module
 */

import type { VmInfo, VmStats } from "./control_api.ts";
import type { VmListEntry } from "./control_client.ts";

/** Output options. */
export interface FormatOptions {
  /** JSON instead of a table. */
  readonly json?: boolean;
}

/**
 * `dvmm list`: NAME STATE CPUS MEMORY PID SOCKET, one VM a line (`no VMs
 * running` when empty); with `json`, an array of `{ name, socket, info?, error? }`.
 */
export function formatVmList(entries: readonly VmListEntry[], options: FormatOptions = {}): string {
  if (options.json) return JSON.stringify(entries, null, 2);
  if (entries.length === 0) return "no VMs running";
  const rows = entries.map((e) =>
    e.info
      ? [
        e.name,
        e.info.state,
        String(e.info.vcpus),
        formatBytes(e.info.memoryBytes),
        e.info.pid === undefined ? "-" : String(e.info.pid),
        e.socket,
      ]
      : [e.name, "?", "-", "-", "-", `${e.socket} (${e.error ?? "no answer"})`]
  );
  return table(["NAME", "STATE", "CPUS", "MEMORY", "PID", "SOCKET"], rows);
}

/**
 * `dvmm stat NAME`: a summary line, the devices with their BARs, and exit
 * counts by kind per vCPU; with `json`, `{ info, stats }`.
 */
export function formatVmStat(info: VmInfo, stats: VmStats, options: FormatOptions = {}): string {
  if (options.json) return JSON.stringify({ info, stats }, null, 2);
  const lines: string[] = [];
  const parts = [
    info.state,
    `${info.vcpus} vCPU${info.vcpus === 1 ? "" : "s"}`,
    formatBytes(info.memoryBytes),
  ];
  if (info.pid !== undefined) parts.push(`pid ${info.pid}`);
  if (stats.uptimeMs !== undefined) parts.push(`up ${formatDuration(stats.uptimeMs)}`);
  lines.push(`VM ${info.name}: ${parts.join(", ")}`);

  lines.push("", "Devices:");
  if (info.devices.length === 0) lines.push("  (none)");
  for (const d of info.devices) {
    lines.push(`  ${d.bdf} ${d.name} [${hex(d.vendorId, 4)}:${hex(d.deviceId, 4)}]`);
    for (const b of d.bars) {
      const address = b.kind === "io" ? hex(b.address, 4) : hex(b.address, 8);
      lines.push(
        `    BAR${b.index} ${b.kind.padEnd(5)} 0x${address} ${formatBytes(b.size).padStart(8)} ${
          b.active ? "active" : "inactive"
        }`,
      );
    }
  }

  lines.push("", "Exits:");
  const kinds = [...new Set(stats.vcpus.flatMap((v) => Object.keys(v.exits)))].sort();
  if (kinds.length === 0) {
    lines.push("  (none)");
  } else {
    const header = ["KIND", ...stats.vcpus.map((v) => `vCPU${v.index}`), "TOTAL"];
    const rows = kinds.map((k) => {
      const counts = stats.vcpus.map((v) => v.exits[k] ?? 0);
      return [k, ...counts.map(String), String(counts.reduce((a, b) => a + b, 0))];
    });
    lines.push(...table(header, rows, 1).split("\n").map((l) => `  ${l}`));
  }
  return lines.join("\n");
}

/** `536870912` as `512 MiB`, `1610612736` as `1.5 GiB`, small sizes in bytes. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  const text = Number.isInteger(v) ? String(v) : v.toFixed(1).replace(/\.0$/, "");
  return `${text} ${units[u]}`;
}

/** `65000` ms as `1m 5s`; `3723000` as `1h 2m 3s`. */
export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts = h ? [`${h}h`, `${m}m`] : m ? [`${m}m`] : [];
  return [...parts, `${s % 60}s`].join(" ");
}

function hex(v: number, width: number): string {
  return v.toString(16).padStart(width, "0");
}

/** Columns padded to their widest cell; columns `rightFrom` and later are right-aligned. */
function table(header: readonly string[], rows: readonly string[][], rightFrom = Infinity): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) =>
    r.map((cell, i) => {
      if (i >= rightFrom) return cell.padStart(widths[i]);
      return i === r.length - 1 ? cell : cell.padEnd(widths[i]);
    }).join("  ")
  ).join("\n");
}
