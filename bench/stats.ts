/**
 * Small statistics for benchmarks: medians and ratio lines.
 *
 * @module
 */

/** The median of `values` (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** One benchmark line: `name: a=<median> b=<median> ratio a/b=<r> (target <= t)`. */
export function ratioLine(
  name: string,
  a: { label: string; values: number[] },
  b: { label: string; values: number[] },
  unit: string,
  target?: { op: "<=" | ">="; value: number },
): string {
  const ma = median(a.values), mb = median(b.values);
  const ratio = ma / mb;
  const verdict = target
    ? ` (target ${target.op} ${target.value}: ${
      (target.op === "<=" ? ratio <= target.value : ratio >= target.value) ? "met" : "NOT met"
    })`
    : "";
  return `${name}: ${a.label} median ${ma.toFixed(2)} ${unit}, ${b.label} median ${
    mb.toFixed(2)
  } ${unit}, ` +
    `ratio ${a.label}/${b.label} = ${ratio.toFixed(3)}${verdict}`;
}
