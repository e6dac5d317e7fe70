/**
 * OpenTelemetry tracing: one SERVER span per API request, shaped by the HTTP semantic conventions
 * (span "POST /turno/{id}", http.request.method, http.route, http.response.status_code, url.*,
 * server.*, client.address...; span-attributes.ts lists them) plus Turnomatic's own: the id, the
 * number, and the batch size and store time of the reservation that served it. 4xx answers make a
 * span like any other; 5xx set the error status and error.type. Exported over OTLP/HTTP (protobuf
 * or JSON) and/or as JSON lines on stdout (OTEL_TRACES_EXPORTER=console); trace-settings.ts reads
 * the variables. Off by default.
 *
 * Cost: when off, createTracing returns undefined and the app never calls into here. When on, the
 * head-sampling decision comes first, from OTEL_TRACES_SAMPLER(_ARG) with one Math.random() (or the
 * caller's traceparent flag with a parentbased_* sampler), before the SDK is touched: an unsampled
 * request costs a Set lookup and a header read, where the SDK's own path (a non-recording span with
 * fresh random ids) measured ~3 µs per request on Bun. The batch size and store time come from the
 * coalescer's onReservation hook, remembered only for ids that have a sampled span open.
 */
import { hostname } from "node:os";
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import type { Server } from "bun";
import { EVENTS } from "../domain/events.ts";
import { TurnoError } from "../domain/errors.ts";
import type { RequestSpan, RequestTracer } from "../http/app.ts";
import type { Route } from "../http/router.ts";
import {
  ATTR_BATCH_SIZE,
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HOST_NAME,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_ID,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_OUTCOME,
  ATTR_PROCESS_PID,
  ATTR_PROCESS_RUNTIME_NAME,
  ATTR_PROCESS_RUNTIME_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_STORE_KIND,
  ATTR_STORE_MS,
  ATTR_TURNO,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
  HTTP_ROUTES,
  UNTRACED_ROUTES,
} from "./span-attributes.ts";
import { parseTraceparent, readTracingSettings, type TracingSettings } from "./trace-settings.ts";

export { parseTraceparent, samplingRatio, TracingConfigError, tracingWanted } from "./trace-settings.ts";

export interface Tracing {
  /** Pass to createApp's traceRequest. */
  readonly traceRequest: RequestTracer;
  /** For the start log: exporters, protocol and URL. */
  readonly settings: TracingSettings;
  /** Exports what is buffered and stops (call on shutdown). */
  shutdown(): Promise<void>;
}

interface OpenId {
  open: number;
  batchSize: number;
  storeMs: number;
}

/** Methods the conventions know; any other is reported as `_OTHER` with the original beside it. */
const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]);

