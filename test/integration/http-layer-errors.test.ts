/**
 * Issue 13.5: what the HTTP layer refuses is the client's fault and must look like it. A chunked
 * body over the limit is a 413 in the response, the logs and the metrics (it was logged as
 * http.internal_error and counted as a 500); the `Bearer` scheme is case-insensitive (RFC 9110
 * §11.1); `{"turno": -0}` is accepted as 0 and reaches the store as 0, never as a negative zero.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Coalescer } from "../../src/allocation/coalescer.ts";
import { createApp } from "../../src/http/app.ts";
import { MemoryStore } from "../../src/stores/memory-store.ts";
import { rawExchange } from "./fuzz/raw-http.ts";
import { ADMIN_TOKEN, adminHeaders, type ServiceProcess, startService } from "../../harness/service.ts";

const LIMIT = 1024;
let service: ServiceProcess;

beforeAll(async () => {
  service = await startService({ env: { TURNOMATIC_MAX_BODY_BYTES: String(LIMIT) } });
});
afterAll(async () => {
  await service?.stop();
});

/** A chunked body of `chunks` x 500 bytes, so no Content-Length tells the size up front. */
function chunkedBody(chunks: number): ReadableStream<Uint8Array> {
  const piece = new TextEncoder().encode(`{"turno": 1${" ".repeat(489)}`);
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < chunks; i++) controller.enqueue(piece);
      controller.close();
    },
  });
}

async function requestsTotal(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const [, labels, value] of text.matchAll(/^turnomatic_http_requests_total\{([^}]*)\} (\S+)$/gm))
    counts.set(labels ?? "", Number(value));
  return counts;
}

function count(all: Map<string, number>, route: string, method: string, code: string): number {
  for (const [labels, value] of all) {
    if (labels.includes(`route="${route}"`) && labels.includes(`method="${method}"`) && labels.includes(`"${code}"`))
      return value;
  }
  return 0;
}

describe("4xx from the HTTP layer", () => {
  test("an authenticated chunked PUT over the body limit is a 413: not logged as internal, not counted as 500", async () => {
    const before = await requestsTotal();
    const response = await fetch(`${service.url}/admin/turno/big-put`, {
      method: "PUT",
      headers: adminHeaders(),
      body: chunkedBody(10),
    });
    expect(response.status).toBe(413);
    await Bun.sleep(100); // the handler settles after Bun has answered
    const after = await requestsTotal();
    expect(count(after, "admin", "PUT", "500") - count(before, "admin", "PUT", "500")).toBe(0);
    expect(count(after, "admin", "PUT", "413") - count(before, "admin", "PUT", "413")).toBe(1);
    expect(service.logs()).not.toContain("http.internal_error");
    expect(((await (await fetch(`${service.url}/turno/big-put/actual`)).json()) as { turno: number }).turno).toBe(0);
  });

  test("a chunked turn body over the limit is counted as the 413 it is, and takes no number", async () => {
    const before = await requestsTotal();
    const response = await fetch(`${service.url}/turno/big-turn`, { method: "POST", body: chunkedBody(10) });
    expect(response.status).toBe(413);
    await Bun.sleep(100);
    const after = await requestsTotal();
    expect(count(after, "turno", "POST", "413") - count(before, "turno", "POST", "413")).toBe(1);
    expect(count(after, "turno", "POST", "400") - count(before, "turno", "POST", "400")).toBe(0);
    expect(((await (await fetch(`${service.url}/turno/big-turn/actual`)).json()) as { turno: number }).turno).toBe(0);
  });
});

describe("the Bearer scheme", () => {
  const put = (authorization: string) =>
    fetch(`${service.url}/admin/turno/scheme`, {
      method: "PUT",
      headers: { authorization, "content-type": "application/json" },
      body: '{"turno": 5}',
    });

  test("is case-insensitive and takes one or more spaces (RFC 9110 §11.1, §11.4)", async () => {
    for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR"])
      expect((await put(`${scheme} ${ADMIN_TOKEN}`)).status).toBe(200);
    // Over raw TCP, so no client normalizes the header: two spaces after the scheme.
    const body = '{"turno": 6}';
    const raw = await rawExchange(
      service.port,
      `PUT /admin/turno/scheme HTTP/1.1\r\nHost: x\r\nAuthorization: bearer  ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(raw.status).toBe(200);
  });

  test("still refuses a wrong token, another scheme, or no space", async () => {
    for (const header of [
      `Bearer ${ADMIN_TOKEN}x`,
      `Basic ${ADMIN_TOKEN}`,
      `Bearer${ADMIN_TOKEN}`,
      `Bearer`,
      `Bearer `,
      ADMIN_TOKEN,
    ]) {
      const response = await put(header);
      expect({ header, status: response.status }).toEqual({ header, status: 401 });
    }
  });
});

describe('{"turno": -0}', () => {
  test("is accepted as 0 and reaches the store as 0, not -0", async () => {
    const store = new MemoryStore();
    const coalescer = new Coalescer(store, {
      deadlineMs: 1000,
      maxBatch: 16,
      maxWaitingPerId: 16,
      maxWaiting: 64,
      fencing: true,
    });
    const app = createApp({
      coalescer,
      store,
      adminToken: ADMIN_TOKEN,
      deadlineMs: 1000,
      maxUrlLength: 2048,
      maxBodyBytes: LIMIT,
    });
    await app.handle(new Request("http://x/admin/turno/z", { method: "PUT", headers: adminHeaders(), body: '{"turno": 7}' }));
    const response = await app.handle(
      new Request("http://x/admin/turno/z", { method: "PUT", headers: adminHeaders(), body: '{"turno": -0}' }),
    );
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ id: "z", turno: 0 });
    expect(Object.is((await store.peek("z")).value, 0)).toBe(true);
    const next = await app.handle(new Request("http://x/turno/z", { method: "POST" }));
    expect(await next.json()).toEqual({ id: "z", turno: 1 });
    await coalescer.close();
    await store.close();
  });

  test("a real service answers 0 and counts on from it (SQLite)", async () => {
    const response = await fetch(`${service.url}/admin/turno/negzero`, {
      method: "PUT",
      headers: adminHeaders(),
      body: '{"turno": -0}',
    });
    expect(await response.json()).toEqual({ id: "negzero", turno: 0 });
    expect(await (await fetch(`${service.url}/turno/negzero`, { method: "POST" })).json()).toEqual({ id: "negzero", turno: 1 });
  });
});
