/**
 * What the standard OTEL_* variables ask of tracing, read once at start and validated: a value we
 * cannot honour (a gRPC protocol, an exporter we do not ship) stops the start with a message that
 * names the variable, instead of being ignored. Variables
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):
 *   OTEL_SDK_DISABLED=true                  off, whatever else is set
 *   OTEL_TRACES_EXPORTER                    otlp, console, none, or a list (otlp,console). Unset: otlp
 *                                           when an endpoint below is set, otherwise off (our default)
 *   OTEL_EXPORTER_OTLP_ENDPOINT             base URL, /v1/traces appended (default http://localhost:4318)
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT      full traces URL instead
 *   OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL    http/protobuf (default, as the specification says) or http/json
 *   OTEL_EXPORTER_OTLP_(TRACES_)HEADERS     e.g. x-honeycomb-team=<api key>
 *   OTEL_TRACES_SAMPLER(_ARG)               head sampling, e.g. parentbased_traceidratio + 0.01
 * Endpoint and headers are read from the `env` given (the exporter would read process.env itself;
 * passing them keeps `env` the one source, which tests and benches rely on).
 */

import { StartError } from "../domain/errors.ts";
export type TraceExporterName = "otlp" | "console";
export type OtlpProtocol = "http/protobuf" | "http/json";

export interface TracingSettings {
  readonly exporters: readonly TraceExporterName[];
  /** Only meaningful with the otlp exporter. */
  readonly protocol: OtlpProtocol;
  /** Traces URL; undefined = the exporter's default (http://localhost:4318/v1/traces). */
  readonly url: string | undefined;
  readonly headers: Record<string, string>;
  /** Fraction of requests without a (valid) parent that are traced. */
  readonly ratio: number;
  /** Whether a W3C traceparent's sampled flag decides instead of the ratio. */
  readonly parentBased: boolean;
}

/** A tracing variable we cannot honour; a start-up error (exit 2), like a bad option. */
export class TracingConfigError extends StartError {
  constructor(message: string) {
    super("TURNO_ERR_TRACING_CONFIG", message);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const EXPORTERS: readonly string[] = ["otlp", "console"];
const PROTOCOLS: readonly string[] = ["http/protobuf", "http/json"];

/** The settings, or undefined when tracing is off. Throws TracingConfigError. */
export function readTracingSettings(env: Env): TracingSettings | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return undefined;
  const exporters = exporterNames(env);
  if (exporters.length === 0) return undefined;
  const { ratio, parentBased } = samplingPolicy(env);
  return {
    exporters,
    protocol: exporters.includes("otlp") ? otlpProtocol(env) : "http/protobuf",
    url: tracesUrl(env),
    headers: { ...otlpHeaders(env.OTEL_EXPORTER_OTLP_HEADERS), ...otlpHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS) },
    ratio,
    parentBased,
  };
}

/** True when the environment asks for traces (see the header). Throws TracingConfigError. */
export function tracingWanted(env: Env): boolean {
  return readTracingSettings(env) !== undefined;
}

function exporterNames(env: Env): TraceExporterName[] {
  const raw = env.OTEL_TRACES_EXPORTER?.trim() ?? "";
  if (raw === "") return env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? ["otlp"] : [];
  const names = [...new Set(raw.split(",").map((name) => name.trim().toLowerCase()))].filter((name) => name !== "");
  if (names.includes("none")) {
    if (names.length > 1)
      throw new TracingConfigError(`OTEL_TRACES_EXPORTER='${raw}': 'none' cannot be combined with an exporter.`);
    return [];
  }
  for (const name of names) {
    if (!EXPORTERS.includes(name)) {
      throw new TracingConfigError(
        `OTEL_TRACES_EXPORTER '${name}' is not supported; use otlp, console or none (or a list such as otlp,console).`,
      );
    }
  }
  return names as TraceExporterName[];
}

function otlpProtocol(env: Env): OtlpProtocol {
  const variable =
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL !== undefined ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const value = (env[variable] ?? "http/protobuf").trim().toLowerCase() || "http/protobuf";
  if (value === "grpc") {
    throw new TracingConfigError(
      `${variable}=grpc is not supported: Turnomatic exports OTLP over HTTP only. Use http/protobuf (the default) or http/json, ` +
        "and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (usually 4318, not gRPC's 4317).",
    );
  }
  if (!PROTOCOLS.includes(value)) {
    throw new TracingConfigError(`${variable} must be http/protobuf or http/json; got '${env[variable]}'.`);
  }
  return value as OtlpProtocol;
}

function tracesUrl(env: Env): string | undefined {
  const full = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (full) return full;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim().replace(/\/+$/, "");
  return base ? `${base}/v1/traces` : undefined;
}

/** W3C Baggage-like list: key=value pairs, comma-separated, values percent-encoded. */
function otlpHeaders(raw: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of (raw ?? "").split(",")) {
    const at = pair.indexOf("=");
    if (at <= 0) continue;
    headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return headers;
}

/**
 * The fraction of requests to trace, from OTEL_TRACES_SAMPLER(_ARG) as the OpenTelemetry
 * specification defines them for root spans. Unknown samplers fall back to always_on, as the SDK does.
 */
export function samplingRatio(env: Env): number {
  return samplingPolicy(env).ratio;
}

function samplingPolicy(env: Env): { ratio: number; parentBased: boolean } {
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

/**
 * W3C trace context of the caller (`traceparent: 00-<trace id>-<parent span id>-<flags>`), so a
 * request's span joins the client's trace. Malformed headers are ignored (the request is then a
 * root), as https://www.w3.org/TR/trace-context/#traceparent-header asks.
 */
export function parseTraceparent(header: string): { traceId: string; spanId: string; sampled: boolean } | undefined {
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(header.trim());
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match as unknown as [string, string, string, string, string, string?];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}
