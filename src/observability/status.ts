/**
 * The status page's data: cumulative totals read from metrics JSON (prom-client's
 * `getMetricsAsJSON()` shape, which is also what AggregatorRegistry merges across workers) plus the
 * busiest ids. The page polls it and turns differences between two polls into rates and quantiles,
 * so the server keeps no time series.
 */
import type { BusyId } from "./busy-ids.ts";

/** One metric as prom-client's getMetricsAsJSON returns it (the fields we read). */
export interface MetricJson {
  readonly name: string;
  readonly values: ReadonlyArray<{
    readonly value: number;
    readonly labels: Readonly<Record<string, string | number | undefined>>;
    readonly metricName?: string;
  }>;
}

export interface StatusSnapshot {
  /** Milliseconds since the epoch when the snapshot was taken. */
  readonly time: number;
  readonly workers: number;
  readonly storeUp: boolean;
  readonly waiting: number;
  /** Turn requests answered, and of those 5xx and other errors (4xx). */
  readonly turns: { readonly total: number; readonly errors5xx: number; readonly errors4xx: number };
  /** All responses of every route. */
  readonly responses: number;
  /** Cumulative latency histogram of turn requests: upper bound (s) -> count at or below. */
  readonly latency: ReadonlyArray<{ readonly le: number; readonly count: number }>;
  readonly numbersReserved: number;
  /** The store's own ledger, store-wide (ledger-metrics.ts); undefined before the first scrape of it. */
  readonly ledger: { readonly issued: number; readonly delivered: number; readonly lost: number } | undefined;
  /** True while the process refuses every turn: the store lost data (store-guard.ts). */
  readonly refusing: boolean;
  readonly busiest: readonly BusyId[];
}

export function buildStatus(metrics: readonly MetricJson[], busiest: readonly BusyId[]): StatusSnapshot {
  const byName = new Map(metrics.map((metric) => [metric.name, metric]));
  const single = (name: string, fallback: number) => byName.get(name)?.values[0]?.value ?? fallback;
  let total = 0;
  let errors5xx = 0;
  let errors4xx = 0;
  let responses = 0;
  for (const { value, labels } of byName.get("turnomatic_http_requests_total")?.values ?? []) {
    responses += value;
    if (labels.route !== "turno") continue;
    total += value;
    const status = String(labels.code);
    if (status.startsWith("5")) errors5xx += value;
    else if (status.startsWith("4")) errors4xx += value;
  }
  const latency: Array<{ le: number; count: number }> = [];
  for (const { value, labels, metricName } of byName.get("turnomatic_http_request_duration_seconds")?.values ?? []) {
    if (labels.route !== "turno" || metricName !== "turnomatic_http_request_duration_seconds_bucket") continue;
    const le = labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(labels.le);
    latency.push({ le, count: value });
  }
  latency.sort((a, b) => a.le - b.le);
  let numbersReserved = 0;
  for (const { value, metricName } of byName.get("turnomatic_batch_size")?.values ?? []) {
    if (metricName === "turnomatic_batch_size_sum") numbersReserved = value;
  }
  return {
    time: Date.now(),
    workers: single("turnomatic_workers", 1),
    storeUp: single("turnomatic_store_up", 1) === 1,
    waiting: single("turnomatic_waiting_requests", 0),
    turns: { total, errors5xx, errors4xx },
    responses,
    // JSON has no Infinity: the last bucket is sent as le 1e9 (it holds every request).
    latency: latency.map((bucket) => ({ le: Number.isFinite(bucket.le) ? bucket.le : 1e9, count: bucket.count })),
    numbersReserved,
    ledger: byName.has("turnomatic_store_numbers_issued")
      ? {
          issued: single("turnomatic_store_numbers_issued", 0),
          delivered: single("turnomatic_store_numbers_delivered", 0),
          lost: single("turnomatic_store_numbers_lost", 0),
        }
      : undefined,
    refusing: single("turnomatic_store_refusing", 0) === 1,
    busiest,
  };
}

const PAGE_URL = new URL("./status-page.html", import.meta.url);

/**
 * Answers `/` (the page) and `/status.json` (its data). `metrics` gives this process's registry as
 * JSON, or, on a supervisor, every worker's merged: the page then shows the whole host.
 */
export function createStatusHandler(
  metrics: () => Promise<readonly MetricJson[]>,
  busiest: () => readonly BusyId[],
): (path: string) => Promise<Response> {
  let page: string | undefined;
  return async (path) => {
    if (path === "/status.json") {
      const snapshot = buildStatus(await metrics(), busiest());
      return Response.json(snapshot, { headers: { "cache-control": "no-store" } });
    }
    page ??= await Bun.file(PAGE_URL).text();
    return new Response(page, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });
  };
}
