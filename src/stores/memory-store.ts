import type { CounterSnapshot, CounterStore, Fence, IdempotentReservation, Reservation } from "../domain/counter-store.ts";
import { planReservation } from "../domain/plan-reservation.ts";

const EMPTY: CounterSnapshot = { value: 0, epoch: 0 };

/** Counters in this process's memory: for tests and demos. Everything is lost on restart. */
export class MemoryStore implements CounterStore {
  readonly kind = "memory";
  readonly #counters = new Map<string, CounterSnapshot>();
  readonly #idempotency = new Map<string, { turno: number; expiresAt: number }>();

  async reserve(id: string, n: number, fence?: Fence): Promise<Reservation> {
    const plan = planReservation(this.#counters.get(id) ?? EMPTY, n, fence);
    this.#counters.set(id, plan.next);
    return plan;
  }

  async reserveIdempotent(id: string, key: string, ttlSeconds: number, fence?: Fence): Promise<IdempotentReservation> {
    const slot = `${id}\u0000${key}`;
    const now = Date.now();
    const seen = this.#idempotency.get(slot);
    const snapshot = this.#counters.get(id) ?? EMPTY;
    if (seen !== undefined && seen.expiresAt > now) {
      return { first: seen.turno, count: 1, epoch: snapshot.epoch, fenced: false, replayed: true };
    }
    const plan = planReservation(snapshot, 1, fence);
    this.#counters.set(id, plan.next);
    if (plan.count > 0) this.#idempotency.set(slot, { turno: plan.first, expiresAt: now + ttlSeconds * 1000 });
    this.#pruneIdempotency(now);
    return { ...plan, replayed: false };
  }

  async peek(id: string): Promise<CounterSnapshot> {
    return this.#counters.get(id) ?? EMPTY;
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    const snapshot = { value, epoch: (this.#counters.get(id)?.epoch ?? 0) + 1 };
    this.#counters.set(id, snapshot);
    return snapshot;
  }

  async ping(): Promise<void> {}

  async durabilityWarnings(): Promise<string[]> {
    return ["memory store: counters live only in this process; after a restart every counter starts again at 1"];
  }

  async close(): Promise<void> {}

  /** Drops expired keys now and then, so the map stays bounded by the keys of one TTL window. */
  #pruneIdempotency(now: number): void {
    if (this.#idempotency.size % 1024 !== 0) return;
    for (const [slot, entry] of this.#idempotency) if (entry.expiresAt <= now) this.#idempotency.delete(slot);
  }
}
