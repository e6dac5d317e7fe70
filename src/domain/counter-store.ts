/**
 * The one interface every counter store implements (memory, SQLite, Redis, Redis Cluster, Sentinel).
 * The conformance suite in test/integration/store-conformance.test.ts runs the same cases on each.
 *
 * Values are plain JavaScript numbers: every value a store holds is an integer in
 * [0, MAX_TURNO], which a double represents exactly.
 *
 * Three things live in the store next to each counter, because they must survive the death of the
 * process that knows them:
 * - the ledger (`issued`, `delivered`): every number no client got is `issued - delivered`;
 * - the store marker (identity, generation, sequence): a store that lost data or went backwards is
 *   told apart from a new one (src/stores/store-guard.ts);
 * - idempotency keys, as before.
 */

/** A lower bound the store must respect before it grants numbers (rollback fencing, I1). */
export interface Fence {
  /** The highest turn this process has issued for the id. */
  readonly floor: number;
  /** The counter's epoch when that turn was issued. */
  readonly epoch: number;
}

/** A waiter of a batch that carries an Idempotency-Key. */
export interface KeyedWaiter {
  /** Its index among the batch's `n` waiters (ascending across the list). */
  readonly position: number;
  readonly key: string;
}

/** One id's share of a reservation: a batch of waiters, plain and keyed, in arrival order. */
export interface ReservationRequest {
  readonly id: string;
  /** How many waiters the batch has (keyed ones included); each wants one number unless `sizes` says otherwise. */
  readonly n: number;
  /**
   * How many consecutive numbers each waiter wants, in batch order (length `n`). Given only when some
   * waiter wants more than one (a batch turn, `POST /turno/:id?count=k`); undefined = one each, the
   * common path. With sizes the store grants greedily in waiter order, all or nothing per waiter: a
   * waiter whose size does not fit in what is left below MAX_TURNO gets nothing (and takes nothing),
   * a later one that fits is still granted, and the granted waiters' numbers are consecutive.
   */
  readonly sizes?: readonly number[];
  /** The keyed waiters; a key seen before gets its old number and takes none from the counter. */
  readonly keys?: readonly KeyedWaiter[];
  /** Lifetime of the keys this reservation records (s). Needed when `keys` is not empty. */
  readonly keyTtlSeconds?: number;
  readonly fence?: Fence;
  /** The id's daily reset as this process knows it; absent when it knows of none (daily-schedule.ts). */
  readonly day?: DayStamp;
}

/**
 * What a reservation of a scheduled id carries: the schedule the process holds for the id (its text,
 * which is its version) and the start of the current day by the process's clock (epoch ms). The store
 * answers `scheduleChanged` when `schedule` is not the one it holds, and starts a new day (counter
 * back to 0, epoch raised, like an admin reset) when `start` is later than the day it holds.
 */
export interface DayStamp {
  readonly schedule: string;
  readonly start: number;
}

/**
 * What a keyed waiter gets: its (first) number (0 = none was left) and whether the key had been seen.
 * A key records its first number and how many it took, so a replay answers the same range.
 */
export interface KeyedGrant {
  readonly turno: number;
  readonly replayed: boolean;
  /** For a replay: how many numbers the key recorded, when more than one (undefined = 1). */
  readonly count?: number;
}

/** What one reservation returned. */
export interface Reservation {
  /**
   * First fresh number; the fresh numbers are `first .. first + count - 1`, handed to the batch's
   * non-replayed waiters in order (with `sizes`: to the granted ones, each its size).
   */
  readonly first: number;
  /**
   * Fresh numbers granted: fewer than asked only when the counter hit MAX_TURNO (0 = exhausted). With
   * `sizes`, the greedy grant over `count` picks the same waiters as over what was left (a waiter
   * fits in one exactly when it fits in the other), so the caller recomputes it from `count` alone.
   */
  readonly count: number;
  /**
   * The counter's epoch: raised by every admin set or reset, so a process can tell an operator's
   * deliberate move backwards from a store that lost data.
   */
  readonly epoch: number;
  /** True when the store had to raise the counter to the fence's floor first (it went backwards). */
  readonly fenced: boolean;
  /** One grant per entry of the request's `keys`, in the same order. */
  readonly keyed: readonly KeyedGrant[];
  /**
   * Set when the request's schedule (or its absence) is not the store's: nothing was reserved, and
   * this is the schedule the store holds for the id (undefined: none). The caller retries with it.
   */
  readonly scheduleChanged?: { readonly schedule: string | undefined };
}

export interface CounterSnapshot {
  readonly value: number;
  readonly epoch: number;
  /** The id's schedule text (daily-schedule.ts), when it has one (peek only). */
  readonly schedule?: string;
  /** The start of the day the counter counts in (epoch ms), when it has a schedule (peek only). */
  readonly day?: number;
}

