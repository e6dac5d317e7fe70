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
  /**
   * Replicas that must acknowledge (>= 1), or a function read at each WAIT (Sentinel's "every
   * replica that is up", kept current by LiveReplicaCount).
   */
  readonly replicas: number | (() => number);
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
    const { timeoutMs } = this.#options;
    const replicas = typeof this.#options.replicas === "number" ? this.#options.replicas : this.#options.replicas();
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

/** One replica as a sentinel lists it (SENTINEL REPLICAS). */
export interface ListedReplica {
  /** e.g. "slave", "s_down,slave", "slave,disconnected". */
  readonly flags: string;
  /** "ok", or "err" while the replica reports no working link to its primary (also before it first did). */
  readonly masterLinkStatus: string;
}

/**
 * How many replicas a WAIT must reach under Sentinel by default: every replica the sentinels list
 * that is up and replicating (no s_down, o_down or disconnected flag, master-link-status ok), at
 * least one. Why every one and not
 * one: in a forced failover (SENTINEL FAILOVER) Sentinel promotes one replica while the old primary
 * keeps taking writes for a second or two, and the other replica keeps acknowledging them; those
 * writes exist on no server of the new topology (postmortem 2026-12-02-forced-failover-duplicates).
 * The promoted replica stops acknowledging the old primary at once, so a WAIT for every replica fails
 * in that window (a 503, numbers skipped) instead of vouching for numbers a failover will lose; the
 * sentinels still list it with the link status it last reported (ok: a primary reports none), so it
 * still counts. A replica that dies makes WAITs fail until the sentinels flag it down
 * (down-after-milliseconds); one that is not (yet) replicating, like a restarted old primary before
 * Sentinel converts it, reports its link down and does not count. Read from the sentinels every `intervalMs`, off the request path; a failed
 * read keeps the last count.
 */
export class LiveReplicaCount {
  #count = 1;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #list: () => Promise<readonly ListedReplica[] | undefined>;

  constructor(list: () => Promise<readonly ListedReplica[] | undefined>, intervalMs = 1000) {
    this.#list = list;
    this.#timer = setInterval(() => void this.refresh(), intervalMs);
    (this.#timer as { unref?: () => void }).unref?.();
    void this.refresh();
  }

  get value(): number {
    return this.#count;
  }

  async refresh(): Promise<number> {
    try {
      const replicas = await this.#list();
      if (replicas !== undefined) {
        const up = replicas.filter((r) => !/s_down|o_down|disconnected/.test(r.flags) && r.masterLinkStatus === "ok");
        this.#count = Math.max(1, up.length);
      }
    } catch {
      // Keep the last count: the sentinels answer again soon, or the WAITs tell.
    }
    return this.#count;
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
