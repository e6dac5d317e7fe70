/**
 * The ids that got the most numbers recently, with their current turn, for the status page; and the
 * highest counter seen, for the exhaustion gauges. Ids never become metric labels (unbounded
 * cardinality); this bounded table is the only place that names them.
 *
 * It is fed once per store round trip (CoalescerObserver.onIssued), not per request. Memory is bounded:
 * at most `capacity` ids are tracked per window; when full, new ids are ignored until the window
 * rolls over, so a flood of one-off ids cannot grow it.
 */
import { MAX_TURNO } from "../domain/limits.ts";

export interface BusyId {
  readonly id: string;
  /** Highest number issued for the id by this process. */
  readonly turno: number;
  /** Numbers issued for it in the current and previous window. */
  readonly recent: number;
}

interface Entry {
  last: number;
  issued: number;
  previous: number;
}

export interface BusyIdsOptions {
  /** Most ids tracked at once. Default 1000. */
  readonly capacity?: number;
  /** Length of one counting window (ms). Default 10000. */
  readonly windowMs?: number;
  /** Fraction of MAX_SAFE_INTEGER above which an id counts as near exhaustion. Default 0.9. */
  readonly nearFraction?: number;
}

export class BusyIds {
  readonly #capacity: number;
  readonly #windowMs: number;
  readonly #nearAt: number;
  #entries = new Map<string, Entry>();
  #windowStart = performance.now();
  #highest = 0;
  readonly #near = new Set<string>();

  constructor(options: BusyIdsOptions = {}) {
    this.#capacity = options.capacity ?? 1000;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#nearAt = Math.floor(MAX_TURNO * (options.nearFraction ?? 0.9));
  }

  /** Highest number issued for any id since start. */
  get highest(): number {
    return this.#highest;
  }

  /** Distinct ids seen above the near-exhaustion threshold (capped at `capacity`). */
  get nearExhaustion(): number {
    return this.#near.size;
  }

  record(id: string, last: number): void {
    const now = performance.now();
    if (now - this.#windowStart > this.#windowMs) this.#roll(now);
    if (last > this.#highest) this.#highest = last;
    if (last > this.#nearAt && this.#near.size < this.#capacity) this.#near.add(id);
    const entry = this.#entries.get(id);
    if (entry !== undefined) {
      entry.issued += Math.max(0, last - entry.last);
      entry.last = last;
    } else if (this.#entries.size < this.#capacity) {
      this.#entries.set(id, { last, issued: 1, previous: 0 });
    }
  }

  /** The `limit` ids with the most numbers issued over the last one to two windows. */
  top(limit: number): BusyId[] {
    const now = performance.now();
    if (now - this.#windowStart > this.#windowMs) this.#roll(now);
    const all: BusyId[] = [];
    for (const [id, entry] of this.#entries) {
      all.push({ id, turno: entry.last, recent: entry.issued + entry.previous });
    }
    all.sort((a, b) => b.recent - a.recent || b.turno - a.turno);
    return all.slice(0, limit);
  }

  /** Starts a new window: ids idle for a whole window are dropped. */
  #roll(now: number): void {
    const next = new Map<string, Entry>();
    for (const [id, entry] of this.#entries) {
      if (entry.issued > 0) next.set(id, { last: entry.last, issued: 0, previous: entry.issued });
    }
    this.#entries = next;
    this.#windowStart = now;
  }
}
