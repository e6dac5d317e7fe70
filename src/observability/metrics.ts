/**
 * Prometheus metrics, all in one prom-client Registry that the composition root (main.ts) creates
 * per process and passes to every module that registers a metric; nothing uses prom-client's global
 * default `register`, so two apps in one process (tests) each have their own metrics, reading their
 * own sources (the events they count are the process's: src/domain/events.ts). A supervisor of
 * several workers merges every worker's `registry.getMetricsAsJSON()` with AggregatorRegistry and
 * counts each worker once. Every metric states how it merges (`aggregator`): counters and histograms
 * sum, "highest value seen" gauges take the max, "is it up" gauges the min. docs/reference/metrics.md
 * lists them.
 *
 * The metrics listen to the core's channels (src/domain/events.ts). Hot path: one `response` event per
 * answer, which does two small Map lookups (route, then status x method as one number; cells are
 * created on first use, labels are bounded) and a few number increments; see lean-metrics.ts for why
 * not prom-client's labelled children. The coalescer's events come once per store round trip, not per
 * request. Nothing ever uses the id as a label; the busiest ids are kept apart (see BusyIds) for the
 * status page only.
 */
import { Counter, collectDefaultMetrics, Gauge, type Registry } from "prom-client";
import { EVENTS, type ResponseEvent } from "../domain/events.ts";
import { MAX_TURNO } from "../domain/limits.ts";
import { BusyIds } from "./busy-ids.ts";
import { type CounterCell, type HistogramSeries, LeanCounter, LeanHistogram } from "./lean-metrics.ts";

/** Sub-millisecond to one second: a coalesced turn is usually well under a millisecond. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] as const;
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] as const;

/** Default process metrics left out: gauges named like counters (see createMetrics). */
const PROMLINT_REJECTED_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** Counters above this fraction of MAX_SAFE_INTEGER count as near exhaustion (the alert's threshold). */
export const NEAR_EXHAUSTION = 0.9;

/** Methods with their own label value; anything else is "other", so clients cannot grow the label set. */
const METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "other"] as const;
const METHOD_INDEX = new Map<string, number>(METHODS.map((method, i) => [method, i]));
const OTHER_METHOD = METHODS.length - 1;

interface RouteCells {
  readonly duration: HistogramSeries;
  /** By status * 16 + method index. */
  readonly responses: Map<number, CounterCell>;
}

export interface MetricsSources {
  /** Requests waiting for a number in this process (Coalescer.waiting). */
  readonly waiting: () => number;
  /** Resolves when the store answers; rejections and a 0.5 s timeout make turnomatic_store_up 0. */
  readonly ping: () => Promise<unknown>;
  /** Package version for turnomatic_build_info. */
  readonly version: string;
}

export interface TurnMetrics {
  /** The ids with the most numbers issued recently, for the status page. */
  readonly busyIds: BusyIds;
  /** Stops listening to the core's events (the registry keeps the values). */
  close(): void;
}

/**
 * Defines the process and request metrics in `registry` (once per registry: it refuses duplicate
 * names) and subscribes them to the core's events until `close()`.
 */
