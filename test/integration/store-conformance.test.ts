/**
 * One contract, every store: the same cases run against memory, SQLite and Redis (and the stores
 * added later register in helpers/store-factories.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { CounterStore, Fence, Reservation } from "../../src/domain/counter-store.ts";
import { StoreLostError, StoreRollbackError } from "../../src/domain/errors.ts";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import { STORE_FIXTURES } from "../../harness/store-factories.ts";

/** A batch of `n` plain waiters. */
function reserve(store: CounterStore, id: string, n: number, fence?: Fence): Promise<Reservation> {
  return store.reserve({ id, n, fence });
}

/** One keyed waiter alone. */
async function reserveKeyed(store: CounterStore, id: string, key: string, ttlSeconds: number) {
  const result = await store.reserve({ id, n: 1, keys: [{ position: 0, key }], keyTtlSeconds: ttlSeconds });
  return result.keyed[0] as { turno: number; replayed: boolean };
}

for (const makeFixture of STORE_FIXTURES) {
  const fixture = makeFixture();
  describe(`store contract: ${fixture.name}`, () => {
    const stores: CounterStore[] = [];
    const fresh = async () => {
      const store = await fixture.create();
      stores.push(store);
      return store;
    };
    afterAll(async () => {
      for (const store of stores) await store.close();
      await fixture.teardown();
    });

    test("reserves consecutive ranges, starting at 1", async () => {
      const store = await fresh();
      expect(await reserve(store, "a", 1)).toMatchObject({ first: 1, count: 1, fenced: false });
      expect(await reserve(store, "a", 5)).toMatchObject({ first: 2, count: 5 });
      expect(await reserve(store, "b", 3)).toMatchObject({ first: 1, count: 3 });
      expect(await store.peek("a")).toEqual({ value: 6, epoch: 0 });
      expect(await store.peek("never")).toEqual({ value: 0, epoch: 0 });
    });

    test("concurrent reservations never overlap", async () => {
      const store = await fresh();
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => reserve(store, "c", (i % 7) + 1)));
      const numbers = results.flatMap((r) => Array.from({ length: r.count }, (_, k) => r.first + k));
      expect(new Set(numbers).size).toBe(numbers.length);
      expect(Math.max(...numbers)).toBe(numbers.length);
    });

    test("set moves the counter and raises the epoch; reset starts again at 1", async () => {
      const store = await fresh();
      await reserve(store, "d", 10);
      expect(await store.set("d", 100)).toEqual({ value: 100, epoch: 1 });
      expect(await reserve(store, "d", 1)).toMatchObject({ first: 101, epoch: 1 });
      expect(await store.set("d", 0)).toEqual({ value: 0, epoch: 2 });
      expect(await reserve(store, "d", 1)).toMatchObject({ first: 1, epoch: 2 });
    });

    test("never passes MAX_SAFE_INTEGER and grants only what is left", async () => {
      const store = await fresh();
      await store.set("e", MAX_TURNO - 3);
      expect(await reserve(store, "e", 10)).toMatchObject({ first: MAX_TURNO - 2, count: 3 });
      expect(await reserve(store, "e", 1)).toMatchObject({ count: 0 });
      expect((await store.peek("e")).value).toBe(MAX_TURNO);
      await store.set("f", MAX_TURNO - 1);
      expect(await reserve(store, "f", 1)).toMatchObject({ first: MAX_TURNO, count: 1 });
      expect((await store.peek("f")).value).toBe(MAX_TURNO);
    });

    test("a fence raises a counter that went backwards, atomically with the grant", async () => {
      const store = await fresh();
      expect(await reserve(store, "g", 2, { floor: 50, epoch: 0 })).toMatchObject({ first: 51, count: 2, fenced: true });
      expect(await reserve(store, "g", 1, { floor: 52, epoch: 0 })).toMatchObject({ first: 53, fenced: false });
      // An epoch the store no longer has (it lost an operator's reset) is restored too.
      expect(await reserve(store, "h", 1, { floor: 7, epoch: 3 })).toMatchObject({ first: 8, epoch: 3, fenced: true });
      // A newer epoch in the store (an operator reset it) wins over an old fence.
      await store.set("g", 0);
      expect(await reserve(store, "g", 1, { floor: 53, epoch: 0 })).toMatchObject({ first: 1, epoch: 1, fenced: false });
    });

    test("an idempotency key returns the same turn and increments once, even concurrently", async () => {
      const store = await fresh();
      await reserve(store, "i", 4);
      expect(await reserveKeyed(store, "i", "key-1", 60)).toEqual({ turno: 5, replayed: false });
      expect(await reserveKeyed(store, "i", "key-1", 60)).toEqual({ turno: 5, replayed: true });
      expect(await reserveKeyed(store, "other", "key-1", 60)).toEqual({ turno: 1, replayed: false });
      const burst = await Promise.all(Array.from({ length: 20 }, () => reserveKeyed(store, "i", "key-2", 60)));
      expect(new Set(burst.map((r) => r.turno))).toEqual(new Set([6]));
      expect(burst.filter((r) => !r.replayed).length).toBe(1);
      expect((await store.peek("i")).value).toBe(6);
    });

    test("keyed and plain waiters share one reservation; replayed keys take no number", async () => {
      const store = await fresh();
      await reserveKeyed(store, "mix", "seen", 60); // 1
      // Batch: plain, keyed new, keyed seen, plain, keyed new.
      const result = await store.reserve({
        id: "mix",
        n: 5,
        keys: [
          { position: 1, key: "k-a" },
          { position: 2, key: "seen" },
          { position: 4, key: "k-b" },
        ],
        keyTtlSeconds: 60,
      });
      expect(result).toMatchObject({ first: 2, count: 4 });
      expect(result.keyed).toEqual([
        { turno: 3, replayed: false },
        { turno: 1, replayed: true },
        { turno: 5, replayed: false },
      ]);
      expect(await reserveKeyed(store, "mix", "k-b", 60)).toEqual({ turno: 5, replayed: true });
      expect(await store.ledger("mix")).toEqual({ issued: 5, delivered: 0 });
    });

    test("a key past the counter's end gets no number and is not recorded", async () => {
      const store = await fresh();
      await store.set("end", MAX_TURNO - 1);
      const result = await store.reserve({
        id: "end",
        n: 2,
        keys: [{ position: 1, key: "late" }],
        keyTtlSeconds: 60,
      });
      expect(result).toMatchObject({ first: MAX_TURNO, count: 1 });
      expect(result.keyed).toEqual([{ turno: 0, replayed: false }]);
      await store.set("end", 0);
      expect(await reserveKeyed(store, "end", "late", 60)).toEqual({ turno: 1, replayed: false });
    });

    test("an idempotency key expires after its lifetime, also when it shares a call with plain ids", async () => {
      const store = await fresh();
      expect((await reserveKeyed(store, "j", "k", 1)).turno).toBe(1);
      // Reservations of one event-loop turn may go out in one store call (Redis): the plain one first.
      await Promise.all([
        store.reserve({ id: "j-plain", n: 1 }),
        store.reserve({ id: "j2", n: 1, keys: [{ position: 0, key: "k2" }], keyTtlSeconds: 1 }),
      ]);
      await Bun.sleep(1100);
      expect(await reserveKeyed(store, "j", "k", 1)).toEqual({ turno: 2, replayed: false });
      expect(await reserveKeyed(store, "j2", "k2", 1)).toEqual({ turno: 2, replayed: false });
    });

    test("the ledger counts issued numbers and reported deliveries, per id and store-wide", async () => {
      const store = await fresh();
      const before = await store.totals();
      await reserve(store, "l1", 5);
      await store.report(new Map([["l1", 4]])); // 4 of the first 5
      await reserve(store, "l1", 2);
      await reserve(store, "l2", 3);
      await store.report(
        new Map([
          ["l1", 2],
          ["l2", 3],
        ]),
      );
      expect(await store.ledger("l1")).toEqual({ issued: 7, delivered: 6 });
      expect(await store.ledger("l2")).toEqual({ issued: 3, delivered: 3 });
      expect(await store.ledger("none")).toEqual({ issued: 0, delivered: 0 });
      // An admin set or reset moves the counter, not the ledger; a fence's jump is no issue either.
      await store.set("l2", 1000);
      expect(await store.ledger("l2")).toEqual({ issued: 3, delivered: 3 });
      await store.set("l2", 0);
      await reserve(store, "l2", 1);
      expect(await store.ledger("l2")).toEqual({ issued: 4, delivered: 3 });
      await reserve(store, "l3", 1, { floor: 500, epoch: 0 });
      expect(await store.ledger("l3")).toEqual({ issued: 1, delivered: 0 });
      const after = await store.totals();
      expect(after.issued - before.issued).toBe(12);
      expect(after.delivered - before.delivered).toBe(9);
    });

    if (fixture.durable !== false) {
      test("marker: initialized once, checked by every reservation, its loss refused", async () => {
        const store = await fresh();
        expect((await store.readMarker()).marker).toBeUndefined();
        const marker = await store.initializeMarker("uid-1");
        expect(marker).toMatchObject({ uid: "uid-1", generation: 1, recovered: false, halted: undefined });
        expect((await store.initializeMarker("uid-2")).uid).toBe("uid-1");
        store.attach("uid-1", new Map());
        await reserve(store, "m", 3);
        const seen = [...store.seen().values()];
        expect(Math.max(...seen)).toBeGreaterThan(0);
        store.attach("uid-other", store.seen());
        expect(reserve(store, "m", 1)).rejects.toBeInstanceOf(StoreLostError);
        expect(store.report(new Map([["m", 1]]))).rejects.toBeInstanceOf(StoreLostError);
        expect((await store.peek("m")).value).toBe(3);
      });

      test("marker: a sequence below one seen acknowledged halts the store for everyone", async () => {
        const store = await fresh();
        await store.initializeMarker("uid-r");
        const ahead = new Map([...(await store.readMarker()).seq].map(([key, seq]) => [key, seq + 1000]));
        store.attach("uid-r", ahead);
        expect(reserve(store, "r", 1)).rejects.toBeInstanceOf(StoreRollbackError);
        await Bun.sleep(10);
        const reading = await store.readMarker();
        expect(reading.marker?.halted).toBeString();
        // Another process, with nothing seen, is refused too.
        store.attach("uid-r", new Map());
        expect(reserve(store, "r", 1)).rejects.toBeInstanceOf(StoreRollbackError);
      });

      test("marker: a recovery starts every older counter above its floor and clears a halt", async () => {
        const store = await fresh();
        await store.initializeMarker("uid-a");
        store.attach("uid-a", new Map());
        await reserve(store, "old", 5);
        await store.haltMarker("test");
        const recovered = await store.recoverMarker("uid-b", 1000, 3);
        expect(recovered).toMatchObject({ uid: "uid-b", generation: 4, recovered: true, floor: 1000, halted: undefined });
        store.attach("uid-b", new Map());
        expect(await reserve(store, "old", 1)).toMatchObject({ first: 1001 });
        expect(await reserve(store, "new", 1)).toMatchObject({ first: 1001 });
        expect(await reserve(store, "new", 1)).toMatchObject({ first: 1002 });
        // An admin reset after the recovery is the operator's word: it is not floored again.
        await store.set("new", 0);
        expect(await reserve(store, "new", 1)).toMatchObject({ first: 1 });
      });
    }

    test("ping answers and close is idempotent", async () => {
      const store = await fixture.create();
      await store.ping();
      expect(Array.isArray(await store.durabilityWarnings())).toBe(true);
      await store.close();
      await store.close();
    });
  });
}
