/**
 * The one interface every counter store implements (memory, SQLite, Redis, Redis Cluster). The
 * conformance suite in test/integration/store-conformance.test.ts runs the same cases on each.
 *
 * Values are plain JavaScript numbers: every value a store holds is an integer in
 * [0, MAX_TURNO], which a double represents exactly.
 */

/** A lower bound the store must respect before it grants numbers (rollback fencing, I1). */
export interface Fence {
  /** The highest turn this process has issued for the id. */
  readonly floor: number;
  /** The counter's epoch when that turn was issued. */
  readonly epoch: number;
}

/** What one reservation of up to `n` consecutive numbers returned. */
export interface Reservation {
  /** First number granted; the grant is `first .. first + count - 1`. */
  readonly first: number;
  /** How many were granted: less than asked only when the counter hit MAX_TURNO (0 = exhausted). */
  readonly count: number;
  /**
   * The counter's epoch: raised by every admin set or reset, so a process can tell an operator's
   * deliberate move backwards from a store that lost data.
   */
  readonly epoch: number;
  /** True when the store had to raise the counter to the fence's floor first (it went backwards). */
  readonly fenced: boolean;
}

/** Result of an idempotent reservation of one number. */
export interface IdempotentReservation extends Reservation {
  /** True when the key had been seen: `first` is the turn issued to the first request, nothing was reserved. */
  readonly replayed: boolean;
}

export interface CounterSnapshot {
  readonly value: number;
  readonly epoch: number;
}

export interface CounterStore {
  /** Short name for logs and metrics: "memory", "sqlite", "redis", "redis-cluster", "redis-sentinel". */
  readonly kind: string;

  /**
   * Atomically reserves up to `n` consecutive numbers for `id`. Before granting, if `fence` is given
   * and the stored epoch is older than `fence.epoch`, or equal with a value below `fence.floor`, the
   * store raises the value to `fence.floor` (and reports `fenced`). Never moves past MAX_TURNO. When
   * the promise resolves the reservation is as durable as the store can make it.
   */
  reserve(id: string, n: number, fence?: Fence): Promise<Reservation>;

  /**
   * Reserves one number for `id` unless `key` was already used for `id` within `ttlSeconds`, in which
   * case the turn issued then is returned with `replayed`. Atomic across processes.
   */
  reserveIdempotent(id: string, key: string, ttlSeconds: number, fence?: Fence): Promise<IdempotentReservation>;

  /** The last issued value (0 when none) and the epoch, without changing anything. */
  peek(id: string): Promise<CounterSnapshot>;

  /** Sets the counter so the next turn is `value + 1`, and raises its epoch. Returns the new snapshot. */
  set(id: string, value: number): Promise<CounterSnapshot>;

  /** Resolves when the store answers; rejects otherwise. Used by /readyz. */
  ping(): Promise<void>;

  /** Human-readable warnings about durability (e.g. "memory store: numbers restart from 1"). */
  durabilityWarnings(): Promise<string[]>;

  /** Releases connections and files. Idempotent. */
  close(): Promise<void>;
}
