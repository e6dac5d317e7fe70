/** The HTTP API as the spec's table describes it, against a real service process (SQLite store). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import { adminHeaders, type ServiceProcess, startService } from "../../harness/service.ts";

let service: ServiceProcess;
beforeAll(async () => {
  service = await startService();
});
afterAll(async () => {
  await service.stop();
});

const get = (path: string, init?: RequestInit) => fetch(`${service.url}${path}`, init);
const actual = async (id: string) => ((await (await get(`/turno/${id}/actual`)).json()) as { turno: number }).turno;

describe("turn API", () => {
  test("GET and POST increment by one and answer JSON that is never cached", async () => {
    const first = await get("/turno/grupo1");
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toBe("application/json");
    expect(first.headers.get("cache-control")).toBe("no-store");
    expect(await first.json()).toEqual({ id: "grupo1", turno: 1 });
    expect(await (await get("/turno/grupo1", { method: "POST" })).json()).toEqual({ id: "grupo1", turno: 2 });
    expect(await (await get("/turno/grupo1?ignored=1")).json()).toEqual({ id: "grupo1", turno: 3 });
  });

  test("/actual reads without incrementing (0 for a new id)", async () => {
    expect(await (await get("/turno/fresh/actual")).json()).toEqual({ id: "fresh", turno: 0 });
    await get("/turno/readme");
    expect(await actual("readme")).toBe(1);
    expect(await actual("readme")).toBe(1);
  });

  test("ids are case-sensitive and percent-decoded", async () => {
    await get("/turno/Case");
    expect(await actual("case")).toBe(0);
    expect(await (await get("/turno/%41bc")).json()).toEqual({ id: "Abc", turno: 1 });
  });

  test("HEAD, OPTIONS and other methods never increment", async () => {
    for (const method of ["HEAD", "PUT", "DELETE", "PATCH"]) {
      const response = await get("/turno/methods", { method });
      expect(response.status).toBe(405);
      expect(response.headers.get("allow")).toBe("GET, POST, OPTIONS");
    }
    const options = await get("/turno/methods", { method: "OPTIONS" });
    expect(options.status).toBe(204);
    expect(options.headers.get("allow")).toContain("GET");
    expect((await get("/turno/methods/actual", { method: "POST" })).status).toBe(405);
    expect(await actual("methods")).toBe(0);
  });

  test("invalid ids get 400 problem details and create no counter", async () => {
    const bad = ["a%2Fb", "%ZZ", "a.b", "x".repeat(65), "%C3%B1", "a%20b", "%00", "a+b"];
    for (const raw of bad) {
      const response = await get(`/turno/${raw}`);
      expect(response.status).toBe(400);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      const body = (await response.json()) as { code: string; status: number; type: string };
      expect(body.code).toBe("TURNO_ERR_INVALID_ID");
      expect(body.status).toBe(400);
    }
    expect((await get("/turno/")).status).toBe(400);
    expect((await get("/turno/a/b")).status).toBe(404);
    expect((await get("/nothing")).status).toBe(404);
  });

  test("an over-long URL gets 414", async () => {
    const response = await get(`/turno/a?${"x".repeat(5000)}`);
    expect(response.status).toBe(414);
  });

  test("Idempotency-Key: a retry gets the same turn, one increment", async () => {
    const headers = { "idempotency-key": "order-42" };
    const first = (await (await get("/turno/idem", { headers })).json()) as { turno: number };
    const again = (await (await get("/turno/idem", { headers })).json()) as { turno: number };
    expect(again.turno).toBe(first.turno);
    const burst = await Promise.all(
      Array.from(
        { length: 30 },
        async () =>
          ((await (await get("/turno/idem", { headers: { "idempotency-key": "k2" } })).json()) as { turno: number }).turno,
      ),
    );
    expect(new Set(burst).size).toBe(1);
    expect(await actual("idem")).toBe(2);
    expect((await get("/turno/idem", { headers: { "idempotency-key": "" } })).status).toBe(400);
  });

  test("healthz and readyz answer JSON", async () => {
    expect(await (await get("/healthz")).json()).toEqual({ status: "ok" });
    expect(await (await get("/readyz")).json()).toEqual({ status: "ready", store: "sqlite" });
  });
});

describe("admin API", () => {
  test("needs the bearer token", async () => {
    expect((await get("/admin/turno/adm", { method: "DELETE" })).status).toBe(401);
    const wrong = await get("/admin/turno/adm", { method: "DELETE", headers: { authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { code: string }).code).toBe("TURNO_ERR_UNAUTHORIZED");
  });

  test("PUT sets so the next turn is n+1; DELETE resets to 1", async () => {
    const set = await get("/admin/turno/adm", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ turno: 41 }) });
    expect(await set.json()).toEqual({ id: "adm", turno: 41 });
    expect(await (await get("/turno/adm")).json()).toEqual({ id: "adm", turno: 42 });
    await get("/admin/turno/adm", { method: "DELETE", headers: adminHeaders() });
    expect(await (await get("/turno/adm")).json()).toEqual({ id: "adm", turno: 1 });
  });

  test("rejects bad bodies without touching the counter", async () => {
    for (const body of ["{", "[]", '{"turno":-1}', '{"turno":1.5}', '{"turno":"3"}', `{"turno":${MAX_TURNO + 2}}`, "null"]) {
      const response = await get("/admin/turno/adm2", { method: "PUT", headers: adminHeaders(), body });
      expect(response.status).toBe(400);
    }
    const noJson = await get("/admin/turno/adm2", {
      method: "PUT",
      headers: { authorization: adminHeaders().authorization ?? "" },
      body: "5",
    });
    expect(noJson.status).toBe(415);
    expect(await actual("adm2")).toBe(0);
  });

  test("at MAX_SAFE_INTEGER: 409 COUNTER_EXHAUSTED and the counter stays", async () => {
    await get("/admin/turno/top", { method: "PUT", headers: adminHeaders(), body: JSON.stringify({ turno: MAX_TURNO - 1 }) });
    expect(await (await get("/turno/top")).json()).toEqual({ id: "top", turno: MAX_TURNO });
    for (let i = 0; i < 3; i++) {
      const response = await get("/turno/top");
      expect(response.status).toBe(409);
      expect(response.headers.get("retry-after")).toBeNull();
      expect(((await response.json()) as { code: string }).code).toBe("TURNO_ERR_COUNTER_EXHAUSTED");
    }
    expect(await actual("top")).toBe(MAX_TURNO);
  });
});

describe("daily reset API", () => {
  const schedule = (id: string, init: RequestInit) => get(`/admin/turno/${id}/schedule`, init);

  test("PUT, GET reads it back, DELETE removes it; /actual names the day", async () => {
    const body = JSON.stringify({ daily: "06:00", timeZone: "Europe/Madrid" });
    await get("/turno/daily");
    const put = await schedule("daily", { method: "PUT", headers: adminHeaders(), body });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ daily: "06:00", timeZone: "Europe/Madrid" });
    expect(await (await schedule("daily", { headers: adminHeaders() })).json()).toEqual({
      daily: "06:00",
      timeZone: "Europe/Madrid",
    });
    // Setting a schedule resets nothing: the day in progress goes on.
    expect(await (await get("/turno/daily")).json()).toEqual({ id: "daily", turno: 2 });
    const counted = (await (await get("/turno/daily/actual")).json()) as { turno: number; day: string; dayStart: string };
    expect(counted.turno).toBe(2);
    expect(counted.day).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(Date.parse(counted.dayStart)).toBeLessThanOrEqual(Date.now());
    expect(Date.now() - Date.parse(counted.dayStart)).toBeLessThan(25 * 3600 * 1000);
    expect((await schedule("daily", { method: "DELETE", headers: adminHeaders() })).status).toBe(204);
    expect((await schedule("daily", { headers: adminHeaders() })).status).toBe(404);
    expect(await (await get("/turno/daily/actual")).json()).toEqual({ id: "daily", turno: 2 });
  });

  test("invalid time or zone, extra fields, bad JSON: 400; no token: 401; nothing changes", async () => {
    const bad = [
      '{"daily":"25:00","timeZone":"UTC"}',
      '{"daily":"7:5","timeZone":"UTC"}',
      '{"timeZone":"UTC"}',
      '{"daily":"07:00","timeZone":"Nowhere/Land"}',
    ];
    for (const body of bad) {
      const response = await schedule("daily-bad", { method: "PUT", headers: adminHeaders(), body });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { code: string }).code).toBe("TURNO_ERR_INVALID_SCHEDULE");
    }
    for (const body of ['{"daily":"07:00","timeZone":"UTC","x":1}', "{"]) {
      const response = await schedule("daily-bad", { method: "PUT", headers: adminHeaders(), body });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { code: string }).code).toBe("TURNO_ERR_INVALID_BODY");
    }
    const body = JSON.stringify({ daily: "07:00", timeZone: "UTC" });
    expect((await schedule("daily-bad", { method: "PUT", body, headers: { "content-type": "application/json" } })).status).toBe(
      401,
    );
    const wrong = { authorization: "Bearer nope", "content-type": "application/json" };
    expect((await schedule("daily-bad", { method: "PUT", body, headers: wrong })).status).toBe(401);
    expect((await schedule("daily-bad", {})).status).toBe(401);
    expect((await schedule("daily-bad", { headers: adminHeaders() })).status).toBe(404);
    expect(await (await get("/turno/daily-bad/actual")).json()).toEqual({ id: "daily-bad", turno: 0 });
  });
});

describe("admin API disabled", () => {
  test("answers 404 when no token is configured", async () => {
    const other = await startService({ store: "memory:", env: { TURNOMATIC_ADMIN_TOKEN: "" } });
    try {
      const response = await fetch(`${other.url}/admin/turno/x`, { method: "DELETE", headers: adminHeaders() });
      expect(response.status).toBe(404);
    } finally {
      await other.stop();
    }
  });
});
