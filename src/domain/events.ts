/**
 * What the core tells the outside, and the one way it does: named channels (node:diagnostics_channel,
 * as undici and ioredis publish theirs). The coalescer and the HTTP layer publish; observability
 * (metrics, logs, tracing) subscribes. A publisher checks `active` first, so an event nobody listens
 * to costs one property read and builds no message.
 *
 * Channels are process-wide: every coalescer and app of a process publishes on the same ones, which
 * is what a process's metrics want (tests that run several apps in one process see their sum).
 *
 * Rates: `response` and `internalError` once per HTTP answer; the others once per store round trip
 * or event, never per request.
 */
import { type Channel, channel } from "node:diagnostics_channel";

/** A typed channel. */
export class Topic<M> {
  readonly #channel: Channel;

  constructor(name: string) {
    this.#channel = channel(name);
  }

  /** True when someone listens: check it before building a message. */
  get active(): boolean {
    return this.#channel.hasSubscribers;
  }

  publish(message: M): void {
    this.#channel.publish(message);
  }

  /** Listens until the returned function is called. */
  subscribe(listener: (message: M) => void): () => void {
    const untyped = listener as (message: unknown) => void;
    this.#channel.subscribe(untyped);
    return () => {
      this.#channel.unsubscribe(untyped);
    };
  }
}

export interface ReservationEvent {
  readonly id: string;
  /** Numbers the reservation asked for (its waiters' sizes summed). */
  readonly numbers: number;
  readonly storeSeconds: number;
  readonly outcome: "ok" | "error";
}

export interface ResponseEvent {
  /** The route's name (src/http/router.ts RouteName). */
  readonly route: string;
  readonly method: string;
  readonly status: number;
  /** performance.now() when the request arrived. */
  readonly startedAt: number;
}

export const EVENTS = {
  /** One store reservation finished (ok or failed). */
  reservation: new Topic<ReservationEvent>("turnomatic:reservation"),
  /** Numbers reserved for requests that were gone when the store answered. */
  abandoned: new Topic<{ readonly count: number }>("turnomatic:abandoned"),
  /** Numbers of a reservation that failed without an answer (the store may have applied it). */
  inDoubt: new Topic<{ readonly count: number }>("turnomatic:in-doubt"),
  /** The store was behind this process for `id`; its counter was raised past `floor`. */
  fence: new Topic<{ readonly id: string; readonly floor: number }>("turnomatic:fence"),
  /** A request refused because too many wait. */
  overload: new Topic<Record<string, never>>("turnomatic:overload"),
  /** Requests whose deadline passed while they waited. */
  timeout: new Topic<{ readonly count: number }>("turnomatic:timeout"),
  /** `last`: the highest number a reservation of `id` issued. */
  issued: new Topic<{ readonly id: string; readonly last: number }>("turnomatic:issued"),
  /** An HTTP answer went out. */
  response: new Topic<ResponseEvent>("turnomatic:http-response"),
  /** A handler failed with something that is the service's fault (answered 500). */
  internalError: new Topic<{ readonly error: unknown }>("turnomatic:internal-error"),
} as const;
