/**
 * Latency histograms for the open-loop generator: HdrHistogram (hdr-histogram-js, the pure-JS
 * build, which runs on Bun) recording microseconds with 3 significant digits from 1 µs to 60 s,
 * so memory and cost per sample stay fixed whatever the rate (~20 ns a record). Workers encode
 * theirs (compressed base64) and the main thread adds them up.
 */
import * as hdr from "hdr-histogram-js";
import { NO_SAMPLES, type Percentiles, round3 } from "./stats.ts";

export type Histogram = hdr.Histogram;

const SETTINGS = { lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 } as const;

export function createHistogram(): Histogram {
  return hdr.build({ ...SETTINGS });
}

/** Records a duration in ms (clamped into the histogram's range). */
export function recordMs(histogram: Histogram, ms: number): void {
  histogram.recordValue(Math.min(SETTINGS.highestTrackableValue, Math.max(1, Math.round(ms * 1000))));
}

export function encodeHistogram(histogram: Histogram): string {
  return hdr.encodeIntoCompressedBase64(histogram);
}

/** Adds encoded histograms (from workers) into one. */
export function mergeHistograms(encoded: readonly string[]): Histogram {
  const total = createHistogram();
  for (const text of encoded) {
    const part = hdr.decodeFromCompressedBase64(text);
    total.add(part);
    part.destroy();
  }
  return total;
}

/** The histogram's percentiles in ms. */
export function histogramPercentiles(histogram: Histogram): Percentiles {
  if (histogram.totalCount === 0) return NO_SAMPLES;
  const ms = (us: number) => round3(us / 1000);
  return {
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.mean),
  };
}
