/**
 * Tracing: off by default; with the standard OTEL_* variables a running service exports one SERVER
 * span per API request, shaped by the OpenTelemetry HTTP semantic conventions, to an OTLP/HTTP
 * collector (test/integration/observability/helpers/otlp-collector.ts, here in the test) in protobuf (the
 * default) or JSON, or as JSON lines on stdout (console exporter). 4xx answers make spans too; 5xx
 * are error spans. The resource names the service, its version, the instance, the host and the pid.
 * Configured headers are sent (Honeycomb's x-honeycomb-team), head sampling is honoured, and what
 * cannot be honoured (gRPC, unknown exporters) stops the start with exit 2.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import { join } from "node:path";
import packageJson from "../../../package.json" with { type: "json" };
import { MAX_TURNO } from "../../../src/domain/limits.ts";
import {
  ATTR_BATCH_SIZE,
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HOST_NAME,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_ID,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_OUTCOME,
  ATTR_PROCESS_PID,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_STORE_MS,
  ATTR_TURNO,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
} from "../../../src/observability/span-attributes.ts";
import {
  parseTraceparent,
  readTracingSettings,
  samplingRatio,
  TracingConfigError,
  tracingWanted,
} from "../../../src/observability/trace-settings.ts";
import { freePort, waitFor } from "../../../harness/ports.ts";
import { adminHeaders, startService } from "../../../harness/service.ts";
import { type CapturedSpan, startOtlpCollector } from "./helpers/otlp-collector.ts";

const MAIN = join(import.meta.dir, "../../../src/main.ts");
const SERVER = 2; // SpanKind SERVER on the wire
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;

const collector = startOtlpCollector();
afterAll(() => collector.stop());

/** Spans the collector received since `from`, that the service with `pid` sent. */
const spansOf = (pid: number, from = 0): CapturedSpan[] =>
  collector.spans.slice(from).filter((span) => span.resource[ATTR_PROCESS_PID] === pid);

