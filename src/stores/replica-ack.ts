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
 *
 * The WAIT must go out on the connection that carried the writes: WAIT counts the replicas that have
 * this connection's last write, so on a fresh connection it vouches for nothing and answers at once.
 * ioredis queues a command sent while it reconnects and writes it on the next connection, to the
 * next primary after a failover. So the connection is noted when the replies arrive and checked just
 * before the WAIT is written; if it changed (or is not ready), the WAIT is not sent and the
 * reservations fail. (A WAIT delayed by the first replica count, a process started during a
 * failover, went to the promoted replica and vouched for numbers the failover lost: nemesis seed
 * 20261202, 20 min, t+548 s; postmortem 2026-12-02-link-down-replica-promoted, its update.)
 */
import { StoreUnavailableError } from "../domain/errors.ts";

/** What this module needs of a client; ioredis's Redis has it. */
export interface WaitClient {
  wait(replicas: number, timeoutMs: number): Promise<number>;
  /** "ready" when a command is written at once (otherwise ioredis queues it for the next connection). */
  readonly status: string;
  /** The current connection's socket: another object after every reconnect. */
  readonly stream: unknown;
}

export interface ReplicaAckOptions {
  /**
   * Replicas that must acknowledge (>= 1), or a function read at each WAIT (Sentinel's "every
   * replica it could promote", kept current by LiveReplicaCount; a promise until it is known).
   */
  readonly replicas: number | (() => number | Promise<number>);
  /** Longest WAIT (ms); Redis answers with the count reached by then. */
  readonly timeoutMs: number;
  /** Names the cause of a failed WAIT (connection-events.ts translate). Default: the error as is. */
  readonly translate?: (error: unknown) => unknown;
}

export class ReplicaAck {
  readonly #client: WaitClient;
  readonly #options: ReplicaAckOptions;
  #next: Promise<void> | undefined;
  /** WAITs sent, and WAITs that came back short or were not sent (the connection changed), for tests and logs. */
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
      // The replies of every caller that joins came on this connection (they arrive in one turn).
      const written = this.#client.stream;
      this.#next = Promise.resolve().then(() => {
        // From here on, callers need a WAIT sent after their own reply: start a new one.
        this.#next = undefined;
        return this.#wait(written);
      });
    }
    return this.#next;
  }

  async #wait(written: unknown): Promise<void> {
    const { timeoutMs } = this.#options;
    const replicas = typeof this.#options.replicas === "number" ? this.#options.replicas : await this.#options.replicas();
    if (this.#client.status !== "ready" || this.#client.stream !== written) {
      this.stats.short++;
      throw new StoreUnavailableError(
        "the connection to Redis changed between the reservation and its WAIT (a WAIT on another connection would vouch for nothing); its numbers are skipped, never re-issued",
      );
    }
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

/** One replica as a sentinel lists it (SENTINEL REPLICAS), the fields this module reads. */
export interface ListedReplica {
  /** "ip:port". */
  readonly name: string;
  /** e.g. "slave", "s_down,slave", "slave,disconnected", "slave,promoted". */
  readonly flags: string;
  /** The role the replica's own INFO last reported: "slave", or "master" once promoted or restarted as one. */
  readonly roleReported: string;
  /** "ok", or "err" while the replica reported no working link to its primary (also before it first did). */
  readonly masterLinkStatus: string;
  /** How long its link had been down when the sentinel last read its INFO (ms; -1000 = never up since it started). */
  readonly masterLinkDownTimeMs: number;
  /** The sentinels' down-after-milliseconds for this primary. */
  readonly downAfterMs: number;
}

/** What LiveReplicaCount reports when its count changes: the count, who counts, who not and why. */
export interface CountChange {
  readonly replicas: number;
  readonly counted: readonly string[];
  /** Each replica listed but not counted, with what the sentinel said of it. */
  readonly left: readonly string[];
}

function sameNames(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((name) => b.has(name));
}

