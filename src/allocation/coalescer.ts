/**
 * Per-id coalescing: concurrent requests for one id share one store round trip that reserves n
 * consecutive numbers, handed out in arrival order.
 *
 * Flush policy. Each id has a FIFO of waiting requests and at most one reservation in flight. When a
 * request arrives and nothing is in flight for its id, a reservation for everything queued (up to
 * `maxBatch`) goes out at once: there is no timer and no added latency. Requests that arrive while it
 * is in flight wait in the FIFO and go out together as soon as it returns. Under load this makes the
 * batch size track (request rate x store round-trip time), so store load is independent of request
 * rate; when idle every request is its own batch of one.
 *
 * Why the invariants hold:
 * - I1 unique: every number comes from one atomic store reservation and is given to at most one waiter.
 * - I2 consecutive: a reservation asks for exactly as many numbers as its waiters want, never more
 *   (no prefetch), so without faults nothing is skipped. A number is skipped only when its waiter is gone
 *   (deadline passed or client disconnected) by the time the reservation returns, or when the
 *   reservation itself failed; both are counted in the stats (`abandoned`, `inDoubt`).
 * - I3 real-time order: a request that arrives after another's response was sent is queued after that
 *   response's reservation completed, so its reservation is a later atomic store operation and gets
 *   higher numbers. Within a batch all requests were concurrent, so any order is allowed; we use
 *   arrival order.
 * - I4 range: the store grants only what is left below MAX_TURNO; waiters past the grant get
 *   CounterExhaustedError.
 *
 * Idempotency keys ride in the same batch: a keyed waiter is one of the batch's waiters, the store
 * replays a key it has seen (that waiter takes no fresh number) and records the new ones, all in the
 * one atomic reservation, so exactly-once clients pay no extra round trip.
 *
 * Rollback fencing: the highest number this process issued for an id and its epoch ride on every
 * reservation of that id as a fence, so a store that went backwards is raised past them atomically
 * inside the same reservation instead of re-issuing. The fences are a bounded LRU (`fenceMaxIds`):
 * an id's fence is the defence of last resort, behind the store marker and its sequence
 * (src/stores/store-guard.ts), which every reservation checks whatever the id; an evicted fence
 * only loses the per-id forward raise for a rollback the marker check could not see (docs/guides/redis.md,
 * "What stays undetectable"). A fence belongs to one store life: after an operator's recovery the
 * store's epochs start again from 0, so an old life's fence could match a new epoch and raise a
 * counter an admin set had moved down (nemesis seed 20261202, 20 min after the WAIT connection fix:
 * 287,551 numbers skipped on an admin id); `forgetFences` drops them all when the store guard
 * accepts a new life (the recovery's floor is above every number they hold). Everything else per id
 * lives only while the id has waiters.
 *
 * Ledger: each number handed to a waiter whose client is still there counts as delivered. The counts
 * of every id go out together in one `report` call every `ledgerFlushMs` (off the hot path: one call
 * a second, not a write per reservation), so the store's `issued - delivered` counts every number no
 * client got, also those of a process that died (they were issued, never reported). Deliveries a
 * process made after its last report, or whose report failed, count as lost: an overcount bounded by
 * one flush interval of a host's deliveries, never an undercount (a replayed key counts as nothing).
 *
 * Batch turns (`nextRange`, `POST /turno/:id?count=k`): a waiter has a size, the numbers it wants,
 * and rides in the same reservation as single turns. `maxBatch` bounds the numbers a reservation
 * asks for (a single waiter bigger than that still goes, alone). The sizes go to the store only when
 * some size is above one, so a reservation of single turns is what it always was. The store grants
 * greedily in waiter order, all or nothing per waiter (a batch that does not fit below MAX_TURNO takes
 * no number; later waiters that fit are still granted), and the granted numbers are consecutive. The
 * hand-out here repeats that greedy walk over the reply's `count`: a waiter fits in `count` minus what
 * earlier waiters took exactly when it fitted in what the store had left (counter-store.ts,
 * Reservation.count), so no new reply field is needed. I1-I4 hold per number as above; a batch's
 * numbers are consecutive, and all of them are ordered against every other request's. A keyed batch
 * records its first number and count; a retry with another count gets IdempotencyKeyReusedError.
 *
 * Daily resets (issue 17): for an id with a schedule the reservation also carries the schedule this
 * process holds and the start of the current day by `clock` (DayStamp); the store resets the counter
 * when that day is later than its own, atomically with the grant, so the store's day is the latest any
 * process sent and no number of an old day is issued after a 1 of the new one
 * (docs/guides/operations.md, "Daily resets and clock skew"). The schedules are bounded
 * (`scheduleMaxIds`, the first learned dropped first; a dropped one costs a refresh); an id this
 * process holds none for costs nothing more. When the store holds another schedule than the one sent
 * (set or removed through another host, or evicted here), it reserves nothing and answers its own;
 * the batch is sent again at once with it: one extra round trip after each change.
 *
 * Deadlines are enforced by one coarse sweep timer, not a timer per request, to keep the hot path lean.
 */
