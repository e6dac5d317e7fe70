import { describe, expect, test } from "bun:test";
import { Coalescer, type CoalescerOptions } from "../../src/allocation/coalescer.ts";
import type { Reservation, ReservationRequest } from "../../src/domain/counter-store.ts";
import { MAX_TURNO } from "../../src/domain/limits.ts";
import { MemoryStore } from "../../src/stores/memory-store.ts";

const OPTIONS: CoalescerOptions = { deadlineMs: 200, maxBatch: 1024, maxWaitingPerId: 1000, maxWaiting: 5000, fencing: true };

/** A real MemoryStore whose reservations wait until the test opens the gate: to control timing. */
class GatedStore extends MemoryStore {
  readonly calls: number[] = [];
  readonly requests: ReservationRequest[] = [];
  readonly reports: Array<ReadonlyMap<string, number>> = [];
  gate: Promise<void> = Promise.resolve();
  override async reserve(request: ReservationRequest): Promise<Reservation> {
    this.calls.push(request.n);
    this.requests.push(request);
    await this.gate;
    return super.reserve(request);
  }
  override async report(delivered: ReadonlyMap<string, number>): Promise<void> {
    this.reports.push(new Map(delivered));
    return super.report(delivered);
  }
}

/** A MemoryStore that the test can empty, as a store restarted empty (memory has no marker check). */
class SwappableStore extends MemoryStore {
  inner = new MemoryStore();
  override reserve(request: ReservationRequest) {
    return this.inner.reserve(request);
  }
  override peek(id: string) {
    return this.inner.peek(id);
  }
  override set(id: string, value: number) {
    return this.inner.set(id, value);
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

describe("coalescer", () => {
  test("one reservation in flight per id; the queue goes out as one batch, in arrival order", async () => {
    const store = new GatedStore();
    const first = gate();
    store.gate = first.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const a = coalescer.next("x");
    const rest = Array.from({ length: 10 }, () => coalescer.next("x"));
    expect(store.calls).toEqual([1]);
    first.open();
    expect(await a).toBe(1);
    expect(await Promise.all(rest)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(store.calls).toEqual([1, 10]);
    await coalescer.close();
  });

  test("respects maxBatch", async () => {
    const store = new GatedStore();
    const coalescer = new Coalescer(store, { ...OPTIONS, maxBatch: 4 });
    const all = await Promise.all(Array.from({ length: 10 }, () => coalescer.next("x")));
    expect(all).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(Math.max(...store.calls)).toBeLessThanOrEqual(4);
    await coalescer.close();
  });

  test("a slow store gets a 503 within the deadline, and late numbers are counted abandoned", async () => {
    const store = new GatedStore();
    const slow = gate();
    store.gate = slow.promise;
    const coalescer = new Coalescer(store, { ...OPTIONS, deadlineMs: 50 });
    const started = performance.now();
    const error = await coalescer.next("x").catch((e: unknown) => e);
    expect((error as { code: string }).code).toBe("TURNO_ERR_STORE_TIMEOUT");
    expect(performance.now() - started).toBeLessThan(1000);
    slow.open();
    await coalescer.idle();
    await Bun.sleep(10);
    expect(coalescer.stats.abandoned).toBe(1);
    await coalescer.close();
  });

  test("bounded waiting: excess requests are refused as overloaded", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, { ...OPTIONS, maxWaitingPerId: 3 });
    const accepted = [coalescer.next("x"), coalescer.next("x"), coalescer.next("x"), coalescer.next("x")];
    const refused = await coalescer.next("x").catch((e: unknown) => e);
    expect((refused as { code: string }).code).toBe("TURNO_ERR_OVERLOADED");
    hold.open();
    expect(await Promise.all(accepted)).toEqual([1, 2, 3, 4]);
    await coalescer.close();
  });

  test("a client that went away gets no number, and the number is counted", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const controller = new AbortController();
    const gone = coalescer.next("x", { gone: () => controller.signal.aborted }).catch((e: unknown) => e);
    controller.abort();
    hold.open();
    expect(((await gone) as { code: string }).code).toBe("TURNO_ERR_CLIENT_CLOSED_REQUEST");
    expect(coalescer.stats.abandoned).toBe(1);
    expect(await coalescer.next("x")).toBe(2);
    await coalescer.close();
  });

  test("near the top, grants only what is left and answers exhausted to the rest", async () => {
    const store = new MemoryStore();
    await store.set("x", MAX_TURNO - 2);
    const coalescer = new Coalescer(store, OPTIONS);
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => coalescer.next("x")));
    const values = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<number>).value);
    expect(values.sort()).toEqual([MAX_TURNO - 1, MAX_TURNO]);
    const codes = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason.code);
    expect(codes).toEqual(["TURNO_ERR_COUNTER_EXHAUSTED", "TURNO_ERR_COUNTER_EXHAUSTED"]);
    expect((await store.peek("x")).value).toBe(MAX_TURNO);
    await coalescer.close();
  });

  test("a store that lost its data is fenced forward, never re-issues; an operator reset is honoured", async () => {
    const store = new SwappableStore();
    const coalescer = new Coalescer(store, OPTIONS);
    for (let i = 1; i <= 5; i++) expect(await coalescer.next("z")).toBe(i);
    store.inner = new MemoryStore(); // the store "restarted empty"
    expect(await coalescer.next("z")).toBe(6);
    expect(coalescer.stats.fences).toBe(1);
    const reset = await store.set("z", 0); // an operator reset raises the epoch
    coalescer.forget("z", reset.epoch);
    expect(await coalescer.next("z")).toBe(1);
    await coalescer.close();
  });

  test("with fencing off, a store that lost its data re-issues (negative control)", async () => {
    const store = new SwappableStore();
    const coalescer = new Coalescer(store, { ...OPTIONS, fencing: false });
    for (let i = 1; i <= 3; i++) await coalescer.next("z");
    store.inner = new MemoryStore();
    expect(await coalescer.next("z")).toBe(1);
    await coalescer.close();
  });

  test("keyed and plain waiters go out in one reservation; a replayed key takes no number", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const first = coalescer.next("k", { idempotencyKey: "a" });
    const batch = [
      coalescer.next("k"),
      coalescer.next("k", { idempotencyKey: "b" }),
      coalescer.next("k", { idempotencyKey: "a" }),
      coalescer.next("k"),
    ];
    hold.open();
    expect(await first).toBe(1);
    expect(await Promise.all(batch)).toEqual([2, 3, 1, 4]);
    expect(store.calls).toEqual([1, 4]);
    expect(store.requests[1]?.keys).toEqual([
      { position: 1, key: "b" },
      { position: 2, key: "a" },
    ]);
    expect(coalescer.stats.replays).toBe(1);
    expect(coalescer.stats.delivered).toBe(4);
    await coalescer.close();
  });

  test("deliveries go out in one report per flush, for every id, and on close", async () => {
    const store = new GatedStore();
    const coalescer = new Coalescer(store, { ...OPTIONS, ledgerFlushMs: 60_000 });
    await Promise.all([coalescer.next("d"), coalescer.next("d")]);
    await coalescer.next("d");
    await coalescer.next("quiet");
    expect(store.reports).toEqual([]);
    await coalescer.flushLedger();
    expect(store.reports).toEqual([
      new Map([
        ["d", 3],
        ["quiet", 1],
      ]),
    ]);
    await coalescer.next("d");
    await coalescer.close();
    expect(store.reports[1]).toEqual(new Map([["d", 1]]));
    expect(await store.ledger("d")).toEqual({ issued: 4, delivered: 4 });
    expect(await store.totals()).toEqual({ issued: 5, delivered: 5 });
  });

  test("the periodic flush reports ids that went quiet", async () => {
    const store = new GatedStore();
    const coalescer = new Coalescer(store, { ...OPTIONS, ledgerFlushMs: 20 });
    await coalescer.next("p");
    await Bun.sleep(80);
    expect(await store.ledger("p")).toEqual({ issued: 1, delivered: 1 });
    await coalescer.close();
  });

  test("an abandoned number is issued but never delivered: the ledger counts it lost", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const controller = new AbortController();
    const gone = coalescer.next("g", { gone: () => controller.signal.aborted }).catch(() => undefined);
    const kept = coalescer.next("g");
    controller.abort();
    hold.open();
    await Promise.all([gone, kept]);
    await coalescer.close();
    const { issued, delivered } = await store.ledger("g");
    expect(issued - delivered).toBe(1);
  });

  test("with ledger reports off nothing is reported (the negative control of the ledger tests)", async () => {
    const store = new GatedStore();
    const coalescer = new Coalescer(store, { ...OPTIONS, ledgerReports: false });
    await coalescer.next("n");
    await coalescer.next("n");
    await coalescer.close();
    expect(store.reports).toEqual([]);
    expect(await store.ledger("n")).toEqual({ issued: 2, delivered: 0 });
  });

  test("fences are bounded: the least recently issued id's fence is dropped past fenceMaxIds", async () => {
    const store = new SwappableStore();
    const coalescer = new Coalescer(store, { ...OPTIONS, fenceMaxIds: 2 });
    for (const id of ["a", "b", "c"]) await coalescer.next(id);
    expect(coalescer.fencedIds).toBe(2);
    expect(coalescer.stats.fenceEvictions).toBe(1);
    store.inner = new MemoryStore();
    // "a" lost its fence (re-issued: the store marker is what catches this in production); "c" kept it.
    expect(await coalescer.next("a")).toBe(1);
    expect(await coalescer.next("c")).toBe(2);
    await coalescer.close();
  });
});

