/**
 * The client's retry and error contract against a scripted HTTP server (real sockets: dropped
 * connections, late answers, 503 with Retry-After). The batch endpoint is tested here against its
 * contract (`POST /turno/:id?count=k` -> {"id","first","last"}). Against the real service:
 * test/integration/client.test.ts.
 */
import { afterEach, expect, test } from "bun:test";
import {
  AbortedError,
  BadResponseError,
  CounterExhaustedError,
  DEFAULT_RETRY,
  InvalidIdError,
  InvalidRequestError,
  parseRetryAfter,
  type RetryEvent,
  retryDelayMs,
  SERVER_CODES,
  TurnomaticClient,
  UnavailableError,
} from "../../client/index.ts";
import { ERROR_CODES } from "../../src/domain/errors.ts";
import {
  jsonAnswer,
  problemAnswer,
  type ScriptedAnswer,
  type ScriptedServer,
  startScriptedServer,
} from "../../harness/scripted-http-server.ts";

let server: ScriptedServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function scripted(answers: ScriptedAnswer[] | ((index: number) => ScriptedAnswer)): Promise<ScriptedServer> {
  server = await startScriptedServer((_, i) => (typeof answers === "function" ? answers(i) : (answers[i] ?? "drop")));
  return server;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("next: POST /turno/:id with a fresh UUID key per logical call", async () => {
  const s = await scripted([jsonAnswer({ id: "q", turno: 7 }), jsonAnswer({ id: "q", turno: 8 })]);
  const client = new TurnomaticClient({ baseUrl: s.url });
  const a = await client.next("q");
  const b = await client.next("q");
  expect(a).toEqual({ id: "q", turno: 7, key: a.key, attempts: 1 });
  expect(b.turno).toBe(8);
  expect(s.requests.map((r) => [r.method, r.target])).toEqual([
    ["POST", "/turno/q"],
    ["POST", "/turno/q"],
  ]);
  expect(s.requests[0]?.headers["idempotency-key"]).toMatch(UUID);
  expect(s.requests[0]?.headers["idempotency-key"]).toBe(a.key);
  expect(a.key).not.toBe(b.key);
});

test("a dropped connection is retried with the same key", async () => {
  const s = await scripted(["drop", "drop", jsonAnswer({ id: "q", turno: 1 })]);
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({ baseUrl: s.url, retry: { baseDelayMs: 5 }, onRetry: (e) => events.push(e) });
  const turn = await client.next("q");
  expect(turn.attempts).toBe(3);
  const keys = s.requests.map((r) => r.headers["idempotency-key"]);
  expect(keys).toEqual([turn.key, turn.key, turn.key]);
  expect(events.map((e) => [e.attempt, e.error.code, e.key])).toEqual([
    [1, "TURNO_CLIENT_ERR_CONNECTION", turn.key],
    [2, "TURNO_CLIENT_ERR_CONNECTION", turn.key],
  ]);
});

test("an attempt without an answer within timeoutMs is retried with the same key", async () => {
  const late: ScriptedAnswer = { status: 200, body: JSON.stringify({ id: "q", turno: 1 }), delayMs: 2000 };
  const s = await scripted([late, jsonAnswer({ id: "q", turno: 1 })]);
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({
    baseUrl: s.url,
    timeoutMs: 200,
    retry: { baseDelayMs: 5 },
    onRetry: (e) => events.push(e),
  });
  const turn = await client.next("q");
  expect(turn.attempts).toBe(2);
  expect(events[0]?.error.code).toBe("TURNO_CLIENT_ERR_TIMEOUT");
  expect(s.requests[1]?.headers["idempotency-key"]).toBe(turn.key);
});

test("503 with Retry-After: the retry waits at least that long, same key", async () => {
  const s = await scripted([problemAnswer(503, "TURNO_ERR_STORE_TIMEOUT", "1"), jsonAnswer({ id: "q", turno: 3 })]);
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({ baseUrl: s.url, onRetry: (e) => events.push(e) });
  const turn = await client.next("q");
  const [first, second] = s.requests;
  expect(turn).toMatchObject({ turno: 3, attempts: 2 });
  expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
  expect(events[0]?.delayMs).toBeGreaterThanOrEqual(1000);
  expect(events[0]?.delayMs).toBeLessThan(1000 + DEFAULT_RETRY.baseDelayMs);
  expect(events[0]?.error.code).toBe("TURNO_ERR_STORE_TIMEOUT");
  expect(second!.headers["idempotency-key"]).toBe(first!.headers["idempotency-key"]);
});

test("500, 502 and 504 (a load balancer that lost its backend) are retried with the same key", async () => {
  const s = await scripted([
    problemAnswer(502, "HAProxy"),
    { status: 504, body: "<html>gateway timeout</html>" },
    problemAnswer(500, "TURNO_ERR_INTERNAL"),
    jsonAnswer({ id: "q", turno: 9 }),
  ]);
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({ baseUrl: s.url, retry: { baseDelayMs: 5 }, onRetry: (e) => events.push(e) });
  const turn = await client.next("q");
  expect(turn).toMatchObject({ turno: 9, attempts: 4 });
  expect(events.map((e) => [e.error.status, e.error.code])).toEqual([
    [502, "HAProxy"],
    [504, "HTTP_504"],
    [500, "TURNO_ERR_INTERNAL"],
  ]);
  expect(new Set(s.requests.map((r) => r.headers["idempotency-key"]))).toEqual(new Set([turn.key]));
});

test("gives up after retry.attempts with an UnavailableError carrying the last cause and the key", async () => {
  const s = await scripted(() => problemAnswer(503, "TURNO_ERR_STORE_UNAVAILABLE", "0"));
  const client = new TurnomaticClient({ baseUrl: s.url, retry: { attempts: 3, baseDelayMs: 5 } });
  const error = await client.next("q").catch((e: unknown) => e);
  expect(error).toBeInstanceOf(UnavailableError);
  const unavailable = error as UnavailableError;
  expect(unavailable.code).toBe("TURNO_CLIENT_ERR_UNAVAILABLE");
  expect(unavailable.attempts).toBe(3);
  expect(unavailable.cause.code).toBe("TURNO_ERR_STORE_UNAVAILABLE");
  expect(unavailable.status).toBe(503);
  expect(s.requests.length).toBe(3);
  expect(new Set(s.requests.map((r) => r.headers["idempotency-key"]))).toEqual(new Set([unavailable.key as string]));
  expect(unavailable.message).toContain(`next(id, { key: "${unavailable.key}" })`);
});

test("gives up at once when Retry-After would pass retry.totalMs (never retries earlier than asked)", async () => {
  const s = await scripted(() => problemAnswer(503, "TURNO_ERR_STORE_LOST", "5"));
  const client = new TurnomaticClient({ baseUrl: s.url, retry: { totalMs: 2000 } });
  const started = performance.now();
  const error = (await client.next("q").catch((e: unknown) => e)) as UnavailableError;
  expect(error).toBeInstanceOf(UnavailableError);
  expect(error.attempts).toBe(1);
  expect(error.retryAfterMs).toBe(5000);
  expect(error.cause.code).toBe("TURNO_ERR_STORE_LOST");
  expect(performance.now() - started).toBeLessThan(1000);
  expect(s.requests.length).toBe(1);
});

test("connection refused: bounded attempts, then UnavailableError (TURNO_CLIENT_ERR_CONNECTION)", async () => {
  const s = await scripted([]);
  const url = s.url;
  await s.close();
  server = undefined;
  const client = new TurnomaticClient({ baseUrl: url, retry: { attempts: 4, baseDelayMs: 5 } });
  const error = (await client.next("q").catch((e: unknown) => e)) as UnavailableError;
  expect(error).toBeInstanceOf(UnavailableError);
  expect(error.attempts).toBe(4);
  expect(error.cause.code).toBe("TURNO_CLIENT_ERR_CONNECTION");
  expect(error.status).toBe(0);
});

test("409 and 4xx are final: typed, one attempt", async () => {
  const s = await scripted([
    problemAnswer(409, "TURNO_ERR_COUNTER_EXHAUSTED"),
    problemAnswer(400, "TURNO_ERR_INVALID_ID"),
    problemAnswer(400, "TURNO_ERR_INVALID_IDEMPOTENCY_KEY"),
  ]);
  const client = new TurnomaticClient({ baseUrl: s.url });
  const exhausted = (await client.next("q").catch((e: unknown) => e)) as CounterExhaustedError;
  expect(exhausted).toBeInstanceOf(CounterExhaustedError);
  expect(exhausted).toMatchObject({ code: "TURNO_ERR_COUNTER_EXHAUSTED", status: 409 });
  expect(exhausted.key).toBe(s.requests[0]?.headers["idempotency-key"] as string);
  expect(await client.next("q").catch((e: unknown) => e)).toBeInstanceOf(InvalidIdError);
  const invalid = await client.next("q").catch((e: unknown) => e);
  expect(invalid).toBeInstanceOf(InvalidRequestError);
  expect((invalid as InvalidRequestError).code).toBe("TURNO_ERR_INVALID_IDEMPOTENCY_KEY");
  expect(s.requests.length).toBe(3);
});

test("arguments the server would refuse are refused before anything is sent", async () => {
  const s = await scripted([]);
  const client = new TurnomaticClient({ baseUrl: s.url });
  for (const id of ["", "a/b", "x".repeat(65), "ñ"])
    expect(await client.next(id).catch((e: unknown) => e)).toBeInstanceOf(InvalidIdError);
  expect(await client.next("q", { key: "has space" }).catch((e: unknown) => e)).toBeInstanceOf(InvalidRequestError);
  for (const count of [0, -1, 1.5, Number.NaN])
    expect(((await client.batch("q", count).catch((e: unknown) => e)) as InvalidRequestError).code).toBe(
      "TURNO_CLIENT_ERR_INVALID_ARGUMENT",
    );
  expect(s.requests.length).toBe(0);
  expect(() => new TurnomaticClient({ baseUrl: "not a url" })).toThrow(/baseUrl/);
  expect(() => new TurnomaticClient({ baseUrl: s.url, retry: { attempts: 0 } })).toThrow(/retry.attempts/);
});

test("a caller's key resumes its call: next(id, { key }) sends it", async () => {
  const s = await scripted([jsonAnswer({ id: "q", turno: 4 })]);
  const client = new TurnomaticClient({ baseUrl: s.url });
  const key = client.createKey();
  expect(key).toMatch(UUID);
  expect((await client.next("q", { key })).key).toBe(key);
  expect(s.requests[0]?.headers["idempotency-key"]).toBe(key);
});

test("batch: POST ?count=k with a key, {id, first, last}; retried with the same key", async () => {
  const s = await scripted(["drop", jsonAnswer({ id: "q", first: 11, last: 20 }), jsonAnswer({ id: "q", first: 1, last: 5 })]);
  const client = new TurnomaticClient({ baseUrl: s.url, retry: { baseDelayMs: 5 } });
  const range = await client.batch("q", 10);
  expect(range).toEqual({ id: "q", first: 11, last: 20, key: range.key, attempts: 2 });
  expect(s.requests.map((r) => `${r.method} ${r.target} ${r.headers["idempotency-key"]}`)).toEqual([
    `POST /turno/q?count=10 ${range.key}`,
    `POST /turno/q?count=10 ${range.key}`,
  ]);
  // A range whose length is not the count asked for is not trusted.
  expect(await client.batch("q", 3).catch((e: unknown) => e)).toBeInstanceOf(BadResponseError);
});

test("batch at exhaustion: a typed 409", async () => {
  const s = await scripted([problemAnswer(409, "TURNO_ERR_COUNTER_EXHAUSTED")]);
  const client = new TurnomaticClient({ baseUrl: s.url });
  expect(await client.batch("q", 100).catch((e: unknown) => e)).toBeInstanceOf(CounterExhaustedError);
});

test("actual: GET /turno/:id/actual without a key; 0 is a valid answer", async () => {
  const s = await scripted([jsonAnswer({ id: "q", turno: 0 })]);
  const client = new TurnomaticClient({ baseUrl: `${s.url}/` });
  expect(await client.actual("q")).toEqual({ id: "q", turno: 0 });
  expect(s.requests[0]?.method).toBe("GET");
  expect(s.requests[0]?.target).toBe("/turno/q/actual");
  expect(s.requests[0]?.headers["idempotency-key"]).toBeUndefined();
});

test("a 200 that is not the API's JSON is a BadResponseError, not retried", async () => {
  const s = await scripted([{ status: 200, body: "<html>proxy</html>" }, jsonAnswer({ id: "other", turno: 1 })]);
  const client = new TurnomaticClient({ baseUrl: s.url });
  expect(await client.next("q").catch((e: unknown) => e)).toBeInstanceOf(BadResponseError);
  expect(await client.next("q").catch((e: unknown) => e)).toBeInstanceOf(BadResponseError);
  expect(s.requests.length).toBe(2);
});

test("the caller's signal ends the call during a wait: AbortedError with the key", async () => {
  const s = await scripted(() => problemAnswer(503, "TURNO_ERR_OVERLOADED", "1"));
  const client = new TurnomaticClient({ baseUrl: s.url });
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 200);
  const started = performance.now();
  const error = (await client.next("q", { signal: controller.signal }).catch((e: unknown) => e)) as AbortedError;
  expect(error).toBeInstanceOf(AbortedError);
  expect(error.key).toBe(s.requests[0]?.headers["idempotency-key"] as string);
  expect(performance.now() - started).toBeLessThan(900);
  expect(s.requests.length).toBe(1);
});