import type { CounterStore, DayStamp, Fence, KeyedWaiter, Reservation } from "../domain/counter-store.ts";
import { type DailySchedule, type DayBounds, dayAt, scheduleFromText } from "../domain/daily-schedule.ts";
import { EVENTS } from "../domain/events.ts";
import {
  ClientClosedError,
  CounterExhaustedError,
  IdempotencyKeyReusedError,
  OverloadedError,
  ShuttingDownError,
  StoreTimeoutError,
  StoreUnavailableError,
  TurnoError,
} from "../domain/errors.ts";

export interface CoalescerOptions {
  /** Longest a request waits for its number before it gets a 503 (ms). */
  readonly deadlineMs: number;
  /** Most numbers one reservation asks for (a batch turn above it goes alone). */
  readonly maxBatch: number;
  /** Most requests waiting for one id; more get OverloadedError. */
  readonly maxWaitingPerId: number;
  /** Most requests waiting in the whole process; more get OverloadedError. */
  readonly maxWaiting: number;
  /** Pass the per-id high-water mark to the store as a fence (see header). */
  readonly fencing: boolean;
  /** Most ids whose fence is kept (least recently issued dropped first). Default 50000. */
  readonly fenceMaxIds?: number;
  /** Report deliveries to the store's ledger (see header). Default true. */
  readonly ledgerReports?: boolean;
  /** How often deliveries of quiet ids are reported (ms). Default 1000. */
  readonly ledgerFlushMs?: number;
  /** Most ids whose daily-reset schedule is kept (the one learned first dropped first). Default 50000. */
  readonly scheduleMaxIds?: number;
  /** Wall-clock time (epoch ms) that decides the day of a scheduled id. Default Date.now; tests inject one. */
  readonly clock?: () => number;
}

/** Counters kept as plain numbers; the metrics module reads them when scraped. */
export interface CoalescerStats {
  reservations: number;
  reservationErrors: number;
  numbersIssued: number;
  abandoned: number;
  inDoubt: number;
  fences: number;
  overloads: number;
  timeouts: number;
  /** Numbers handed to live clients. */
  delivered: number;
  /** Keyed requests answered with the number their key got before. */
  replays: number;
  /** Deliveries whose report to the ledger failed (counted lost by the store: an overcount). */
  ledgerDropped: number;
  /** Fences dropped to stay within fenceMaxIds. */
  fenceEvictions: number;
  /** Reservations sent again because the store held another schedule than this process (daily resets). */
  scheduleRefreshes: number;
}

export interface TurnRequest {
  /**
   * Asked once, when the number is ready: has the client gone away? Its number is then counted as
   * abandoned instead of handed out. A function, not an AbortSignal, so the signal is only made when
   * it is read: Bun creates Request.signal lazily (it still reports a disconnect that came first),
   * and creating it for every request cost up to ~2 µs each (bench/cpu-per-request.ts, redis-hot).
   */
  readonly gone?: () => boolean;
  /** Idempotency-Key header, already validated. */
  readonly idempotencyKey?: string;
}

