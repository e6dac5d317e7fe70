/**
 * One contract, every store: the same cases run against memory, SQLite and Redis (and the stores
 * added later register in helpers/store-factories.ts).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Coalescer } from "../../src/allocation/coalescer.ts";
import type { CounterStore, Fence, KeyedWaiter, Reservation } from "../../src/domain/counter-store.ts";
import { StoreLostError, StoreRollbackError } from "../../src/domain/errors.ts";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import { checkHistory, formatVerdict, type HistoryEntry } from "../../harness/history-checker.ts";
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

/** A batch of `n` one-number waiters, some keyed (keys kept 60 s). */
function reserveWithKeys(store: CounterStore, id: string, n: number, keys: KeyedWaiter[]): Promise<Reservation> {
  return store.reserve({ id, n, keys, keyTtlSeconds: 60 });
}

/** A batch of waiters of these sizes (batch turns), some keyed. */
function reserveSized(store: CounterStore, id: string, sizes: number[], keys?: KeyedWaiter[]): Promise<Reservation> {
  return store.reserve({ id, n: sizes.length, sizes, keys, keyTtlSeconds: keys === undefined ? undefined : 60 });
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
      const result = await reserveWithKeys(store, "mix", 5, [
        { position: 1, key: "k-a" },
        { position: 2, key: "seen" },
        { position: 4, key: "k-b" },
      ]);
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
      const result = await reserveWithKeys(store, "end", 2, [{ position: 1, key: "late" }]);
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

    test("batch turns: waiters of several sizes get consecutive ranges in waiter order", async () => {
      const store = await fresh();
      expect(await reserveSized(store, "bt", [1, 100, 1, 5])).toMatchObject({ first: 1, count: 107, fenced: false });
      expect(await reserve(store, "bt", 1)).toMatchObject({ first: 108, count: 1 });
      expect(await reserveSized(store, "bt", [1000])).toMatchObject({ first: 109, count: 1000 });
      expect(await store.peek("bt")).toEqual({ value: 1108, epoch: 0 });
      expect(await store.ledger("bt")).toEqual({ issued: 1108, delivered: 0 });
      // A fence applies to a sized reservation as to any other.
      expect(await reserveSized(store, "bt-fenced", [2, 3], undefined)).toMatchObject({ first: 1, count: 5 });
      expect(await store.reserve({ id: "bt-fenced", n: 1, sizes: [4], fence: { floor: 50, epoch: 0 } })).toMatchObject({
        first: 51,
        count: 4,
        fenced: true,
      });
    });

    test("batch turns at exhaustion: all or nothing per waiter, the counter untouched by a batch that does not fit", async () => {
      const store = await fresh();
      await store.set("bx", MAX_TURNO - 5);
      const before = await store.totals();
      // Five left: 10 does not fit (takes none), 1 and 3 do, 2 no longer does.
      expect(await reserveSized(store, "bx", [10, 1, 3, 2])).toMatchObject({ first: MAX_TURNO - 4, count: 4 });
      expect((await store.peek("bx")).value).toBe(MAX_TURNO - 1);
      // A batch alone that does not fit changes nothing: value, ledger, store-wide totals.
      expect(await reserveSized(store, "bx", [2])).toMatchObject({ count: 0 });
      expect((await store.peek("bx")).value).toBe(MAX_TURNO - 1);
      expect(await store.ledger("bx")).toEqual({ issued: 4, delivered: 0 });
      expect((await store.totals()).issued - before.issued).toBe(4);
      // The remaining number still goes to a single turn, exactly MAX_SAFE_INTEGER (decimal replies).
      expect(await reserve(store, "bx", 1)).toMatchObject({ first: MAX_TURNO, count: 1 });
      expect(await reserveSized(store, "bx", [1, 2])).toMatchObject({ count: 0 });
      expect((await store.peek("bx")).value).toBe(MAX_TURNO);
    });

    test("keyed batch turns: the key records first and count; a replay in a mixed reservation takes nothing", async () => {
      const store = await fresh();
      const opened = await reserveSized(store, "kb", [3], [{ position: 0, key: "order-1" }]);
      expect(opened).toMatchObject({ first: 1, count: 3 });
      expect(opened.keyed).toEqual([{ turno: 1, replayed: false }]);
      // plain 2, replay of order-1 (3), plain 1, new keyed 4, new keyed single, replay on the common path later.
      const mixed = await reserveSized(
        store,
        "kb",
        [2, 3, 1, 4, 1],
        [
          { position: 1, key: "order-1" },
          { position: 3, key: "order-2" },
          { position: 4, key: "one" },
        ],
      );
      expect(mixed).toMatchObject({ first: 4, count: 8 });
      expect(mixed.keyed).toEqual([
        { turno: 1, replayed: true, count: 3 },
        { turno: 7, replayed: false },
        { turno: 11, replayed: false },
      ]);
      // Replays through the common (unsized) path tell the recorded count, or none for one number.
      const replays = await reserveWithKeys(store, "kb", 3, [
        { position: 0, key: "order-2" },
        { position: 1, key: "one" },
      ]);
      expect(replays).toMatchObject({ first: 12, count: 1 });
      expect(replays.keyed).toEqual([
        { turno: 7, replayed: true, count: 4 },
        { turno: 11, replayed: true },
      ]);
      expect(await store.ledger("kb")).toEqual({ issued: 12, delivered: 0 });
      // A keyed batch that does not fit is not recorded: after a reset the same key takes fresh numbers.
      await store.set("kb-end", MAX_TURNO - 2);
      const late = await reserveSized(
        store,
        "kb-end",
        [3, 2],
        [
          { position: 0, key: "late" },
          { position: 1, key: "top" },
        ],
      );
      expect(late).toMatchObject({ first: MAX_TURNO - 1, count: 2 });
      expect(late.keyed).toEqual([
        { turno: 0, replayed: false },
        { turno: MAX_TURNO - 1, replayed: false },
      ]);
      expect((await reserveSized(store, "kb-end", [2], [{ position: 0, key: "top" }])).keyed).toEqual([
        { turno: MAX_TURNO - 1, replayed: true, count: 2 },
      ]);
      await store.set("kb-end", 0);
      expect((await reserveSized(store, "kb-end", [3], [{ position: 0, key: "late" }])).keyed).toEqual([
        { turno: 1, replayed: false },
      ]);
    });

    test("one key twice in one reservation: the second waiter replays the first, single or batch", async () => {
      const store = await fresh();
      const singles = await reserveWithKeys(store, "dup", 3, [
        { position: 0, key: "twice" },
        { position: 2, key: "twice" },
      ]);
      expect(singles).toMatchObject({ first: 1, count: 2 });
      expect(singles.keyed).toEqual([
        { turno: 1, replayed: false },
        { turno: 1, replayed: true },
      ]);
      const sized = await reserveSized(
        store,
        "dup",
        [4, 1, 4],
        [
          { position: 0, key: "batch-twice" },
          { position: 2, key: "batch-twice" },
        ],
      );
      expect(sized).toMatchObject({ first: 3, count: 5 });
      expect(sized.keyed).toEqual([
        { turno: 3, replayed: false },
        { turno: 3, replayed: true, count: 4 },
      ]);
      expect(await store.ledger("dup")).toEqual({ issued: 7, delivered: 0 });
    });

    test("batch and single turns concurrently through the coalescer: I1-I4 over every number, ledger", async () => {
      const store = await fresh();
      const coalescer = new Coalescer(store, {
        deadlineMs: 10_000,
        maxBatch: 64,
        maxWaitingPerId: 100_000,
        maxWaiting: 100_000,
        fencing: true,
      });
      const history: HistoryEntry[] = [];
      let wanted = 0;
      const client = async (c: number) => {
        for (let r = 0; r < 15; r++) {
          // A mix of single turns, batches below maxBatch and batches above it (they go alone), some keyed.
          const count = (c + r) % 3 === 0 ? 1 + ((c * 7 + r * 13) % 90) : 1;
          const idempotencyKey = (c + r) % 5 === 0 ? `c${c}-r${r}` : undefined;
          wanted += count;
          const sentAt = performance.now();
          const first = await (count === 1
            ? coalescer.next("mixed", { idempotencyKey })
            : coalescer.nextRange("mixed", count, { idempotencyKey }));
          history.push({ id: "mixed", sentAt, doneAt: performance.now(), status: 200, first, last: first + count - 1, count });
        }
      };
      await Promise.all(Array.from({ length: 40 }, (_, c) => client(c)));
      await coalescer.close();
      // Coalesced: far fewer reservations than requests, so batches shared reservations with singles.
      expect(coalescer.stats.reservations).toBeLessThan(history.length / 2);
      const verdict = checkHistory(history, { after: new Map([["mixed", (await store.peek("mixed")).value]]) });
      if (!verdict.ok) throw new Error(formatVerdict(verdict));
      expect(verdict.totals.numbers).toBe(wanted);
      expect(await store.ledger("mixed")).toEqual({ issued: wanted, delivered: wanted });
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
