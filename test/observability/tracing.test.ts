/**
 * Tracing: off by default; with the standard OTEL_* variables a running service exports one span
 * per turn request to an OTLP/HTTP receiver (here a Bun.serve in the test) with the id, the number,
 * the batch size, the store time and the outcome, sends the configured headers (Honeycomb's
 * x-honeycomb-team), and honours head sampling.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import {
  ATTR_BATCH_SIZE,
  ATTR_ID,
  ATTR_OUTCOME,
  ATTR_STORE_MS,
  ATTR_TURNO,
  SPAN_TURN,
} from "../../src/observability/span-attributes.ts";
import { parseTraceparent, samplingRatio, tracingWanted } from "../../src/observability/tracing.ts";
import { adminHeaders, startService } from "../helpers/service.ts";

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}
interface ReceivedSpan {
  name: string;
  traceId: string;
  parentSpanId: string | undefined;
  attributes: Record<string, string | number | boolean | undefined>;
  serviceName: string | undefined;
}

function plain(value: OtlpValue): string | number | boolean | undefined {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  return value.doubleValue ?? value.boolValue;
}

function startReceiver() {
  const spans: ReceivedSpan[] = [];
  const headers: Array<string | null> = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: async (request) => {
      if (new URL(request.url).pathname !== "/v1/traces" || request.method !== "POST") return new Response("no", { status: 404 });
      headers.push(request.headers.get("x-honeycomb-team"));
      const body = (await request.json()) as {
        resourceSpans: Array<{
          resource: { attributes: Array<{ key: string; value: OtlpValue }> };
          scopeSpans: Array<{
            spans: Array<{
              name: string;
              traceId: string;
              parentSpanId?: string;
              attributes: Array<{ key: string; value: OtlpValue }>;
            }>;
          }>;
        }>;
      };
      for (const resourceSpans of body.resourceSpans) {
        const serviceName = resourceSpans.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue;
        for (const scope of resourceSpans.scopeSpans) {
          for (const span of scope.spans) {
            spans.push({
              name: span.name,
              traceId: span.traceId,
              parentSpanId: span.parentSpanId === "" ? undefined : span.parentSpanId,
              serviceName,
              attributes: Object.fromEntries(span.attributes.map((a) => [a.key, plain(a.value)])),
            });
          }
        }
      }
      return Response.json({});
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, spans, headers, stop: () => server.stop(true) };
}

const receiver = startReceiver();
afterAll(() => receiver.stop());

describe("tracing", () => {
  test("is off unless the OTEL variables ask for it", () => {
    expect(tracingWanted({})).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" })).toBe(true);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_TRACES_EXPORTER: "none" })).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_SDK_DISABLED: "true" })).toBe(false);
  });

  test("head sampling ratio follows OTEL_TRACES_SAMPLER and its argument", () => {
    expect(samplingRatio({})).toBe(1);
    expect(samplingRatio({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.01" })).toBe(0.01);
    expect(samplingRatio({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.5" })).toBe(0.5);
    expect(samplingRatio({ OTEL_TRACES_SAMPLER: "always_off" })).toBe(0);
    expect(samplingRatio({ OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" })).toBe(1);
  });

  test("traceparent parsing follows W3C trace context", () => {
    const id = "0af7651916cd43dd8448eb211c80319c";
    expect(parseTraceparent(`00-${id}-b7ad6b7169203331-01`)).toEqual({ traceId: id, spanId: "b7ad6b7169203331", sampled: true });
    expect(parseTraceparent(`00-${id}-b7ad6b7169203331-00`)?.sampled).toBe(false);
    expect(parseTraceparent(`00-${"0".repeat(32)}-b7ad6b7169203331-01`)).toBeUndefined();
    expect(parseTraceparent(`ff-${id}-b7ad6b7169203331-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${id}-b7ad6b7169203331-01-extra`)).toBeUndefined();
    expect(parseTraceparent("garbage")).toBeUndefined();
  });

  test("one span per turn request reaches an OTLP receiver with id, turno, batch size, store time, outcome", async () => {
    const service = await startService({
      store: "memory:",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_HEADERS: "x-honeycomb-team=test-key",
        OTEL_SERVICE_NAME: "turnomatic-test",
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    });
    try {
      expect(service.logs()).toContain('"event":"tracing.start"');
      const concurrent = await Promise.all(
        Array.from(
          { length: 20 },
          async () => (await (await fetch(`${service.url}/turno/traced`, { method: "POST" })).json()) as { turno: number },
        ),
      );
      // One id pushed to the top: its next request fails with 409, and the span says so.
      await fetch(`${service.url}/admin/turno/full`, {
        method: "PUT",
        headers: adminHeaders(),
        body: JSON.stringify({ turno: MAX_TURNO }),
      });
      expect((await fetch(`${service.url}/turno/full`, { method: "POST" })).status).toBe(409);
      // Probes and other routes make no spans.
      await fetch(`${service.url}/healthz`);
      expect(await service.stop("SIGTERM")).toBe(0); // shutdown flushes the exporter
      const turns = receiver.spans.filter((span) => span.name === SPAN_TURN);
      expect(turns.length).toBe(21);
      const ok = turns.filter((span) => span.attributes[ATTR_ID] === "traced");
      expect(ok.map((span) => span.attributes[ATTR_TURNO]).sort((a, b) => Number(a) - Number(b))).toEqual(
        concurrent.map((r) => r.turno).sort((a, b) => a - b),
      );
      for (const span of ok) {
        expect(span.attributes[ATTR_OUTCOME]).toBe("ok");
        expect(span.attributes[ATTR_BATCH_SIZE]).toBeGreaterThanOrEqual(1);
        expect(span.attributes[ATTR_STORE_MS]).toBeGreaterThanOrEqual(0);
        expect(span.serviceName).toBe("turnomatic-test");
      }
      const full = turns.find((span) => span.attributes[ATTR_ID] === "full");
      expect(full?.attributes[ATTR_OUTCOME]).toBe("TURNO_ERR_COUNTER_EXHAUSTED");
      expect(receiver.headers.length).toBeGreaterThan(0);
      expect(receiver.headers.every((header) => header === "test-key")).toBe(true);
    } finally {
      await service.stop("SIGKILL");
    }
  }, 60_000);

  test("head sampling: ratio 0 exports only spans whose caller sampled, ratio 0.5 about half", async () => {
    const before = receiver.spans.length;
    const service = await startService({
      store: "memory:",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0",
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    });
    try {
      for (let i = 0; i < 20; i++) expect((await fetch(`${service.url}/turno/unsampled`, { method: "POST" })).status).toBe(200);
      // parentbased: a caller that sampled its trace gets the turn span in it despite ratio 0; one
      // that did not sample gets none.
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const sampled = { traceparent: `00-${traceId}-00f067aa0ba902b7-01` };
      const unsampled = { traceparent: `00-${traceId}-00f067aa0ba902b8-00` };
      expect((await fetch(`${service.url}/turno/child`, { method: "POST", headers: sampled })).status).toBe(200);
      expect((await fetch(`${service.url}/turno/child`, { method: "POST", headers: unsampled })).status).toBe(200);
      expect(await service.stop("SIGTERM")).toBe(0);
      const exported = receiver.spans.slice(before);
      expect(exported.length).toBe(1);
      expect(exported[0]?.traceId).toBe(traceId);
      expect(exported[0]?.parentSpanId).toBe("00f067aa0ba902b7");
      expect(exported[0]?.attributes[ATTR_ID]).toBe("child");
    } finally {
      await service.stop("SIGKILL");
    }
    const beforeHalf = receiver.spans.length;
    const half = await startService({
      store: "memory:",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.5",
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    });
    try {
      for (let i = 0; i < 200; i++) expect((await fetch(`${half.url}/turno/half`, { method: "POST" })).status).toBe(200);
      expect(await half.stop("SIGTERM")).toBe(0);
      const kept = receiver.spans.length - beforeHalf;
      // Binomial(200, 0.5): outside 60..140 has probability below 1e-8.
      expect(kept).toBeGreaterThan(60);
      expect(kept).toBeLessThan(140);
    } finally {
      await half.stop("SIGKILL");
    }
  }, 60_000);
});
