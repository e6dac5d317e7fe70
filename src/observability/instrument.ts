/**
 * Wires metrics, tracing and logs to one service process: each subscribes to the core's channels
 * (src/domain/events.ts); the app gets `appHooks` (the tracer, which wraps a request rather than
 * hearing about it), the metrics server gets `statusHandler` (the status page lives on the metrics
 * port only), and shutdown calls `close()`, which also unsubscribes.
 */
import type { Registry } from "prom-client";
import packageJson from "../../package.json" with { type: "json" };
import { EVENTS } from "../domain/events.ts";
import type { AppOptions } from "../http/app.ts";
import type { ConnectionStateListener } from "../stores/connection-events.ts";
import { redactStoreUrl } from "../stores/store-url.ts";
import type { Logger } from "./logger.ts";
import { createMetrics } from "./metrics.ts";
import { createStatusHandler, type MetricJson } from "./status.ts";
import { createTracing } from "./tracing.ts";
import type { BusyId } from "./busy-ids.ts";

/** How many of the busiest ids the status page shows. */
export const STATUS_BUSIEST = 10;

export const VERSION: string = packageJson.version;

export interface InstrumentOptions {
  readonly logger: Logger;
  /** The process's registry (main.ts creates it); the metrics and the status page use it. */
  readonly registry: Registry;
  /** False (METRICS_PORT=0) leaves the per-request hook and the status page out entirely. */
  readonly metrics: boolean;
  readonly env: Record<string, string | undefined>;
  /** Fraction of responses written to the access log; 0 = none (the default). */
  readonly accessLogSampleRatio: number;
  readonly storeKind: string;
  /** Requests waiting right now (read at scrape time). */
  readonly waiting: () => number;
  /** Store ping, for turnomatic_store_up (at scrape time). */
  readonly ping: () => Promise<unknown>;
}

export interface Instruments {
  readonly appHooks: Pick<AppOptions, "traceRequest">;
  /** Serves `/` and `/status.json` on the metrics port. */
  readonly statusHandler: (path: string) => Promise<Response>;
  /** This process's busiest ids (sent to the supervisor in worker mode). */
  readonly busiest: () => BusyId[];
  readonly tracing: boolean;
  close(): Promise<void>;
}

export function createInstruments(options: InstrumentOptions): Instruments {
  const { logger } = options;
  const metrics = options.metrics
    ? createMetrics(options.registry, { waiting: options.waiting, ping: options.ping, version: VERSION })
    : undefined;
  const tracing = createTracing(options.env, options.storeKind, VERSION);
  const unsubscribe = [
    EVENTS.fence.subscribe(({ id, floor }) =>
      logger.error("store went backwards; counter fenced forward", { event: "store.rollback_fenced", id, floor }),
    ),
    EVENTS.internalError.subscribe(({ error }) => logger.error("internal error", { event: "http.internal_error", error })),
  ];
  const ratio = options.accessLogSampleRatio;
  if (ratio > 0) {
    unsubscribe.push(
      EVENTS.response.subscribe(({ route, method, status, startedAt }) => {
        if (Math.random() >= ratio) return;
        const ms = Math.round((performance.now() - startedAt) * 1000) / 1000;
        logger.info("request", { event: "http.access", route, method, status, ms });
      }),
    );
  }
  const busiest = () => metrics?.busyIds.top(STATUS_BUSIEST) ?? [];
  const statusHandler = createStatusHandler(
    async () => (await options.registry.getMetricsAsJSON()) as unknown as MetricJson[],
    busiest,
  );
  if (tracing !== undefined) {
    const { exporters, protocol, url } = tracing.settings;
    logger.info("tracing on", {
      event: "tracing.start",
      exporters,
      ...(exporters.includes("otlp") ? { protocol, endpoint: url ?? "http://localhost:4318/v1/traces (default)" } : {}),
    });
  }
  return {
    appHooks: { traceRequest: tracing?.traceRequest },
    statusHandler,
    busiest,
    tracing: tracing !== undefined,
    close: async () => {
      for (const stop of unsubscribe) stop();
      metrics?.close();
      await tracing?.shutdown();
    },
  };
}

/** Logs a network store's connection state changes: errors as warnings, recovery as info. */
export function storeStateLogger(logger: Logger, store: string): ConnectionStateListener {
  return (state, detail) => {
    const fields = { event: `store.${state}`, store: redactStoreUrl(store), ...detail };
    // The cause in the message too, so a reader of plain log lines sees it (store-errors.ts).
    const message =
      state === "replicas"
        ? `store WAITs now wait for ${detail?.replicas} replicas (${detail?.counted || "none listed"})${detail?.left ? `; not counted: ${detail.left}` : ""}`
        : detail?.error === undefined
          ? `store connection ${state}`
          : `store connection ${state}: ${detail.error}`;
    if (state === "error" || state === "close" || state === "end" || state === "silent") logger.warn(message, fields);
    else logger.info(message, fields);
  };
}
