/**
 * The /metrics endpoint on its own port (METRICS_PORT), apart from the public API. In a single
 * process it renders this process's registry; a supervisor of several workers passes a `render`
 * that aggregates its workers' registries, so each worker is counted once. Given `status`, it also
 * serves the status page at `/` and `/status.json` (a host-wide view when `render` aggregates).
 */
import type { Server } from "bun";
import { register } from "prom-client";

export interface RenderedMetrics {
  readonly contentType: string;
  readonly body: string;
}

export type MetricsRenderer = () => Promise<RenderedMetrics>;

/** This process's prom-client default registry, in Prometheus text format. */
export async function renderLocalMetrics(): Promise<RenderedMetrics> {
  return { contentType: register.contentType, body: await register.metrics() };
}

export function startMetricsServer(
  port: number,
  host: string,
  render: MetricsRenderer,
  status?: (path: string) => Promise<Response>,
): Server<undefined> {
  return Bun.serve({
    port,
    hostname: host,
    development: false,
    fetch: async (request) => {
      const path = new URL(request.url).pathname;
      if (status !== undefined && (path === "/" || path === "/index.html" || path === "/status.json")) return status(path);
      if (path !== "/metrics") return new Response("see /metrics\n", { status: 404 });
      const metrics = await render();
      return new Response(metrics.body, { headers: { "content-type": metrics.contentType, "cache-control": "no-store" } });
    },
  });
}