/**
 * How many replicas a WAIT must reach under Sentinel by default: every replica Sentinel could
 * promote, at least one. A write that one of them lacks is lost if Sentinel promotes that one, so
 * the count follows Sentinel's own choice of candidates (sentinelSelectSlave): a replica counts
 * unless it is flagged s_down or o_down, or its link to the primary has been down for longer than
 * 10 x down-after-milliseconds (then Sentinel will not promote it either).
 *
 * Why "disconnected" does not leave a replica out: the flag says that the sentinel we asked has no
 * link to it, not that the sentinel leading the next failover has none. Each switch of primary
 * makes every sentinel list all replicas as disconnected for a moment (it starts them anew), and a
 * sentinel's link can drop while the leader's stays up: nemesis seed 20261202 after the WAIT
 * connection fix, t+834 s, listed the replica :6381 "disconnected" while the leader, over a 1 s old
 * link, promoted it; the other replica alone had acknowledged the writes of that second (the store
 * went back 297 reservations). A replica that really died makes WAITs fail until it is flagged
 * s_down (down-after-milliseconds).
 *
 * Why not only the replicas whose link is up (the rule before): a replica cut off from the primary
 * for a few seconds stays a candidate, and leaving it out dropped the count to 1, so the other
 * replica alone acknowledged the writes of those seconds; a forced failover then promoted the cut-off
 * one and lost them (nemesis seed 20261202, t+375 s; postmortem
 * 2026-12-02-link-down-replica-promoted). Now a WAIT fails while a candidate is cut off or syncing
 * (a 503, its numbers skipped): that is the price of a failover to it losing nothing. The operator
 * who prefers availability sets --redis-wait-replicas to a number.
 *
 * Why every candidate and not one: in a forced failover (SENTINEL FAILOVER) Sentinel promotes one
 * replica while the old primary keeps taking writes for a second or two, and the other replica keeps
 * acknowledging them; those writes exist on no server of the new topology (postmortem
 * 2026-12-02-forced-failover-duplicates). The promoted replica stops acknowledging the old primary at
 * once; it is listed with the flag "promoted" by the sentinel that leads the failover and with role
 * master by the others, and counts either way, for as long as the sentinels list it as a replica
 * (until the switch, however long the failover takes; a 10 s limit let the old primary's writes of
 * the 11th second through, nemesis seed 20261202 after the second fix, t+448 s). So a WAIT fails in
 * that window instead of vouching for numbers the failover will lose.
 *
 * Also counted: an instance listed as a replica that reports role master, like the old primary
 * after a failover until Sentinel converts it (about 8 s: four INFO periods). It replicates nothing
 * yet, so WAITs fail meanwhile, but it is a candidate: Sentinel's choice of a replica does not look
 * at the role. Until fix 5 such an instance counted only if it had counted at the last refresh; the
 * processes that left it out let the other replica alone acknowledge their writes, and a forced
 * failover 0.5 s after the conversion promoted the old primary behind it (nemesis seed 20261202
 * after the fourth fix, t+87 s: the store went back 19 reservations, detected and halted). Until a
 * process's first answer from the sentinels its WAITs wait for that answer: counting 1 meanwhile let
 * a process started inside a forced failover vouch for writes the failover lost (nemesis seed
 * 20261202, 20 min, t+850 s). A replica that dies makes WAITs fail until the sentinels flag it down
 * (down-after-milliseconds). Read from the sentinels every `intervalMs`, off the request path; a
 * failed read keeps the last count.
 */
export class LiveReplicaCount {
  /** Undefined until the sentinels first answered. */
  #count: number | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #list: () => Promise<readonly ListedReplica[] | undefined>;
  readonly #waitMs: number;
  /** The replicas (by name) that counted at the last refresh, for the report of a change. */
  #counted: Set<string> | undefined;
  readonly #known: Promise<void>;
  #markKnown: () => void = () => {};

  readonly #onChange: ((change: CountChange) => void) | undefined;

  /**
   * `waitMs`: how long a WAIT waits for the first count before it fails (the WAIT timeout);
   * `onChange`: told when the count or the replicas counted change (for the logs), not otherwise.
   */
  constructor(
    list: () => Promise<readonly ListedReplica[] | undefined>,
    intervalMs = 1000,
    waitMs = 1000,
    onChange?: (change: CountChange) => void,
  ) {
    this.#list = list;
    this.#waitMs = waitMs;
    this.#onChange = onChange;
    this.#known = new Promise((resolve) => {
      this.#markKnown = resolve;
    });
    this.#timer = setInterval(() => void this.refresh(), intervalMs);
    (this.#timer as { unref?: () => void }).unref?.();
    void this.refresh();
  }

  /** The count; until the sentinels first answered, a promise of it (rejected after `waitMs`). */
  current(): number | Promise<number> {
    if (this.#count !== undefined) return this.#count;
    return this.#firstCount();
  }

  async #firstCount(): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#waitMs);
    });
    await Promise.race([this.#known, late]);
    clearTimeout(timer);
    if (this.#count === undefined)
      throw new StoreUnavailableError(
        "no sentinel has listed the replicas yet, so the replicas to wait for are unknown; the reservation's numbers are skipped, never re-issued",
      );
    return this.#count;
  }

  async refresh(): Promise<number | undefined> {
    try {
      const replicas = await this.#list();
      if (replicas !== undefined) {
        const before = this.#counted;
        const counted = new Set(replicas.filter((replica) => this.#counts(replica)).map((replica) => replica.name));
        this.#counted = counted;
        this.#count = Math.max(1, counted.size);
        this.#markKnown();
        if (before === undefined || !sameNames(before, counted)) this.#report(replicas, counted, this.#count);
      }
    } catch {
      // Keep the last count: the sentinels answer again soon, or the WAITs tell.
    }
    return this.#count;
  }

  close(): void {
    clearInterval(this.#timer);
  }

  #report(listed: readonly ListedReplica[], counted: ReadonlySet<string>, replicas: number): void {
    const left = listed
      .filter((replica) => !counted.has(replica.name))
      .map((r) => `${r.name} (${r.flags}, role ${r.roleReported}, link ${r.masterLinkStatus} ${r.masterLinkDownTimeMs} ms)`);
    this.#onChange?.({ replicas, counted: [...counted], left });
  }

  #counts(replica: ListedReplica): boolean {
    if (/s_down|o_down/.test(replica.flags)) return false;
    if (replica.flags.includes("promoted") || replica.roleReported !== "slave") return true;
    return replica.masterLinkStatus === "ok" || replica.masterLinkDownTimeMs <= 10 * replica.downAfterMs;
  }
}
