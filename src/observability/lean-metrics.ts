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

/** Registration, one part per label set, and the shape prom-client's registry reads at scrape time. */
abstract class LeanMetric<Part> {
  readonly aggregator = "sum";
  readonly #parts: Array<{ labels: Labels; part: Part }> = [];

  constructor(
    readonly type: "counter" | "histogram",
    readonly name: string,
    readonly help: string,
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** Keeps `part` as the values of one label set; callers look it up once and keep it. */
  protected add<P extends Part>(labels: Labels, part: P): P {
    this.#parts.push({ labels, part });
    return part;
  }

  /** Appends the scraped values of one label set to `values`. */
  protected abstract collect(labels: Labels, part: Part, values: MetricValue[]): void;

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const { labels, part } of this.#parts) this.collect(labels, part, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export class LeanCounter extends LeanMetric<CounterCell> {
  constructor(name: string, help: string, registry: Registry) {
    super("counter", name, help, registry);
  }

  /** A new cell for one label set; look it up once and keep it. */
  cell(labels: Labels): CounterCell {
    return this.add(labels, { value: 0 });
  }

  protected collect(labels: Labels, cell: CounterCell, values: MetricValue[]): void {
    values.push({ labels: { ...labels }, value: cell.value });
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

export class LeanHistogram extends LeanMetric<HistogramSeries> {
  constructor(
    name: string,
    help: string,
    readonly buckets: readonly number[],
    registry: Registry,
  ) {
    super("histogram", name, help, registry);
  }

  /** A new series for one label set; look it up once and keep it. */
  series(labels: Labels = {}): HistogramSeries {
    return this.add(labels, new HistogramSeries(this.buckets));
  }

  protected collect(labels: Labels, series: HistogramSeries, values: MetricValue[]): void {
    let cumulative = 0;
    for (let i = 0; i <= this.buckets.length; i++) {
      cumulative += series.counts[i] as number;
      const le = i < this.buckets.length ? (this.buckets[i] as number) : "+Inf";
      values.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    values.push({ labels: { ...labels }, value: series.sum, metricName: `${this.name}_sum` });
    values.push({ labels: { ...labels }, value: series.count, metricName: `${this.name}_count` });
  }
}
