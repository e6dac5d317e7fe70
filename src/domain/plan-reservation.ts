import {
  type CounterSnapshot,
  type KeyedGrant,
  type KeyedWaiter,
  NO_KEYED_GRANTS,
  type Reservation,
  type ReservationRequest,
} from "./counter-store.ts";
import { MAX_TURNO } from "./limits.ts";

/** Everything a store keeps per counter. */
export interface CounterState extends Omit<CounterSnapshot, "schedule"> {
  /** Ledger: numbers granted. */
  readonly issued: number;
  /** Ledger: numbers reported delivered. */
  readonly delivered: number;
  /** The store generation (marker) the counter was last written in; 0 = before any marker. */
  readonly generation: number;
  /** The daily reset's text (daily-schedule.ts); undefined or null (an SQL NULL) = none. */
  readonly schedule?: string | null;
  /** The start of the day the counter counts in (epoch ms); 0 without a schedule. */
  readonly day?: number;
}

export const EMPTY_COUNTER: CounterState = { value: 0, epoch: 0, issued: 0, delivered: 0, generation: 0 };

/** What the store's marker says about every counter. */
export interface GenerationFloor {
  readonly generation: number;
  /** A counter last written in an older generation starts above this (an operator's recovery). */
  readonly floor: number;
}

export interface PlannedReservation extends Reservation {
  /** The counter's state after the reservation, to be written back atomically. */
  readonly next: CounterState;
  /** Idempotency keys to record, with the (first) number each got and how many (`size`). */
  readonly newKeys: readonly KeyRecord[];
}

/** An idempotency key as a store keeps it: its first number and how many it took (1 for a single turn). */
export interface SeenKey {
  readonly turno: number;
  readonly size: number;
}

interface KeyRecord extends SeenKey {
  readonly key: string;
}

/** The grant part of a plan: fresh numbers, one answer per keyed waiter, keys to record. */
interface Grants {
  readonly count: number;
  readonly keyed: readonly KeyedGrant[];
  readonly newKeys: KeyRecord[];
}

/**
 * The reservation rule every store applies atomically (the Redis stores run the same rule in Lua, in
 * src/stores/redis-scripts.ts): apply the recovery floor to a counter of an older generation, fence
 * forward if the store went backwards, replay the keys already seen, grant the rest without passing
 * MAX_TURNO (waiters of several sizes: greedily, all or nothing each, see grantSized), give the keyed
 * waiters their numbers in batch order, and update the ledger.
 */
export function planReservation(
  current: CounterState,
  request: ReservationRequest,
  store: GenerationFloor,
  seenKey: (key: string) => SeenKey | undefined,
): PlannedReservation {
  if (current.schedule || request.day !== undefined) {
    const daily = planDay(current, request);
    if (daily === undefined) return scheduleChanged(current, request);
    current = daily;
  }
  let { value, epoch } = current;
  if (current.generation < store.generation && value < store.floor) value = store.floor;
  const fence = request.fence;
  let fenced = false;
  if (fence !== undefined && (epoch < fence.epoch || (epoch === fence.epoch && value < fence.floor))) {
    fenced = true;
    value = Math.max(value, fence.floor);
    epoch = fence.epoch;
  }
  const grants =
    request.sizes === undefined ? grantSingles(request, value, seenKey) : grantSized(request, request.sizes, value, seenKey);
  const { count, keyed, newKeys } = grants;
  return {
    first: value + 1,
    count,
    epoch,
    fenced,
    keyed,
    newKeys,
    next: {
      value: value + count,
      epoch,
      issued: current.issued + count,
      delivered: current.delivered,
      generation: store.generation,
      schedule: current.schedule,
      day: current.day,
    },
  };
}

/** A replayed key's answer: its recorded first number, and its count when more than one. */
function replayGrant(seen: SeenKey): KeyedGrant {
  return seen.size === 1 ? { turno: seen.turno, replayed: true } : { turno: seen.turno, replayed: true, count: seen.size };
}

/**
 * One number per waiter (the common path): replay the keys already seen, grant the rest without
 * passing MAX_TURNO, give the keyed waiters their numbers in batch order. A key that two waiters of
 * the batch carry is new for the first and a replay for the second, as in the Lua script (its SET NX
 * fails the second time), so both get one number.
 */
