/**
 * Replica acknowledgement (Redis WAIT) shared by every reservation on one connection.
 *
 * Redis replicates asynchronously: a primary answers a write before any replica has it, so a
 * failover can promote a replica that never saw numbers we already handed out. WAIT n t blocks until
 * n replicas have acknowledged every write this connection made so far (or t ms passed) and returns
 * how many did. So one WAIT issued after the replies of many reservations covers them all: callers
 * whose reply has arrived join the WAIT that is about to be sent, and one is sent per turn of the
 * event loop, not per reservation.
 *
 * Why after the reply and not pipelined right behind the script: ioredis sends a script as EVALSHA
 * and, on NOSCRIPT (always the case on a freshly promoted primary), re-sends it as EVAL later; a
 * WAIT pipelined behind the EVALSHA would have been answered before that EVAL was written, and would
 * vouch for nothing. A WAIT sent after the reply follows the write on the same connection for sure.
 * That costs one more round trip per batch, which the coalescer's batching absorbs.
 */
import { StoreUnavailableError } from "../domain/errors.ts";

/** The one command this module needs; ioredis's Redis has it. */
export interface WaitClient {
  wait(replicas: number, timeoutMs: number): Promise<number>;
}

export interface ReplicaAckOptions {
  /** Replicas that must acknowledge (>= 1). */
  readonly replicas: number;
  /** Longest WAIT (ms); Redis answers with the count reached by then. */
  readonly timeoutMs: number;
  /** Names the cause of a failed WAIT (connection-events.ts translate). Default: the error as is. */
  readonly translate?: (error: unknown) => unknown;
}

export class ReplicaAck {
  readonly #client: WaitClient;
  readonly #options: ReplicaAckOptions;
  #next: Promise<void> | undefined;
  /** WAITs sent and WAITs that came back short, for tests and logs. */
  readonly stats = { waits: 0, short: 0 };

  constructor(client: WaitClient, options: ReplicaAckOptions) {
    this.#client = client;
    this.#options = options;
  }

  /**
   * Resolves once enough replicas have every write this connection made before the call; rejects
   * with StoreUnavailableError otherwise. Call it after the write's reply has arrived.
   */
  afterWrite(): Promise<void> {
    if (this.#next === undefined) {
      this.#next = Promise.resolve().then(() => {
        // From here on, callers need a WAIT sent after their own reply: start a new one.
        this.#next = undefined;
        return this.#wait();
      });
    }
    return this.#next;
  }

  async #wait(): Promise<void> {
    const { replicas, timeoutMs } = this.#options;
    this.stats.waits++;
    let acknowledged: number;
    try {
      acknowledged = await this.#client.wait(replicas, timeoutMs);
    } catch (error) {
      throw this.#options.translate === undefined ? error : this.#options.translate(error);
    }
    if (acknowledged < replicas) {
      this.stats.short++;
      throw new StoreUnavailableError(
        `only ${acknowledged} of ${replicas} Redis replicas acknowledged the reservation within ${timeoutMs} ms (options --redis-wait-replicas, --redis-wait-timeout-ms); its numbers are skipped, never re-issued`,
      );
    }
  }
}
