/**
 * Daily resets (issue 17 item 2), on every store: the store contract (the day check is the store's,
 * atomic with the grant) and the API through in-process apps whose clocks the tests move, so time
 * crosses a boundary without sleeping. Two apps on one store are two hosts; their clocks are skewed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Coalescer } from "../../src/allocation/coalescer.ts";
import type { CounterStore, DayStamp } from "../../src/domain/counter-store.ts";
import { createApp } from "../../src/http/app.ts";
import { checkHistory, type HistoryEntry } from "../../harness/history-checker.ts";
import { STORE_FIXTURES } from "../../harness/store-factories.ts";

const TOKEN = "test-admin-token-0123456789";
const AUTH = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
const MADRID = "06:00 Europe/Madrid";
/** 2026-12-02 06:00 in Madrid (CET, UTC+1). */
const DEC2 = Date.UTC(2026, 11, 2, 5, 0);
const DEC1 = DEC2 - 86_400_000;
const SECOND = 1000;

/** One host: a coalescer and an app on the shared store, with its own clock. */
function host(store: CounterStore, clock: () => number) {
  const coalescer = new Coalescer(
    store,
    {
      deadlineMs: 3000,
      maxBatch: 256,
      maxWaitingPerId: 100_000,
      maxWaiting: 100_000,
      fencing: true,
      ledgerReports: false,
      clock,
    },
    60,
  );
  const app = createApp({ coalescer, store, adminToken: TOKEN, deadlineMs: 3000, maxUrlLength: 4096, maxBodyBytes: 8192, clock });
  const call = async (method: string, path: string, body?: string, headers: Record<string, string> = AUTH) =>
    app.handle(new Request(`http://host${path}`, { method, headers, body }));
  return {
    coalescer,
    call,
    turn: async (id: string) => ((await (await call("POST", `/turno/${id}`, undefined, {})).json()) as { turno: number }).turno,
    actual: async (id: string) =>
      (await (await call("GET", `/turno/${id}/actual`, undefined, {})).json()) as Record<string, unknown>,
    schedule: (id: string, daily: string, timeZone: string) =>
      call("PUT", `/admin/turno/${id}/schedule`, JSON.stringify({ daily, timeZone })),
  };
}

const stamp = (start: number, schedule = MADRID): DayStamp => ({ schedule, start });
/** The reservation fields of one keyed waiter at `position` (key kept 60 s). */
const keyedAt = (position: number, key: string) => ({ keys: [{ position, key }], keyTtlSeconds: 60 });

