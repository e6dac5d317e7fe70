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
