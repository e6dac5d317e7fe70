/**
 * OpenTelemetry tracing: one span per turn request, exported over OTLP/HTTP (JSON) to any collector
 * or to Honeycomb directly. Off unless the standard variables ask for it:
 *   OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp
 *   OTEL_EXPORTER_OTLP_HEADERS   e.g. x-honeycomb-team=<api key>
 *   OTEL_SERVICE_NAME            default "turnomatic"
 *   OTEL_TRACES_SAMPLER(_ARG)    e.g. parentbased_traceidratio + 0.01 (head sampling)
 *   OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off again.
 * Endpoint and headers are read from the same variables (exporterConfig). Head sampling is decided here, from the same
 * OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: a turn span is always a root (incoming traceparent
 * headers are not read), so parentbased_traceidratio and traceidratio both mean "keep this fraction",
 * and deciding with one Math.random() before touching the SDK makes an unsampled request cost ~nothing
 * (the SDK's own path, a non-recording span with fresh random ids, measured ~3 µs per request on Bun).
 *
 * When off, createTracing returns undefined and the app's hot path does not even call into here.
 * When on, the batch size and store time of a request's reservation come from the coalescer's
 * onReservation hook, remembered only for ids that have a sampled span open (bounded memory).
 */
import { type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import type { CoalescerObserver } from "../allocation/coalescer.ts";
import { TurnoError } from "../domain/errors.ts";
import {
  ATTR_BATCH_SIZE,
  ATTR_ERROR_TYPE,
  ATTR_ID,
  ATTR_OUTCOME,
  ATTR_STORE_KIND,
  ATTR_STORE_MS,
  ATTR_TURNO,
  SPAN_TURN,
} from "./span-attributes.ts";

export interface Tracing {
  /** Pass to createApp's traceTurn. */
  readonly traceTurn: (id: string, next: () => Promise<number>) => Promise<number>;
  /** Combine with the other coalescer observers. */
  readonly observer: CoalescerObserver;
  /** Exports what is buffered and stops (call on shutdown). */
  shutdown(): Promise<void>;
}

interface OpenId {
  open: number;
  batchSize: number;
  storeMs: number;
}

/** True when the environment asks for traces (see the header). */
export function tracingWanted(env: Record<string, string | undefined>): boolean {
  if (env.OTEL_SDK_DISABLED?.toLowerCase() === "true") return false;
  const exporter = env.OTEL_TRACES_EXPORTER?.toLowerCase();
  if (exporter === "none") return false;
  return exporter === "otlp" || !!env.OTEL_EXPORTER_OTLP_ENDPOINT || !!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
}

/**
 * The exporter's URL and headers from `env` (the exporter would read process.env itself; passing
 * them keeps `env` the one source, which tests and benches rely on).
 */
function exporterConfig(env: Record<string, string | undefined>): { url?: string; headers?: Record<string, string> } {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.replace(/\/+$/, "");
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base === undefined || base === "" ? undefined : `${base}/v1/traces`);
  const headers: Record<string, string> = {};
  // W3C Baggage-like list: key=value pairs, comma-separated, values percent-encoded.
  for (const pair of (env.OTEL_EXPORTER_OTLP_HEADERS ?? "").split(",")) {
    const at = pair.indexOf("=");
    if (at <= 0) continue;
    headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return { ...(url === undefined ? {} : { url }), ...(Object.keys(headers).length === 0 ? {} : { headers }) };
}

/**
 * The fraction of turn requests to trace, from OTEL_TRACES_SAMPLER(_ARG) as the OpenTelemetry
 * specification defines them for root spans. Unknown samplers fall back to always_on, as the SDK does.
 */
export function samplingRatio(env: Record<string, string | undefined>): number {
  const sampler = (env.OTEL_TRACES_SAMPLER ?? "parentbased_always_on").trim().toLowerCase();
  if (sampler === "always_off" || sampler === "parentbased_always_off") return 0;
  if (sampler === "traceidratio" || sampler === "parentbased_traceidratio") {
    const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? "1");
    return Number.isFinite(arg) && arg >= 0 && arg <= 1 ? arg : 1;
  }
  return 1;
}

export function createTracing(env: Record<string, string | undefined>, storeKind: string, version: string): Tracing | undefined {
  if (!tracingWanted(env)) return undefined;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ "service.name": "turnomatic", "service.version": version }))
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our defaults.
    .merge(detectResources({ detectors: [envDetector] }));
  const ratio = samplingRatio(env);
  const provider = new BasicTracerProvider({
    resource,
    sampler: new AlwaysOnSampler(),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter(exporterConfig(env)))],
  });
  const tracer = provider.getTracer("turnomatic", version);
  const open = new Map<string, OpenId>();

  const observer: CoalescerObserver = {
    onReservation(batchSize, storeSeconds, _outcome, id) {
      const entry = open.get(id);
      if (entry === undefined) return;
      entry.batchSize = batchSize;
      entry.storeMs = storeSeconds * 1000;
    },
  };

  const finish = (span: Span, id: string, entry: OpenId) => {
    if (entry.batchSize > 0) {
      span.setAttribute(ATTR_BATCH_SIZE, entry.batchSize);
      span.setAttribute(ATTR_STORE_MS, entry.storeMs);
    }
    span.end();
    if (--entry.open === 0) open.delete(id);
  };

  const traced = async (id: string, next: () => Promise<number>): Promise<number> => {
    const span = tracer.startSpan(SPAN_TURN, { kind: SpanKind.SERVER });
    span.setAttribute(ATTR_ID, id);
    span.setAttribute(ATTR_STORE_KIND, storeKind);
    let entry = open.get(id);
    if (entry === undefined) {
      entry = { open: 0, batchSize: 0, storeMs: 0 };
      open.set(id, entry);
    }
    entry.open++;
    try {
      const turno = await next();
      span.setAttribute(ATTR_TURNO, turno);
      span.setAttribute(ATTR_OUTCOME, "ok");
      return turno;
    } catch (error) {
      const code = error instanceof TurnoError ? error.code : "TURNO_ERR_INTERNAL";
      span.setAttribute(ATTR_OUTCOME, code);
      span.setAttribute(ATTR_ERROR_TYPE, code);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      throw error;
    } finally {
      finish(span, id, entry);
    }
  };

  const traceTurn = (id: string, next: () => Promise<number>): Promise<number> =>
    ratio >= 1 || Math.random() < ratio ? traced(id, next) : next();

  return {
    traceTurn,
    observer,
    shutdown: () => provider.shutdown(),
  };
}
