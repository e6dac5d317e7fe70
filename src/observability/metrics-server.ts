/**
 * The /metrics endpoint on its own port (METRICS_PORT), apart from the public API. In a single
 * process it renders this process's registry; a supervisor of several workers passes a `render`
 * that aggregates its workers' registries, so each worker is counted once. Given `status`, it also
 * serves the status page at `/` and `/status.json` (a host-wide view when `render` aggregates).
 *
 * Only one process per host binds the metrics port (the single process, or the supervisor; workers
 * never do), so the port is bound exclusively: a second Turnomatic given the same METRICS_PORT must
 * fail at start. Bun 1.4 sets SO_REUSEPORT on a `development: false` listener unless `reusePort:
 * false` is given explicitly; without it two processes both listened and scrapes alternated between
 * them (issue 15).
 */
import { StartError } from "../domain/errors.ts";
import type { Server } from "bun";
import type { Registry } from "prom-client";

export interface RenderedMetrics {
  readonly contentType: string;
  readonly body: string;
}

export type MetricsRenderer = () => Promise<RenderedMetrics>;

/** The metrics port is held by another process; a start-up error (exit 2), like a bad option. */
export class MetricsPortInUseError extends StartError {
  constructor(host: string, port: number) {
    super(
      "TURNO_ERR_METRICS_PORT_IN_USE",
      `METRICS_PORT / --metrics-port ${port} is already in use on ${host} (another Turnomatic or exporter listens there); ` +
        "give each process its own metrics port, use --workers to share one host-wide port, or 0 to turn metrics off.",
    );
  }
}

/** Renders this process's registry in Prometheus text format. */
export function localMetricsRenderer(registry: Registry): MetricsRenderer {
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}

/** Binds the metrics port exclusively; throws MetricsPortInUseError when another process holds it. */
export function startMetricsServer(
  port: number,
  host: string,
  render: MetricsRenderer,
  status?: (path: string) => Promise<Response>,
): Server<undefined> {
  try {
    return Bun.serve({
      port,
      hostname: host,
      reusePort: false,
      development: false,
      fetch: async (request) => {
        const path = new URL(request.url).pathname;
        if (status !== undefined && (path === "/" || path === "/index.html" || path === "/status.json")) return status(path);
        if (path !== "/metrics") return new Response("see /metrics\n", { status: 404 });
        const metrics = await render();
        return new Response(metrics.body, { headers: { "content-type": metrics.contentType, "cache-control": "no-store" } });
      },
    });
  } catch (error) {
    if ((error as { code?: unknown }).code === "EADDRINUSE") throw new MetricsPortInUseError(host, port);
    throw error;
  }
}

/** Where the metrics and the host-wide status page are served, for the start log line ({} when off). */
export function metricsUrls(host: string, port: number): { metricsUrl?: string; statusPageUrl?: string } {
  if (port === 0) return {};
  const base = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return { metricsUrl: `${base}/metrics`, statusPageUrl: `${base}/` };
}
