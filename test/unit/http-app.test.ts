/**
 * The HTTP contract in process: requests go straight to `app.handle(new Request(...))` over the
 * memory store, with no server, socket or child process, so the whole API surface is checked in
 * milliseconds. The same contract through a real Bun.serve and SQLite is in
 * test/integration/http-contract.test.ts; this suite is for the handler's own decisions (routes,
 * methods, validation, problem details, headers) and the history checker judges the turns.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Coalescer } from "../../src/allocation/coalescer.ts";
import { type App, createApp } from "../../src/http/app.ts";
import { MemoryStore } from "../../src/stores/memory-store.ts";
import { checkHistory, formatVerdict, type HistoryEntry } from "../../harness/history-checker.ts";

const TOKEN = "in-process-admin-token-0123456789";
const admin = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

let store: MemoryStore;
let coalescer: Coalescer;
let app: App;

beforeEach(() => {
  store = new MemoryStore();
  coalescer = new Coalescer(store, {
    deadlineMs: 1000,
    maxBatch: 1024,
    maxWaitingPerId: 10_000,
    maxWaiting: 50_000,
    fencing: true,
  });
  app = createApp({
    coalescer,
    store,
    adminToken: TOKEN,
    deadlineMs: 1000,
    maxUrlLength: 2048,
    maxBodyBytes: 1024,
    maxBatchCount: 1000,
  });
});

afterEach(async () => {
  await coalescer.close();
  await store.close();
});

const call = (path: string, init?: RequestInit) =>
  Promise.resolve(app.handle(new Request(`http://turnomatic.test${path}`, init)));

async function problemCode(response: Response): Promise<string> {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  return ((await response.json()) as { code: string }).code;
}

describe("turns", () => {
  test("GET and POST take the next number; 1000 concurrent calls on 5 ids keep I1-I4", async () => {
    const history: HistoryEntry[] = [];
    await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const id = `q${i % 5}`;
        const sentAt = performance.now();
        const response = await call(`/turno/${id}`, { method: i % 2 === 0 ? "GET" : "POST" });
        const body = (await response.json()) as { turno: number };
        history.push({ id, sentAt, doneAt: performance.now(), status: response.status, turno: body.turno });
      }),
    );
    const verdict = checkHistory(history);
    expect(verdict.ok, formatVerdict(verdict)).toBe(true);
    expect(verdict.totals.duplicates).toBe(0);
    expect(history.every((entry) => entry.status === 200)).toBe(true);
  });

  test("a response is JSON that no cache may keep", async () => {
    const response = await call("/turno/kiosk");
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await response.json()).toEqual({ id: "kiosk", turno: 1 });
  });

  test("/actual reads without taking a number", async () => {
    await call("/turno/a");
    await call("/turno/a");
    expect(await (await call("/turno/a/actual")).json()).toEqual({ id: "a", turno: 2 });
    expect(await (await call("/turno/a")).json()).toEqual({ id: "a", turno: 3 });
  });

  test("a batch turn is a range, mixed with single turns without overlap", async () => {
    const results = await Promise.all([
      call("/turno/b", { method: "POST" }),
      call("/turno/b?count=10", { method: "POST" }),
      call("/turno/b", { method: "POST" }),
    ]);
    const bodies = (await Promise.all(results.map((r) => r.json()))) as Array<{ turno?: number; first?: number; last?: number }>;
    const numbers = bodies.flatMap((body) =>
      body.turno !== undefined
        ? [body.turno]
        : Array.from({ length: (body.last as number) - (body.first as number) + 1 }, (_, k) => (body.first as number) + k),
    );
    expect(numbers.sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, k) => k + 1));
  });

  test("an Idempotency-Key replays its number and takes no other", async () => {
    const headers = { "idempotency-key": "invoice-2026-0001" };
    const first = await (await call("/turno/inv", { method: "POST", headers })).json();
    const again = await (await call("/turno/inv", { method: "POST", headers })).json();
    expect(again).toEqual(first);
    expect(await (await call("/turno/inv/actual")).json()).toEqual({ id: "inv", turno: 1 });
  });
});

describe("refusals take no number", () => {
  const cases: Array<[string, RequestInit | undefined, number, string]> = [
    ["/turno/has%20space", undefined, 400, "TURNO_ERR_INVALID_ID"],
    [`/turno/${"x".repeat(65)}`, undefined, 400, "TURNO_ERR_INVALID_ID"],
    ["/turno/n?count=0", { method: "POST" }, 400, "TURNO_ERR_INVALID_COUNT"],
    ["/turno/n?count=1001", { method: "POST" }, 400, "TURNO_ERR_INVALID_COUNT"],
    ["/turno/n?count=2", undefined, 400, "TURNO_ERR_INVALID_COUNT"],
    ["/turno/n", { method: "POST", headers: { "idempotency-key": "" } }, 400, "TURNO_ERR_INVALID_IDEMPOTENCY_KEY"],
    ["/turno/n", { method: "DELETE" }, 405, "TURNO_ERR_METHOD_NOT_ALLOWED"],
    ["/turno/n/actual", { method: "POST" }, 405, "TURNO_ERR_METHOD_NOT_ALLOWED"],
    ["/nothing", undefined, 404, "TURNO_ERR_NOT_FOUND"],
    ["/status.json", undefined, 404, "TURNO_ERR_NOT_FOUND"],
    ["/admin/turno/n", { method: "DELETE" }, 401, "TURNO_ERR_UNAUTHORIZED"],
    ["/admin/turno/n", { method: "PUT", headers: admin, body: '{"turno": -1}' }, 400, "TURNO_ERR_INVALID_BODY"],
    [
      "/admin/turno/n",
      { method: "PUT", headers: { authorization: admin.authorization }, body: "{}" },
      415,
      "TURNO_ERR_UNSUPPORTED_MEDIA_TYPE",
    ],
  ];
  for (const [path, init, status, code] of cases) {
    test(`${init?.method ?? "GET"} ${path.slice(0, 40)} -> ${status} ${code}`, async () => {
      const response = await call(path, init);
      expect(response.status).toBe(status);
      expect(await problemCode(response)).toBe(code);
      expect(await (await call("/turno/n/actual")).json()).toEqual({ id: "n", turno: 0 });
    });
  }

  test("a 405 names the allowed methods", async () => {
    const response = await call("/turno/n", { method: "PATCH" });
    expect(response.headers.get("allow")).toBe("GET, POST, OPTIONS");
  });
});

describe("admin", () => {
  test("set, then reset: the next turns follow", async () => {
    const set = await call("/admin/turno/adm", { method: "PUT", headers: admin, body: '{"turno": 41}' });
    expect(await set.json()).toEqual({ id: "adm", turno: 41 });
    expect(await (await call("/turno/adm")).json()).toEqual({ id: "adm", turno: 42 });
    expect((await call("/admin/turno/adm", { method: "DELETE", headers: admin })).status).toBe(200);
    expect(await (await call("/turno/adm")).json()).toEqual({ id: "adm", turno: 1 });
  });

  test("the ledger counts what was delivered", async () => {
    for (let i = 0; i < 3; i++) await call("/turno/led");
    await coalescer.flushLedger();
    const ledger = (await (await call("/admin/turno/led/ledger", { headers: admin })).json()) as Record<string, number>;
    expect(ledger).toMatchObject({ issued: 3, delivered: 3, lost: 0 });
  });
});

test("while draining, /readyz fails and turns are still served", async () => {
  expect((await call("/readyz")).status).toBe(200);
  app.startDraining();
  expect((await call("/readyz")).status).toBe(503);
  expect((await call("/turno/d")).status).toBe(200);
});