/** Throws TracingConfigError when the variables ask for something unsupported (see trace-settings.ts). */
export function createTracing(env: Record<string, string | undefined>, storeKind: string, version: string): Tracing | undefined {
  const settings = readTracingSettings(env);
  if (settings === undefined) return undefined;
  const provider = new BasicTracerProvider({
    resource: serviceResource(version),
    sampler: new AlwaysOnSampler(),
    spanProcessors: settings.exporters.map((name) => spanProcessor(name, settings)),
  });
  const tracer = provider.getTracer("turnomatic", version);
  const open = new Map<string, OpenId>();
  const { ratio, parentBased } = settings;

  // The store round trip of a traced request's batch, heard from the coalescer's channel.
  const unsubscribe = EVENTS.reservation.subscribe(({ id, numbers, storeSeconds }) => {
    const entry = open.get(id);
    if (entry === undefined) return;
    entry.batchSize = numbers;
    entry.storeMs = storeSeconds * 1000;
  });

  const turn = async (span: Span, id: string, next: () => Promise<number>): Promise<number> => {
    span.setAttribute(ATTR_ID, id);
    let entry = open.get(id);
    if (entry === undefined) {
      entry = { open: 0, batchSize: 0, storeMs: 0 };
      open.set(id, entry);
    }
    entry.open++;
    try {
      const turno = await next();
      span.setAttribute(ATTR_TURNO, turno);
      return turno;
    } finally {
      if (entry.batchSize > 0) {
        span.setAttribute(ATTR_BATCH_SIZE, entry.batchSize);
        span.setAttribute(ATTR_STORE_MS, entry.storeMs);
      }
      if (--entry.open === 0) open.delete(id);
    }
  };

  const startSpan = (request: Request, where: Route, server: Server<undefined> | undefined, parent: Context): RequestSpan => {
    const attributes = requestAttributes(request, where, server);
    attributes[ATTR_STORE_KIND] = storeKind;
    const method = attributes[ATTR_HTTP_REQUEST_METHOD] === "_OTHER" ? "HTTP" : request.method;
    const template = HTTP_ROUTES[where.name];
    const span = tracer.startSpan(
      template === undefined ? method : `${method} ${template}`,
      { kind: SpanKind.SERVER, attributes },
      parent,
    );
    return { turn: (id, next) => turn(span, id, next), end: (status, error) => endSpan(span, status, error) };
  };

  const traceRequest: RequestTracer = (request, where, server) => {
    if (UNTRACED_ROUTES.has(where.name)) return undefined;
    const traceparent = parentBased ? request.headers.get("traceparent") : null;
    if (traceparent !== null) {
      const parent = parseTraceparent(traceparent);
      if (parent !== undefined) {
        if (!parent.sampled) return undefined;
        const context = trace.setSpanContext(ROOT_CONTEXT, {
          traceId: parent.traceId,
          spanId: parent.spanId,
          traceFlags: TraceFlags.SAMPLED,
          isRemote: true,
        });
        return startSpan(request, where, server, context);
      }
    }
    return ratio >= 1 || Math.random() < ratio ? startSpan(request, where, server, ROOT_CONTEXT) : undefined;
  };

  return {
    traceRequest,
    settings,
    shutdown: () => {
      unsubscribe();
      return provider.shutdown();
    },
  };
}

/** service.*, host.name, process.pid; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over these. */
function serviceResource(version: string) {
  return defaultResource()
    .merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: "turnomatic",
        [ATTR_SERVICE_VERSION]: version,
        // One per process: each worker of a supervisor is its own instance (the conventions' UUID v4).
        [ATTR_SERVICE_INSTANCE_ID]: crypto.randomUUID(),
        [ATTR_HOST_NAME]: hostname(),
        [ATTR_PROCESS_PID]: process.pid,
        [ATTR_PROCESS_RUNTIME_NAME]: "bun",
        [ATTR_PROCESS_RUNTIME_VERSION]: Bun.version,
      }),
    )
    .merge(detectResources({ detectors: [envDetector] }));
}

function spanProcessor(name: TracingSettings["exporters"][number], settings: TracingSettings): SpanProcessor {
  // As the SDK's autoconfiguration does: console spans are written as they end, OTLP in batches.
  if (name === "console") return new SimpleSpanProcessor(new JsonLinesSpanExporter());
  const config = { ...(settings.url === undefined ? {} : { url: settings.url }), headers: settings.headers };
  return new BatchSpanProcessor(
    settings.protocol === "http/json" ? new OtlpJsonExporter(config) : new OtlpProtobufExporter(config),
  );
}

