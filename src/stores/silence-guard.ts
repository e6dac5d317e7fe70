/**
 * Reconnects a Redis client whose connection has gone silent.
 *
 * After a network cut the kernel keeps the old TCP connection and retransmits its unacknowledged
 * bytes with exponential backoff (the retransmission timeout doubles, up to two minutes). When the
 * link returns, that connection can stay mute until the next retransmission — about as long as the
 * cut lasted — while every command on it times out and the process answers 503s (seen as ~6 s of
 * 503s after a 6 s cut in test/distributed/link-down.test.ts). A fresh connection does not inherit the
 * backoff. So when a command times out and nothing at all has come back on the connection for
 * `silenceMs`, the guard drops the connection and lets the client connect anew (ioredis
 * `disconnect(true)`, then its retry strategy). A slow server is not silent: any reply, errors
 * included, proves the connection alive. A client that is not "ready" is left alone: ioredis is
 * already connecting, and a server that refuses connections is its retry strategy's business.
 *
 * Commands in flight on the dropped connection fail; their reservations are "in doubt" and counted,
 * as for any failed reservation (autoResendUnfulfilledCommands is off, so nothing is sent twice).
 *
 * Every failure it passes on goes through `translate` first (connection-events.ts), so a command that
 * failed for want of a connection names the cause (untrusted certificate, wrong password...) instead
 * of ioredis's "max retries per request" message. A guard made with `silenceMs` Infinity only
 * translates (Redis Cluster: its client reconnects per node by itself).
 */
import type { ConnectionStateListener } from "./connection-events.ts";

/** The part of an ioredis client the guard uses. */
export interface Reconnectable {
  /** ioredis's connection status; the guard acts only on a connection it believes "ready". */
  readonly status: string;
  disconnect(reconnect?: boolean): void;
}

/** ioredis's message for a command past `commandTimeout`. */
const COMMAND_TIMED_OUT = "Command timed out";

export class SilenceGuard {
  readonly #client: Reconnectable;
  readonly #silenceMs: number;
  readonly #onReconnect: ((silentMs: number) => void) | undefined;
  readonly #translate: (error: unknown) => unknown;
  #lastReplyAt = performance.now();

  /** Noted for every reply; a bound function so `call.then(noteReply)` allocates nothing per call. */
  readonly #noteReply = <T>(value: T): T => {
    this.#lastReplyAt = performance.now();
    return value;
  };

  readonly #noteError = (error: unknown): never => {
    const now = performance.now();
    if (error instanceof Error && error.message === COMMAND_TIMED_OUT) {
      const silentMs = now - this.#lastReplyAt;
      // Not while ioredis is (re)connecting already: a refused or unreachable server is its job.
      if (silentMs >= this.#silenceMs && this.#client.status === "ready") {
        // Counted as a reply so the next timeouts, still on their way, do not reconnect again.
        this.#lastReplyAt = now;
        this.#onReconnect?.(Math.round(silentMs));
        this.#client.disconnect(true);
      }
    } else if (error instanceof Error && error.name === "ReplyError") {
      this.#lastReplyAt = now;
    }
    throw this.#translate(error);
  };

  constructor(
    client: Reconnectable,
    silenceMs: number,
    onReconnect?: (silentMs: number) => void,
    translate: (error: unknown) => unknown = (error) => error,
  ) {
    this.#client = client;
    this.#silenceMs = silenceMs;
    this.#onReconnect = onReconnect;
    this.#translate = translate;
  }

  /** Passes a command's outcome through, noting replies and reconnecting after a silent timeout. */
  watch<T>(call: Promise<T>): Promise<T> {
    return call.then(this.#noteReply, this.#noteError);
  }
}

/** A guard for a store's client that reports each reconnect as the "silent" connection state. */
export function guardAgainstSilence(
  client: Reconnectable,
  commandTimeoutMs: number,
  onStateChange: ConnectionStateListener | undefined,
  translate?: (error: unknown) => unknown,
): SilenceGuard {
  return new SilenceGuard(client, commandTimeoutMs, (silentMs) => onStateChange?.("silent", { silentMs }), translate);
}
