import {
  type CounterSnapshot,
  type KeyedGrant,
  NO_KEYED_GRANTS,
  type Reservation,
  type ReservationRequest,
} from "./counter-store.ts";
import { MAX_TURNO } from "./limits.ts";

/** Everything a store keeps per counter. */
export interface CounterState extends CounterSnapshot {
  /** Ledger: numbers granted. */
  readonly issued: number;
  /** Ledger: numbers reported delivered. */
  readonly delivered: number;
  /** The store generation (marker) the counter was last written in; 0 = before any marker. */
  readonly generation: number;
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
  /** Idempotency keys to record, with the number each got. */
  readonly newKeys: ReadonlyArray<{ readonly key: string; readonly turno: number }>;
}

/**
 * The reservation rule every store applies atomically (the Redis stores run the same rule in Lua, in
 * src/stores/redis-scripts.ts): apply the recovery floor to a counter of an older generation, fence
 * forward if the store went backwards, replay the keys already seen, grant the rest without passing
 * MAX_TURNO, give the keyed waiters their numbers in batch order, and update the ledger.
 */
export function planReservation(
  current: CounterState,
  request: ReservationRequest,
  store: GenerationFloor,
  seenKey: (key: string) => number | undefined,
): PlannedReservation {
  let { value, epoch } = current;
  if (current.generation < store.generation && value < store.floor) value = store.floor;
  const fence = request.fence;
  let fenced = false;
  if (fence !== undefined && (epoch < fence.epoch || (epoch === fence.epoch && value < fence.floor))) {
    fenced = true;
    value = Math.max(value, fence.floor);
    epoch = fence.epoch;
  }
  const keys = request.keys ?? [];
  const replays = keys.map((k) => seenKey(k.key));
  const replayCount = replays.filter((turno) => turno !== undefined).length;
  const count = Math.max(0, Math.min(request.n - replayCount, MAX_TURNO - value));
  const keyed: KeyedGrant[] = [];
  const newKeys: Array<{ key: string; turno: number }> = [];
  let replayedBefore = 0;
  keys.forEach((waiter, j) => {
    const replayed = replays[j];
    if (replayed !== undefined) {
      replayedBefore++;
      keyed.push({ turno: replayed, replayed: true });
      return;
    }
    const index = waiter.position - replayedBefore;
    const turno = index < count ? value + 1 + index : 0;
    if (turno !== 0) newKeys.push({ key: waiter.key, turno });
    keyed.push({ turno, replayed: false });
  });
  return {
    first: value + 1,
    count,
    epoch,
    fenced,
    keyed: keys.length === 0 ? NO_KEYED_GRANTS : keyed,
    newKeys,
    next: {
      value: value + count,
      epoch,
      issued: current.issued + count,
      delivered: current.delivered,
      generation: store.generation,
    },
  };
}