interface Waiter {
  /** Called with the waiter's (first) number. */
  readonly resolve: (turno: number) => void;
  readonly reject: (error: Error) => void;
  /** Numbers wanted: 1, or a batch turn's count. */
  readonly size: number;
  readonly deadline: number;
  readonly gone: (() => boolean) | undefined;
  readonly idempotencyKey: string | undefined;
  settled: boolean;
}

interface InFlight {
  readonly waiters: Waiter[];
  /** Numbers asked for: the sum of the waiters' sizes. */
  readonly numbers: number;
  readonly startedAt: number;
  detached: boolean;
  /** Times the store answered that its schedule for the id is another one (then nothing was reserved). */
  refreshes: number;
}

/** A schedule this process holds for an id, with the day it computed last. */
interface HeldSchedule {
  readonly schedule: DailySchedule;
  bounds: DayBounds;
}

/** Exists only while an id has waiters; its fence lives on in Coalescer.#fences. */
interface IdState {
  readonly id: string;
  queue: Waiter[];
  inFlight: InFlight | undefined;
}

/** A fence as kept: the bare high-water mark while the epoch is 0 (the common case), else both. */
type StoredFence = number | Fence;

const DEFAULT_FENCE_MAX_IDS = 50_000;
const DEFAULT_SCHEDULE_MAX_IDS = 50_000;
/** A reservation that meets this many schedule changes in a row fails (503) rather than loop. */
const MAX_SCHEDULE_REFRESHES = 3;
const DEFAULT_LEDGER_FLUSH_MS = 1000;
/** Flush the ledger early when this many ids have unreported deliveries (bounds that map). */
const LEDGER_FLUSH_IDS = 10_000;

export class Coalescer {
  readonly stats: CoalescerStats = {
    reservations: 0,
    reservationErrors: 0,
    numbersIssued: 0,
    abandoned: 0,
    inDoubt: 0,
    fences: 0,
    overloads: 0,
    timeouts: 0,
    delivered: 0,
    replays: 0,
    ledgerDropped: 0,
    fenceEvictions: 0,
    scheduleRefreshes: 0,
  };
  readonly #store: CounterStore;
  readonly #options: CoalescerOptions;
  readonly #ids = new Map<string, IdState>();
  readonly #active = new Set<IdState>();
  /** Per-id fences, least recently issued first (Map keeps insertion order). */
  readonly #fences = new Map<string, StoredFence>();
  readonly #fenceMaxIds: number;
  /** Daily-reset schedules of ids, in the order they were learned (the first one is dropped past the cap). */
  readonly #schedules = new Map<string, HeldSchedule>();
  readonly #scheduleMaxIds: number;
  readonly #clock: () => number;
  /** Deliveries not yet reported to the store's ledger, per id. */
  #unreported = new Map<string, number>();
  readonly #ledgerReports: boolean;
  #reporting: Promise<void> = Promise.resolve();
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly #ledgerTimer: ReturnType<typeof setInterval> | undefined;
  readonly #idempotencyTtlSeconds: number;
  #waiting = 0;
  #closed = false;
  #idleWaiters: Array<() => void> = [];