for (const makeFixture of STORE_FIXTURES) {
  const fixture = makeFixture();
  describe(`daily reset: ${fixture.name}`, () => {
    const stores: CounterStore[] = [];
    const closers: Array<() => Promise<void>> = [];
    const fresh = async () => {
      const store = await fixture.create();
      stores.push(store);
      return store;
    };
    afterAll(async () => {
      for (const close of closers) await close();
      for (const store of stores) await store.close();
      await fixture.teardown();
    });
    /** Two hosts on one fresh store; `now` is the true time, each host's clock is skewed from it. */
    const twoHosts = async (start: number, skewA = 0, skewB = 0) => {
      const store = await fresh();
      const time = { now: start };
      const a = host(store, () => time.now + skewA);
      const b = host(store, () => time.now + skewB);
      closers.push(
        () => a.coalescer.close(),
        () => b.coalescer.close(),
      );
      return { store, time, a, b };
    };

    test("store: a request without the id's schedule reserves nothing and learns it", async () => {
      const store = await fresh();
      await store.reserve({ id: "s", n: 3 });
      await store.setSchedule("s", MADRID, DEC1);
      expect(await store.peek("s")).toEqual({ value: 3, epoch: 0, schedule: MADRID, day: DEC1 });
      const unaware = await store.reserve({ id: "s", n: 2, ...keyedAt(1, "k") });
      expect(unaware).toMatchObject({ count: 0, scheduleChanged: { schedule: MADRID } });
      expect(unaware.keyed).toEqual([{ turno: 0, replayed: false }]);
      const other = await store.reserve({ id: "s", n: 1, day: stamp(DEC1, "07:00 Europe/Madrid") });
      expect(other).toMatchObject({ count: 0, scheduleChanged: { schedule: MADRID } });
      expect((await store.peek("s")).value).toBe(3);
      // The key of the refused reservation was not recorded: it gets a fresh number now.
      const keyed = await store.reserve({ id: "s", n: 1, ...keyedAt(0, "k"), day: stamp(DEC1) });
      expect(keyed.keyed).toEqual([{ turno: 4, replayed: false }]);
      expect(keyed.scheduleChanged).toBeUndefined();
    });

    test("store: a later day starts at 1 with a new epoch; an older one is served in the store's day", async () => {
      const store = await fresh();
      await store.setSchedule("d", MADRID, DEC1);
      const keyed = keyedAt(4, "kd");
      expect(await store.reserve({ id: "d", n: 5, ...keyed, day: stamp(DEC1) })).toMatchObject({ first: 1, count: 5, epoch: 0 });
      await store.report(new Map([["d", 5]]));
      expect(await store.reserve({ id: "d", n: 2, day: stamp(DEC2) })).toMatchObject({ first: 1, count: 2, epoch: 1 });
      // A key of the old day replays its number (the same request), taking none of the new day's.
      const replay = await store.reserve({ id: "d", n: 1, ...keyedAt(0, "kd"), day: stamp(DEC2) });
      expect(replay).toMatchObject({ count: 0, keyed: [{ turno: 5, replayed: true }] });
      // A host whose clock is behind still says Dec 1: it gets the store's day, Dec 2.
      expect(await store.reserve({ id: "d", n: 1, day: stamp(DEC1) })).toMatchObject({ first: 3, count: 1, epoch: 1 });
      expect(await store.reserve({ id: "d", n: 1, day: stamp(DEC2) })).toMatchObject({ first: 4, epoch: 1 });
      expect(await store.peek("d")).toEqual({ value: 4, epoch: 1, schedule: MADRID, day: DEC2 });
      // The reset moved the counter, not the ledger: 9 issued, 5 delivered, like an admin reset.
      expect(await store.ledger("d")).toEqual({ issued: 9, delivered: 5 });
      // A fence of the old day (epoch 0) does not raise the new day's counter (epoch 1).
      expect(await store.reserve({ id: "d", n: 1, day: stamp(DEC2), fence: { floor: 5, epoch: 0 } })).toMatchObject({
        first: 5,
        fenced: false,
      });
    });

    test("store: ids with and without schedules share one call (Redis batches them)", async () => {
      const store = await fresh();
      await store.setSchedule("m1", MADRID, DEC1);
      await store.reserve({ id: "m1", n: 4, day: stamp(DEC1) });
      await store.reserve({ id: "m2", n: 4 });
      const [a, b, c, d] = await Promise.all([
        store.reserve({ id: "m2", n: 1, ...keyedAt(0, "x") }),
        store.reserve({ id: "m1", n: 2, ...keyedAt(1, "y"), day: stamp(DEC2) }),
        store.reserve({ id: "m1", n: 1 }),
        store.reserve({ id: "m2", n: 2 }),
      ]);
      expect(a).toMatchObject({ first: 5, count: 1, keyed: [{ turno: 5, replayed: false }] });
      expect(b).toMatchObject({ first: 1, count: 2, epoch: 1, keyed: [{ turno: 2, replayed: false }] });
      expect(c).toMatchObject({ count: 0, scheduleChanged: { schedule: MADRID } });
      expect(d).toMatchObject({ first: 6, count: 2 });
    });

    test("store: batch turns (sizes) on a scheduled id, beside other ids in one call", async () => {
      const store = await fresh();
      await store.setSchedule("b1", MADRID, DEC1);
      await store.reserve({ id: "b1", n: 1, day: stamp(DEC1) });
      await store.setSchedule("b3", MADRID, DEC1);
      const [x, y, z, w] = await Promise.all([
        store.reserve({ id: "b1", n: 2, sizes: [3, 2], ...keyedAt(1, "bk"), day: stamp(DEC2) }),
        store.reserve({ id: "b2", n: 2, sizes: [4, 1] }),
        store.reserve({ id: "b3", n: 2, sizes: [5, 1], ...keyedAt(0, "bk3") }),
        store.reserve({ id: "b2", n: 1, sizes: [2] }),
      ]);
      expect(x).toMatchObject({ first: 1, count: 5, epoch: 1, keyed: [{ turno: 4, replayed: false }] });
      expect(y).toMatchObject({ first: 1, count: 5 });
      expect(z).toMatchObject({ count: 0, scheduleChanged: { schedule: MADRID }, keyed: [{ turno: 0, replayed: false }] });
      expect(w).toMatchObject({ first: 6, count: 2 });
      // The refused batch recorded nothing: its key takes a fresh range now.
      const again = await store.reserve({ id: "b3", n: 1, sizes: [5], ...keyedAt(0, "bk3"), day: stamp(DEC1) });
      expect(again).toMatchObject({ first: 1, count: 5, keyed: [{ turno: 1, replayed: false }] });
    });

    test("store: a new schedule keeps the day in progress; removing it stops the resets", async () => {
      const store = await fresh();
      await store.setSchedule("n", MADRID, DEC2);
      await store.setSchedule("n", "12:00 Europe/Madrid", DEC1); // an older day does not move it back
      expect(await store.peek("n")).toMatchObject({ schedule: "12:00 Europe/Madrid", day: DEC2 });
      await store.reserve({ id: "n", n: 3, day: stamp(DEC2, "12:00 Europe/Madrid") });
      await store.setSchedule("n", undefined, 0);
      expect(await store.peek("n")).toEqual({ value: 3, epoch: 0 });
      expect(await store.reserve({ id: "n", n: 1, day: stamp(DEC2 + 86_400_000, "12:00 Europe/Madrid") })).toMatchObject({
        count: 0,
        scheduleChanged: { schedule: undefined },
      });
      expect(await store.reserve({ id: "n", n: 1 })).toMatchObject({ first: 4, epoch: 0 });
    });

    if (fixture.durable !== false) {
      test("store: a counter not written since a recovery starts its new day above the recovery floor", async () => {
        const store = await fresh();
        await store.initializeMarker("uid-1");
        store.attach("uid-1", new Map());
        await store.setSchedule("f", MADRID, DEC1);
        await store.reserve({ id: "f", n: 5, day: stamp(DEC1) });
        await store.recoverMarker("uid-2", 1000, 1);
        store.attach("uid-2", new Map());
        expect(await store.reserve({ id: "f", n: 1, day: stamp(DEC2) })).toMatchObject({ first: 1001, epoch: 1 });
        expect(await store.reserve({ id: "f", n: 1, day: stamp(DEC2 + 86_400_000) })).toMatchObject({ first: 1, epoch: 2 });
      });
    }

    test("API: set, read back, delete; admin token required", async () => {
      const { a } = await twoHosts(DEC2);
      expect((await a.schedule("api", "06:00", "europe/madrid")).status).toBe(200);
      const read = await a.call("GET", "/admin/turno/api/schedule");
      expect(read.status).toBe(200);
      expect(read.headers.get("cache-control")).toBe("no-store");
      expect(await read.json()).toEqual({ daily: "06:00", timeZone: "Europe/Madrid" });
      for (const headers of [{}, { authorization: "Bearer wrong-token-0123456789" }] as Array<Record<string, string>>) {
        for (const method of ["PUT", "GET", "DELETE"]) {
          const body = method === "PUT" ? JSON.stringify({ daily: "07:00", timeZone: "UTC" }) : undefined;
          const response = await a.call(method, "/admin/turno/api/schedule", body, {
            ...headers,
            "content-type": "application/json",
          });
          expect(response.status).toBe(401);
          expect(((await response.json()) as { code: string }).code).toBe("TURNO_ERR_UNAUTHORIZED");
        }
      }
      expect(await (await a.call("GET", "/admin/turno/api/schedule")).json()).toEqual({
        daily: "06:00",
        timeZone: "Europe/Madrid",
      });
      expect((await a.call("PATCH", "/admin/turno/api/schedule")).headers.get("allow")).toBe("PUT, GET, DELETE");
      expect((await a.call("DELETE", "/admin/turno/api/schedule")).status).toBe(204);
      const gone = await a.call("GET", "/admin/turno/api/schedule");
      expect(gone.status).toBe(404);
      expect(((await gone.json()) as { code: string }).code).toBe("TURNO_ERR_SCHEDULE_NOT_FOUND");
      expect((await a.call("GET", "/admin/turno/bad%2Fid/schedule")).status).toBe(400);
    });

    test("API: invalid schedules are 400 with a code and change nothing", async () => {
      const { a } = await twoHosts(DEC2);
      await a.schedule("inv", "06:00", "Europe/Madrid");
      const cases: Array<[string, string]> = [
        ['{"daily":"25:00","timeZone":"UTC"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":"7:5","timeZone":"UTC"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":"07:60","timeZone":"UTC"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"timeZone":"UTC"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":"07:00"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":"07:00","timeZone":"Mars/Olympus"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":"07:00","timeZone":"+01:00"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":700,"timeZone":"UTC"}', "TURNO_ERR_INVALID_SCHEDULE"],
        ['{"daily":"07:00","timeZone":"UTC","extra":1}', "TURNO_ERR_INVALID_BODY"],
        ['{"daily":"07:00",', "TURNO_ERR_INVALID_BODY"],
        ["[]", "TURNO_ERR_INVALID_BODY"],
        ["null", "TURNO_ERR_INVALID_BODY"],
      ];
      for (const [body, code] of cases) {
        const response = await a.call("PUT", "/admin/turno/inv/schedule", body);
        expect({ body, status: response.status }).toEqual({ body, status: 400 });
        expect({ body, code: ((await response.json()) as { code: string }).code }).toEqual({ body, code });
      }
      expect((await a.call("PUT", "/admin/turno/inv/schedule", "{}", { authorization: AUTH.authorization })).status).toBe(415);
      expect(await (await a.call("GET", "/admin/turno/inv/schedule")).json()).toEqual({
        daily: "06:00",
        timeZone: "Europe/Madrid",
      });
      expect((await a.call("PUT", "/admin/turno/none/schedule", '{"daily":"25:00","timeZone":"UTC"}')).status).toBe(400);
      expect((await a.call("GET", "/admin/turno/none/schedule")).status).toBe(404);
    });

    test("the first turn after the boundary is 1; setting a schedule resets nothing; /actual names the day", async () => {
      const { a, b, time } = await twoHosts(DEC2 - 60 * SECOND);
      for (let i = 0; i < 5; i++) await a.turn("first");
      await a.schedule("first", "06:00", "Europe/Madrid");
      expect(await a.turn("first")).toBe(6);
      expect(await b.turn("first")).toBe(7); // b learns the schedule from the store (one refresh)
      expect(b.coalescer.stats.scheduleRefreshes).toBe(1);
      expect(await b.actual("first")).toEqual({ id: "first", turno: 7, day: "2026-12-01", dayStart: "2026-12-01T05:00:00.000Z" });
      time.now = DEC2;
      // Nobody took a turn yet on Dec 2: /actual says so, and the next turn, on either host, is 1.
      expect(await a.actual("first")).toEqual({ id: "first", turno: 0, day: "2026-12-02", dayStart: "2026-12-02T05:00:00.000Z" });
      expect(await b.turn("first")).toBe(1);
      expect(await a.turn("first")).toBe(2);
      expect(await a.actual("first")).toEqual({ id: "first", turno: 2, day: "2026-12-02", dayStart: "2026-12-02T05:00:00.000Z" });
      // Unscheduled ids answer as before.
      expect(await a.actual("never")).toEqual({ id: "never", turno: 0 });
    });

    test("two hosts with skewed clocks: no number of the old day after a 1 of the new day", async () => {
      // a runs 1.5 s ahead, b 1.5 s behind; true time walks across the boundary in 10 ms steps.
      const { a, b, time } = await twoHosts(DEC2 - 4 * SECOND, 1500, -1500);
      await a.schedule("skew", "06:00", "Europe/Madrid");
      await a.call("PUT", "/admin/turno/skew", JSON.stringify({ turno: 100_000 })); // old day's numbers are > 100000
      const history: HistoryEntry[] = [];
      const client = async (hosts: Array<ReturnType<typeof host>>, requests: number) => {
        for (let i = 0; i < requests; i++) {
          const sentAt = performance.now();
          const turno = await (hosts[i % hosts.length] as ReturnType<typeof host>).turn("skew");
          history.push({ id: "skew", sentAt, doneAt: performance.now(), status: 200, turno });
          time.now += 10;
        }
      };
      await Promise.all([client([a, b], 200), client([b, a], 200), client([b], 200), client([a], 200)]);
      const oldDay = history.filter((e) => (e.turno ?? 0) > 100_000);
      const newDay = history.filter((e) => (e.turno ?? 0) <= 100_000);
      expect(oldDay.length).toBeGreaterThan(50);
      expect(newDay.length).toBeGreaterThan(50);
      const firstOne = newDay.find((e) => e.turno === 1) as HistoryEntry;
      expect(firstOne).toBeDefined();
      // Nothing sent after the new day's 1 was answered got an old day's number.
      expect(oldDay.filter((e) => e.sentAt > firstOne.doneAt)).toEqual([]);
      // Each day on its own is 1..N (I1-I4), the old one above the admin's 100000.
      const old = checkHistory(oldDay, { before: new Map([["skew", 100_000]]) });
      const fresh = checkHistory(newDay);
      expect({ old: old.problems, new: fresh.problems }).toEqual({ old: [], new: [] });
      expect([old.ok, fresh.ok]).toEqual([true, true]);
      // The boundary came 1.5 s early, when the host ahead crossed it.
      expect(time.now).toBeGreaterThan(DEC2);
    });

    test("DST days in Europe/Madrid: a boundary in the spring gap, and only one in the autumn repeat", async () => {
      // 2026-03-29: 02:00-03:00 does not exist; a 02:30 day begins at 03:00 CEST (01:00 UTC).
      const spring = await twoHosts(Date.UTC(2026, 2, 29, 0, 59, 59));
      await spring.a.schedule("dst", "02:30", "Europe/Madrid");
      expect(await spring.a.turn("dst")).toBe(1);
      expect(await spring.a.turn("dst")).toBe(2);
      spring.time.now = Date.UTC(2026, 2, 29, 1, 0, 0);
      expect(await spring.b.turn("dst")).toBe(1);
      expect(await spring.a.actual("dst")).toMatchObject({ day: "2026-03-29", dayStart: "2026-03-29T01:00:00.000Z" });
      // 2026-10-25: 02:00-03:00 happens twice; the day begins at the first 02:30 (00:30 UTC) only.
      const autumn = await twoHosts(Date.UTC(2026, 9, 25, 0, 29, 59));
      await autumn.a.schedule("dst", "02:30", "Europe/Madrid");
      expect(await autumn.a.turn("dst")).toBe(1);
      autumn.time.now = Date.UTC(2026, 9, 25, 0, 30);
      expect(await autumn.a.turn("dst")).toBe(1);
      autumn.time.now = Date.UTC(2026, 9, 25, 1, 30); // 02:30 again, now CET
      expect(await autumn.b.turn("dst")).toBe(2);
      expect(await autumn.b.actual("dst")).toMatchObject({ turno: 2, day: "2026-10-25", dayStart: "2026-10-25T00:30:00.000Z" });
      autumn.time.now = Date.UTC(2026, 9, 26, 1, 30); // 02:30 CET on Oct 26: 25 hours after the last one
      expect(await autumn.a.turn("dst")).toBe(1);
    });

    test("a schedule changed mid-day through another host takes effect at its own next boundary", async () => {
      const { a, b, time } = await twoHosts(Date.UTC(2026, 11, 2, 9, 0)); // 10:00 in Madrid
      await a.schedule("change", "06:00", "Europe/Madrid");
      for (let i = 0; i < 3; i++) await b.turn("change");
      await a.schedule("change", "12:00", "Europe/Madrid");
      expect(await b.turn("change")).toBe(4); // b refreshes; 10:00 is still in the day that began at 06:00
      time.now = Date.UTC(2026, 11, 2, 10, 59); // 11:59
      expect(await b.turn("change")).toBe(5);
      time.now = Date.UTC(2026, 11, 2, 11, 0); // 12:00
      expect(await b.turn("change")).toBe(1);
      expect(await a.turn("change")).toBe(2);
      time.now = Date.UTC(2026, 11, 3, 5, 0); // 06:00 next day: the old schedule's time, no reset
      expect(await b.turn("change")).toBe(3);
    });

    test("after DELETE, turns go on across boundaries without resets, on every host", async () => {
      const { a, b, time } = await twoHosts(DEC2 - SECOND);
      await a.schedule("del", "06:00", "Europe/Madrid");
      expect(await b.turn("del")).toBe(1);
      expect((await a.call("DELETE", "/admin/turno/del/schedule")).status).toBe(204);
      time.now = DEC2 + SECOND;
      expect(await b.turn("del")).toBe(2); // b still held the schedule: one refresh, no reset
      expect(await a.turn("del")).toBe(3);
      time.now = DEC2 + 86_400_000;
      expect(await b.turn("del")).toBe(4);
      expect(await a.actual("del")).toEqual({ id: "del", turno: 4 });
    });
  });
}
