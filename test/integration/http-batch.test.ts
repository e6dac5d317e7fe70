/**
 * Batch turns through the real service on the default store (SQLite): the answer's shape, invalid
 * counts (400, nothing changes), exhaustion (409, all or nothing), Idempotency-Key, the ledger, and
 * batches mixed with single turns under concurrency, judged by the history checker.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import { checkHistory, formatVerdict } from "../../harness/history-checker.ts";
import { adminHeaders, type ServiceProcess, startService } from "../../harness/service.ts";
import { readCounters, runTurnLoad } from "../../harness/turn-load.ts";

let service: ServiceProcess;
beforeAll(async () => {
  // Deliveries reach the ledger within 50 ms, so the ledger test need not wait a second.
  service = await startService({ args: ["--ledger-flush-ms", "50"] });
});
afterAll(async () => {
  await service.stop();
});

const call = (path: string, init?: RequestInit) => fetch(`${service.url}${path}`, init);
const post = (path: string, headers?: Record<string, string>) => call(path, { method: "POST", headers });
const actual = async (id: string) => ((await (await call(`/turno/${id}/actual`)).json()) as { turno: number }).turno;
const ledger = async (id: string) =>
  (await (await call(`/admin/turno/${id}/ledger`, { headers: adminHeaders() })).json()) as {
    id: string;
    issued: number;
    delivered: number;
    lost: number;
  };
const setCounter = (id: string, turno: number) =>
  call(`/admin/turno/${id}`, { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ turno }) });

describe("batch turns over HTTP (SQLite)", () => {
  test("POST ?count=k answers k consecutive numbers as {id, first, last}; POST without count is unchanged", async () => {
    const batch = await post("/turno/bulk?count=5");
    expect(batch.status).toBe(200);
    expect(batch.headers.get("content-type")).toBe("application/json");
    expect(batch.headers.get("cache-control")).toBe("no-store");
    expect(await batch.text()).toBe('{"id":"bulk","first":1,"last":5}');
    expect(await (await post("/turno/bulk")).json()).toEqual({ id: "bulk", turno: 6 });
    expect(await (await post("/turno/bulk?count=1")).json()).toEqual({ id: "bulk", first: 7, last: 7 });
    expect(await (await post("/turno/bulk?count=1000")).json()).toEqual({ id: "bulk", first: 8, last: 1007 });
    expect(await (await post("/turno/bulk?other=1&count=%32")).json()).toEqual({ id: "bulk", first: 1008, last: 1009 });
    expect(await actual("bulk")).toBe(1009);
  });

  test("an invalid count is a 400 TURNO_ERR_INVALID_COUNT and changes nothing", async () => {
    await post("/turno/badcount?count=3");
    const bad = ["0", "-1", "1001", "1.5", "1e3", "01", "abc", "", "+5", "%205", "9007199254740993", "0x10"];
    for (const count of bad) {
      const response = await post(`/turno/badcount?count=${count}`);
      expect(response.status).toBe(400);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      const body = (await response.json()) as { code: string; instance: string; detail: string };
      expect(body.code).toBe("TURNO_ERR_INVALID_COUNT");
      expect(body.instance).toBe("/turno/badcount");
      expect(body.detail).toContain("--max-batch-count");
    }
    for (const path of ["/turno/badcount?count=2&count=2", "/turno/badcount?count=1&count=5"]) {
      expect((await post(path)).status).toBe(400);
    }
    // A GET is one number, always: a count on it is refused, even 1.
    for (const count of ["1", "5"]) {
      const response = await call(`/turno/badcount?count=${count}`);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { code: string }).code).toBe("TURNO_ERR_INVALID_COUNT");
    }
    // With a key too: the key is not recorded by a refused request.
    expect((await post("/turno/badcount?count=0", { "idempotency-key": "never" })).status).toBe(400);
    expect(await actual("badcount")).toBe(3);
    expect(await (await post("/turno/badcount?count=2", { "idempotency-key": "never" })).json()).toEqual({
      id: "badcount",
      first: 4,
      last: 5,
    });
    expect((await ledger("badcount")).issued).toBe(5);
  });

  test("at exhaustion a batch that does not fit is a 409 and takes nothing; what is left still goes", async () => {
    await setCounter("bigtop", MAX_TURNO - 3);
    const refused = await post("/turno/bigtop?count=4");
    expect(refused.status).toBe(409);
    expect(refused.headers.get("retry-after")).toBeNull();
    expect(((await refused.json()) as { code: string }).code).toBe("TURNO_ERR_COUNTER_EXHAUSTED");
    expect(await actual("bigtop")).toBe(MAX_TURNO - 3);
    expect((await ledger("bigtop")).issued).toBe(0);
    expect(await (await post("/turno/bigtop?count=2")).json()).toEqual({
      id: "bigtop",
      first: MAX_TURNO - 2,
      last: MAX_TURNO - 1,
    });
    expect((await post("/turno/bigtop?count=2")).status).toBe(409);
    expect(await (await post("/turno/bigtop")).json()).toEqual({ id: "bigtop", turno: MAX_TURNO });
    expect((await post("/turno/bigtop?count=1")).status).toBe(409);
    expect(await actual("bigtop")).toBe(MAX_TURNO);
  });

  test("Idempotency-Key on a batch: a retry gets the same range; another count is a 422 and takes nothing", async () => {
    const key = { "idempotency-key": "invoice-run-7" };
    const first = await (await post("/turno/keyed-batch?count=10", key)).json();
    expect(first).toEqual({ id: "keyed-batch", first: 1, last: 10 });
    const retries = await Promise.all(
      Array.from({ length: 20 }, async () => (await post("/turno/keyed-batch?count=10", key)).json()),
    );
    for (const retry of retries) expect(retry).toEqual(first);
    for (const path of ["/turno/keyed-batch?count=9", "/turno/keyed-batch"]) {
      const other = await post(path, key);
      expect(other.status).toBe(422);
      expect(((await other.json()) as { code: string }).code).toBe("TURNO_ERR_IDEMPOTENCY_KEY_REUSED");
    }
    // A single turn's key retried as a batch is refused the same way.
    expect(await (await post("/turno/keyed-batch", { "idempotency-key": "one" })).json()).toEqual({
      id: "keyed-batch",
      turno: 11,
    });
    expect((await post("/turno/keyed-batch?count=2", { "idempotency-key": "one" })).status).toBe(422);
    expect(await actual("keyed-batch")).toBe(11);
  });

  test("the ledger counts a delivered batch's numbers as delivered", async () => {
    await post("/turno/ledger-batch?count=40");
    await post("/turno/ledger-batch");
    await post("/turno/ledger-batch?count=9");
    const deadline = performance.now() + 3000;
    let seen = await ledger("ledger-batch");
    while (seen.delivered < 50 && performance.now() < deadline) {
      await Bun.sleep(25);
      seen = await ledger("ledger-batch");
    }
    expect(seen).toEqual({ id: "ledger-batch", issued: 50, delivered: 50, lost: 0 });
  });

  test("batches and single turns, 100 clients on 2 ids, some keyed: no duplicate, no gap, real-time order", async () => {
    const ids = ["mix-a", "mix-b"];
    const history = await runTurnLoad({
      url: service.url,
      ids,
      clients: 100,
      requests: 3000,
      method: "POST",
      count: (c, r) => ((c + r) % 4 === 0 ? 1 + ((c * 31 + r * 17) % 120) : 1),
      key: (c, r) => ((c + r) % 7 === 0 ? `load-${c}-${r}` : undefined),
    });
    const verdict = checkHistory(history, { after: await readCounters(service.url, ids) });
    if (!verdict.ok) throw new Error(formatVerdict(verdict));
    expect(verdict.totals.requests).toBe(3000);
    expect(verdict.totals.issued).toBe(3000);
    const wanted = history.reduce((sum, entry) => sum + (entry.count ?? 1), 0);
    expect(verdict.totals.numbers).toBe(wanted);
    expect(wanted).toBeGreaterThan(3000 * 2);
  });
});

describe("batch turns: --max-batch-count", () => {
  test("TURNOMATIC_MAX_BATCH_COUNT bounds count; over it is a 400 that changes nothing", async () => {
    const small = await startService({ env: { TURNOMATIC_MAX_BATCH_COUNT: "10" } });
    try {
      const at = (path: string) => fetch(`${small.url}${path}`, { method: "POST" });
      expect(await (await at("/turno/cap?count=10")).json()).toEqual({ id: "cap", first: 1, last: 10 });
      const over = await at("/turno/cap?count=11");
      expect(over.status).toBe(400);
      expect(((await over.json()) as { detail: string }).detail).toContain("from 1 to 10");
      expect(await (await fetch(`${small.url}/turno/cap/actual`)).json()).toEqual({ id: "cap", turno: 10 });
    } finally {
      await small.stop();
    }
  });
});