/** The semantic-convention attributes known when the request arrives. */
function requestAttributes(request: Request, where: Route, server: Server<undefined> | undefined): Attributes {
  const url = request.url;
  const schemeEnd = url.indexOf("://");
  const scheme = schemeEnd > 0 ? url.slice(0, schemeEnd) : "http";
  const hostEnd = url.indexOf("/", schemeEnd + 3);
  const authority = url.slice(schemeEnd + 3, hostEnd < 0 ? url.length : hostEnd);
  const colon = authority.lastIndexOf(":");
  const hasPort = colon > authority.lastIndexOf("]");
  const method = KNOWN_METHODS.has(request.method) ? request.method : "_OTHER";
  const attributes: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_URL_PATH]: where.path,
    [ATTR_URL_SCHEME]: scheme,
    [ATTR_SERVER_ADDRESS]: (hasPort ? authority.slice(0, colon) : authority).replace(/^\[(.*)\]$/, "$1"),
    [ATTR_SERVER_PORT]: hasPort ? Number(authority.slice(colon + 1)) : scheme === "https" ? 443 : 80,
    // Bun.serve speaks HTTP/1.1 and does not tell a 1.0 request apart.
    [ATTR_NETWORK_PROTOCOL_VERSION]: "1.1",
  };
  const template = HTTP_ROUTES[where.name];
  if (template !== undefined) attributes[ATTR_HTTP_ROUTE] = template;
  if (method === "_OTHER") attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = request.method;
  const userAgent = request.headers.get("user-agent");
  if (userAgent !== null) attributes[ATTR_USER_AGENT_ORIGINAL] = userAgent;
  const peer = server?.requestIP(request) ?? null;
  if (peer !== null) {
    attributes[ATTR_NETWORK_PEER_ADDRESS] = peer.address;
    attributes[ATTR_NETWORK_PEER_PORT] = peer.port;
  }
  // Behind HAProxy (option forwardfor) the original client is the first X-Forwarded-For entry.
  const client = forwardedFor(request.headers) ?? peer?.address;
  if (client !== undefined) attributes[ATTR_CLIENT_ADDRESS] = client;
  return attributes;
}

function forwardedFor(headers: Headers): string | undefined {
  const first = headers.get("x-forwarded-for")?.split(",")[0]?.trim();
  if (first) return first;
  const forwarded = /(?:^|[;,\s])for="?\[?([^\]";,]+)/i.exec(headers.get("forwarded") ?? "")?.[1];
  return forwarded?.replace(/^(\d+\.\d+\.\d+\.\d+):\d+$/, "$1");
}

/** Server spans: 4xx leave the status unset (the client's fault), 5xx are errors (semconv). */
function endSpan(span: Span, status: number, error: unknown): void {
  span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
  const code = error === undefined ? undefined : error instanceof TurnoError ? error.code : "TURNO_ERR_INTERNAL";
  if (code !== undefined) span.setAttribute(ATTR_OUTCOME, code);
  else if (status < 400) span.setAttribute(ATTR_OUTCOME, "ok");
  if (status >= 500) {
    span.setAttribute(ATTR_ERROR_TYPE, code ?? String(status));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : undefined });
  }
  span.end();
}

/**
 * OTEL_TRACES_EXPORTER=console: one JSON object per span on stdout (stderr carries the logs), so
 * `jq` reads it. The specification leaves the format open; the SDK's own console exporter prints
 * util.inspect output that no tool parses.
 */
class JsonLinesSpanExporter implements SpanExporter {
  export(spans: ReadableSpan[], done: Parameters<SpanExporter["export"]>[1]): void {
    let out = "";
    for (const span of spans) out += `${JSON.stringify(spanJson(span))}\n`;
    process.stdout.write(out);
    done({ code: 0 });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

function spanJson(span: ReadableSpan): Record<string, unknown> {
  const context = span.spanContext();
  const [seconds, nanos] = span.startTime;
  const [durationSeconds, durationNanos] = span.duration;
  return {
    name: span.name,
    kind: SpanKind[span.kind],
    traceId: context.traceId,
    spanId: context.spanId,
    parentSpanId: span.parentSpanContext?.spanId,
    startTime: new Date(seconds * 1000 + nanos / 1e6).toISOString(),
    durationMs: durationSeconds * 1000 + durationNanos / 1e6,
    status: { code: SpanStatusCode[span.status.code], message: span.status.message },
    attributes: span.attributes,
    resource: span.resource.attributes,
    scope: span.instrumentationScope.name,
  };
}
