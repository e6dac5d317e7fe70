/**
 * The one median and percentile of the measurement toolkit. Percentiles are nearest-rank over
 * exact samples; the open-loop generator's latencies go through an HDR histogram instead
 * (hdr.ts), and both end in the same `Percentiles` shape.
 */
export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

export const NO_SAMPLES: Percentiles = { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 };

/** Median of a non-empty list (mean of the two middle values for an even count); NaN if empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Nearest-rank percentile (q in [0, 1]) of values sorted ascending. */
export function percentileOfSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  return sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] as number;
}

/** Rounds to 3 decimals (µs resolution for figures in ms). */
export const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/** Exact percentiles (nearest rank) of samples, e.g. latencies in ms; a Float64Array is sorted in place. */
export function percentiles(samples: Float64Array | readonly number[]): Percentiles {
  const sorted = samples instanceof Float64Array ? samples.sort() : Float64Array.from(samples).sort();
  const n = sorted.length;
  if (n === 0) return NO_SAMPLES;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    p50: round3(percentileOfSorted(sorted, 0.5)),
    p90: round3(percentileOfSorted(sorted, 0.9)),
    p99: round3(percentileOfSorted(sorted, 0.99)),
    p999: round3(percentileOfSorted(sorted, 0.999)),
    max: round3(sorted[n - 1] as number),
    mean: round3(sum / n),
  };
}

/** The median of every numeric field over a list of samples with the same fields. */
export function medianOfFields<T extends Record<string, number>>(samples: readonly T[]): Record<keyof T, number> {
  const keys = Object.keys(samples[0] ?? {}) as (keyof T)[];
  return Object.fromEntries(keys.map((k) => [k, median(samples.map((s) => s[k] as number))])) as Record<keyof T, number>;
}