export function createMetrics(registry: Registry, sources: MetricsSources): TurnMetrics {
  collectDefaultMetrics({ register: registry });
  // prom-client's totals of active handles, requests and resources are gauges named *_total, which
  // `promtool check metrics` rejects (only counters end in _total); the per-type gauges without the
  // suffix (nodejs_active_handles{type} etc.) carry the same numbers and stay.
  for (const name of PROMLINT_REJECTED_DEFAULTS) registry.removeSingleMetric(name);
  const registers = [registry];
  const requests = new LeanCounter(
    "turnomatic_http_requests_total",
    "HTTP responses by route, method and status code (label code).",
    registry,
  );
  const duration = new LeanHistogram(
    "turnomatic_http_request_duration_seconds",
    "Time from request arrival to response, by route.",
    LATENCY_BUCKETS,
    registry,
  );
  const batchSize = new LeanHistogram(
    "turnomatic_batch_size",
    "Numbers reserved per store round trip (requests coalesced into one reservation; a batch turn counts its count).",
    BATCH_BUCKETS,
    registry,
  ).series();
  const storeSeconds = new LeanHistogram(
    "turnomatic_store_round_trip_seconds",
    "Duration of one reservation against the store, by outcome (ok, error).",
    STORE_BUCKETS,
    registry,
  );
  const counter = (name: string, help: string) => new Counter({ name, help, aggregator: "sum", registers });
  const storeErrors = counter("turnomatic_store_errors_total", "Reservations that failed (store down, timeout, script error).");
  const overloads = counter("turnomatic_overload_rejections_total", "Requests refused with 503 because too many were waiting.");
  const timeouts = counter("turnomatic_deadline_timeouts_total", "Requests answered 503 because their deadline passed.");
  const abandoned = counter(
    "turnomatic_numbers_abandoned_total",
    "Numbers reserved for requests that were gone (timed out or disconnected) when the store answered: gaps.",
  );
  const inDoubt = counter(
    "turnomatic_numbers_in_doubt_total",
    "Numbers of reservations that failed without an answer: the store may have applied them (possible gaps).",
  );
  const fences = counter(
    "turnomatic_rollback_fences_total",
    "Reservations where the store had gone backwards and the counter was fenced forward.",
  );
  const busyIds = new BusyIds();
  new Gauge({
    name: "turnomatic_highest_turno_ratio",
    help: "Highest number issued by this process for any id, as a ratio of MAX_SAFE_INTEGER (0-1).",
    aggregator: "max",
    registers,
    collect() {
      this.set(busyIds.highest / MAX_TURNO);
    },
  });
  new Gauge({
    name: "turnomatic_ids_near_exhaustion",
    help: `Ids whose counter this process saw above ${NEAR_EXHAUSTION} of MAX_SAFE_INTEGER (max over workers: a lower bound).`,
    aggregator: "max",
    registers,
    collect() {
      this.set(busyIds.nearExhaustion);
    },
  });
  new Gauge({
    name: "turnomatic_waiting_requests",
    help: "Requests waiting for a number right now.",
    aggregator: "sum",
    registers,
    collect() {
      this.set(sources.waiting());
    },
  });
  new Gauge({
    name: "turnomatic_store_up",
    help: "1 when the store answered a ping within 0.5 s at scrape time, else 0 (min over workers).",
    aggregator: "min",
    registers,
    async collect() {
      this.set((await pingWithin(sources.ping, 500)) ? 1 : 0);
    },
  });
  new Gauge({
    name: "turnomatic_workers",
    help: "Worker processes serving the API (1 per process; summed over workers).",
    aggregator: "sum",
    registers,
  }).set(1);
  new Gauge({
    name: "turnomatic_build_info",
    help: "Always 1; the labels say which build runs.",
    labelNames: ["version", "runtime"] as const,
    aggregator: "first",
    registers,
  })
    .labels(sources.version, `bun ${Bun.version}`)
    .set(1);

  const routes = new Map<string, RouteCells>();
  const onResponse = ({ route, method, status, startedAt }: ResponseEvent) => {
    const seconds = (performance.now() - startedAt) / 1000;
    let cells = routes.get(route);
    if (cells === undefined) {
      cells = { duration: duration.series({ route }), responses: new Map() };
      routes.set(route, cells);
    }
    cells.duration.observe(seconds);
    // A numeric key (status x method) avoids building a string per request.
    const methodIndex = METHOD_INDEX.get(method) ?? OTHER_METHOD;
    const key = status * 16 + methodIndex;
    let cell = cells.responses.get(key);
    if (cell === undefined) {
      cell = requests.cell({ route, method: METHODS[methodIndex] as string, code: String(status) });
      cells.responses.set(key, cell);
    }
    cell.value++;
  };

  const storeOk = storeSeconds.series({ outcome: "ok" });
  const storeError = storeSeconds.series({ outcome: "error" });
  const unsubscribe = [
    EVENTS.response.subscribe(onResponse),
    EVENTS.reservation.subscribe(({ numbers, storeSeconds: seconds, outcome }) => {
      batchSize.observe(numbers);
      if (outcome === "ok") storeOk.observe(seconds);
      else {
        storeError.observe(seconds);
        storeErrors.inc();
      }
    }),
    EVENTS.abandoned.subscribe(({ count }) => abandoned.inc(count)),
    EVENTS.inDoubt.subscribe(({ count }) => inDoubt.inc(count)),
    EVENTS.fence.subscribe(() => fences.inc()),
    EVENTS.overload.subscribe(() => overloads.inc()),
    EVENTS.timeout.subscribe(({ count }) => timeouts.inc(count)),
    EVENTS.issued.subscribe(({ id, last }) => busyIds.record(id, last)),
  ];
  return {
    busyIds,
    close: () => {
      for (const stop of unsubscribe) stop();
    },
  };
}

async function pingWithin(ping: () => Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([ping().then(() => true), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
