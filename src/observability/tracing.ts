/**
 * OpenTelemetry tracing: one span per turn request, exported over OTLP/HTTP (JSON) to any collector
 * or to Honeycomb directly. Off unless the standard variables ask for it:
 *   OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp
 *   OTEL_EXPORTER_OTLP_HEADERS   e.g. x-honeycomb-team=<api key>
 *   OTEL_SERVICE_NAME            default "turnomatic"
 *   OTEL_TRACES_SAMPLER(_ARG)    e.g. parentbased_traceidratio + 0.01 (head sampling)
 *   OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off again.
 * Endpoint and headers are read from the `env` given (exporterConfig). Head sampling is decided here
 * from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG as the specification defines them: with a
 * parent-based sampler a request carrying a W3C `traceparent` follows its sampled flag (and its span
 * joins the caller's trace); any other request is kept with the ratio. Deciding with one
 * Math.random() before touching the SDK makes an unsampled request cost ~nothing (the SDK's own
 * path, a non-recording span with fresh random ids, measured ~3 µs per request on Bun).
 *
 * When off, createTracing returns undefined and the app's hot path does not even call into here.
 * When on, the batch size and store time of a request's reservation come from the coalescer's
 * onReservation hook, remembered only for ids that have a sampled span open (bounded memory).
 */
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api";
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
  readonly traceTurn: (id: string, next: () => Promise<number>, traceparent: string | null) => Promise<number>;
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
 * W3C trace context of the caller (`traceparent: 00-<trace id>-<parent span id>-<flags>`), so a turn
 * span joins the client's trace. Malformed headers are ignored (the request is then a root), as
 * https://www.w3.org/TR/trace-context/#traceparent-header asks.
 */
export function parseTraceparent(header: string): { traceId: string; spanId: string; sampled: boolean } | undefined {
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(header.trim());
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string?];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
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
  return samplingPolicy(env).ratio;
}

/** The ratio for requests without a (valid) parent, and whether a parent's sampled flag decides instead. */
function samplingPolicy(env: Record<string, string | undefined>): { ratio: number; parentBased: boolean } {
  const sampler = (env.OTEL_TRACES_SAMPLER ?? "parentbased_always_on").trim().toLowerCase();
  const known = ["always_on", "always_off", "traceidratio"];
  const parentBased = sampler.startsWith("parentbased_") || !known.includes(sampler);
  return { ratio: rootRatio(sampler, env.OTEL_TRACES_SAMPLER_ARG), parentBased };
}

function rootRatio(sampler: string, arg: string | undefined): number {
  if (sampler === "always_off" || sampler === "parentbased_always_off") return 0;
  if (sampler === "traceidratio" || sampler === "parentbased_traceidratio") {
    const ratio = Number(arg ?? "1");
    return Number.isFinite(ratio) && ratio >= 0 && ratio <= 1 ? ratio : 1;
  }
  return 1;
}

export function createTracing(env: Record<string, string | undefined>, storeKind: string, version: string): Tracing | undefined {
  if (!tracingWanted(env)) return undefined;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ "service.name": "turnomatic", "service.version": version }))
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our defaults.
    .merge(detectResources({ detectors: [envDetector] }));
  const { ratio, parentBased } = samplingPolicy(env);
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

  const traced = async (id: string, next: () => Promise<number>, parent: Context): Promise<number> => {
    const span = tracer.startSpan(SPAN_TURN, { kind: SpanKind.SERVER }, parent);
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

  const traceTurn = (id: string, next: () => Promise<number>, traceparent: string | null): Promise<number> => {
    if (parentBased && traceparent !== null) {
      const parent = parseTraceparent(traceparent);
      if (parent !== undefined) {
        if (!parent.sampled) return next();
        const context = trace.setSpanContext(ROOT_CONTEXT, {
          traceId: parent.traceId,
          spanId: parent.spanId,
          traceFlags: TraceFlags.SAMPLED,
          isRemote: true,
        });
        return traced(id, next, context);
      }
    }
    return ratio >= 1 || Math.random() < ratio ? traced(id, next, ROOT_CONTEXT) : next();
  };

  return {
    traceTurn,
    observer,
    shutdown: () => provider.shutdown(),
  };
}