test("backoff: equal jitter under maxDelayMs; Retry-After is a floor", () => {
  const policy = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
  for (const random of [0, 0.5, 0.999]) {
    const r = () => random;
    expect(retryDelayMs(1, policy, undefined, r)).toBeGreaterThanOrEqual(50);
    expect(retryDelayMs(1, policy, undefined, r)).toBeLessThan(100);
    expect(retryDelayMs(3, policy, undefined, r)).toBeGreaterThanOrEqual(200);
    expect(retryDelayMs(3, policy, undefined, r)).toBeLessThan(400);
    expect(retryDelayMs(10, policy, undefined, r)).toBeLessThanOrEqual(1000);
    expect(retryDelayMs(10, policy, undefined, r)).toBeGreaterThanOrEqual(500);
    expect(retryDelayMs(1, policy, 3000, r)).toBeGreaterThanOrEqual(3000);
    expect(retryDelayMs(1, policy, 3000, r)).toBeLessThan(3100);
  }
});

test("Retry-After: delay-seconds and HTTP-date (RFC 9110 §10.2.3)", () => {
  expect(parseRetryAfter("1")).toBe(1000);
  expect(parseRetryAfter(" 0 ")).toBe(0);
  expect(parseRetryAfter(null)).toBeUndefined();
  expect(parseRetryAfter("soon")).toBeUndefined();
  expect(parseRetryAfter("-1")).toBeUndefined();
  const now = Date.parse("2026-12-02T01:00:00Z");
  expect(parseRetryAfter("Wed, 02 Dec 2026 01:00:03 GMT", now)).toBe(3000);
  expect(parseRetryAfter("Wed, 02 Dec 2026 00:59:00 GMT", now)).toBe(0);
});

test("the client knows every problem code the service defines", () => {
  const inClient: string[] = [...SERVER_CODES].sort();
  expect(inClient).toEqual(Object.keys(ERROR_CODES).sort());
});
