import type { CounterSnapshot, Fence, Reservation } from "./counter-store.ts";
import { MAX_TURNO } from "./limits.ts";

export interface PlannedReservation extends Reservation {
  /** The counter's state after the reservation, to be written back atomically. */
  readonly next: CounterSnapshot;
}

/**
 * The reservation rule every store applies atomically (the Redis store runs the same rule in Lua):
 * fence forward if the store went backwards, then grant up to `n` numbers without passing MAX_TURNO.
 */
export function planReservation(current: CounterSnapshot, n: number, fence?: Fence): PlannedReservation {
  let { value, epoch } = current;
  let fenced = false;
  if (fence !== undefined && (epoch < fence.epoch || (epoch === fence.epoch && value < fence.floor))) {
    fenced = true;
    value = Math.max(value, fence.floor);
    epoch = fence.epoch;
  }
  const count = Math.max(0, Math.min(n, MAX_TURNO - value));
  return { first: value + 1, count, epoch, fenced, next: { value: value + count, epoch } };
}