  constructor(store: CounterStore, options: CoalescerOptions, idempotencyTtlSeconds = 86_400) {
    this.#store = store;
    this.#options = options;
    this.#idempotencyTtlSeconds = idempotencyTtlSeconds;
    this.#fenceMaxIds = options.fenceMaxIds ?? DEFAULT_FENCE_MAX_IDS;
    this.#scheduleMaxIds = options.scheduleMaxIds ?? DEFAULT_SCHEDULE_MAX_IDS;
    this.#clock = options.clock ?? Date.now;
    this.#ledgerReports = options.ledgerReports ?? true;
    const sweepEvery = Math.max(5, Math.min(100, Math.floor(options.deadlineMs / 4)));
    this.#sweeper = setInterval(() => this.#sweep(), sweepEvery);
    (this.#sweeper as { unref?: () => void }).unref?.();
    if (this.#ledgerReports) {
      this.#ledgerTimer = setInterval(() => void this.flushLedger(), options.ledgerFlushMs ?? DEFAULT_LEDGER_FLUSH_MS);
      (this.#ledgerTimer as { unref?: () => void }).unref?.();
    }
  }

  /** Number of requests waiting for a number right now (queued or in a reservation). */
  get waiting(): number {
    return this.#waiting;
  }

  /** Ids whose fence is kept (bounded by fenceMaxIds). */
  get fencedIds(): number {
    return this.#fences.size;
  }

  /** Issues the next turn for `id`. Rejects with a TurnoError; never hangs past the deadline. */
  next(id: string, request: TurnRequest = {}): Promise<number> {
    return this.#enqueue(id, 1, request);
  }

  /**
   * Issues `count` consecutive turns for `id`, all or nothing; resolves with the first (the last is
   * first + count - 1). `count` is a whole number >= 1, validated by the caller (--max-batch-count).
   */
  nextRange(id: string, count: number, request: TurnRequest = {}): Promise<number> {
    if (!Number.isSafeInteger(count) || count < 1)
      return Promise.reject(new RangeError(`count must be a whole number >= 1, not ${count}`));
    return this.#enqueue(id, count, request);
  }

  #enqueue(id: string, size: number, request: TurnRequest): Promise<number> {
    if (this.#closed) return Promise.reject(new ShuttingDownError());
    if (this.#waiting >= this.#options.maxWaiting) return this.#overload("--max-waiting", this.#options.maxWaiting);
    const state = this.#state(id);
    if (state.queue.length >= this.#options.maxWaitingPerId) {
      return this.#overload("--max-waiting-per-id", this.#options.maxWaitingPerId);
    }
    return new Promise<number>((resolve, reject) => {
      state.queue.push({
        resolve,
        reject,
        size,
        deadline: performance.now() + this.#options.deadlineMs,
        gone: request.gone,
        idempotencyKey: request.idempotencyKey,
        settled: false,
      });
      this.#waiting++;
      this.#active.add(state);
      if (state.inFlight === undefined) this.#flush(state);
    });
  }

  /**
   * Tells the coalescer that an operator moved `id`'s counter (admin set/reset) to a new epoch, so
   * this process's fence for it no longer applies.
   */
  forget(id: string, epoch: number): void {
    if (epoch >= fenceEpoch(this.#fences.get(id))) this.#keepFence(id, 0, epoch);
  }

  /** Drops every fence: the store began a new life (an operator's recovery; see the header). */
  forgetFences(): void {
    this.#fences.clear();
  }

  /**
   * Tells the coalescer the schedule `id` has now (text, undefined = none), e.g. after this host's
   * admin API changed it, so its next reservation needs no refresh.
   */
  holdSchedule(id: string, schedule: string | undefined): void {
    this.#schedules.delete(id);
    if (schedule === undefined) return;
    const held = scheduleFromText(schedule);
    this.#schedules.set(id, { schedule: held, bounds: dayAt(held, this.#clock()) });
    if (this.#schedules.size > this.#scheduleMaxIds) this.#schedules.delete(this.#schedules.keys().next().value as string);
  }

  /** Sends the unreported deliveries to the store's ledger (also every ledgerFlushMs). */
  flushLedger(): Promise<void> {
    if (this.#unreported.size === 0) return this.#reporting;
    const batch = this.#unreported;
    this.#unreported = new Map();
    this.#reporting = this.#store.report(batch).catch(() => {
      let dropped = 0;
      for (const count of batch.values()) dropped += count;
      this.stats.ledgerDropped += dropped;
    });
    return this.#reporting;
  }

  /** Stops taking requests; resolves when every waiting request has been answered and reported. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.idle();
    clearInterval(this.#sweeper);
    if (this.#ledgerTimer !== undefined) clearInterval(this.#ledgerTimer);
    await this.flushLedger();
  }

  /** Resolves when no request is waiting. */
  idle(): Promise<void> {
    if (this.#waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #overload(limitName: string, limit: number): Promise<never> {
    this.stats.overloads++;
    if (EVENTS.overload.active) EVENTS.overload.publish({});
    return Promise.reject(new OverloadedError(limitName, limit));
  }

  #state(id: string): IdState {
    let state = this.#ids.get(id);
    if (state === undefined) {
      state = { id, queue: [], inFlight: undefined };
      this.#ids.set(id, state);
    }
    return state;
  }

  #flush(state: IdState): void {
    const inFlight = this.#takeBatch(state);
    if (inFlight === undefined) {
      this.#settleIdle(state);
      return;
    }
    state.inFlight = inFlight;
    this.#send(state, inFlight);
  }

  #send(state: IdState, inFlight: InFlight): void {
    const batch = inFlight.waiters;
    const id = state.id;
    const stored = this.#options.fencing ? this.#fences.get(id) : undefined;
    const fence = toFence(stored);
    const keys = keyedWaiters(batch);
    // Sizes only when a batch turn is aboard: single turns keep the store's common path.
    const sizes = inFlight.numbers === batch.length ? undefined : batch.map((w) => w.size);
    const day = this.#schedules.size === 0 ? undefined : this.#dayStamp(id);
    this.#store
      .reserve({
        id,
        n: batch.length,
        sizes,
        keys,
        keyTtlSeconds: keys === undefined ? undefined : this.#idempotencyTtlSeconds,
        fence,
        day,
      })
      .then(
        (result) => this.#onReserved(state, inFlight, result),
        (error: unknown) => this.#onFailed(state, inFlight, error),
      );
  }

  /** The id's schedule and current day by this process's clock, or undefined when it holds none. */
  #dayStamp(id: string): DayStamp | undefined {
    const held = this.#schedules.get(id);
    if (held === undefined) return undefined;
    const now = this.#clock();
    let bounds = held.bounds;
    if (now >= bounds.next || now < bounds.start) {
      bounds = dayAt(held.schedule, now);
      held.bounds = bounds;
    }
    return { schedule: held.schedule.text, start: bounds.start };
  }

  /** The store holds another schedule for the id: hold that one and send the same batch again. */
  #refreshSchedule(state: IdState, inFlight: InFlight, schedule: string | undefined): void {
    this.stats.scheduleRefreshes++;
    this.holdSchedule(state.id, schedule);
    if (inFlight.detached) return;
    if (++inFlight.refreshes > MAX_SCHEDULE_REFRESHES) {
      // Nothing was reserved, so nothing is in doubt.
      const error = new StoreUnavailableError(`the schedule of '${state.id}' kept changing during one reservation`);
      for (const waiter of inFlight.waiters) if (!waiter.settled) this.#settle(waiter, error);
      this.#next(state, inFlight);
      return;
    }
    this.#send(state, inFlight);
  }

  #addUnreported(id: string, count: number): void {
    if (!this.#ledgerReports || count === 0) return;
    this.#unreported.set(id, (this.#unreported.get(id) ?? 0) + count);
    if (this.#unreported.size >= LEDGER_FLUSH_IDS) void this.flushLedger();
  }

  /**
   * Takes waiters from the queue's head while their numbers stay within maxBatch (the first one goes
   * whatever its size), skipping those that already timed out; undefined when none is left.
   */
  #takeBatch(state: IdState): InFlight | undefined {
    const queue = state.queue;
    const maxBatch = this.#options.maxBatch;
    const batch: Waiter[] = [];
    let numbers = 0;
    let i = 0;
    for (; i < queue.length && numbers < maxBatch; i++) {
      const waiter = queue[i] as Waiter;
      if (waiter.settled) continue;
      if (numbers + waiter.size > maxBatch && batch.length > 0) break;
      batch.push(waiter);
      numbers += waiter.size;
    }
    state.queue = i === queue.length ? [] : queue.slice(i);
    if (batch.length === 0) return undefined;
    return { waiters: batch, numbers, startedAt: performance.now(), detached: false, refreshes: 0 };
  }

  #onReserved(state: IdState, inFlight: InFlight, result: Reservation): void {
    if (result.scheduleChanged !== undefined) {
      this.#refreshSchedule(state, inFlight, result.scheduleChanged.schedule);
      return;
    }
    const seconds = (performance.now() - inFlight.startedAt) / 1000;
    this.stats.reservations++;
    if (EVENTS.reservation.active)
      EVENTS.reservation.publish({ id: state.id, numbers: inFlight.numbers, storeSeconds: seconds, outcome: "ok" });
    if (result.fenced) {
      this.stats.fences++;
      if (EVENTS.fence.active) EVENTS.fence.publish({ id: state.id, floor: fenceFloor(this.#fences.get(state.id)) });
    }
    if (inFlight.detached) {
      this.#abandon(result.count);
      return;
    }
    if (result.count > 0) {
      const last = result.first + result.count - 1;
      this.#raiseFence(state.id, last, result.epoch);
      this.stats.numbersIssued += result.count;
      if (EVENTS.issued.active) EVENTS.issued.publish({ id: state.id, last });
    }
    const delivered = this.#handOut(state.id, inFlight.waiters, result);
    this.stats.delivered += delivered;
    this.#addUnreported(state.id, delivered);
    this.#next(state, inFlight);
  }

  /**
   * Gives each waiter its number(s): keyed waiters what the store answered for their key, the others
   * the next fresh numbers in batch order when their size fits in what is left of the grant (the
   * store's greedy walk, see the header). Returns how many fresh numbers reached a live client.
   */
  #handOut(id: string, waiters: readonly Waiter[], result: Reservation): number {
    const end = result.first + result.count;
    let cursor = result.first;
    let keyed = 0;
    let delivered = 0;
    let abandoned = 0;
    for (let i = 0; i < waiters.length; i++) {
      const waiter = waiters[i] as Waiter;
      const size = waiter.size;
      let turno: number;
      let replayed = false;
      if (waiter.idempotencyKey !== undefined) {
        const grant = result.keyed[keyed++];
        turno = grant?.turno ?? 0;
        replayed = grant?.replayed === true;
        if (!replayed && turno !== 0) cursor += size;
        else if (replayed && (grant?.count ?? 1) !== size) {
          this.#settle(waiter, new IdempotencyKeyReusedError(grant?.count ?? 1, size));
          continue;
        }
      } else if (size <= end - cursor) {
        // Not `cursor + size <= end`: near MAX_TURNO the sum passes 2^53 and rounds.
        turno = cursor;
        cursor += size;
      } else {
        turno = 0;
      }
      if (turno === 0) {
        this.#settle(waiter, new CounterExhaustedError(id, size === 1 ? undefined : size));
      } else if (waiter.settled || waiter.gone?.() === true) {
        this.#settle(waiter, new ClientClosedError());
        if (!replayed) abandoned += size;
      } else {
        waiter.settled = true;
        this.#waiting--;
        waiter.resolve(turno);
        if (replayed) this.stats.replays++;
        else delivered += size;
      }
    }
    if (abandoned > 0) this.#abandon(abandoned);
    return delivered;
  }

  #onFailed(state: IdState, inFlight: InFlight, error: unknown): void {
    const seconds = (performance.now() - inFlight.startedAt) / 1000;
    this.stats.reservations++;
    this.stats.reservationErrors++;
    if (EVENTS.reservation.active)
      EVENTS.reservation.publish({ id: state.id, numbers: inFlight.numbers, storeSeconds: seconds, outcome: "error" });
    // The store may have applied the reservation before failing to answer: those numbers are in doubt.
    this.stats.inDoubt += inFlight.numbers;
    if (EVENTS.inDoubt.active) EVENTS.inDoubt.publish({ count: inFlight.numbers });
    if (inFlight.detached) return;
    const turnoError =
      error instanceof TurnoError ? error : new StoreUnavailableError(error instanceof Error ? error.message : String(error));
    for (const waiter of inFlight.waiters) if (!waiter.settled) this.#settle(waiter, turnoError);
    this.#next(state, inFlight);
  }

  #next(state: IdState, inFlight: InFlight): void {
    if (state.inFlight === inFlight) state.inFlight = undefined;
    if (state.queue.length > 0) this.#flush(state);
    else this.#settleIdle(state);
  }