describe("tracing settings", () => {
  test("off unless the OTEL variables ask for it", () => {
    expect(tracingWanted({})).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" })).toBe(true);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracingWanted({ OTEL_TRACES_EXPORTER: "console" })).toBe(true);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_TRACES_EXPORTER: "none" })).toBe(false);
    expect(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_SDK_DISABLED: "true" })).toBe(false);
  });

  test("exporters, protocol and URL follow the specification's variables", () => {
    expect(readTracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" })).toMatchObject({
      exporters: ["otlp"],
      protocol: "http/protobuf",
      url: "http://c:4318/v1/traces",
    });
    expect(
      readTracingSettings({ OTEL_TRACES_EXPORTER: "otlp, console", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" }),
    ).toMatchObject({
      exporters: ["otlp", "console"],
      protocol: "http/json",
      url: undefined,
    });
    const signalWins = readTracingSettings({
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c/traces",
    });
    expect(signalWins).toMatchObject({ protocol: "http/json", url: "http://c/traces" });
  });

  test("what cannot be honoured is refused, naming the variable", () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"],
      [{ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"],
      [{ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "thrift" }, "OTEL_EXPORTER_OTLP_PROTOCOL"],
      [{ OTEL_TRACES_EXPORTER: "zipkin" }, "OTEL_TRACES_EXPORTER 'zipkin'"],
      [{ OTEL_TRACES_EXPORTER: "none,console" }, "OTEL_TRACES_EXPORTER"],
    ];
    for (const [env, message] of cases) {
      expect(() => readTracingSettings(env)).toThrow(TracingConfigError);
      expect(() => readTracingSettings(env)).toThrow(message);
    }
    // The console exporter alone does not care about the OTLP protocol.
    expect(readTracingSettings({ OTEL_TRACES_EXPORTER: "console", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })?.exporters).toEqual([
      "console",
    ]);
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
});

describe("spans from a real OTLP export", () => {
  test("http/protobuf (the default): HTTP semantic conventions, 4xx spans, Turnomatic attributes, the resource", async () => {
    const service = await startService({
      store: "memory:",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_HEADERS: "x-honeycomb-team=test-key",
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    });
    const from = collector.spans.length;
    let concurrent: Array<{ turno: number }> = [];
    try {
      expect(service.logs()).toContain('"event":"tracing.start"');
      expect(service.logs()).toContain('"protocol":"http/protobuf"');
      concurrent = await Promise.all(
        Array.from(
          { length: 20 },
          async () => (await (await fetch(`${service.url}/turno/traced`, { method: "POST" })).json()) as { turno: number },
        ),
      );
      // One id pushed to the top: its next request fails with 409, and the span says so.
      const put = await fetch(`${service.url}/admin/turno/full`, {
        method: "PUT",
        headers: adminHeaders(),
        body: JSON.stringify({ turno: MAX_TURNO }),
      });
      expect(put.status).toBe(200);
      expect((await fetch(`${service.url}/turno/full`, { method: "POST" })).status).toBe(409);
      expect((await fetch(`${service.url}/turno/bad%20id`)).status).toBe(400);
      expect(
        (await fetch(`${service.url}/turno/seen/actual`, { headers: { "x-forwarded-for": "203.0.113.9, 10.0.0.1" } })).status,
      ).toBe(200);
      expect((await fetch(`${service.url}/nowhere`)).status).toBe(404);
      // Probes make no spans (startService's /healthz polls neither).
      expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${service.url}/readyz`)).status).toBe(200);
      expect(await service.stop("SIGTERM")).toBe(0); // shutdown flushes the exporter
    } finally {
      await service.stop("SIGKILL");
    }
    const spans = spansOf(service.process.pid, from);
    expect(spans.every((span) => span.contentType === "application/x-protobuf")).toBe(true);
    expect(spans.map((span) => span.name).sort()).toEqual(
      [
        ...Array<string>(21).fill("POST /turno/{id}"),
        "PUT /admin/turno/{id}",
        "GET /turno/{id}",
        "GET /turno/{id}/actual",
        "GET",
      ].sort(),
    );
    for (const span of spans) {
      expect(span.kind).toBe(SERVER);
      expect(span.scope).toBe("turnomatic");
      expect(span.endNs).toBeGreaterThanOrEqual(span.startNs);
      expect(span.attributes).toMatchObject({
        [ATTR_URL_SCHEME]: "http",
        [ATTR_SERVER_ADDRESS]: "127.0.0.1",
        [ATTR_SERVER_PORT]: service.port,
        [ATTR_NETWORK_PROTOCOL_VERSION]: "1.1",
      });
      expect(span.attributes[ATTR_CLIENT_ADDRESS]).toBeDefined();
      expect(span.resource).toMatchObject({
        [ATTR_SERVICE_NAME]: "turnomatic",
        [ATTR_SERVICE_VERSION]: packageJson.version,
        [ATTR_HOST_NAME]: hostname(),
        [ATTR_PROCESS_PID]: service.process.pid,
      });
      expect(String(span.resource[ATTR_SERVICE_INSTANCE_ID])).toMatch(/^[0-9a-f-]{36}$/);
      // No 5xx here: no span is an error.
      expect(span.status.code).toBe(STATUS_UNSET);
    }
    const ok = spans.filter((span) => span.attributes[ATTR_ID] === "traced");
    expect(ok.length).toBe(20);
    expect(ok.map((span) => span.attributes[ATTR_TURNO]).sort((a, b) => Number(a) - Number(b))).toEqual(
      concurrent.map((r) => r.turno).sort((a, b) => a - b),
    );
    for (const span of ok) {
      expect(span.attributes).toMatchObject({
        [ATTR_HTTP_REQUEST_METHOD]: "POST",
        [ATTR_HTTP_ROUTE]: "/turno/{id}",
        [ATTR_HTTP_RESPONSE_STATUS_CODE]: 200,
        [ATTR_URL_PATH]: "/turno/traced",
        [ATTR_OUTCOME]: "ok",
        [ATTR_CLIENT_ADDRESS]: "127.0.0.1",
      });
      expect(span.attributes[ATTR_BATCH_SIZE]).toBeGreaterThanOrEqual(1);
      expect(span.attributes[ATTR_STORE_MS]).toBeGreaterThanOrEqual(0);
    }
    const full = spans.find((span) => span.attributes[ATTR_ID] === "full");
    expect(full?.attributes).toMatchObject({
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: 409,
      [ATTR_OUTCOME]: "TURNO_ERR_COUNTER_EXHAUSTED",
    });
    expect(full?.attributes[ATTR_ERROR_TYPE]).toBeUndefined(); // 4xx is the client's: no error on a server span
    const invalid = spans.find((span) => span.name === "GET /turno/{id}");
    expect(invalid?.attributes).toMatchObject({ [ATTR_HTTP_RESPONSE_STATUS_CODE]: 400, [ATTR_URL_PATH]: "/turno/bad%20id" });
    const actual = spans.find((span) => span.name === "GET /turno/{id}/actual");
    expect(actual?.attributes[ATTR_CLIENT_ADDRESS]).toBe("203.0.113.9");
    const unknown = spans.find((span) => span.name === "GET");
    expect(unknown?.attributes[ATTR_HTTP_ROUTE]).toBeUndefined();
    expect(unknown?.attributes[ATTR_HTTP_RESPONSE_STATUS_CODE]).toBe(404);
    const admin = spans.find((span) => span.name === "PUT /admin/turno/{id}");
    expect(admin?.attributes[ATTR_HTTP_ROUTE]).toBe("/admin/turno/{id}");
    // The configured header reached the collector with every export.
    const exports = collector.requests.filter((headers) => headers.get("x-honeycomb-team") !== null);
    expect(exports.length).toBeGreaterThan(0);
    expect(exports.every((headers) => headers.get("x-honeycomb-team") === "test-key")).toBe(true);
  }, 60_000);

  test("http/json when asked; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; a 5xx is an error span", async () => {
    // Nothing listens on this port: every turn is a 503 once the short deadline passes.
    const deadRedis = `redis://127.0.0.1:${await freePort()}`;
    const service = await startService({
      store: deadRedis,
      env: {
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${collector.url}/v1/traces`,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_SERVICE_NAME: "turnomatic-test",
        OTEL_RESOURCE_ATTRIBUTES: "deployment.environment.name=test",
        OTEL_BSP_SCHEDULE_DELAY: "100",
        TURNOMATIC_DEADLINE_MS: "100",
      },
    });
    const from = collector.spans.length;
    try {
      expect((await fetch(`${service.url}/turno/down`, { method: "POST" })).status).toBe(503);
      expect(await service.stop("SIGTERM")).toBe(0);
    } finally {
      await service.stop("SIGKILL");
    }
    const [span, ...rest] = spansOf(service.process.pid, from);
    expect(rest).toEqual([]);
    expect(span?.contentType).toStartWith("application/json");
    expect(span?.name).toBe("POST /turno/{id}");
    expect(span?.resource).toMatchObject({ [ATTR_SERVICE_NAME]: "turnomatic-test", "deployment.environment.name": "test" });
    expect(span?.attributes).toMatchObject({
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: 503,
      [ATTR_ERROR_TYPE]: "TURNO_ERR_STORE_UNAVAILABLE",
      [ATTR_OUTCOME]: "TURNO_ERR_STORE_UNAVAILABLE",
      [ATTR_ID]: "down",
    });
    expect(span?.status.code).toBe(STATUS_ERROR);
  }, 60_000);

  test("head sampling: ratio 0 exports only spans whose caller sampled, ratio 0.5 about half", async () => {
    const service = await startService({
      store: "memory:",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0",
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    });
    const from = collector.spans.length;
    try {
      for (let i = 0; i < 20; i++) expect((await fetch(`${service.url}/turno/unsampled`, { method: "POST" })).status).toBe(200);
      // 4xx answers are sampled like the rest: none at ratio 0.
      for (let i = 0; i < 5; i++) expect((await fetch(`${service.url}/nowhere`)).status).toBe(404);
      // parentbased: a caller that sampled its trace gets the span in it despite ratio 0; one that
      // did not sample gets none.
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
      const sampled = { traceparent: `00-${traceId}-00f067aa0ba902b7-01` };
      const unsampled = { traceparent: `00-${traceId}-00f067aa0ba902b8-00` };
      expect((await fetch(`${service.url}/turno/child`, { method: "POST", headers: sampled })).status).toBe(200);
      expect((await fetch(`${service.url}/turno/child`, { method: "POST", headers: unsampled })).status).toBe(200);
      expect(await service.stop("SIGTERM")).toBe(0);
    } finally {
      await service.stop("SIGKILL");
    }
    const exported = spansOf(service.process.pid, from);
    expect(exported.length).toBe(1);
    expect(exported[0]?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(exported[0]?.parentSpanId).toBe("00f067aa0ba902b7");
    expect(exported[0]?.attributes[ATTR_ID]).toBe("child");

    const half = await startService({
      store: "memory:",
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "0.5",
        OTEL_BSP_SCHEDULE_DELAY: "100",
      },
    });
    const fromHalf = collector.spans.length;
    try {
      for (let i = 0; i < 200; i++) expect((await fetch(`${half.url}/turno/half`, { method: "POST" })).status).toBe(200);
      expect(await half.stop("SIGTERM")).toBe(0);
    } finally {
      await half.stop("SIGKILL");
    }
    const kept = spansOf(half.process.pid, fromHalf).length;
    // Binomial(200, 0.5): outside 60..140 has probability below 1e-8.
    expect(kept).toBeGreaterThan(60);
    expect(kept).toBeLessThan(140);
  }, 60_000);
});

describe("console exporter and refused settings", () => {
  test("OTEL_TRACES_EXPORTER=console writes one JSON span per line on stdout", async () => {
    const port = await freePort();
    const child = Bun.spawn([process.execPath, MAIN], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: "127.0.0.1",
        METRICS_PORT: "0",
        TURNOMATIC_STORE: "memory:",
        OTEL_TRACES_EXPORTER: "console",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      await waitFor("the service", async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
      expect((await fetch(`http://127.0.0.1:${port}/turno/console`, { method: "POST" })).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/turno/console/nope`)).status).toBe(404);
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
      const lines = (await new Response(child.stdout).text()).trim().split("\n");
      const spans = lines.map(
        (line) =>
          JSON.parse(line) as {
            name: string;
            kind: string;
            attributes: Record<string, unknown>;
            resource: Record<string, unknown>;
          },
      );
      expect(spans.map((span) => span.name)).toEqual(["POST /turno/{id}", "GET"]);
      expect(spans[0]).toMatchObject({
        kind: "SERVER",
        attributes: { [ATTR_HTTP_ROUTE]: "/turno/{id}", [ATTR_HTTP_RESPONSE_STATUS_CODE]: 200, [ATTR_TURNO]: 1 },
        resource: { [ATTR_SERVICE_NAME]: "turnomatic", [ATTR_PROCESS_PID]: child.pid },
      });
      expect(spans[1]?.attributes[ATTR_HTTP_RESPONSE_STATUS_CODE]).toBe(404);
    } finally {
      child.kill("SIGKILL");
    }
  }, 30_000);

  for (const [what, env, variable] of [
    [
      "grpc",
      { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4317", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" },
      "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
    ],
    ["an unknown exporter", { OTEL_TRACES_EXPORTER: "jaeger" }, "OTEL_TRACES_EXPORTER 'jaeger'"],
  ] as const) {
    test(`${what} stops the start with exit 2 naming the variable, also with --workers`, async () => {
      for (const args of [[], ["--workers", "2", "--store", "sqlite:/nonexistent/never-opened.db"]]) {
        const run = Bun.spawnSync([process.execPath, MAIN, ...args], {
          env: { ...process.env, PORT: "0", METRICS_PORT: "0", TURNOMATIC_STORE: "memory:", ...env },
          stdout: "pipe",
          stderr: "pipe",
          timeout: 20_000,
        });
        expect(run.exitCode).toBe(2);
        expect(run.stderr.toString()).toContain(variable);
        expect(run.stderr.toString()).not.toContain("worker.start");
      }
    });
  }
});
