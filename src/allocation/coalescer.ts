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
 * - I2 consecutive: a reservation asks for exactly as many numbers as it has waiters, never more (no
 *   prefetch), so without faults nothing is skipped. A number is skipped only when its waiter is gone
 *   (deadline passed or client disconnected) by the time the reservation returns, or when the
 *   reservation itself failed; both are counted in the stats (`abandoned`, `inDoubt`).
 * - I3 real-time order: a request that arrives after another's response was sent is queued after that
 *   response's reservation completed, so its reservation is a later atomic store operation and gets
 *   higher numbers. Within a batch all requests were concurrent, so any order is allowed; we use
 *   arrival order.
 * - I4 range: the store grants only what is left below MAX_TURNO; waiters past the grant get
 *   CounterExhaustedError.
 *
 * Rollback fencing: each id remembers the highest number this process issued and its epoch, and every
 * reservation carries them as a fence, so a store that went backwards (restarted empty, failed over to
 * a stale replica) is raised past them atomically inside the same reservation instead of re-issuing.
 *
 * Deadlines are enforced by one coarse sweep timer, not a timer per request, to keep the hot path lean.
 */
import type { CounterStore, Fence, IdempotentReservation, Reservation } from "../domain/counter-store.ts";
import {
  ClientClosedError,
  CounterExhaustedError,
  OverloadedError,
  ShuttingDownError,
  StoreTimeoutError,
  StoreUnavailableError,
  TurnoError,
} from "../domain/errors.ts";

export interface CoalescerOptions {
  /** Longest a request waits for its number before it gets a 503 (ms). */
  readonly deadlineMs: number;
  /** Most numbers one reservation asks for. */
  readonly maxBatch: number;
  /** Most requests waiting for one id; more get OverloadedError. */
  readonly maxWaitingPerId: number;
  /** Most requests waiting in the whole process; more get OverloadedError. */
  readonly maxWaiting: number;
  /** Pass the per-id high-water mark to the store as a fence (see header). */
  readonly fencing: boolean;
}

/** Hooks for observability, called once per reservation or event, never per request. */
export interface CoalescerObserver {
  /** `id` lets tracing attach the batch to the requests it served. */
  onReservation?(batchSize: number, storeSeconds: number, outcome: "ok" | "error", id: string): void;
  onAbandoned?(count: number): void;
  onInDoubt?(count: number): void;
  onFence?(id: string, floor: number): void;
  onOverload?(): void;
  onTimeout?(count: number): void;
  onIssued?(id: string, last: number): void;
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
  readonly resolve: (turno: number) => void;
  readonly reject: (error: Error) => void;
  readonly deadline: number;
  readonly gone: (() => boolean) | undefined;
  readonly idempotencyKey: string | undefined;
  settled: boolean;
}

interface InFlight {
  readonly waiters: Waiter[];
  readonly startedAt: number;
  detached: boolean;
}