/** The rejection's problem code, or the value when it resolved. */
const outcome = (promise: Promise<number>) =>
  promise.then(
    (value) => value,
    (error: { code?: string }) => error.code,
  );

describe("coalescer, batch turns", () => {
  test("a batch rides in the same reservation as single turns; sizes go to the store only then", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const first = coalescer.next("b");
    const rest = [coalescer.next("b"), coalescer.nextRange("b", 100), coalescer.next("b"), coalescer.nextRange("b", 3)];
    hold.open();
    expect(await first).toBe(1);
    expect(await Promise.all(rest)).toEqual([2, 3, 103, 104]);
    expect(store.requests.map((r) => r.sizes)).toEqual([undefined, [1, 100, 1, 3]]);
    expect(store.calls).toEqual([1, 4]);
    expect(await coalescer.next("b")).toBe(107);
    expect(store.requests[2]?.sizes).toBeUndefined();
    await coalescer.close();
    expect(await store.ledger("b")).toEqual({ issued: 107, delivered: 107 });
  });

  test("maxBatch bounds the numbers of a reservation; a batch above it goes alone", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, { ...OPTIONS, maxBatch: 10 });
    const all = [
      coalescer.next("m"),
      coalescer.nextRange("m", 5),
      coalescer.nextRange("m", 5),
      coalescer.nextRange("m", 20),
      coalescer.next("m"),
    ];
    hold.open();
    expect(await Promise.all(all)).toEqual([1, 2, 7, 12, 32]);
    expect(store.requests.map((r) => r.sizes ?? r.n)).toEqual([1, [5, 5], [20], 1]);
    await coalescer.close();
  });

  test("at exhaustion a batch that does not fit takes nothing (409); later waiters that fit are served", async () => {
    const store = new GatedStore();
    await store.set("x", MAX_TURNO - 5);
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const first = coalescer.next("x"); // MAX - 4, alone; four left behind it
    const rest = [coalescer.nextRange("x", 10), coalescer.next("x"), coalescer.nextRange("x", 3), coalescer.nextRange("x", 2)];
    hold.open();
    expect(await first).toBe(MAX_TURNO - 4);
    expect(await Promise.all(rest.map(outcome))).toEqual([
      "TURNO_ERR_COUNTER_EXHAUSTED",
      MAX_TURNO - 3,
      MAX_TURNO - 2,
      "TURNO_ERR_COUNTER_EXHAUSTED",
    ]);
    expect((await store.peek("x")).value).toBe(MAX_TURNO);
    await coalescer.close();
    expect(await store.ledger("x")).toEqual({ issued: 5, delivered: 5 });
  });

  test("a batch alone at exhaustion leaves the counter unchanged; the remaining numbers still go to singles", async () => {
    const store = new MemoryStore();
    await store.set("y", MAX_TURNO - 3);
    const coalescer = new Coalescer(store, OPTIONS);
    const error = await coalescer.nextRange("y", 4).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "TURNO_ERR_COUNTER_EXHAUSTED", status: 409 });
    expect((error as Error).message).toContain("none was taken");
    expect((await store.peek("y")).value).toBe(MAX_TURNO - 3);
    expect(await store.ledger("y")).toEqual({ issued: 0, delivered: 0 });
    expect(await coalescer.nextRange("y", 3)).toBe(MAX_TURNO - 2);
    expect(await outcome(coalescer.next("y"))).toBe("TURNO_ERR_COUNTER_EXHAUSTED");
    await coalescer.close();
  });

  test("a keyed batch replays its range; the same key with another count is refused and takes nothing", async () => {
    const store = new GatedStore();
    const coalescer = new Coalescer(store, OPTIONS);
    expect(await coalescer.nextRange("k", 3, { idempotencyKey: "order-1" })).toBe(1);
    expect(await coalescer.nextRange("k", 3, { idempotencyKey: "order-1" })).toBe(1);
    const other = await coalescer.nextRange("k", 4, { idempotencyKey: "order-1" }).catch((e: unknown) => e);
    expect(other).toMatchObject({ code: "TURNO_ERR_IDEMPOTENCY_KEY_REUSED", status: 422 });
    expect(await outcome(coalescer.next("k", { idempotencyKey: "order-1" }))).toBe("TURNO_ERR_IDEMPOTENCY_KEY_REUSED");
    // A single turn's key, retried as a batch, is refused the same way.
    expect(await coalescer.next("k", { idempotencyKey: "single" })).toBe(4);
    expect(await outcome(coalescer.nextRange("k", 2, { idempotencyKey: "single" }))).toBe("TURNO_ERR_IDEMPOTENCY_KEY_REUSED");
    expect((await store.peek("k")).value).toBe(4);
    // Replayed in one reservation with fresh waiters: the keyed offsets count sizes, not positions.
    const hold = gate();
    store.gate = hold.promise;
    const head = coalescer.next("k"); // 5
    const mixed = [
      coalescer.nextRange("k", 2), // 6..7
      coalescer.nextRange("k", 3, { idempotencyKey: "order-1" }), // replay 1..3
      coalescer.next("k"), // 8
      coalescer.nextRange("k", 4, { idempotencyKey: "order-2" }), // 9..12
      coalescer.next("k", { idempotencyKey: "single" }), // replay 4
      coalescer.next("k"), // 13
    ];
    hold.open();
    expect(await head).toBe(5);
    expect(await Promise.all(mixed)).toEqual([6, 1, 8, 9, 4, 13]);
    expect(await coalescer.nextRange("k", 4, { idempotencyKey: "order-2" })).toBe(9);
    await coalescer.close();
    expect(await store.ledger("k")).toEqual({ issued: 13, delivered: 13 });
  });

  test("a batch whose client went away is counted lost, all of its numbers", async () => {
    const store = new GatedStore();
    const hold = gate();
    store.gate = hold.promise;
    const coalescer = new Coalescer(store, OPTIONS);
    const controller = new AbortController();
    const gone = coalescer.nextRange("g", 50, { gone: () => controller.signal.aborted }).catch(() => undefined);
    const kept = coalescer.nextRange("g", 7);
    controller.abort();
    hold.open();
    await gone;
    expect(await kept).toBe(51);
    expect(coalescer.stats.abandoned).toBe(50);
    await coalescer.close();
    expect(await store.ledger("g")).toEqual({ issued: 57, delivered: 7 });
  });

  test("a count that is not a whole number >= 1 is refused before anything is queued", async () => {
    const store = new GatedStore();
    const coalescer = new Coalescer(store, OPTIONS);
    for (const count of [0, -1, 1.5, Number.NaN]) expect(coalescer.nextRange("v", count)).rejects.toBeInstanceOf(RangeError);
    expect(store.calls).toEqual([]);
    await coalescer.close();
  });
});
