/**
 * A counter and a histogram for the per-request path that cost a few array writes per observation.
 * prom-client's own `labels(...).inc()` / `observe()` hash the label set on every call (about 1 µs
 * each on Bun, measured by bench/observability-overhead.ts's micro run), which is several percent of
 * a sub-50 µs request. These keep plain numbers per pre-resolved label set and only build
 * prom-client's value list when scraped. They register in the prom-client Registry they are given like
 * its own metrics (name, help, type, aggregator, get()), so text output and AggregatorRegistry merging
 * across workers work unchanged.
 */
import type { Metric, Registry } from "prom-client";

type Labels = Readonly<Record<string, string>>;

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** One label set's count; `value` is incremented directly. */
export interface CounterCell {
  value: number;
}

export class LeanCounter {
  readonly type = "counter";
  readonly aggregator = "sum";
  readonly #cells: Array<{ labels: Labels; cell: CounterCell }> = [];

  constructor(
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** A new cell for one label set; look it up once and keep it. */
  cell(labels: Labels): CounterCell {
    const cell = { value: 0 };
    this.#cells.push({ labels, cell });
    return cell;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.#cells.map(({ labels, cell }) => ({ labels: { ...labels }, value: cell.value })),
    };
  }
}

/** One label set's histogram: per-bucket counts (not cumulative; summed up at scrape), sum, count. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

export class LeanHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #series: Array<{ labels: Labels; series: HistogramSeries }> = [];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** A new series for one label set; look it up once and keep it. */
  series(labels: Labels = {}): HistogramSeries {
    const series = new HistogramSeries(this.buckets);
    this.#series.push({ labels, series });
    return series;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const { labels, series } of this.#series) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += series.counts[i] as number;
        const le = i < this.buckets.length ? (this.buckets[i] as number) : "+Inf";
        values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { ...labels }, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels }, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