interface IdState {
  readonly id: string;
  queue: Waiter[];
  inFlight: InFlight | undefined;
  /** Highest number issued for this id by this process, within `epoch`. */
  highWater: number;
  epoch: number;
}

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
  };
  readonly #store: CounterStore;
  readonly #options: CoalescerOptions;
  readonly #observer: CoalescerObserver;
  readonly #ids = new Map<string, IdState>();
  readonly #active = new Set<IdState>();
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly #idempotencyTtlSeconds: number;
  #waiting = 0;
  #closed = false;
  #idleWaiters: Array<() => void> = [];

  constructor(store: CounterStore, options: CoalescerOptions, observer: CoalescerObserver = {}, idempotencyTtlSeconds = 86_400) {
    this.#store = store;
    this.#options = options;
    this.#observer = observer;
    this.#idempotencyTtlSeconds = idempotencyTtlSeconds;
    const sweepEvery = Math.max(5, Math.min(100, Math.floor(options.deadlineMs / 4)));
    this.#sweeper = setInterval(() => this.#sweep(), sweepEvery);
    (this.#sweeper as { unref?: () => void }).unref?.();
  }

  /** Number of requests waiting for a number right now (queued or in a reservation). */
  get waiting(): number {
    return this.#waiting;
  }

  /** Issues the next turn for `id`. Rejects with a TurnoError; never hangs past the deadline. */
  next(id: string, request: TurnRequest = {}): Promise<number> {
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
    const state = this.#ids.get(id);
    if (state !== undefined && epoch >= state.epoch) {
      state.epoch = epoch;
      state.highWater = 0;
    }
  }

  /** Stops taking requests; resolves when every waiting request has been answered. */
  close(): Promise<void> {
    this.#closed = true;
    return this.idle().then(() => clearInterval(this.#sweeper));
  }

  /** Resolves when no request is waiting. */
  idle(): Promise<void> {
    if (this.#waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #overload(limitName: string, limit: number): Promise<never> {
    this.stats.overloads++;
    this.#observer.onOverload?.();
    return Promise.reject(new OverloadedError(limitName, limit));
  }

  #state(id: string): IdState {
    let state = this.#ids.get(id);
    if (state === undefined) {
      state = { id, queue: [], inFlight: undefined, highWater: 0, epoch: 0 };
      this.#ids.set(id, state);
    }
    return state;
  }

  #flush(state: IdState): void {
    const batch = this.#takeBatch(state);
    if (batch.length === 0) {
      this.#settleIdle(state);
      return;
    }
    const inFlight: InFlight = { waiters: batch, startedAt: performance.now(), detached: false };
    state.inFlight = inFlight;
    const fence: Fence | undefined =
      this.#options.fencing && state.highWater > 0 ? { floor: state.highWater, epoch: state.epoch } : undefined;
    const key = batch[0]?.idempotencyKey;
    const reservation: Promise<Reservation | IdempotentReservation> =
      key === undefined
        ? this.#store.reserve(state.id, batch.length, fence)
        : this.#store.reserveIdempotent(state.id, key, this.#idempotencyTtlSeconds, fence);
    reservation.then(
      (result) => this.#onReserved(state, inFlight, result),
      (error: unknown) => this.#onFailed(state, inFlight, error),
    );
  }

  /**
   * Takes the longest run of plain waiters (at most maxBatch), or a single idempotent one, from the
   * queue's head, skipping waiters that already timed out so no number is reserved for them.
   */
  #takeBatch(state: IdState): Waiter[] {
    const queue = state.queue;
    const batch: Waiter[] = [];
    let i = 0;
    for (; i < queue.length && batch.length < this.#options.maxBatch; i++) {
      const waiter = queue[i] as Waiter;
      if (waiter.settled) continue;
      if (waiter.idempotencyKey !== undefined) {
        if (batch.length === 0) {
          batch.push(waiter);
          i++;
        }
        break;
      }
      batch.push(waiter);
    }
    state.queue = i === queue.length ? [] : queue.slice(i);
    return batch;
  }

  #onReserved(state: IdState, inFlight: InFlight, result: Reservation | IdempotentReservation): void {
    const seconds = (performance.now() - inFlight.startedAt) / 1000;
    this.stats.reservations++;
    this.#observer.onReservation?.(inFlight.waiters.length, seconds, "ok", state.id);
    const replayed = "replayed" in result && result.replayed;
    if (result.fenced) {
      this.stats.fences++;
      this.#observer.onFence?.(state.id, state.highWater);
    }
    if (inFlight.detached) {
      if (!replayed) this.#abandon(result.count);
      return;
    }
    if (result.epoch > state.epoch) state.highWater = 0;
    state.epoch = Math.max(state.epoch, result.epoch);
    if (result.count > 0 && !replayed) {
      const last = result.first + result.count - 1;
      if (last > state.highWater) state.highWater = last;
      this.stats.numbersIssued += result.count;
      this.#observer.onIssued?.(state.id, last);
    }
    let abandoned = 0;
    const waiters = inFlight.waiters;
    for (let i = 0; i < waiters.length; i++) {
      const waiter = waiters[i] as Waiter;
      if (i >= result.count) {
        this.#settle(waiter, new CounterExhaustedError(state.id));
      } else if (waiter.settled || waiter.gone?.() === true) {
        this.#settle(waiter, new ClientClosedError());
        abandoned++;
      } else {
        waiter.settled = true;
        this.#waiting--;
        waiter.resolve(result.first + i);
      }
    }
    if (abandoned > 0 && !replayed) this.#abandon(abandoned);
    this.#next(state, inFlight);
  }

  #onFailed(state: IdState, inFlight: InFlight, error: unknown): void {
    const seconds = (performance.now() - inFlight.startedAt) / 1000;
    this.stats.reservations++;
    this.stats.reservationErrors++;
    this.#observer.onReservation?.(inFlight.waiters.length, seconds, "error", state.id);
    // The store may have applied the reservation before failing to answer: those numbers are in doubt.
    this.stats.inDoubt += inFlight.waiters.length;
    this.#observer.onInDoubt?.(inFlight.waiters.length);
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

  #abandon(count: number): void {
    this.stats.abandoned += count;
    this.#observer.onAbandoned?.(count);
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
      // Without fencing an idle id needs no memory; with it the high-water mark must be kept.
      if (!this.#options.fencing) this.#ids.delete(state.id);
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
        this.#observer.onTimeout?.(timedOut);
      }
      if (state.inFlight === undefined && state.queue.every((w) => w.settled)) {
        state.queue = [];
        this.#settleIdle(state);
      }
    }
  }
}