function grantSingles(request: ReservationRequest, value: number, seenKey: (key: string) => SeenKey | undefined): Grants {
  const keys = request.keys ?? [];
  const left = MAX_TURNO - value;
  const keyed: KeyedGrant[] = [];
  const newKeys: KeyRecord[] = [];
  const recorded = keyMemo(keys);
  let replayed = 0;
  for (const waiter of keys) {
    const seen = seenKey(waiter.key) ?? recorded?.get(waiter.key);
    if (seen !== undefined) {
      replayed++;
      keyed.push(replayGrant(seen));
      continue;
    }
    // Its fresh index: the waiters before it, less the replays among them.
    const index = waiter.position - replayed;
    const turno = index < left ? value + 1 + index : 0;
    if (turno !== 0) {
      newKeys.push({ key: waiter.key, turno, size: 1 });
      recorded?.set(waiter.key, { turno, size: 1 });
    }
    keyed.push({ turno, replayed: false });
  }
  const count = Math.max(0, Math.min(request.n - replayed, left));
  return { count, keyed: keys.length === 0 ? NO_KEYED_GRANTS : keyed, newKeys };
}

/**
 * The keys a reservation recorded so far, so that a key two of its waiters carry is a replay for the
 * second. None is kept for a batch with fewer than two keys (the common case).
 */
function keyMemo(keys: readonly KeyedWaiter[]): Map<string, SeenKey> | undefined {
  return keys.length < 2 ? undefined : new Map();
}

/**
 * Waiters of several sizes (batch turns), greedy in batch order: a key seen before replays its range
 * and takes nothing; a waiter whose size fits in what is left is granted the next `size` numbers (the
 * offset of a keyed one is the sum of the sizes granted before it); one that does not fit gets
 * nothing, all or nothing, and the later ones that fit are still granted.
 */
function grantSized(
  request: ReservationRequest,
  sizes: readonly number[],
  value: number,
  seenKey: (key: string) => SeenKey | undefined,
): Grants {
  const keys = request.keys ?? [];
  const keyed: KeyedGrant[] = [];
  const newKeys: KeyRecord[] = [];
  const left = MAX_TURNO - value;
  const recorded = keyMemo(keys);
  let granted = 0;
  let j = 0;
  for (let i = 0; i < request.n; i++) {
    const size = sizes[i] as number;
    const fits = size <= left - granted;
    const waiter = keys[j];
    if (waiter?.position !== i) {
      if (fits) granted += size;
      continue;
    }
    j++;
    const seen = seenKey(waiter.key) ?? recorded?.get(waiter.key);
    if (seen !== undefined) {
      keyed.push(replayGrant(seen));
    } else if (fits) {
      const turno = value + 1 + granted;
      granted += size;
      newKeys.push({ key: waiter.key, turno, size });
      recorded?.set(waiter.key, { turno, size });
      keyed.push({ turno, replayed: false });
    } else {
      keyed.push({ turno: 0, replayed: false });
    }
  }
  return { count: granted, keyed: keys.length === 0 ? NO_KEYED_GRANTS : keyed, newKeys };
}

/**
 * The daily reset, before anything else (the rarely taken branch of every store's reservation):
 * undefined when the request's schedule is not the stored one (the caller must refresh); else the
 * counter to reserve from, which is a new day's (value 0, epoch raised, like an admin reset) when the
 * request's day is later than the stored one. The move is no issue (the ledger keeps `issued`), and
 * the generation is kept, so a counter not written since an operator's recovery still starts above
 * the recovery floor (an admin reset, the operator's word, is not floored; a day's reset is not his).
 */
function planDay(current: CounterState, request: ReservationRequest): CounterState | undefined {
  const day = request.day;
  if ((current.schedule ?? undefined) !== day?.schedule) return undefined;
  if (day === undefined || day.start <= (current.day ?? 0)) return current;
  return { ...current, value: 0, epoch: current.epoch + 1, day: day.start };
}

function scheduleChanged(current: CounterState, request: ReservationRequest): PlannedReservation {
  const none = { turno: 0, replayed: false };
  return {
    first: 0,
    count: 0,
    epoch: current.epoch,
    fenced: false,
    keyed: request.keys === undefined || request.keys.length === 0 ? NO_KEYED_GRANTS : request.keys.map(() => none),
    scheduleChanged: { schedule: current.schedule ?? undefined },
    newKeys: [],
    next: current,
  };
}
