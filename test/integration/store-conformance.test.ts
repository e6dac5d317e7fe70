/**
 * One contract, every store: the same cases run against memory, SQLite and Redis (and the stores
 * added later register in helpers/store-factories.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { CounterStore } from "../../src/domain/counter-store.ts";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import { STORE_FIXTURES } from "../helpers/store-factories.ts";

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
      expect(await store.reserve("a", 1)).toMatchObject({ first: 1, count: 1, fenced: false });
      expect(await store.reserve("a", 5)).toMatchObject({ first: 2, count: 5 });
      expect(await store.reserve("b", 3)).toMatchObject({ first: 1, count: 3 });
      expect(await store.peek("a")).toEqual({ value: 6, epoch: 0 });
      expect(await store.peek("never")).toEqual({ value: 0, epoch: 0 });
    });

    test("concurrent reservations never overlap", async () => {
      const store = await fresh();
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.reserve("c", (i % 7) + 1)));
      const numbers = results.flatMap((r) => Array.from({ length: r.count }, (_, k) => r.first + k));
      expect(new Set(numbers).size).toBe(numbers.length);
      expect(Math.max(...numbers)).toBe(numbers.length);
    });

    test("set moves the counter and raises the epoch; reset starts again at 1", async () => {
      const store = await fresh();
      await store.reserve("d", 10);
      expect(await store.set("d", 100)).toEqual({ value: 100, epoch: 1 });
      expect(await store.reserve("d", 1)).toMatchObject({ first: 101, epoch: 1 });
      expect(await store.set("d", 0)).toEqual({ value: 0, epoch: 2 });
      expect(await store.reserve("d", 1)).toMatchObject({ first: 1, epoch: 2 });
    });

    test("never passes MAX_SAFE_INTEGER and grants only what is left", async () => {
      const store = await fresh();
      await store.set("e", MAX_TURNO - 3);
      expect(await store.reserve("e", 10)).toMatchObject({ first: MAX_TURNO - 2, count: 3 });
      expect(await store.reserve("e", 1)).toMatchObject({ count: 0 });
      expect((await store.peek("e")).value).toBe(MAX_TURNO);
      await store.set("f", MAX_TURNO - 1);
      expect(await store.reserve("f", 1)).toMatchObject({ first: MAX_TURNO, count: 1 });
      expect((await store.peek("f")).value).toBe(MAX_TURNO);
    });

    test("a fence raises a counter that went backwards, atomically with the grant", async () => {
      const store = await fresh();
      expect(await store.reserve("g", 2, { floor: 50, epoch: 0 })).toMatchObject({ first: 51, count: 2, fenced: true });
      expect(await store.reserve("g", 1, { floor: 52, epoch: 0 })).toMatchObject({ first: 53, fenced: false });
      // An epoch the store no longer has (it lost an operator's reset) is restored too.
      expect(await store.reserve("h", 1, { floor: 7, epoch: 3 })).toMatchObject({ first: 8, epoch: 3, fenced: true });
      // A newer epoch in the store (an operator reset it) wins over an old fence.
      await store.set("g", 0);
      expect(await store.reserve("g", 1, { floor: 53, epoch: 0 })).toMatchObject({ first: 1, epoch: 1, fenced: false });
    });

    test("an idempotency key returns the same turn and increments once, even concurrently", async () => {
      const store = await fresh();
      await store.reserve("i", 4);
      const first = await store.reserveIdempotent("i", "key-1", 60);
      expect(first).toMatchObject({ first: 5, count: 1, replayed: false });
      expect(await store.reserveIdempotent("i", "key-1", 60)).toMatchObject({ first: 5, replayed: true });
      expect(await store.reserveIdempotent("other", "key-1", 60)).toMatchObject({ first: 1, replayed: false });
      const burst = await Promise.all(Array.from({ length: 20 }, () => store.reserveIdempotent("i", "key-2", 60)));
      expect(new Set(burst.map((r) => r.first))).toEqual(new Set([6]));
      expect(burst.filter((r) => !r.replayed).length).toBe(1);
      expect((await store.peek("i")).value).toBe(6);
    });

    test("an idempotency key expires after its lifetime", async () => {
      const store = await fresh();
      expect((await store.reserveIdempotent("j", "k", 1)).first).toBe(1);
      await Bun.sleep(1100);
      expect(await store.reserveIdempotent("j", "k", 1)).toMatchObject({ first: 2, replayed: false });
    });

    test("ping answers and close is idempotent", async () => {
      const store = await fixture.create();
      await store.ping();
      expect(Array.isArray(await store.durabilityWarnings())).toBe(true);
      await store.close();
      await store.close();
    });
  });
}
