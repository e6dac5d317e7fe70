import type {
  CounterSnapshot,
  CounterStore,
  Ledger,
  MarkerReading,
  Reservation,
  ReservationRequest,
  StoreMarker,
} from "../domain/counter-store.ts";
import { type CounterState, EMPTY_COUNTER, planReservation } from "../domain/plan-reservation.ts";

/**
 * Counters in this process's memory: for tests and demos. Everything is lost on restart, by design,
 * so it has no marker protocol (`durable` is false): its one marker lives and dies with it.
 */
export class MemoryStore implements CounterStore {
  readonly kind = "memory";
  readonly durable = false;
  readonly #counters = new Map<string, CounterState>();
  readonly #idempotency = new Map<string, { turno: number; size: number; expiresAt: number }>();
  #marker: StoreMarker = { uid: "memory", generation: 1, recovered: false, floor: 0, halted: undefined };
  #totals: Ledger = { issued: 0, delivered: 0 };

  async reserve(request: ReservationRequest): Promise<Reservation> {
    const now = Date.now();
    const { id } = request;
    const plan = planReservation(this.#counters.get(id) ?? EMPTY_COUNTER, request, this.#marker, (key) => {
      const seen = this.#idempotency.get(`${id}\u0000${key}`);
      return seen !== undefined && seen.expiresAt > now ? seen : undefined;
    });
    this.#counters.set(id, plan.next);
    const ttlMs = (request.keyTtlSeconds ?? 0) * 1000;
    for (const { key, turno, size } of plan.newKeys)
      this.#idempotency.set(`${id}\u0000${key}`, { turno, size, expiresAt: now + ttlMs });
    if (plan.newKeys.length > 0) this.#pruneIdempotency(now);
    this.#addTotals(plan.count, 0);
    return plan;
  }

  async report(delivered: ReadonlyMap<string, number>): Promise<void> {
    for (const [id, count] of delivered) {
      const counter = this.#counters.get(id) ?? EMPTY_COUNTER;
      this.#counters.set(id, { ...counter, delivered: counter.delivered + count });
      this.#addTotals(0, count);
    }
  }

  async peek(id: string): Promise<CounterSnapshot> {
    const { value, epoch, schedule, day } = this.#counters.get(id) ?? EMPTY_COUNTER;
    return schedule ? { value, epoch, schedule, day: day ?? 0 } : { value, epoch };
  }

  async ledger(id: string): Promise<Ledger> {
    const { issued, delivered } = this.#counters.get(id) ?? EMPTY_COUNTER;
    return { issued, delivered };
  }

  async totals(): Promise<Ledger> {
    return this.#totals;
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    const counter = this.#counters.get(id) ?? EMPTY_COUNTER;
    const next = { ...counter, value, epoch: counter.epoch + 1, generation: this.#marker.generation };
    this.#counters.set(id, next);
    return { value, epoch: next.epoch };
  }

  async setSchedule(id: string, schedule: string | undefined, day: number): Promise<void> {
    const counter = this.#counters.get(id) ?? EMPTY_COUNTER;
    const kept = schedule === undefined ? 0 : Math.max(day, counter.day ?? 0);
    this.#counters.set(id, { ...counter, schedule, day: kept });
  }

  async readMarker(): Promise<MarkerReading> {
    return { marker: this.#marker, missing: 0, seq: new Map(), hasCounters: this.#counters.size > 0 };
  }

  async initializeMarker(): Promise<StoreMarker> {
    return this.#marker;
  }

  async recoverMarker(uid: string, floor: number, after: number): Promise<StoreMarker> {
    const generation = Math.max(this.#marker.generation, after) + 1;
    this.#marker = { uid, generation, recovered: true, floor, halted: undefined };
    return this.#marker;
  }

  async haltMarker(reason: string): Promise<void> {
    this.#marker = { ...this.#marker, halted: reason };
  }

  attach(): void {}

  seen(): ReadonlyMap<string, number> {
    return new Map();
  }

  async ping(): Promise<void> {}

  async durabilityWarnings(): Promise<string[]> {
    return ["memory store: counters live only in this process; after a restart every counter starts again at 1"];
  }

  async close(): Promise<void> {}

  #addTotals(issued: number, delivered: number): void {
    if (issued === 0 && delivered === 0) return;
    this.#totals = { issued: this.#totals.issued + issued, delivered: this.#totals.delivered + delivered };
  }

  /** Drops expired keys now and then, so the map stays bounded by the keys of one TTL window. */
  #pruneIdempotency(now: number): void {
    if (this.#idempotency.size % 1024 !== 0) return;
    for (const [slot, entry] of this.#idempotency) if (entry.expiresAt <= now) this.#idempotency.delete(slot);
  }
}