  /** Keeps `last` as the id's fence (within `epoch`): a newer epoch from the store starts it anew. */
  #raiseFence(id: string, last: number, epoch: number): void {
    if (!this.#options.fencing) return;
    const stored = this.#fences.get(id);
    const known = fenceEpoch(stored);
    if (epoch < known) return;
    const floor = epoch > known ? last : Math.max(last, fenceFloor(stored));
    this.#keepFence(id, floor, epoch);
  }

  /** Stores a fence as the most recently used, dropping the least recently used past the cap. */
  #keepFence(id: string, floor: number, epoch: number): void {
    this.#fences.delete(id);
    this.#fences.set(id, epoch === 0 ? floor : { floor, epoch });
    if (this.#fences.size > this.#fenceMaxIds) {
      const oldest = this.#fences.keys().next().value as string;
      this.#fences.delete(oldest);
      this.stats.fenceEvictions++;
    }
  }

  #abandon(count: number): void {
    this.stats.abandoned += count;
    if (EVENTS.abandoned.active) EVENTS.abandoned.publish({ count });
  }

  /** Rejects a waiter once and keeps the waiting count exact. */
  #settle(waiter: Waiter, error: Error): void {
    if (waiter.settled) return;
    waiter.settled = true;
    this.#waiting--;
    waiter.reject(error);
    if (this.#waiting === 0) this.#wakeIdle();
  }

  #settleIdle(state: IdState): void {
    if (state.inFlight === undefined && state.queue.length === 0) {
      this.#active.delete(state);
      // An idle id needs no state here: its fence, if any, lives in #fences.
      this.#ids.delete(state.id);
    }
    if (this.#waiting === 0) this.#wakeIdle();
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Fails waiters past their deadline. A reservation stuck for twice the deadline is detached so the
   * id can make progress; whatever it grants later is counted as abandoned, never handed out.
   */
  #sweep(): void {
    if (this.#active.size === 0) return;
    const now = performance.now();
    const deadlineMs = this.#options.deadlineMs;
    for (const state of this.#active) {
      let timedOut = 0;
      for (const waiter of state.queue) {
        if (!waiter.settled && waiter.deadline <= now) {
          this.#settle(waiter, new StoreTimeoutError(deadlineMs));
          timedOut++;
        }
      }
      const inFlight = state.inFlight;
      if (inFlight !== undefined) {
        for (const waiter of inFlight.waiters) {
          if (!waiter.settled && waiter.deadline <= now) {
            this.#settle(waiter, new StoreTimeoutError(deadlineMs));
            timedOut++;
          }
        }
        if (now - inFlight.startedAt > 2 * deadlineMs) {
          inFlight.detached = true;
          state.inFlight = undefined;
          if (state.queue.length > 0) this.#flush(state);
        }
      }
      if (timedOut > 0) {
        this.stats.timeouts += timedOut;
        if (EVENTS.timeout.active) EVENTS.timeout.publish({ count: timedOut });
      }
      if (state.inFlight === undefined && state.queue.every((w) => w.settled)) {
        state.queue = [];
        this.#settleIdle(state);
      }
    }
  }
}

function toFence(stored: StoredFence | undefined): Fence | undefined {
  if (stored === undefined) return undefined;
  if (typeof stored === "number") return stored > 0 ? { floor: stored, epoch: 0 } : undefined;
  return stored.floor > 0 ? stored : undefined;
}

function fenceFloor(stored: StoredFence | undefined): number {
  return stored === undefined ? 0 : typeof stored === "number" ? stored : stored.floor;
}

function fenceEpoch(stored: StoredFence | undefined): number {
  return stored === undefined || typeof stored === "number" ? 0 : stored.epoch;
}

/** The batch's keyed waiters with their positions, or undefined when it has none (no allocation). */
function keyedWaiters(batch: readonly Waiter[]): KeyedWaiter[] | undefined {
  let keys: KeyedWaiter[] | undefined;
  for (let i = 0; i < batch.length; i++) {
    const key = (batch[i] as Waiter).idempotencyKey;
    if (key === undefined) continue;
    keys ??= [];
    keys.push({ position: i, key });
  }
  return keys;
}
