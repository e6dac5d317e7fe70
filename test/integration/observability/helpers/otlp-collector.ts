/**
 * A tiny OTLP/HTTP trace collector for tests: a Bun.serve on /v1/traces that accepts both encodings
 * the specification defines for OTLP/HTTP, application/x-protobuf (decoded here with a small reader
 * of the protobuf wire format, field numbers from opentelemetry/proto/trace/v1/trace.proto, so the
 * test does not trust the exporter's own serializer) and application/json, and flattens what it
 * receives into one list of spans.
 */

export interface CapturedSpan {
  readonly name: string;
  /** SpanKind as on the wire: 2 = SERVER. */
  readonly kind: number;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Record<string, string | number | boolean>;
  /** 0 unset, 1 ok, 2 error. */
  readonly status: { code: number; message: string };
  readonly resource: Record<string, string | number | boolean>;
  readonly scope: string;
  /** Content-Type of the export request that carried it. */
  readonly contentType: string;
}

export interface OtlpCollector {
  readonly url: string;
  readonly spans: CapturedSpan[];
  /** Headers of every export request received. */
  readonly requests: Headers[];
  stop(): void;
}

export function startOtlpCollector(): OtlpCollector {
  const spans: CapturedSpan[] = [];
  const requests: Headers[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: async (request) => {
      if (new URL(request.url).pathname !== "/v1/traces" || request.method !== "POST") return new Response("no", { status: 404 });
      requests.push(request.headers);
      const contentType = request.headers.get("content-type") ?? "";
      if (contentType.startsWith("application/x-protobuf")) {
        spans.push(...decodeProtobufRequest(new Uint8Array(await request.arrayBuffer()), contentType));
        return new Response(new Uint8Array(0), { headers: { "content-type": "application/x-protobuf" } });
      }
      if (contentType.startsWith("application/json")) {
        spans.push(...decodeJsonRequest(await request.json(), contentType));
        return Response.json({});
      }
      return new Response(`unsupported content-type ${contentType}`, { status: 415 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, spans, requests, stop: () => server.stop(true) };
}

// --- protobuf wire format -------------------------------------------------------------------

type Field = { no: number; varint?: bigint; bytes?: Uint8Array; fixed64?: Uint8Array };

function readFields(buffer: Uint8Array): Field[] {
  const fields: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[at++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (at < buffer.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) fields.push({ no, varint: varint() });
    else if (wire === 1) {
      fields.push({ no, fixed64: buffer.slice(at, at + 8) });
      at += 8;
    } else if (wire === 2) {
      const length = Number(varint());
      fields.push({ no, bytes: buffer.slice(at, at + length) });
      at += length;
    } else if (wire === 5) at += 4;
    else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
  return fields;
}

const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes ?? new Uint8Array(0));
const hex = (bytes: Uint8Array | undefined) => Buffer.from(bytes ?? new Uint8Array(0)).toString("hex");
const u64 = (bytes: Uint8Array | undefined) => (bytes === undefined ? 0n : new DataView(bytes.buffer).getBigUint64(0, true));
const all = (fields: Field[], no: number) => fields.filter((field) => field.no === no);
const one = (fields: Field[], no: number) => fields.find((field) => field.no === no);

/** AnyValue: 1 string, 2 bool, 3 int64, 4 double. */
function anyValue(bytes: Uint8Array | undefined): string | number | boolean {
  const field = readFields(bytes ?? new Uint8Array(0))[0];
  if (field === undefined) return "";
  if (field.no === 1) return text(field.bytes);
  if (field.no === 2) return field.varint === 1n;
  if (field.no === 3) return Number(BigInt.asIntN(64, field.varint ?? 0n));
  if (field.no === 4) return new DataView((field.fixed64 as Uint8Array).buffer).getFloat64(0, true);
  throw new Error(`AnyValue field ${field.no} not handled by the test collector`);
}

/** repeated KeyValue (1 key, 2 value). */
function keyValues(fields: Field[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const field of fields) {
    const kv = readFields(field.bytes as Uint8Array);
    out[text(one(kv, 1)?.bytes)] = anyValue(one(kv, 2)?.bytes);
  }
  return out;
}

function decodeProtobufRequest(body: Uint8Array, contentType: string): CapturedSpan[] {
  const spans: CapturedSpan[] = [];
  // ExportTraceServiceRequest: 1 resource_spans. ResourceSpans: 1 resource, 2 scope_spans.
  for (const resourceSpans of all(readFields(body), 1)) {
    const rs = readFields(resourceSpans.bytes as Uint8Array);
    const resource = keyValues(all(readFields(one(rs, 1)?.bytes ?? new Uint8Array(0)), 1));
    for (const scopeSpans of all(rs, 2)) {
      // ScopeSpans: 1 scope (1 name), 2 spans.
      const ss = readFields(scopeSpans.bytes as Uint8Array);
      const scope = text(one(readFields(one(ss, 1)?.bytes ?? new Uint8Array(0)), 1)?.bytes);
      for (const spanField of all(ss, 2)) {
        // Span: 1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind, 7 start, 8 end, 9 attributes, 15 status.
        const s = readFields(spanField.bytes as Uint8Array);
        const status = readFields(one(s, 15)?.bytes ?? new Uint8Array(0));
        const parent = hex(one(s, 4)?.bytes);
        spans.push({
          name: text(one(s, 5)?.bytes),
          kind: Number(one(s, 6)?.varint ?? 0n),
          traceId: hex(one(s, 1)?.bytes),
          spanId: hex(one(s, 2)?.bytes),
          parentSpanId: parent === "" ? undefined : parent,
          startNs: u64(one(s, 7)?.fixed64),
          endNs: u64(one(s, 8)?.fixed64),
          attributes: keyValues(all(s, 9)),
          // Status: 2 message, 3 code.
          status: { code: Number(one(status, 3)?.varint ?? 0n), message: text(one(status, 2)?.bytes) },
          resource,
          scope,
          contentType,
        });
      }
    }
  }
  return spans;
}

// --- JSON --------------------------------------------------------------------------------------

interface JsonValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}
interface JsonKeyValue {
  key: string;
  value: JsonValue;
}
interface JsonRequest {
  resourceSpans: Array<{
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans: Array<{
      scope?: { name?: string };
      spans: Array<{
        name: string;
        kind: number;
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        attributes?: JsonKeyValue[];
        status?: { code?: number; message?: string };
      }>;
    }>;
  }>;
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    out[key] =
      value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : (value.doubleValue ?? value.boolValue ?? ""));
  }
  return out;
}

function decodeJsonRequest(body: unknown, contentType: string): CapturedSpan[] {
  const spans: CapturedSpan[] = [];
  for (const rs of (body as JsonRequest).resourceSpans) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans) {
      for (const span of ss.spans) {
        spans.push({
          name: span.name,
          kind: span.kind,
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ? span.parentSpanId : undefined,
          startNs: BigInt(span.startTimeUnixNano),
          endNs: BigInt(span.endTimeUnixNano),
          attributes: jsonAttributes(span.attributes),
          status: { code: span.status?.code ?? 0, message: span.status?.message ?? "" },
          resource,
          scope: ss.scope?.name ?? "",
          contentType,
        });
      }
    }
  }
  return spans;
}