/** Per id (or store-wide) accounting; `lost = issued - delivered`. */
export interface Ledger {
  /** Numbers granted by reservations (an admin set or reset does not change it). */
  readonly issued: number;
  /** Numbers that processes reported as handed to a live client connection. */
  readonly delivered: number;
}

/**
 * The store's identity marker, written when a store is initialized (store-guard.ts explains the
 * protocol). Each marker also has a sequence, raised by every reservation, that a process compares
 * with the highest it has seen to notice a store that went backwards.
 */
export interface StoreMarker {
  /** Random id of this store's life; a store emptied and initialized again gets another. */
  readonly uid: string;
  /** 1 for a new store, +1 for each recovery by an operator. */
  readonly generation: number;
  /** True when an operator's recovery wrote this marker (processes that knew the old one accept it). */
  readonly recovered: boolean;
  /** The recovery floor: every counter not touched since the recovery starts above it. */
  readonly floor: number;
  /** Set when a process found the store going backwards; every process refuses until recovery. */
  readonly halted: string | undefined;
}

/** What reading the markers found. */
export interface MarkerReading {
  /** The marker, when every marker key holds one with the same uid; undefined when none does. */
  readonly marker: StoreMarker | undefined;
  /** Marker keys found missing while others exist (a shard that lost its data). */
  readonly missing: number;
  /** The store's sequence per marker key. */
  readonly seq: ReadonlyMap<string, number>;
  /** True when the store holds any counter (used to refuse initializing a store that lost its marker). */
  readonly hasCounters: boolean;
}

export interface CounterStore {
  /** Short name for logs and metrics: "memory", "sqlite", "redis", "redis-cluster", "redis-sentinel". */
  readonly kind: string;
  /** False for a store that forgets everything on restart by design (memory): no marker protocol. */
  readonly durable: boolean;

  /**
   * Atomically reserves the batch's numbers. Before granting, if `fence` is given and the stored
   * epoch is older than `fence.epoch`, or equal with a value below `fence.floor`, the store raises the
   * value to `fence.floor` (and reports `fenced`). Never moves past MAX_TURNO. Adds the fresh numbers (`count`) to
   * the ledger's issued (deliveries reach the ledger through `report`). Rejects with StoreLostError or
   * StoreRollbackError when the marker check fails (see attach). When the promise resolves the
   * reservation is as durable as the store can make it.
   */
  reserve(request: ReservationRequest): Promise<Reservation>;

  /**
   * Adds deliveries to the ledger of each id: one call per flush interval per process, off the hot
   * path (a delivery count written with every reservation cost ~0.6 µs of Redis per request on 1000
   * ids, measured; once a second it costs nothing measurable).
   */
  report(delivered: ReadonlyMap<string, number>): Promise<void>;

  /** The last issued value (0 when none) and the epoch, without changing anything. */
  peek(id: string): Promise<CounterSnapshot>;

  /** One id's ledger. */
  ledger(id: string): Promise<Ledger>;

  /** The store-wide ledger: the sum over every id, kept by the store itself. */
  totals(): Promise<Ledger>;

  /** Sets the counter so the next turn is `value + 1`, and raises its epoch. Returns the new snapshot. */
  set(id: string, value: number): Promise<CounterSnapshot>;

  /**
   * Stores `schedule` (its text) as the id's daily reset, keeping the day it counts in at least
   * `day` (so setting a schedule never resets the counter by itself: the next boundary does), or
   * removes it (undefined; the counter then goes on without resets).
   */
  setSchedule(id: string, schedule: string | undefined, day: number): Promise<void>;

  /** Reads the marker(s) and sequences. */
  readMarker(): Promise<MarkerReading>;

  /** Writes a first marker unless one exists (atomic); returns the marker now in the store. */
  initializeMarker(uid: string): Promise<StoreMarker>;

  /**
   * An operator's recovery: a new marker with `floor`, of a generation above both the stored one and
   * `after` (the newest this host knows of, in case the store lost its marker); clears a halt.
   */
  recoverMarker(uid: string, floor: number, after: number): Promise<StoreMarker>;

  /** Marks the store halted (every process refuses) for `reason`. */
  haltMarker(reason: string): Promise<void>;

  /**
   * From now on every reservation checks that the store's marker is `uid` and that its sequence has
   * not fallen below `seen` (per marker key), and raises `seen` with every acknowledged reservation.
   */
  attach(uid: string, seen: ReadonlyMap<string, number>): void;

  /** The highest sequence this process has seen acknowledged, per marker key. */
  seen(): ReadonlyMap<string, number>;

  /** Resolves when the store answers; rejects otherwise. Used by /readyz. */
  ping(): Promise<void>;

  /** Human-readable warnings about durability (e.g. "memory store: numbers restart from 1"). */
  durabilityWarnings(): Promise<string[]>;

  /** Releases connections and files. Idempotent. */
  close(): Promise<void>;
}

/** Shared empty grant list, so reservations without keys allocate none. */
export const NO_KEYED_GRANTS: readonly KeyedGrant[] = Object.freeze([]);
